package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/auth"
)

type accountStore struct{ d *DB }

var _ accounts.Store = (*accountStore)(nil)

// live matches user documents whose erasure has not begun.
func live() bson.E { return bson.E{Key: erasingField, Value: bson.D{{Key: "$exists", Value: false}}} }

// accountProjection loads an account without consent, work or processor
// state.
func accountProjection() bson.D {
	return bson.D{{Key: consentField, Value: 0}, {Key: embeddedField, Value: 0}, {Key: procsField, Value: 0}}
}

// signUpDoc is the whole user document of a new account: the account, its
// initial consent with the events recorded at sign-up waiting in
// consent.pending, and its first work items embedded, so that one insert
// stores all of them or none.
func signUpDoc(a *accounts.NewAccount) (userDoc, *moveOut, error) {
	d := newUserDoc(&a.Account)
	st := a.Consent.State
	c := &consentDoc{Head: st.Head, HeadHash: st.HeadHash, State: map[string]entryDoc{}}
	for p, e := range st.State {
		if err := checkKey("purpose", p); err != nil {
			return userDoc{}, nil, err
		}
		c.State[p] = newEntryDoc(e)
	}
	mv := &moveOut{userID: d.ID, events: map[string]eventDoc{}, items: map[string]itemDoc{}}
	if len(a.Consent.Events) > 0 {
		c.Pending = map[string]eventDoc{}
		for i := range a.Consent.Events {
			ev := newEventDoc(&a.Consent.Events[i])
			c.Pending[pendingKey(ev.Seq)] = ev
			mv.events[pendingField+"."+pendingKey(ev.Seq)] = ev
		}
	}
	d.Consent = c
	if len(a.Work) > 0 {
		d.Outbox = map[string]itemDoc{}
		for i := range a.Work {
			if err := checkKey("work item id", a.Work[i].ID); err != nil {
				return userDoc{}, nil, err
			}
			it := newItemDoc(&a.Work[i])
			d.Outbox[it.ID] = it
			mv.items[embeddedField+"."+it.ID] = it
		}
	}
	if len(mv.events)+len(mv.items) > 0 {
		d.Relay = newTag()
		mv.tag, mv.complete = d.Relay, true
	} else {
		mv = nil
	}
	return d, mv, nil
}

// CreateAccount inserts the user document (account, consent, work) in one
// insert, then moves its events and items out.
func (s *accountStore) CreateAccount(ctx context.Context, a accounts.NewAccount) error {
	doc, mv, err := signUpDoc(&a)
	if err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	if _, err := s.d.coll(usersColl).InsertOne(ctx, doc); err != nil {
		if isDup(err) {
			return s.taken(ctx, err, &a.Account)
		}
		return fmt.Errorf("create account: %w", err)
	}
	if mv != nil {
		s.d.followUp(ctx, mv)
	}
	return nil
}

// taken turns a duplicate key error on the users collection into the error
// the port names for the clashing field. When the error does not name the
// index (FerretDB's inserts), it asks which value is in use.
func (s *accountStore) taken(ctx context.Context, err error, r *accounts.Record) error {
	switch dupIndex(err) {
	case idxUsernameKey:
		return fmt.Errorf("create account: %w", accounts.ErrUsernameTaken)
	case idxEmailIndex:
		return fmt.Errorf("create account: %w", accounts.ErrEmailTaken)
	case "_id_":
		return fmt.Errorf("create account: id %s exists: %w", r.ID, err)
	}
	users := s.d.coll(usersColl)
	other := bson.E{Key: "_id", Value: bson.D{{Key: "$ne", Value: r.ID}}}
	n, cerr := users.CountDocuments(ctx, bson.D{{Key: "usernameKey", Value: r.UsernameKey}, other})
	if cerr == nil && n > 0 {
		return fmt.Errorf("create account: %w", accounts.ErrUsernameTaken)
	}
	if r.EmailIndex != "" && r.EmailVerified {
		n, cerr = users.CountDocuments(ctx, bson.D{{Key: "verifiedEmailIndex", Value: r.EmailIndex}, other})
		if cerr == nil && n > 0 {
			return fmt.Errorf("create account: %w", accounts.ErrEmailTaken)
		}
	}
	return fmt.Errorf("create account: %w", err)
}

