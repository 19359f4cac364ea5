// Package model holds the GraphQL types: generated ones in models_gen.go,
// hand-written ones (which carry data the schema does not expose) here.
package model

import "time"

// Owned is implemented by every type with @pii fields: the @pii directive
// compares the owner with the caller.
type Owned interface {
	OwnerID() string
}

// User is a person's account as the API shows it.
type User struct {
	ID            string
	Username      string
	Role          Role
	Email         *string
	EmailVerified bool
	Profile       *Profile
	CreatedAt     time.Time
	Notices       []*Notice
}

// OwnerID implements Owned.
func (u *User) OwnerID() string { return u.ID }

// Profile is the volunteered demographic data of a user.
type Profile struct {
	Owner     string
	BirthYear *int
	Country   *string
	Gender    *Gender
	Language  *string
}

// OwnerID implements Owned.
func (p *Profile) OwnerID() string { return p.Owner }

// ConsentEvent is one event of a user's consent ledger; Owner (not exposed)
// lets @pii fields such as logProof answer only to the ledger's owner.
type ConsentEvent struct {
	Owner         string
	Sequence      int           `json:"sequence"`
	Purpose       string        `json:"purpose"`
	Action        ConsentAction `json:"action"`
	PolicyVersion string        `json:"policyVersion"`
	At            time.Time     `json:"at"`
	Method        ConsentMethod `json:"method"`
	PreviousHash  string        `json:"previousHash"`
	Hash          string        `json:"hash"`
	// The signed receipt issued for this event.
	Receipt string `json:"receipt"`
}

// OwnerID implements Owned.
func (e *ConsentEvent) OwnerID() string { return e.Owner }

// ProcessorLink is a user's link with one processor; Owner (not exposed)
// lets its @pii fields answer only to that user.
type ProcessorLink struct {
	Owner     string
	Processor *Processor
	State     ProcessorLinkState
	Items     []*ProcessorItem
	Details   map[string]any
	UpdatedAt *time.Time
	Actions   []*ProcessorAction
}

// OwnerID implements Owned.
func (l *ProcessorLink) OwnerID() string { return l.Owner }
