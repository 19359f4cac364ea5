package app

import "encoding/json"

// withoutData drops the data entry of a request error's body (a document
// that does not parse or validate never started executing, so the response
// must not say data: null).
func withoutData(body []byte) []byte {
	var resp map[string]json.RawMessage
	if err := json.Unmarshal(body, &resp); err != nil {
		return body
	}
	if _, ok := resp["data"]; !ok {
		return body
	}
	delete(resp, "data")
	out, err := json.Marshal(resp)
	if err != nil {
		return body
	}
	return append(out, '\n')
}
