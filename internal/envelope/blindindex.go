package envelope

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// BlindIndex returns HMAC-SHA256(key, value) as unpadded base64url (43
// characters). Storing it next to an encrypted value allows exact-match
// lookups without storing the value in clear; without the key, guesses
// cannot be checked offline. Callers must normalize value first (e.g.
// lower-case a trimmed email) and use a dedicated key per indexed field.
func BlindIndex(key []byte, value string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
