package mongostore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Index names. Those the previous version created keep their names and
// options, so that creating them again on an existing deployment is a
// no-op rather than a conflict.
const (
	idxUsernameKey = "usernameKey_unique"
	// idxEmailIndex is the verified addresses' unique index; the index of
	// every address (idxAnyEmail) is not unique, for an unverified address
	// belongs to nobody.
	idxEmailIndex = "verifiedEmailIndex_unique"
	idxAnyEmail   = "emailIndex"
	// idxOldEmailIndex made every address unique, verified or not; it is
	// dropped at start-up (migrateEmailIndex).
	idxOldEmailIndex = "emailIndex_unique"
)

type indexSpec struct {
	coll  string
	model mongo.IndexModel
}

func keys(k ...string) bson.D {
	d := bson.D{}
	for _, f := range k {
		d = append(d, bson.E{Key: f, Value: 1})
	}
	return d
}

// indexes lists every index a request path (or a periodic job that must
// stay cheap at scale) needs.
func indexes() []indexSpec {
	return []indexSpec{
		// Sign-in and sign-up find accounts by normalized username.
		{usersColl, mongo.IndexModel{Keys: keys("usernameKey"), Options: options.Index().SetUnique(true).SetName(idxUsernameKey)}},
		// Accounts without a verified email have no verifiedEmailIndex:
		// sparse keeps them out. Password resets find accounts by it.
		{usersColl, mongo.IndexModel{Keys: keys("verifiedEmailIndex"), Options: options.Index().SetUnique(true).SetSparse(true).SetName(idxEmailIndex)}},
		// A verification clears the address from the accounts holding it unverified.
		{usersColl, mongo.IndexModel{Keys: keys("emailIndex"), Options: options.Index().SetSparse(true).SetName(idxAnyEmail)}},
		{usersColl, mongo.IndexModel{Keys: keys("passwordReset.tokenHash"), Options: options.Index().SetSparse(true).SetName("passwordReset.tokenHash")}},
		{usersColl, mongo.IndexModel{Keys: keys("emailVerification.tokenHash"), Options: options.Index().SetSparse(true).SetName("emailVerification.tokenHash")}},
		// Few accounts are being erased or hold unrelayed writes at a time.
		{usersColl, mongo.IndexModel{Keys: keys("erasingSince"), Options: options.Index().SetSparse(true).SetName("erasingSince_sparse")}},
		{usersColl, mongo.IndexModel{Keys: keys(relayField), Options: options.Index().SetSparse(true).SetName("relay_sparse")}},
		{sessionsColl, mongo.IndexModel{Keys: keys("expiresAt"), Options: options.Index().SetExpireAfterSeconds(0).SetName("expiresAt_ttl")}},
		{sessionsColl, mongo.IndexModel{Keys: keys("userId"), Options: options.Index().SetName("userId")}},
		{eventsColl, mongo.IndexModel{Keys: keys("userId", "seq"), Options: options.Index().SetUnique(true).SetName("userId_seq_unique")}},
		{itemsColl, mongo.IndexModel{Keys: keys("state", "nextAt"), Options: options.Index().SetName("state_nextAt")}},
		{itemsColl, mongo.IndexModel{Keys: keys("userId"), Options: options.Index().SetName("userId")}},
		// The admins' queue listing of one state (the DEAD items, say) in
		// creation order, without walking every finished item.
		{itemsColl, mongo.IndexModel{Keys: keys("state", "_id"), Options: options.Index().SetName("state_id")}},
		{disclosuresColl, mongo.IndexModel{Keys: keys("userId", "_id"), Options: options.Index().SetName("userId_id")}},
		// The admins' partner listing, paged in creation order.
		{partnersColl, mongo.IndexModel{Keys: keys("createdAt", "_id"), Options: options.Index().SetName("createdAt_id")}},
		{signingKeysColl, mongo.IndexModel{Keys: keys("generation"), Options: options.Index().SetUnique(true).SetName("generation_unique")}},
		// Past minutes' rate counters are deleted by minute.
		{rateCountsColl, mongo.IndexModel{Keys: keys("minute"), Options: options.Index().SetName("minute")}},
		// The consent log appender's queues: only records not yet logged,
		// in the order they are logged.
		{eventsColl, mongo.IndexModel{Keys: keys("logged", "at", "userId", "seq"), Options: options.Index().SetName("unlogged").
			SetPartialFilterExpression(bson.D{{Key: "logged", Value: false}})}},
		{auditColl, mongo.IndexModel{Keys: keys("logged", "_id"), Options: options.Index().SetName("unlogged").
			SetPartialFilterExpression(bson.D{{Key: "logged", Value: false}})}},
		// One leaf per item: the same record is never logged twice.
		{logLeavesColl, mongo.IndexModel{Keys: keys("item"), Options: options.Index().SetUnique(true).SetName("item_unique")}},
	}
}

// ensureIndexes creates the indexes one at a time: FerretDB v1 drops the
// connection on a createIndexes of several indexes some of which exist.
func (d *DB) ensureIndexes(ctx context.Context) error {
	if err := d.migrateEmailIndex(ctx); err != nil {
		return err
	}
	for _, ix := range indexes() {
		if err := ensureIndex(ctx, d.coll(ix.coll), ix.model); err != nil {
			return err
		}
	}
	return nil
}

