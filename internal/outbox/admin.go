package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/store"
)

// Disclosure records data a processor received (or was told to forget).
type Disclosure struct {
	// ID is the item's id: one disclosure per item, however often it ran.
	ID        string    `bson:"_id" json:"id"`
	UserID    string    `bson:"userId" json:"-"`
	Processor string    `bson:"processor" json:"processor"`
	Purpose   string    `bson:"purpose" json:"purpose"`
	Fields    []string  `bson:"fields" json:"fields"`
	Action    string    `bson:"action" json:"action"`
	Cause     string    `bson:"cause" json:"cause"`
	At        time.Time `bson:"at" json:"at"`
}

func (s *Service) disclose(ctx context.Context, it *Item, fields []string, action string) {
	if fields == nil {
		fields = []string{}
	}
	d := Disclosure{ID: it.ID, UserID: it.UserID, Processor: it.Processor, Purpose: it.Purpose, Fields: fields, Action: action, Cause: it.Cause, At: s.now()}
	if _, err := s.disclosures.InsertOne(context.WithoutCancel(ctx), d); err != nil && !store.IsDuplicateKey(err) {
		s.log.ErrorContext(ctx, "record disclosure failed", "item", it.ID, "err", err)
	}
}

// Page is one page of a listing, newest last for items, newest first for
// disclosures.
type Page[T any] struct {
	Nodes   []T
	HasNext bool
}

// CountByState counts outbox items per state (for metrics).
func (s *Service) CountByState(ctx context.Context) (map[string]float64, error) {
	cur, err := s.items.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$state"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
	})
	if err != nil {
		return nil, fmt.Errorf("count outbox by state: %w", err)
	}
	var rows []struct {
		State string `bson:"_id"`
		N     int64  `bson:"n"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return nil, fmt.Errorf("count outbox by state: %w", err)
	}
	out := map[string]float64{}
	for _, st := range []State{Pending, Waiting, Done, Skipped, Dead} {
		out[string(st)] = 0
	}
	for _, r := range rows {
		out[r.State] = float64(r.N)
	}
	return out, nil
}

func clampFirst(first *int) int64 {
	n := 20
	if first != nil {
		n = *first
	}
	return int64(min(max(n, 0), 100))
}

// Disclosures lists the user's disclosures, newest first; after is the
// id of the last one seen.
func (s *Service) Disclosures(ctx context.Context, userID string, first *int, after *string) (*Page[Disclosure], error) {
	f := bson.D{{Key: "userId", Value: userID}}
	if after != nil && *after != "" {
		f = append(f, bson.E{Key: "_id", Value: bson.D{{Key: "$lt", Value: *after}}})
	}
	n := clampFirst(first)
	cur, err := s.disclosures.Find(ctx, f, options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetLimit(n+1))
	if err != nil {
		return nil, fmt.Errorf("list disclosures: %w", err)
	}
	var out []Disclosure
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list disclosures: %w", err)
	}
	p := &Page[Disclosure]{Nodes: out}
	if int64(len(out)) > n {
		p.Nodes, p.HasNext = out[:n], true
	}
	return p, nil
}

// ExportSection is the "disclosures" part of a data export.
func (s *Service) ExportSection(ctx context.Context, userID string) (any, error) {
	cur, err := s.disclosures.Find(ctx, bson.D{{Key: "userId", Value: userID}}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("export disclosures: %w", err)
	}
	out := []Disclosure{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("export disclosures: %w", err)
	}
	return out, nil
}

// States are the valid delivery states.
var States = []State{Pending, Waiting, Done, Skipped, Dead}

// List pages through items in creation order, optionally of one state.
func (s *Service) List(ctx context.Context, state *State, first *int, after *string) (*Page[Item], error) {
	f := bson.D{}
	if state != nil {
		if !slices.Contains(States, *state) {
			return nil, apperr.Invalid("state", "unknown state %q", *state)
		}
		f = append(f, bson.E{Key: "state", Value: *state})
	}
	if after != nil && *after != "" {
		f = append(f, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: *after}}})
	}
	n := clampFirst(first)
	cur, err := s.items.Find(ctx, f, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(n+1))
	if err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	var out []Item
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	p := &Page[Item]{Nodes: out}
	if int64(len(out)) > n {
		p.Nodes, p.HasNext = out[:n], true
	}
	return p, nil
}

// Get returns one item.
func (s *Service) Get(ctx context.Context, id string) (*Item, error) {
	var it Item
	err := s.items.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&it)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, &apperr.Error{Code: apperr.NotFound, Field: "id", Message: "no such outbox item"}
	}
	if err != nil {
		return nil, fmt.Errorf("read outbox item: %w", err)
	}
	return &it, nil
}

// Retry puts a DEAD or WAITING item back to PENDING with fresh attempts.
func (s *Service) Retry(ctx context.Context, id string) (*Item, error) {
	r, err := s.items.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "state", Value: bson.D{{Key: "$in", Value: bson.A{Dead, Waiting}}}}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "state", Value: Pending}, {Key: "attempts", Value: 0}, {Key: "nextAt", Value: s.now()},
			{Key: "leaseUntil", Value: time.Time{}}, {Key: "updatedAt", Value: s.now()},
		}}})
	if err != nil {
		return nil, fmt.Errorf("retry item: %w", err)
	}
	if r.MatchedCount == 0 {
		it, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		return nil, apperr.New(apperr.Conflict, "only DEAD or WAITING items can be retried; this one is %s", it.State)
	}
	return s.Get(ctx, id)
}
