package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/auth"
)

// accountStore implements accounts.Store.
type accountStore struct{ d *DB }

const userCols = `id, username, username_key, password_hash, role, created_at, email, email_index,
	email_verified, verify_token_hash, verify_expires_at, birth_year, country, gender, language, erasing_since,
	reset_token_hash, reset_expires_at, pw_failures, pw_failed_at, notices`

var (
	qInsertUser = sqlq(`INSERT INTO users (id, username, username_key, password_hash, role, created_at, email, email_index,
		email_verified, verify_token_hash, verify_expires_at, birth_year, country, gender, language, erasing_since,
		reset_token_hash, reset_expires_at, pw_failures, pw_failed_at, notices, consent_head, consent_head_hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	qUsernameTaken   = sqlq(`SELECT 1 FROM users WHERE username_key = ?`)
	qUserByID        = sqlq(`SELECT ` + userCols + ` FROM users WHERE id = ?`)
	qUserByUsername  = sqlq(`SELECT ` + userCols + ` FROM users WHERE username_key = ?`)
	qUsersAfter      = sqlq(`SELECT ` + userCols + ` FROM users WHERE id > ? AND erasing_since IS NULL ORDER BY id LIMIT ?`)
	qSetPasswordHash = sqlq(`UPDATE users SET password_hash = ? WHERE id = ? AND erasing_since IS NULL`)
	// One static statement for every combination of changes: a flag per
	// field says whether it is set.
	qUpdateUser = sqlq(`UPDATE users SET
		birth_year        = CASE WHEN ?1 THEN ?2 ELSE birth_year END,
		country           = CASE WHEN ?3 THEN ?4 ELSE country END,
		gender            = CASE WHEN ?5 THEN ?6 ELSE gender END,
		language          = CASE WHEN ?7 THEN ?8 ELSE language END,
		email             = CASE WHEN ?9 THEN ?10 ELSE email END,
		email_index       = CASE WHEN ?9 THEN ?11 ELSE email_index END,
		email_verified    = CASE WHEN ?9 THEN 0 ELSE email_verified END,
		verify_token_hash = CASE WHEN ?9 THEN ?12 ELSE verify_token_hash END,
		verify_expires_at = CASE WHEN ?9 THEN ?13 ELSE verify_expires_at END
		WHERE id = ?14 AND erasing_since IS NULL`)
	qLiveUser            = sqlq(`SELECT 1 FROM users WHERE id = ? AND erasing_since IS NULL`)
	qUserByVerifiedEmail = sqlq(`SELECT ` + userCols + ` FROM users
		WHERE email_index = ? AND email_verified = 1 AND erasing_since IS NULL`)
	qVerifyToken = sqlq(`SELECT id, email_index FROM users
		WHERE verify_token_hash = ? AND verify_expires_at > ? AND erasing_since IS NULL`)
	qVerifyMail = sqlq(`UPDATE users SET email_verified = 1, verify_token_hash = NULL, verify_expires_at = NULL
		WHERE id = ?`)
	qUnverifiedHolders = sqlq(`SELECT id, notices FROM users
		WHERE email_index = ? AND id <> ? AND email_verified = 0 AND erasing_since IS NULL`)
	qEvictEmail = sqlq(`UPDATE users SET email = NULL, email_index = NULL, verify_token_hash = NULL,
		verify_expires_at = NULL, notices = ? WHERE id = ?`)
	qSetReset = sqlq(`UPDATE users SET reset_token_hash = ?, reset_expires_at = ?
		WHERE id = ? AND erasing_since IS NULL`)
	qResetPassword = sqlq(`UPDATE users SET password_hash = ?, reset_token_hash = NULL, reset_expires_at = NULL,
		pw_failures = 0, pw_failed_at = NULL
		WHERE reset_token_hash = ? AND reset_expires_at > ? AND erasing_since IS NULL RETURNING id`)
	qPasswordFailed = sqlq(`UPDATE users SET pw_failures = pw_failures + 1, pw_failed_at = ?
		WHERE id = ? AND erasing_since IS NULL RETURNING pw_failures`)
	qClearFailures = sqlq(`UPDATE users SET pw_failures = 0, pw_failed_at = NULL
		WHERE id = ? AND pw_failures <> 0 AND erasing_since IS NULL`)
	qClearNotices = sqlq(`UPDATE users SET notices = NULL WHERE id = ? AND notices IS NOT NULL AND erasing_since IS NULL`)
	qMarkErasing  = sqlq(`UPDATE users SET erasing_since = ? WHERE id = ? AND erasing_since IS NULL`)
	// No ORDER BY: sorting by id would tempt the planner into walking the
	// primary key instead of the small partial index.
	qErasing = sqlq(`SELECT id FROM users WHERE erasing_since IS NOT NULL`)
	// Consent state and ledger and processor state follow by ON DELETE CASCADE.
	qDeleteUser = sqlq(`DELETE FROM users WHERE id = ?`)

	qInsertDataKey  = sqlq(`INSERT INTO data_keys (user_id, wrapped, created_at) VALUES (?, ?, ?)`)
	qDataKey        = sqlq(`SELECT wrapped FROM data_keys WHERE user_id = ?`)
	qDeleteDataKey  = sqlq(`DELETE FROM data_keys WHERE user_id = ?`)
	qDataKeysAfter  = sqlq(`SELECT user_id, wrapped, created_at FROM data_keys WHERE user_id > ? ORDER BY user_id LIMIT ?`)
	qSwapDataKey    = sqlq(`UPDATE data_keys SET wrapped = ? WHERE user_id = ? AND wrapped = ?`)
	qInsertSession  = sqlq(`INSERT INTO sessions (id, user_id, role, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`)
	qSession        = sqlq(`SELECT id, user_id, role, created_at, expires_at FROM sessions WHERE id = ?`)
	qDeleteSession  = sqlq(`DELETE FROM sessions WHERE id = ?`)
	qDeleteSessions = sqlq(`DELETE FROM sessions WHERE user_id = ?`)
	qUserSessions   = sqlq(`SELECT id, user_id, role, created_at, expires_at FROM sessions WHERE user_id = ?`)
	qCountSessions  = sqlq(`SELECT count(*) FROM sessions WHERE expires_at > ?`)
	qSweepSessions  = sqlq(`DELETE FROM sessions WHERE expires_at <= ?`)
)

// eachChunk is how many rows the Each* passes read per query: a pass over a
// million rows never holds a reader (or a WAL snapshot) for long.
const eachChunk = 1000

func (s accountStore) CreateAccount(ctx context.Context, a accounts.NewAccount) error {
	err := s.d.write(ctx, func(t *tx) error { return insertAccount(t, &a) })
	if err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	return nil
}

func (s accountStore) ImportAccounts(ctx context.Context, list []accounts.NewAccount) error {
	if len(list) == 0 {
		return nil
	}
	err := s.d.write(ctx, func(t *tx) error {
		for _, i := range keyOrder(len(list), func(i int) string { return list[i].Account.ID }) {
			if err := insertAccount(t, &list[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import accounts: %w", err)
	}
	return nil
}

// insertAccount writes an account with its initial consent and work. A
// clash on a unique index becomes the port's sentinel; when both the
// username and the email clash, the username is reported (SQLite names
// only the first index it finds taken).
func insertAccount(t *tx, a *accounts.NewAccount) error {
	r := &a.Account
	args, err := userArgs(r, a.Consent.State.Head, a.Consent.State.HeadHash)
	if err != nil {
		return err
	}
	_, err = t.exec(qInsertUser, args...)
	if err != nil {
		switch uniqueViolation(err) {
		case "users.username_key":
			return accounts.ErrUsernameTaken
		case "users.email_index":
			taken, qerr := t.queryRow(qUsernameTaken, []any{r.UsernameKey}, new(int))
			if qerr == nil && taken {
				return accounts.ErrUsernameTaken
			}
			return accounts.ErrEmailTaken
		}
		return fmt.Errorf("insert account %s: %w", r.ID, err)
	}
	for purpose, e := range a.Consent.State.State {
		if err := putState(t, r.ID, purpose, e); err != nil {
			return err
		}
	}
	for i := range a.Consent.Events {
		if err := insertEvent(t, r.ID, &a.Consent.Events[i]); err != nil {
			return err
		}
	}
	for i := range a.Work {
		if err := insertItem(t, &a.Work[i]); err != nil {
			return err
		}
	}
	return nil
}

// userArgs are qInsertUser's arguments for r.
func userArgs(r *accounts.Record, head int64, headHash string) ([]any, error) {
	var tokenHash, expires, resetHash, resetExpires, failedAt any
	if r.Verification != nil {
		tokenHash, expires = r.Verification.TokenHash, ms(r.Verification.ExpiresAt)
	}
	if r.PasswordReset != nil {
		resetHash, resetExpires = r.PasswordReset.TokenHash, ms(r.PasswordReset.ExpiresAt)
	}
	if !r.LastPasswordFailure.IsZero() {
		failedAt = ms(r.LastPasswordFailure)
	}
	notices, err := encodeNotices(r.Notices)
	if err != nil {
		return nil, err
	}
	return []any{r.ID, r.Username, r.UsernameKey, r.PasswordHash, string(r.Role), ms(r.CreatedAt),
		blob(r.Email), nullText(r.EmailIndex), r.EmailVerified, tokenHash, expires,
		blob(r.Profile.BirthYear), blob(r.Profile.Country), blob(r.Profile.Gender), blob(r.Profile.Language),
		msPtr(r.ErasingSince), resetHash, resetExpires, r.PasswordFailures, failedAt, notices, head, headHash}, nil
}

// noticeJSON is one notice in the notices column.
type noticeJSON struct {
	Kind string `json:"kind"`
	At   int64  `json:"at"`
}

// encodeNotices is the notices column: a JSON array, NULL for none.
func encodeNotices(ns []accounts.Notice) (any, error) {
	if len(ns) == 0 {
		return nil, nil
	}
	out := make([]noticeJSON, len(ns))
	for i, n := range ns {
		out[i] = noticeJSON{Kind: string(n.Kind), At: ms(n.At)}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode notices: %w", err)
	}
	return string(b), nil
}

func decodeNotices(col sql.NullString) ([]accounts.Notice, error) {
	if !col.Valid || col.String == "" {
		return nil, nil
	}
	var in []noticeJSON
	if err := json.Unmarshal([]byte(col.String), &in); err != nil {
		return nil, fmt.Errorf("decode notices: %w", err)
	}
	out := make([]accounts.Notice, len(in))
	for i, n := range in {
		out[i] = accounts.Notice{Kind: accounts.NoticeKind(n.Kind), At: fromMS(n.At)}
	}
	return out, nil
}

// keyOrder returns the indexes 0..n-1 sorted by key: a bulk load inserts
// in key order, so consecutive inserts share the b-tree path they descend
// (ids are random, and at a million rows the tree is far larger than the
// cache).
func keyOrder(n int, key func(i int) string) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(key(a), key(b)) })
	return idx
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// accountRow holds a users row while it is scanned.
type accountRow struct {
	r                          accounts.Record
	role                       string
	created                    int64
	emailIndex, tokenHash      sql.NullString
	tokenExpires, erasingSince sql.NullInt64
	resetHash, notices         sql.NullString
	resetExpires, failedAt     sql.NullInt64
}

func (a *accountRow) dest() []any {
	r := &a.r
	return []any{&r.ID, &r.Username, &r.UsernameKey, &r.PasswordHash, &a.role, &a.created, &r.Email, &a.emailIndex,
		&r.EmailVerified, &a.tokenHash, &a.tokenExpires, &r.Profile.BirthYear, &r.Profile.Country, &r.Profile.Gender,
		&r.Profile.Language, &a.erasingSince, &a.resetHash, &a.resetExpires, &r.PasswordFailures, &a.failedAt, &a.notices}
}

func (a *accountRow) record() *accounts.Record {
	r := a.r
	r.Role = auth.Role(a.role)
	r.CreatedAt = fromMS(a.created)
	r.EmailIndex = a.emailIndex.String
	if a.tokenHash.Valid {
		r.Verification = &accounts.Verification{TokenHash: a.tokenHash.String, ExpiresAt: fromMS(a.tokenExpires.Int64)}
	}
	r.ErasingSince = fromNullMS(a.erasingSince)
	if a.resetHash.Valid {
		r.PasswordReset = &accounts.Verification{TokenHash: a.resetHash.String, ExpiresAt: fromMS(a.resetExpires.Int64)}
	}
	if a.failedAt.Valid {
		r.LastPasswordFailure = fromMS(a.failedAt.Int64)
	}
	// The column is written only by this adapter; a value it cannot read
	// is shown as no notices rather than failing every read of the account.
	r.Notices, _ = decodeNotices(a.notices)
	return &r
}

func (s accountStore) account(ctx context.Context, q *query, key string) (*accounts.Record, error) {
	var a accountRow
	found, err := s.d.readRow(ctx, q, []any{key}, a.dest()...)
	if err != nil || !found {
		return nil, err
	}
	return a.record(), nil
}

func (s accountStore) Account(ctx context.Context, id string) (*accounts.Record, error) {
	if snap, ok, err := s.d.snapshot(ctx, id); ok {
		if err != nil {
			return nil, fmt.Errorf("read account: %w", err)
		}
		return snap.record(), nil
	}
	r, err := s.account(ctx, qUserByID, id)
	if err != nil {
		return nil, fmt.Errorf("read account: %w", err)
	}
	return r, nil
}

func (s accountStore) AccountByUsername(ctx context.Context, usernameKey string) (*accounts.Record, error) {
	r, err := s.account(ctx, qUserByUsername, usernameKey)
	if err != nil {
		return nil, fmt.Errorf("read account by username: %w", err)
	}
	return r, nil
}

// SetPasswordHash leaves an account being erased alone: none of its
// records change once its erasure began.
func (s accountStore) SetPasswordHash(ctx context.Context, id, hash string) error {
	if _, err := s.d.exec(ctx, qSetPasswordHash, hash, id); err != nil {
		return fmt.Errorf("set password hash: %w", err)
	}
	return nil
}

// profileFields are the names accounts.Update.Profile may use.
var profileFields = map[string]int{"birthYear": 0, "country": 1, "gender": 2, "language": 3}

func (s accountStore) UpdateAccount(ctx context.Context, id string, u accounts.Update) (bool, error) {
	args := make([]any, 14)
	for i := 0; i < 4; i++ {
		args[2*i], args[2*i+1] = false, nil
	}
	for name, v := range u.Profile {
		i, ok := profileFields[name]
		if !ok {
			return false, fmt.Errorf("update account: unknown profile field %q", name)
		}
		args[2*i], args[2*i+1] = true, blob(v)
	}
	args[8], args[9], args[10], args[11], args[12] = false, nil, nil, nil, nil
	if e := u.Email; e != nil {
		args[8] = true
		if e.Sealed != nil {
			args[9], args[10] = e.Sealed, nullText(e.Index)
			if v := e.Verification; v != nil {
				args[11], args[12] = v.TokenHash, ms(v.ExpiresAt)
			}
		}
	}
	args[13] = id
	if len(u.Profile) == 0 && u.Email == nil {
		found, err := s.d.readRow(ctx, qLiveUser, []any{id}, new(int))
		if err != nil {
			return false, fmt.Errorf("update account: %w", err)
		}
		return found, nil
	}
	// A new email is unverified, outside the unique index: no clash.
	n, err := s.d.exec(ctx, qUpdateUser, args...)
	if err != nil {
		return false, fmt.Errorf("update account: %w", err)
	}
	return n == 1, nil
}

func (s accountStore) AccountByVerifiedEmail(ctx context.Context, emailIndex string) (*accounts.Record, error) {
	r, err := s.account(ctx, qUserByVerifiedEmail, emailIndex)
	if err != nil {
		return nil, fmt.Errorf("read account by verified email: %w", err)
	}
	return r, nil
}

// VerifyEmail is one transaction: the verification, then the eviction of
// the address from the accounts that hold it unverified.
func (s accountStore) VerifyEmail(ctx context.Context, tokenHash string, now time.Time, lost accounts.Notice) (accounts.VerifiedEmail, error) {
	var out accounts.VerifiedEmail
	err := s.d.write(ctx, func(t *tx) error {
		out = accounts.VerifiedEmail{}
		var id string
		var idx sql.NullString
		found, err := t.queryRow(qVerifyToken, []any{tokenHash, now.UnixMilli()}, &id, &idx)
		if err != nil || !found {
			return err
		}
		if _, err := t.exec(qVerifyMail, id); err != nil {
			if uniqueViolation(err) == "users.email_index" {
				return errVerifiedElsewhere
			}
			return err
		}
		out.UserID = id
		if !idx.Valid {
			return nil
		}
		type holder struct {
			id      string
			notices sql.NullString
		}
		var holders []holder
		rows, err := t.query(qUnverifiedHolders, idx.String, id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var h holder
			if err := rows.Scan(&h.id, &h.notices); err != nil {
				rows.Close()
				return err
			}
			holders = append(holders, h)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, h := range holders {
			ns, _ := decodeNotices(h.notices)
			enc, err := encodeNotices(append(ns, lost))
			if err != nil {
				return err
			}
			if _, err := t.exec(qEvictEmail, enc, h.id); err != nil {
				return err
			}
			out.Evicted = append(out.Evicted, h.id)
		}
		slices.Sort(out.Evicted)
		return nil
	})
	if errors.Is(err, errVerifiedElsewhere) {
		return accounts.VerifiedEmail{}, nil
	}
	if err != nil {
		return accounts.VerifiedEmail{}, fmt.Errorf("verify email: %w", err)
	}
	return out, nil
}

// errVerifiedElsewhere rolls a verification back: another account holds
// the address verified.
var errVerifiedElsewhere = errors.New("email verified by another account")

func (s accountStore) SetPasswordReset(ctx context.Context, id string, v accounts.Verification) (bool, error) {
	n, err := s.d.exec(ctx, qSetReset, v.TokenHash, ms(v.ExpiresAt), id)
	if err != nil {
		return false, fmt.Errorf("set password reset: %w", err)
	}
	return n == 1, nil
}

func (s accountStore) ResetPassword(ctx context.Context, tokenHash string, now time.Time, hash string) (string, error) {
	var id string
	found, err := s.d.writeRow(ctx, qResetPassword, []any{hash, tokenHash, now.UnixMilli()}, &id)
	if err != nil {
		return "", fmt.Errorf("reset password: %w", err)
	}
	if !found {
		return "", nil
	}
	return id, nil
}

func (s accountStore) PasswordFailed(ctx context.Context, id string, at time.Time) (int, error) {
	var n int
	found, err := s.d.writeRow(ctx, qPasswordFailed, []any{ms(at), id}, &n)
	if err != nil {
		return 0, fmt.Errorf("count password failure: %w", err)
	}
	if !found {
		return 0, nil
	}
	return n, nil
}

func (s accountStore) ClearPasswordFailures(ctx context.Context, id string) error {
	if _, err := s.d.exec(ctx, qClearFailures, id); err != nil {
		return fmt.Errorf("clear password failures: %w", err)
	}
	return nil
}

func (s accountStore) ClearNotices(ctx context.Context, id string) error {
	if _, err := s.d.exec(ctx, qClearNotices, id); err != nil {
		return fmt.Errorf("clear notices: %w", err)
	}
	return nil
}

func (s accountStore) MarkErasing(ctx context.Context, id string, at time.Time) (bool, error) {
	n, err := s.d.exec(ctx, qMarkErasing, at.UnixMilli(), id)
	if err != nil {
		return false, fmt.Errorf("mark erasing: %w", err)
	}
	return n == 1, nil
}

func (s accountStore) Erasing(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.d.readRows(ctx, qErasing, nil, func(rows *sql.Rows) error {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list erasing accounts: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}

func (s accountStore) DeleteAccount(ctx context.Context, id string) error {
	if _, err := s.d.exec(ctx, qDeleteUser, id); err != nil {
		return fmt.Errorf("delete account: %w", err)
	}
	// The username and password hash must not outlive the account in the
	// files (it is the last step of an erasure).
	s.d.scrubWAL(context.WithoutCancel(ctx))
	return nil
}

func (s accountStore) EachAccount(ctx context.Context, fn func(r *accounts.Record) error) error {
	return s.d.each(ctx, func(after string) ([]string, func(int) error, error) {
		var recs []*accounts.Record
		err := s.d.scanRows(ctx, qUsersAfter, []any{after, eachChunk}, func(rows *sql.Rows) error {
			var a accountRow
			if err := rows.Scan(a.dest()...); err != nil {
				return err
			}
			recs = append(recs, a.record())
			return nil
		})
		keys := make([]string, len(recs))
		for i, r := range recs {
			keys[i] = r.ID
		}
		return keys, func(i int) error { return fn(recs[i]) }, err
	})
}

// errStop carries an error of the caller's fn out of a pass unchanged.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

// each runs a keyset-paginated pass: chunk reads the rows after a key and
// returns their keys and a function calling fn on row i. It reports one
// round trip for the whole pass.
func (d *DB) each(ctx context.Context, chunk func(after string) ([]string, func(i int) error, error)) (err error) {
	after, start := "", time.Now()
	defer func() {
		if _, stop := err.(errStop); stop {
			d.observe(ctx, "read", start, nil)
			err = err.(errStop).err
			return
		}
		d.observe(ctx, "read", start, err)
	}()
	for {
		keys, call, err := chunk(after)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		for i := range keys {
			if err := call(i); err != nil {
				return errStop{err}
			}
		}
		if len(keys) < eachChunk {
			return nil
		}
		after = keys[len(keys)-1]
	}
}

func (s accountStore) InsertDataKey(ctx context.Context, k accounts.DataKey) error {
	if _, err := s.d.exec(ctx, qInsertDataKey, k.UserID, blob(k.Wrapped), ms(k.CreatedAt)); err != nil {
		return fmt.Errorf("insert data key: %w", err)
	}
	return nil
}

func (s accountStore) ImportDataKeys(ctx context.Context, keys []accounts.DataKey) error {
	if len(keys) == 0 {
		return nil
	}
	err := s.d.write(ctx, func(t *tx) error {
		for _, i := range keyOrder(len(keys), func(i int) string { return keys[i].UserID }) {
			k := &keys[i]
			if _, err := t.exec(qInsertDataKey, k.UserID, blob(k.Wrapped), ms(k.CreatedAt)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import data keys: %w", err)
	}
	return nil
}

func (s accountStore) DataKey(ctx context.Context, userID string) ([]byte, error) {
	var w []byte
	if _, err := s.d.readRow(ctx, qDataKey, []any{userID}, &w); err != nil {
		return nil, fmt.Errorf("read data key: %w", err)
	}
	return w, nil
}

func (s accountStore) DeleteDataKey(ctx context.Context, userID string) error {
	if _, err := s.d.exec(ctx, qDeleteDataKey, userID); err != nil {
		return fmt.Errorf("delete data key: %w", err)
	}
	return nil
}

func (s accountStore) EachDataKey(ctx context.Context, fn func(k accounts.DataKey) error) error {
	return s.d.each(ctx, func(after string) ([]string, func(int) error, error) {
		var list []accounts.DataKey
		err := s.d.scanRows(ctx, qDataKeysAfter, []any{after, eachChunk}, func(rows *sql.Rows) error {
			var k accounts.DataKey
			var created int64
			if err := rows.Scan(&k.UserID, &k.Wrapped, &created); err != nil {
				return err
			}
			k.CreatedAt = fromMS(created)
			list = append(list, k)
			return nil
		})
		keys := make([]string, len(list))
		for i, k := range list {
			keys[i] = k.UserID
		}
		return keys, func(i int) error { return fn(list[i]) }, err
	})
}

func (s accountStore) SwapDataKey(ctx context.Context, userID string, old, new []byte) (bool, error) {
	n, err := s.d.exec(ctx, qSwapDataKey, blob(new), userID, blob(old))
	if err != nil {
		return false, fmt.Errorf("swap data key: %w", err)
	}
	return n == 1, nil
}

func (s accountStore) InsertSession(ctx context.Context, r accounts.SessionRecord) error {
	if _, err := s.d.exec(ctx, qInsertSession, r.ID, r.UserID, string(r.Role), ms(r.CreatedAt), ms(r.ExpiresAt)); err != nil {
		return fmt.Errorf("insert session: %w", err)
	}
	return nil
}

func scanSession(sc scanner) (accounts.SessionRecord, error) {
	var r accounts.SessionRecord
	var role string
	var created, expires int64
	if err := sc.Scan(&r.ID, &r.UserID, &role, &created, &expires); err != nil {
		return r, err
	}
	r.Role, r.CreatedAt, r.ExpiresAt = auth.Role(role), fromMS(created), fromMS(expires)
	return r, nil
}

func (s accountStore) Session(ctx context.Context, id string) (*accounts.SessionRecord, error) {
	var r *accounts.SessionRecord
	err := s.d.readRows(ctx, qSession, []any{id}, func(rows *sql.Rows) error {
		sr, err := scanSession(rows)
		r = &sr
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read session: %w", err)
	}
	return r, nil
}

func (s accountStore) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.d.exec(ctx, qDeleteSession, id); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

func (s accountStore) DeleteUserSessions(ctx context.Context, userID string) error {
	if _, err := s.d.exec(ctx, qDeleteSessions, userID); err != nil {
		return fmt.Errorf("delete sessions: %w", err)
	}
	return nil
}

func (s accountStore) UserSessions(ctx context.Context, userID string) ([]accounts.SessionRecord, error) {
	var out []accounts.SessionRecord
	err := s.d.readRows(ctx, qUserSessions, []any{userID}, func(rows *sql.Rows) error {
		r, err := scanSession(rows)
		out = append(out, r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

func (s accountStore) CountSessions(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	if _, err := s.d.readRow(ctx, qCountSessions, []any{now.UnixMilli()}, &n); err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}

func (s accountStore) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	n, err := s.d.exec(ctx, qSweepSessions, now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("sweep sessions: %w", err)
	}
	return n, nil
}
