// Package work holds the outbox's unit of work, the Item, on its own so
// that the domains which write items atomically with their own records
// (consent changes, sign-ups) and the store adapters can name it without
// depending on the outbox service.
package work

import "time"

// Action is what an item asks of a processor.
type Action string

const (
	Deliver Action = "DELIVER"
	Forget  Action = "FORGET"
	// Act runs a processor action a user asked for (plugins.Actor); the
	// item's Ref names the action.
	Act Action = "ACT"
)

// State is an item's delivery state.
type State string

const (
	Pending State = "PENDING"
	// Waiting: the user has not given data the processor requires (an
	// email); the item is retried when they do.
	Waiting State = "WAITING"
	Done    State = "DONE"
	// Skipped: consent at delivery time said no (or nothing to forget).
	Skipped State = "SKIPPED"
	Dead    State = "DEAD"
)

// States are the valid delivery states.
var States = []State{Pending, Waiting, Done, Skipped, Dead}

// Item is one unit of work for one processor about one user.
type Item struct {
	ID        string
	UserID    string
	Processor string
	Purpose   string
	Action    Action
	// Erase marks the forget of an erased account; Ref is then a snapshot.
	// On an Act item, Ref is the id of the plugin action to run.
	Erase bool
	Ref   string
	// Cause says what made the item: "consent e<seq>", "email", "profile.country"...
	Cause    string
	State    State
	Attempts int
	NextAt   time.Time
	// LeaseUntil and LeaseOwner say who works on the item until when; a
	// zero LeaseUntil means nobody.
	LeaseUntil time.Time
	LeaseOwner string
	LastError  string
	Note       string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}
