package app_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

func TestAuditLogRecordsSensitiveActions(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, func(c *config.Config) { c.AdminUsername, c.AdminPassword = "auditor", "auditor password" })
	u := s.Register(t, "audited")
	var me struct{ Me struct{ ID string } }
	u.Do(t, `{ me { id } }`, nil).Decode(t, &me)
	if r := u.Do(t, `{ exportMyData { signature } }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	if r := u.Do(t, `{ auditLog { intact } }`, nil); r.Code() != "FORBIDDEN" {
		t.Fatalf("user reading the audit log: %s", r.Raw)
	}
	admin := s.Client()
	var login struct{ Login struct{ Token string } }
	admin.Do(t, `mutation { login(username: "auditor", password: "auditor password") { token } }`, nil).Decode(t, &login)
	if r := admin.Do(t, `mutation($id: ID!) { eraseUser(id: $id) }`, map[string]any{"id": me.Me.ID}); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	const q = `{ auditLog(first: 10) { intact edges { node { seq actor action subject } } } }`
	var out struct {
		AuditLog struct {
			Intact bool
			Edges  []struct {
				Node struct {
					Seq                    int
					Actor, Action, Subject string
				}
			}
		}
	}
	admin.Do(t, q, nil).Decode(t, &out)
	l := out.AuditLog
	if !l.Intact || len(l.Edges) != 2 {
		t.Fatalf("audit log: %+v", l)
	}
	erase, export := l.Edges[0].Node, l.Edges[1].Node
	if erase.Action != "erasure" || erase.Subject != me.Me.ID || erase.Actor[:6] != "admin:" ||
		export.Action != "export" || export.Actor != "user:"+me.Me.ID {
		t.Fatalf("entries: %+v", l.Edges)
	}
	if r := admin.Do(t, `{ auditLog(first: 1000) { intact } }`, nil); r.Code() != "BAD_USER_INPUT" {
		t.Fatalf("first over the cap: %s", r.Raw)
	}
	// Hand-editing an entry is detected.
	storetest.Tamper(t, s.Store(), `UPDATE audit_log SET actor = 'nobody' WHERE seq = 1`, nil,
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			return modified(db.Collection("audit_log").UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "actor", Value: "nobody"}}}}))
		})
	admin.Do(t, q, nil).Decode(t, &out)
	if out.AuditLog.Intact {
		t.Fatal("tampered audit log reported intact")
	}
}