// ImportAccounts inserts the documents in order; on a clash it deletes
// those it inserted, so the import fails as a whole.
func (s *accountStore) ImportAccounts(ctx context.Context, as []accounts.NewAccount) error {
	if len(as) == 0 {
		return nil
	}
	docs := make([]any, 0, len(as))
	var moves []*moveOut
	for i := range as {
		doc, mv, err := signUpDoc(&as[i])
		if err != nil {
			return fmt.Errorf("import accounts: %w", err)
		}
		docs = append(docs, doc)
		if mv != nil {
			moves = append(moves, mv)
		}
	}
	users := s.d.coll(usersColl)
	_, err := users.InsertMany(ctx, docs, options.InsertMany().SetOrdered(true))
	if err != nil {
		// Ordered: everything before the first failed document went in.
		failed := 0
		var bwe mongo.BulkWriteException
		if errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 {
			failed = bwe.WriteErrors[0].Index
		}
		var out error
		if isDup(err) {
			out = s.taken(ctx, err, &as[failed].Account)
		} else {
			out = fmt.Errorf("import accounts: %w", err)
		}
		if failed > 0 {
			ids := make([]string, 0, failed)
			for _, a := range as[:failed] {
				ids = append(ids, a.Account.ID)
			}
			if _, derr := users.DeleteMany(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}); derr != nil {
				return errors.Join(out, fmt.Errorf("undo partial import: %w", derr))
			}
		}
		return out
	}
	s.d.followUpMany(ctx, moves)
	return nil
}

// Account reads through the query's read memo when there is one.
func (s *accountStore) Account(ctx context.Context, id string) (*accounts.Record, error) {
	doc, err := s.d.readUser(ctx, id, accountProjection())
	if err != nil || doc == nil {
		return nil, err
	}
	return doc.record(), nil
}

func (s *accountStore) AccountByUsername(ctx context.Context, usernameKey string) (*accounts.Record, error) {
	var doc userDoc
	err := s.d.coll(usersColl).FindOne(ctx, bson.D{{Key: "usernameKey", Value: usernameKey}},
		options.FindOne().SetProjection(accountProjection())).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find account by username: %w", err)
	}
	return doc.record(), nil
}

// SetPasswordHash leaves an account being erased alone: none of its
// records change once MarkErasing succeeded.
func (s *accountStore) SetPasswordHash(ctx context.Context, id, hash string) error {
	if _, err := s.d.coll(usersColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, live()},
		bson.D{{Key: "$set", Value: bson.D{{Key: "passwordHash", Value: hash}}}}); err != nil {
		return fmt.Errorf("set password hash: %w", err)
	}
	return nil
}

// UpdateAccount is one update of the user document, conditional on the
// account not being erased; the unique email index refuses a taken email.
func (s *accountStore) UpdateAccount(ctx context.Context, id string, u accounts.Update) (bool, error) {
	set, unset := bson.D{}, bson.D{}
	for f, v := range u.Profile {
		if !profileFields[f] {
			return false, fmt.Errorf("update account: unknown profile field %q", f)
		}
		if v == nil {
			unset = append(unset, bson.E{Key: "profile." + f, Value: ""})
		} else {
			set = append(set, bson.E{Key: "profile." + f, Value: v})
		}
	}
	if e := u.Email; e != nil {
		// A new email is unverified: it leaves the unique index.
		set = append(set, bson.E{Key: "emailVerified", Value: false})
		unset = append(unset, bson.E{Key: "verifiedEmailIndex", Value: ""})
		switch {
		case e.Sealed == nil:
			unset = append(unset, bson.E{Key: "email", Value: ""}, bson.E{Key: "emailIndex", Value: ""}, bson.E{Key: "emailVerification", Value: ""})
		default:
			set = append(set, bson.E{Key: "email", Value: e.Sealed})
			if e.Index != "" {
				set = append(set, bson.E{Key: "emailIndex", Value: e.Index})
			} else {
				unset = append(unset, bson.E{Key: "emailIndex", Value: ""})
			}
			if v := e.Verification; v != nil {
				set = append(set, bson.E{Key: "emailVerification", Value: verificationDoc{TokenHash: v.TokenHash, ExpiresAt: v.ExpiresAt}})
			} else {
				unset = append(unset, bson.E{Key: "emailVerification", Value: ""})
			}
		}
	}
	filter := bson.D{{Key: "_id", Value: id}, live()}
	users := s.d.coll(usersColl)
	if len(set) == 0 && len(unset) == 0 {
		n, err := users.CountDocuments(ctx, filter, options.Count().SetLimit(1))
		if err != nil {
			return false, fmt.Errorf("update account: %w", err)
		}
		return n == 1, nil
	}
	upd := bson.D{}
	if len(set) > 0 {
		upd = append(upd, bson.E{Key: "$set", Value: set})
	}
	if len(unset) > 0 {
		upd = append(upd, bson.E{Key: "$unset", Value: unset})
	}
	r, err := users.UpdateOne(ctx, filter, upd)
	if err != nil {
		return false, fmt.Errorf("update account: %w", err)
	}
	return r.MatchedCount == 1, nil
}

