package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
)

// ChangePassword replaces the password after checking the current one
// (under the account's back-off) and ends every other session of the
// account: whoever else was signed in must know the new password. The
// session sessionID stays.
func (s *Service) ChangePassword(ctx context.Context, userID, sessionID, current, next string) error {
	if err := CheckPassword("newPassword", next); err != nil {
		return err
	}
	if _, err := s.checkPassword(ctx, userID, "currentPassword", current); err != nil {
		return err
	}
	hash, err := s.opts.Hasher.Hash(ctx, next)
	if err != nil {
		return err
	}
	if err := s.store.SetPasswordHash(ctx, userID, hash); err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	// A reset mailed before the change must not undo it: an empty, expired
	// reset matches no token.
	if _, err := s.store.SetPasswordReset(ctx, userID, Verification{}); err != nil {
		return fmt.Errorf("void pending password reset: %w", err)
	}
	return s.revokeSessionsExcept(ctx, userID, sessionID)
}

// revokeSessionsExcept ends every session of a user but keep.
func (s *Service) revokeSessionsExcept(ctx context.Context, userID, keep string) error {
	s.sessionCache.dropWhere(func(p auth.Principal) bool { return p.UserID == userID && p.SessionID != keep })
	list, err := s.store.UserSessions(ctx, userID)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	for _, r := range list {
		if r.ID == keep {
			continue
		}
		if err := s.store.DeleteSession(ctx, r.ID); err != nil {
			return fmt.Errorf("delete session: %w", err)
		}
	}
	return nil
}

const resetTokenPrefix = "cgr_"

func hashReset(token string) string {
	sum := sha256.Sum256([]byte("password-reset:" + token))
	return hex.EncodeToString(sum[:])
}

// RequestPasswordReset mails a single-use reset token, valid for
// PasswordResetTTL, if email is the verified address of an account. A new
// request replaces the pending token, so only the latest mail works.
//
// Whoever asks learns nothing: the caller answers true at once, and the
// look-up and the mail happen after the answer, so neither the answer nor
// its timing depends on whether the address has an account.
func (s *Service) RequestPasswordReset(ctx context.Context, email string) {
	norm, err := NormalizeEmail("email", email)
	if err != nil {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := s.sendReset(ctx, norm); err != nil {
			s.log.ErrorContext(ctx, "password reset request failed", "err", err)
		}
	}()
}

func (s *Service) sendReset(ctx context.Context, email string) error {
	idx, err := s.emailIndex(ctx, email)
	if err != nil {
		return err
	}
	r, err := s.store.AccountByVerifiedEmail(ctx, idx)
	if err != nil {
		return fmt.Errorf("find account by email: %w", err)
	}
	if r == nil || s.opts.Mailer == nil {
		return nil
	}
	token := newToken(resetTokenPrefix)
	v := Verification{TokenHash: hashReset(token), ExpiresAt: s.opts.Now().UTC().Truncate(time.Millisecond).Add(s.opts.PasswordResetTTL)}
	ok, err := s.store.SetPasswordReset(ctx, r.ID, v)
	if err != nil {
		return fmt.Errorf("store reset token: %w", err)
	}
	if !ok {
		return nil
	}
	// Mailed to the address as stored (verified), not as typed.
	u, err := s.decode(ctx, r)
	if err != nil || u.Email == nil {
		return err
	}
	s.opts.Mailer.SendPasswordReset(ctx, Recipient{Email: *u.Email, Language: profileLanguage(u.Profile)}, token)
	return nil
}

// ResetPassword sets a new password with a mailed reset token, uses the
// token up and ends every session of the account. An unknown, used or
// expired token fails with BAD_USER_INPUT on "token".
func (s *Service) ResetPassword(ctx context.Context, token, next string) error {
	bad := apperr.Invalid("token", "this reset link is invalid or has expired")
	if len(token) < len(resetTokenPrefix)+10 || len(token) > 100 {
		return bad
	}
	if err := CheckPassword("newPassword", next); err != nil {
		return err
	}
	hash, err := s.opts.Hasher.Hash(ctx, next)
	if err != nil {
		return err
	}
	id, err := s.store.ResetPassword(ctx, hashReset(token), s.opts.Now(), hash)
	if err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	if id == "" {
		return bad
	}
	return s.RevokeAllSessions(ctx, id)
}

// Wait blocks until the mails sent after their request answered are out
// (for a graceful shutdown).
func (s *Service) Wait() { s.bg.Wait() }
