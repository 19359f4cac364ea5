package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/consentgraph/consentgraph/graph/model"
	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/auth"
)

// signedIn switches the request to the new session so the payload's @pii
// fields resolve for their owner, and sets the session cookie.
func (r *Resolver) signedIn(ctx context.Context, u *accounts.User, sess *accounts.Session) *model.AuthPayload {
	auth.SignIn(ctx, &auth.Principal{Role: u.Role, UserID: u.ID, SessionID: sess.ID}, sess.Token, sess.ExpiresAt)
	return &model.AuthPayload{Token: sess.Token, User: userModel(u), ExpiresAt: sess.ExpiresAt}
}

func userModel(u *accounts.User) *model.User {
	p := &model.Profile{Owner: u.ID, BirthYear: u.Profile.BirthYear, Country: u.Profile.Country, Language: u.Profile.Language}
	if u.Profile.Gender != nil {
		g := model.Gender(*u.Profile.Gender)
		p.Gender = &g
	}
	notices := make([]*model.Notice, 0, len(u.Notices))
	for _, n := range u.Notices {
		notices = append(notices, &model.Notice{Kind: model.NoticeKind(n.Kind), At: n.At})
	}
	return &model.User{
		ID: u.ID, Username: u.Username, Role: model.Role(u.Role), Email: u.Email,
		EmailVerified: u.EmailVerified, Profile: p, CreatedAt: u.CreatedAt, Notices: notices,
	}
}

// profileFromInput reads a sign-up profile: absent and null both mean "not given".
func profileFromInput(in *model.ProfileInput) accounts.Profile {
	if in == nil {
		return accounts.Profile{}
	}
	u := profileUpdate(*in)
	return accounts.Profile{BirthYear: u.BirthYear.Value, Country: u.Country.Value, Gender: u.Gender.Value, Language: u.Language.Value}
}

func profileUpdate(in model.ProfileInput) accounts.ProfileUpdate {
	var u accounts.ProfileUpdate
	u.BirthYear = optional(in.BirthYear)
	u.Country = optional(in.Country)
	u.Language = optional(in.Language)
	g, set := in.Gender.ValueOK()
	u.Gender.Set = set
	if g != nil {
		s := string(*g)
		u.Gender.Value = &s
	}
	return u
}

func optional[T any](o graphql.Omittable[*T]) accounts.Optional[T] {
	v, set := o.ValueOK()
	return accounts.Optional[T]{Set: set, Value: v}
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// selects reports whether the field being resolved selects name (a
// connection's totalCount), so a count is only run when asked for.
func selects(ctx context.Context, name string) bool {
	for _, f := range graphql.CollectFieldsCtx(ctx, nil) {
		if f.Name == name {
			return true
		}
	}
	return false
}

// auditCount is the number of audit entries: the sequence number of the
// newest, as appends number entries 1, 2, 3… without gaps (audit.Store's
// Append). One indexed read at most, where counting rows would read the
// whole log. page is the page just read, from the newest when after is nil.
func (r *queryResolver) auditCount(ctx context.Context, page []audit.Entry, after *string) (int, error) {
	if after == nil {
		if len(page) == 0 {
			return 0, nil
		}
		return int(page[0].Seq), nil
	}
	head, err := r.Audit.Page(ctx, 1, 0)
	if err != nil {
		return 0, err
	}
	if len(head) == 0 {
		return 0, nil
	}
	return int(head[0].Seq), nil
}