func (s *accountStore) AccountByVerifiedEmail(ctx context.Context, emailIndex string) (*accounts.Record, error) {
	var doc userDoc
	err := s.d.coll(usersColl).FindOne(ctx, bson.D{{Key: "verifiedEmailIndex", Value: emailIndex}, live()},
		options.FindOne().SetProjection(accountProjection())).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find account by verified email: %w", err)
	}
	return doc.record(), nil
}

// VerifyEmail reads the account holding the token, then verifies it with an
// update conditional on the token (the unique index on verifiedEmailIndex
// refuses an address verified elsewhere), then evicts the address from
// the accounts holding it unverified, each with an update conditional on
// still holding it unverified. A crash before the evictions leaves those
// copies unverified, where they can never be verified (the index refuses)
// and no processor receives them.
func (s *accountStore) VerifyEmail(ctx context.Context, tokenHash string, now time.Time, lost accounts.Notice) (accounts.VerifiedEmail, error) {
	users := s.d.coll(usersColl)
	var doc struct {
		ID         string `bson:"_id"`
		EmailIndex string `bson:"emailIndex"`
	}
	err := users.FindOne(ctx, bson.D{
		{Key: "emailVerification.tokenHash", Value: tokenHash},
		{Key: "emailVerification.expiresAt", Value: bson.D{{Key: "$gt", Value: now}}},
		live(),
	}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "emailIndex", Value: 1}})).Decode(&doc)
	if errNotFound(err) {
		return accounts.VerifiedEmail{}, nil
	}
	if err != nil {
		return accounts.VerifiedEmail{}, fmt.Errorf("verify email: %w", err)
	}
	set := bson.D{{Key: "emailVerified", Value: true}}
	if doc.EmailIndex != "" {
		set = append(set, bson.E{Key: "verifiedEmailIndex", Value: doc.EmailIndex})
	}
	r, err := users.UpdateOne(ctx, bson.D{
		{Key: "_id", Value: doc.ID},
		{Key: "emailVerification.tokenHash", Value: tokenHash},
		{Key: "emailVerification.expiresAt", Value: bson.D{{Key: "$gt", Value: now}}},
		live(),
	}, bson.D{{Key: "$set", Value: set}, {Key: "$unset", Value: bson.D{{Key: "emailVerification", Value: ""}}}})
	if isDup(err) {
		return accounts.VerifiedEmail{}, nil // verified by another account first
	}
	if err != nil {
		return accounts.VerifiedEmail{}, fmt.Errorf("verify email: %w", err)
	}
	if r.MatchedCount == 0 {
		return accounts.VerifiedEmail{}, nil
	}
	out := accounts.VerifiedEmail{UserID: doc.ID}
	if doc.EmailIndex == "" {
		return out, nil
	}
	holders := bson.D{{Key: "emailIndex", Value: doc.EmailIndex}, {Key: "emailVerified", Value: false}, live()}
	cur, err := users.Find(ctx, append(holders, bson.E{Key: "_id", Value: bson.D{{Key: "$ne", Value: doc.ID}}}),
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return out, fmt.Errorf("find unverified holders: %w", err)
	}
	ids, err := decodeIDs(ctx, cur)
	if err != nil {
		return out, err
	}
	for _, id := range ids {
		r, err := users.UpdateOne(ctx, append(bson.D{{Key: "_id", Value: id}}, holders...), bson.D{
			{Key: "$unset", Value: bson.D{{Key: "email", Value: ""}, {Key: "emailIndex", Value: ""}, {Key: "emailVerification", Value: ""}}},
			{Key: "$push", Value: bson.D{{Key: "notices", Value: noticeDoc{Kind: string(lost.Kind), At: lost.At}}}},
		})
		if err != nil {
			return out, fmt.Errorf("evict unverified email: %w", err)
		}
		if r.MatchedCount == 1 {
			out.Evicted = append(out.Evicted, id)
		}
	}
	return out, nil
}

