package app_test

import (
	"encoding/json"
	"net/url"
)

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
