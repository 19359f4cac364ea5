package app_test

import (
	"encoding/json"
	"net/url"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// modified turns an update's result into what storetest.Tamper wants: how
// many documents changed.
func modified(r *mongo.UpdateResult, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return r.ModifiedCount, nil
}

func urlPathUnescape(s string) (string, error) { return url.PathUnescape(s) }