func (s *accountStore) SetPasswordReset(ctx context.Context, id string, v accounts.Verification) (bool, error) {
	r, err := s.d.coll(usersColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, live()},
		bson.D{{Key: "$set", Value: bson.D{{Key: "passwordReset", Value: verificationDoc{TokenHash: v.TokenHash, ExpiresAt: v.ExpiresAt}}}}})
	if err != nil {
		return false, fmt.Errorf("set password reset: %w", err)
	}
	return r.MatchedCount == 1, nil
}

// ResetPassword finds and uses the token in one findAndModify.
func (s *accountStore) ResetPassword(ctx context.Context, tokenHash string, now time.Time, hash string) (string, error) {
	opts := options.FindOneAndUpdate()
	if !s.d.ferret { // FerretDB v1 implements no projection here
		opts.SetProjection(bson.D{{Key: "_id", Value: 1}})
	}
	var doc struct {
		ID string `bson:"_id"`
	}
	err := s.d.coll(usersColl).FindOneAndUpdate(ctx,
		bson.D{
			{Key: "passwordReset.tokenHash", Value: tokenHash},
			{Key: "passwordReset.expiresAt", Value: bson.D{{Key: "$gt", Value: now}}},
			live(),
		},
		bson.D{
			{Key: "$set", Value: bson.D{{Key: "passwordHash", Value: hash}}},
			{Key: "$unset", Value: bson.D{{Key: "passwordReset", Value: ""}, {Key: "pwFailures", Value: ""}, {Key: "pwFailedAt", Value: ""}}},
		}, opts).Decode(&doc)
	if errNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reset password: %w", err)
	}
	return doc.ID, nil
}

func (s *accountStore) PasswordFailed(ctx context.Context, id string, at time.Time) (int, error) {
	opts := options.FindOneAndUpdate().SetReturnDocument(options.After)
	if !s.d.ferret {
		opts.SetProjection(bson.D{{Key: "pwFailures", Value: 1}})
	}
	var doc struct {
		N int `bson:"pwFailures"`
	}
	err := s.d.coll(usersColl).FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: id}, live()},
		bson.D{
			{Key: "$inc", Value: bson.D{{Key: "pwFailures", Value: 1}}},
			{Key: "$set", Value: bson.D{{Key: "pwFailedAt", Value: at}}},
		}, opts).Decode(&doc)
	if errNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("count password failure: %w", err)
	}
	return doc.N, nil
}

func (s *accountStore) ClearPasswordFailures(ctx context.Context, id string) error {
	_, err := s.d.coll(usersColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "pwFailures", Value: bson.D{{Key: "$exists", Value: true}}}, live()},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "pwFailures", Value: ""}, {Key: "pwFailedAt", Value: ""}}}})
	if err != nil {
		return fmt.Errorf("clear password failures: %w", err)
	}
	return nil
}

func (s *accountStore) ClearNotices(ctx context.Context, id string) error {
	_, err := s.d.coll(usersColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "notices", Value: bson.D{{Key: "$exists", Value: true}}}, live()},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "notices", Value: ""}}}})
	if err != nil {
		return fmt.Errorf("clear notices: %w", err)
	}
	return nil
}

