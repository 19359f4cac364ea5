package graph

import (
	"context"

	"github.com/consentgraph/consentgraph/graph/model"
	"github.com/consentgraph/consentgraph/internal/accounts"
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
	return &model.User{
		ID: u.ID, Username: u.Username, Role: model.Role(u.Role), Email: u.Email,
		EmailVerified: u.EmailVerified, Profile: p, CreatedAt: u.CreatedAt,
	}
}

func profileFromInput(in *model.ProfileInput) accounts.Profile {
	if in == nil {
		return accounts.Profile{}
	}
	p := accounts.Profile{BirthYear: in.BirthYear, Country: in.Country, Language: in.Language}
	if in.Gender != nil {
		g := string(*in.Gender)
		p.Gender = &g
	}
	return p
}