// migrateEmailIndex moves a deployment from one unique index over every
// address to one over verified addresses: it fills verifiedEmailIndex of
// verified accounts (one update each: FerretDB v1 has no pipeline updates),
// then drops the old index. Both steps are idempotent; a crash between
// them is finished at the next start.
func (d *DB) migrateEmailIndex(ctx context.Context) error {
	users := d.coll(usersColl)
	specs, err := users.Indexes().ListSpecifications(ctx)
	if err != nil {
		return fmt.Errorf("list indexes of %s: %w", usersColl, err)
	}
	old := false
	for _, sp := range specs {
		old = old || sp.Name == idxOldEmailIndex
	}
	if !old {
		return nil
	}
	cur, err := users.Find(ctx, bson.D{{Key: "emailVerified", Value: true}, {Key: "emailIndex", Value: bson.D{{Key: "$exists", Value: true}}},
		{Key: "verifiedEmailIndex", Value: bson.D{{Key: "$exists", Value: false}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "emailIndex", Value: 1}}))
	if err != nil {
		return fmt.Errorf("migrate email index: %w", err)
	}
	var docs []struct {
		ID         string `bson:"_id"`
		EmailIndex string `bson:"emailIndex"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return fmt.Errorf("migrate email index: %w", err)
	}
	for _, doc := range docs {
		if _, err := users.UpdateOne(ctx, bson.D{{Key: "_id", Value: doc.ID}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "verifiedEmailIndex", Value: doc.EmailIndex}}}}); err != nil {
			return fmt.Errorf("migrate email index of %s: %w", doc.ID, err)
		}
	}
	if err := users.Indexes().DropOne(ctx, idxOldEmailIndex); err != nil {
		return fmt.Errorf("drop index %s: %w", idxOldEmailIndex, err)
	}
	d.log.InfoContext(ctx, "migrated the email index: only verified addresses are unique", "verified", len(docs))
	return nil
}

// ensureIndex creates an index unless it exists. An option the server does
// not implement (TTL on FerretDB) is dropped and the index created with its
// name and uniqueness only; sessions are swept explicitly anyway.
func ensureIndex(ctx context.Context, c *mongo.Collection, m mongo.IndexModel) error {
	_, err := c.Indexes().CreateOne(ctx, m)
	if err != nil && isNotImplemented(err) && m.Options != nil {
		var o options.IndexOptions
		for _, set := range m.Options.List() {
			_ = set(&o)
		}
		plain := options.Index()
		if o.Unique != nil {
			plain.SetUnique(*o.Unique)
		}
		if o.Name != nil {
			plain.SetName(*o.Name)
		}
		_, err = c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: m.Keys, Options: plain})
	}
	if err != nil {
		return fmt.Errorf("create index on %s: %w", c.Name(), err)
	}
	return nil
}

// isNotImplemented reports whether the server refused a feature it lacks.
func isNotImplemented(err error) bool {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return ce.Code == 238 || ce.Name == "NotImplemented"
	}
	return false
}

// sqliteUnique is how FerretDB's SQLite backend reports a unique clash
// raised by an update (as an InternalError, not a duplicate key error).
const sqliteUnique = "UNIQUE constraint failed"

// isDup reports whether err is a unique-index violation.
func isDup(err error) bool {
	if err == nil {
		return false
	}
	return mongo.IsDuplicateKeyError(err) || strings.Contains(err.Error(), sqliteUnique)
}

var (
	// MongoDB: "E11000 duplicate key error collection: db.users index: emailIndex_unique dup key: ..."
	mongoIndexName = regexp.MustCompile(`index: (\S+) dup key`)
	// FerretDB/SQLite: "UNIQUE constraint failed: index 'users_5e7cc513_emailIndex_unique'"
	sqliteIndexName = regexp.MustCompile(`UNIQUE constraint failed: index '([^']+)'`)
)

// dupIndex names the index a duplicate key error clashed on, from the
// error's keyPattern or its message; "" when the error does not say
// (FerretDB's insert errors name no index).
func dupIndex(err error) string {
	var raws []bson.Raw
	var msgs []string
	var we mongo.WriteException
	if errors.As(err, &we) {
		for _, e := range we.WriteErrors {
			raws, msgs = append(raws, e.Raw), append(msgs, e.Message)
		}
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) {
		for _, e := range bwe.WriteErrors {
			raws, msgs = append(raws, e.Raw), append(msgs, e.Message)
		}
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		raws, msgs = append(raws, ce.Raw), append(msgs, ce.Message)
	}
	msgs = append(msgs, err.Error())
	for _, r := range raws {
		if r == nil {
			continue
		}
		if kp, ok := r.Lookup("keyPattern").DocumentOK(); ok {
			if elems, err := kp.Elements(); err == nil && len(elems) > 0 {
				return indexOfField(elems[0].Key())
			}
		}
	}
	for _, m := range msgs {
		if sub := mongoIndexName.FindStringSubmatch(m); sub != nil {
			return indexOfField(sub[1])
		}
		if sub := sqliteIndexName.FindStringSubmatch(m); sub != nil {
			return indexOfField(sub[1])
		}
	}
	return ""
}

// indexOfField maps a key field or an index name (possibly prefixed, as
// FerretDB's SQLite index names are) to the index it belongs to.
func indexOfField(s string) string {
	switch {
	case strings.Contains(s, "usernameKey"):
		return idxUsernameKey
	case strings.Contains(s, "verifiedEmailIndex"):
		return idxEmailIndex
	case s == "_id" || s == "_id_" || strings.HasSuffix(s, "__id_"):
		return "_id_"
	}
	return s
}

// allDup reports whether err is nothing but duplicate key errors (a batch
// insert of documents some of which exist already).
func allDup(err error) bool {
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) {
		if bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
			return false
		}
		for _, e := range bwe.WriteErrors {
			if !isDup(e.WriteError) {
				return false
			}
		}
		return true
	}
	return isDup(err)
}