func (s *accountStore) MarkErasing(ctx context.Context, id string, at time.Time) (bool, error) {
	r, err := s.d.coll(usersColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, live()},
		bson.D{{Key: "$set", Value: bson.D{{Key: erasingField, Value: at}}}})
	if err != nil {
		return false, fmt.Errorf("mark erasure: %w", err)
	}
	return r.MatchedCount == 1, nil
}

func (s *accountStore) Erasing(ctx context.Context) ([]string, error) {
	cur, err := s.d.coll(usersColl).Find(ctx, bson.D{{Key: erasingField, Value: bson.D{{Key: "$exists", Value: true}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list erasures: %w", err)
	}
	return decodeIDs(ctx, cur)
}

// DeleteAccount removes the ledger, then the user document (which holds
// the consent state, processor state and work not yet relayed), then the
// ledger again: a relay that read the document before it went may have
// moved an event out meanwhile. A crash before the document goes leaves it
// for the erasure to retry; after, no event of it remains.
func (s *accountStore) DeleteAccount(ctx context.Context, id string) error {
	events := s.d.coll(eventsColl)
	if _, err := events.DeleteMany(ctx, bson.D{{Key: "userId", Value: id}}); err != nil {
		return fmt.Errorf("delete consent ledger: %w", err)
	}
	if _, err := s.d.coll(usersColl).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("delete account: %w", err)
	}
	if _, err := events.DeleteMany(ctx, bson.D{{Key: "userId", Value: id}}); err != nil {
		return fmt.Errorf("delete consent ledger: %w", err)
	}
	return nil
}

func (s *accountStore) EachAccount(ctx context.Context, fn func(r *accounts.Record) error) error {
	cur, err := s.d.coll(usersColl).Find(ctx, bson.D{live()},
		options.Find().SetProjection(accountProjection()).SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return fmt.Errorf("read accounts: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		var doc userDoc
		if err := cur.Decode(&doc); err != nil {
			return fmt.Errorf("decode account: %w", err)
		}
		if err := fn(doc.record()); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("read accounts: %w", err)
	}
	return nil
}

// Data keys: collection data_keys, {_id: user id, wrapped, createdAt}.

type dataKeyDoc struct {
	ID        string    `bson:"_id"`
	Wrapped   []byte    `bson:"wrapped"`
	CreatedAt time.Time `bson:"createdAt"`
}

func (s *accountStore) InsertDataKey(ctx context.Context, k accounts.DataKey) error {
	if _, err := s.d.coll(dataKeysColl).InsertOne(ctx, dataKeyDoc{ID: k.UserID, Wrapped: k.Wrapped, CreatedAt: k.CreatedAt}); err != nil {
		return fmt.Errorf("store data key: %w", err)
	}
	return nil
}

func (s *accountStore) ImportDataKeys(ctx context.Context, keys []accounts.DataKey) error {
	if len(keys) == 0 {
		return nil
	}
	docs := make([]any, 0, len(keys))
	for _, k := range keys {
		docs = append(docs, dataKeyDoc{ID: k.UserID, Wrapped: k.Wrapped, CreatedAt: k.CreatedAt})
	}
	if _, err := s.d.coll(dataKeysColl).InsertMany(ctx, docs); err != nil {
		return fmt.Errorf("import data keys: %w", err)
	}
	return nil
}

func (s *accountStore) DataKey(ctx context.Context, userID string) ([]byte, error) {
	var doc dataKeyDoc
	err := s.d.coll(dataKeysColl).FindOne(ctx, bson.D{{Key: "_id", Value: userID}}).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read data key: %w", err)
	}
	return doc.Wrapped, nil
}

func (s *accountStore) DeleteDataKey(ctx context.Context, userID string) error {
	if _, err := s.d.coll(dataKeysColl).DeleteOne(ctx, bson.D{{Key: "_id", Value: userID}}); err != nil {
		return fmt.Errorf("destroy data key: %w", err)
	}
	return nil
}

func (s *accountStore) EachDataKey(ctx context.Context, fn func(k accounts.DataKey) error) error {
	cur, err := s.d.coll(dataKeysColl).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return fmt.Errorf("read data keys: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		var doc dataKeyDoc
		if err := cur.Decode(&doc); err != nil {
			return fmt.Errorf("decode data key: %w", err)
		}
		if err := fn(accounts.DataKey{UserID: doc.ID, Wrapped: doc.Wrapped, CreatedAt: doc.CreatedAt}); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("read data keys: %w", err)
	}
	return nil
}

// SwapDataKey is conditional on the old blob, so a concurrent erasure (the
// key deleted) or rewrap is never undone.
func (s *accountStore) SwapDataKey(ctx context.Context, userID string, old, new []byte) (bool, error) {
	r, err := s.d.coll(dataKeysColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: userID}, {Key: "wrapped", Value: old}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "wrapped", Value: new}}}})
	if err != nil {
		return false, fmt.Errorf("swap data key: %w", err)
	}
	return r.MatchedCount == 1, nil
}

