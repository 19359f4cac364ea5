package consent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// hashFormat is the time layout inside hashed event data: UTC, milliseconds
// (what BSON dates keep).
const hashFormat = "2006-01-02T15:04:05.000Z07:00"

// hashedEvent is the canonical content an event hash covers: every stored
// field of the event but the hash itself, plus the subject pseudonym, so an
// event cannot be moved to another user's chain. encoding/json writes struct
// fields in declaration order, which makes the encoding canonical.
type hashedEvent struct {
	V             int    `json:"v"`
	Subject       string `json:"sub"`
	Seq           int64  `json:"seq"`
	Purpose       string `json:"purpose"`
	Action        Action `json:"action"`
	PolicyVersion string `json:"policyVersion"`
	PolicyN       int64  `json:"policyN"`
	At            string `json:"at"`
	Method        Method `json:"method"`
	ReceiptID     string `json:"receiptId"`
	Receipt       string `json:"receipt"`
	PrevHash      string `json:"prevHash"`
}

// HashEvent computes the chain hash of e (hex SHA-256), which covers the
// previous event's hash.
func HashEvent(subject string, e *Event) string {
	b, err := json.Marshal(hashedEvent{
		V: 1, Subject: subject, Seq: e.Seq, Purpose: e.Purpose, Action: e.Action,
		PolicyVersion: e.PolicyVersion, PolicyN: e.PolicyN, At: e.At.UTC().Format(hashFormat),
		Method: e.Method, ReceiptID: e.ReceiptID, Receipt: e.Receipt, PrevHash: e.PrevHash,
	})
	if err != nil {
		panic(fmt.Sprintf("encode event for hashing: %v", err)) // cannot happen: plain strings and numbers
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ReceiptVerifier checks a receipt's signature and returns its claims.
type ReceiptVerifier func(ctx context.Context, receipt string) (*Claims, error)

// VerifyLedger recomputes a user's hash chain (events in order) and reports the first
// problem: a gap or extra event, a hash or link that does not match, a
// receipt whose signature or claims do not match its event, or a current
// state that disagrees with the ledger. Because every event embeds a
// receipt signed over its content and its predecessor's hash, rewriting the
// chain consistently needs the signing key, not just write access to the
// store. verify may be nil to skip receipt signatures (hashes are still
// checked).
func VerifyLedger(ctx context.Context, subject string, st *Stored, events []Event, verify ReceiptVerifier) error {
	if st.Head < 0 || int64(len(events)) != st.Head {
		return fmt.Errorf("head is %d but the ledger holds %d events", st.Head, len(events))
	}
	prev := ""
	last := map[string]Entry{}
	for i := range events {
		e, seq := events[i], int64(i+1)
		if e.Seq != seq {
			return fmt.Errorf("event %d is stored as number %d", seq, e.Seq)
		}
		if e.PrevHash != prev {
			return fmt.Errorf("event %d does not link to its predecessor", seq)
		}
		if e.Action != Grant && e.Action != Withdraw {
			return fmt.Errorf("event %d has an unknown action %q", seq, e.Action)
		}
		if HashEvent(subject, &e) != e.Hash {
			return fmt.Errorf("event %d does not match its hash", seq)
		}
		if verify != nil {
			c, err := verify(ctx, e.Receipt)
			if err != nil {
				return fmt.Errorf("receipt of event %d: %w", seq, err)
			}
			if err := receiptMatches(subject, &e, c); err != nil {
				return fmt.Errorf("receipt of event %d: %w", seq, err)
			}
		}
		prev = e.Hash
		last[e.Purpose] = e.entry()
	}
	if st.HeadHash != prev {
		return fmt.Errorf("head hash does not match the last event")
	}
	if len(st.State) != len(last) {
		return fmt.Errorf("current state lists %d purposes, the ledger %d", len(st.State), len(last))
	}
	for purpose, want := range last {
		got, ok := st.State[purpose]
		if !ok || got.Granted != want.Granted || got.Seq != want.Seq || !got.At.Equal(want.At) ||
			got.PolicyVersion != want.PolicyVersion || got.PolicyN != want.PolicyN || got.Method != want.Method {
			return fmt.Errorf("current state of %q disagrees with the ledger", purpose)
		}
	}
	return nil
}

func receiptMatches(subject string, e *Event, c *Claims) error {
	switch {
	case c.Subject != subject || c.PIIPrincipalID != subject:
		return fmt.Errorf("issued to another subject")
	case c.ID != e.ReceiptID || c.ConsentReceiptID != e.ReceiptID:
		return fmt.Errorf("receipt id differs")
	case c.Purpose != e.Purpose || c.Action != e.Action || c.CollectionMethod != string(e.Method):
		return fmt.Errorf("purpose, action or method differs")
	case c.PolicyVersion != e.PolicyVersion:
		return fmt.Errorf("policy version differs")
	case c.ConsentTimestamp != e.At.Unix():
		return fmt.Errorf("time differs")
	case c.Ledger == nil || c.Ledger.Sequence != e.Seq || c.Ledger.PreviousHash != e.PrevHash:
		return fmt.Errorf("ledger position differs")
	}
	return nil
}
