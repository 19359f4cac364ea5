// Package providerfakes holds fakes of the third-party APIs that built-in
// processors call and that tests cannot reach, each following the
// provider's documented API, so that the plugin's own tests and the
// whole-server tests exercise one and the same fake.
package providerfakes

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
)

// SurveyMonkey follows the SurveyMonkey API v3 contacts documentation:
// POST /v3/contact_lists/{ListID}/contacts, PATCH and DELETE
// /v3/contacts/{id}, each with "Authorization: Bearer {Token}".
type SurveyMonkey struct {
	token, listID string

	mu       sync.Mutex
	contacts map[string]map[string]any
	created  int
}

// NewSurveyMonkey is an empty contact store that accepts token for list.
func NewSurveyMonkey(token, list string) *SurveyMonkey {
	return &SurveyMonkey{token: token, listID: list, contacts: map[string]map[string]any{}}
}

// ServeHTTP answers the contacts endpoints; anything else is 404.
func (f *SurveyMonkey) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v3/contact_lists/"+f.listID+"/contacts":
		f.created++
		id := fmt.Sprint(1000 + f.created)
		body["id"] = id
		f.contacts[id] = body
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(body)
	case strings.HasPrefix(r.URL.Path, "/v3/contacts/"):
		id := strings.TrimPrefix(r.URL.Path, "/v3/contacts/")
		c, ok := f.contacts[id]
		switch {
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			return
		case r.Method == http.MethodDelete:
			delete(f.contacts, id)
		case r.Method == http.MethodPatch:
			maps.Copy(c, body)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// Contacts is a copy of the stored contacts by id.
func (f *SurveyMonkey) Contacts() map[string]map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]map[string]any, len(f.contacts))
	for id, c := range f.contacts {
		out[id] = maps.Clone(c)
	}
	return out
}

// Has reports whether contact id is stored.
func (f *SurveyMonkey) Has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.contacts[id]
	return ok
}

// Created counts the contacts created so far, deleted ones included.
func (f *SurveyMonkey) Created() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created
}