// Sessions: collection sessions, {_id: token hash, userId, role, createdAt,
// expiresAt}; MongoDB's TTL index removes expired ones too.

type sessionDoc struct {
	ID        string    `bson:"_id"`
	UserID    string    `bson:"userId"`
	Role      auth.Role `bson:"role"`
	CreatedAt time.Time `bson:"createdAt"`
	ExpiresAt time.Time `bson:"expiresAt"`
}

func (d *sessionDoc) record() accounts.SessionRecord {
	return accounts.SessionRecord{ID: d.ID, UserID: d.UserID, Role: d.Role, CreatedAt: d.CreatedAt, ExpiresAt: d.ExpiresAt}
}

func (s *accountStore) InsertSession(ctx context.Context, r accounts.SessionRecord) error {
	doc := sessionDoc{ID: r.ID, UserID: r.UserID, Role: r.Role, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}
	if _, err := s.d.coll(sessionsColl).InsertOne(ctx, doc); err != nil {
		return fmt.Errorf("store session: %w", err)
	}
	return nil
}

func (s *accountStore) Session(ctx context.Context, id string) (*accounts.SessionRecord, error) {
	var doc sessionDoc
	err := s.d.coll(sessionsColl).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read session: %w", err)
	}
	r := doc.record()
	return &r, nil
}

func (s *accountStore) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.d.coll(sessionsColl).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

func (s *accountStore) DeleteUserSessions(ctx context.Context, userID string) error {
	if _, err := s.d.coll(sessionsColl).DeleteMany(ctx, bson.D{{Key: "userId", Value: userID}}); err != nil {
		return fmt.Errorf("delete sessions: %w", err)
	}
	return nil
}

func (s *accountStore) UserSessions(ctx context.Context, userID string) ([]accounts.SessionRecord, error) {
	cur, err := s.d.coll(sessionsColl).Find(ctx, bson.D{{Key: "userId", Value: userID}},
		options.Find().SetSort(bson.D{{Key: "createdAt", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	var docs []sessionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	out := make([]accounts.SessionRecord, 0, len(docs))
	for i := range docs {
		out = append(out, docs[i].record())
	}
	return out, nil
}

func (s *accountStore) CountSessions(ctx context.Context, now time.Time) (int64, error) {
	n, err := s.d.coll(sessionsColl).CountDocuments(ctx, bson.D{{Key: "expiresAt", Value: bson.D{{Key: "$gt", Value: now}}}})
	if err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}

func (s *accountStore) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	r, err := s.d.coll(sessionsColl).DeleteMany(ctx, bson.D{{Key: "expiresAt", Value: bson.D{{Key: "$lte", Value: now}}}})
	if err != nil {
		return 0, fmt.Errorf("sweep sessions: %w", err)
	}
	return r.DeletedCount, nil
}

// decodeIDs reads the _id of every document of cur.
func decodeIDs(ctx context.Context, cur *mongo.Cursor) ([]string, error) {
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read ids: %w", err)
	}
	out := make([]string, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.ID)
	}
	return out, nil
}

// embeddedItems lists the embedded items of a document by their field path.
func embeddedItems(doc *userDoc) map[string]itemDoc {
	out := make(map[string]itemDoc, len(doc.Outbox))
	for k, it := range doc.Outbox {
		out[embeddedField+"."+k] = it
	}
	return out
}
