package consent

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/internal/i18n"
	"github.com/consentgraph/consentgraph/internal/policy"
	"github.com/consentgraph/consentgraph/internal/signing"
)

// ReceiptType is the JWS "typ" of consent receipts (explicit typing, RFC
// 8725), so that nothing else signed with the same keys passes as one.
const ReceiptType = "consent-receipt+jwt"

// KantaraVersion is the consent receipt specification the claims follow.
const KantaraVersion = "KI-CR-v1.1.0"

// SubjectSecret names the secret behind subject pseudonyms.
const SubjectSecret = "consent-subject-pseudonym"

// Claims are the JWT claims of a consent receipt: the Kantara Initiative
// Consent Receipt v1.1 fields, the registered JWT claims, and Consentgraph
// extensions that name the purpose, action and ledger position directly.
// They never contain the username, email or user id: the subject is a
// keyed pseudonym.
type Claims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	IssuedAt int64  `json:"iat"`
	ID       string `json:"jti"`

	Version          string            `json:"version"`
	Jurisdiction     string            `json:"jurisdiction,omitempty"`
	ConsentTimestamp int64             `json:"consentTimestamp"`
	CollectionMethod string            `json:"collectionMethod"`
	ConsentReceiptID string            `json:"consentReceiptID"`
	Language         string            `json:"language"`
	PIIPrincipalID   string            `json:"piiPrincipalId"`
	PIIControllers   []ControllerClaim `json:"piiControllers"`
	PolicyURL        string            `json:"policyUrl"`
	Services         []ServiceClaim    `json:"services"`
	Sensitive        bool              `json:"sensitive"`
	SPICat           []string          `json:"spiCat"`

	PolicyVersion string   `json:"policyVersion"`
	Purpose       string   `json:"purpose"`
	Mechanism     string   `json:"mechanism"`
	Action        Action   `json:"action"`
	ThirdParties  []string `json:"thirdParties"`
	// Ledger places the receipt in the subject's hash chain; absent for
	// receipts of a default state, which no event records.
	Ledger *LedgerClaim `json:"ledger,omitempty"`
	// Log names the public consent log the event is appended to (its URL),
	// where the receipt's holder can later get the event's inclusion proof;
	// absent with Ledger.
	Log string `json:"log,omitempty"`
}

// ControllerClaim is a Kantara piiControllers entry.
type ControllerClaim struct {
	PIIController string `json:"piiController"`
	OnBehalf      bool   `json:"onBehalf"`
	Contact       string `json:"contact"`
	Address       string `json:"address,omitempty"`
	Email         string `json:"email,omitempty"`
	Phone         string `json:"phone,omitempty"`
	URL           string `json:"piiControllerUrl,omitempty"`
}

// ServiceClaim is a Kantara services entry.
type ServiceClaim struct {
	Service  string         `json:"service"`
	Purposes []PurposeClaim `json:"purposes"`
}

// PurposeClaim is a Kantara purposes entry.
type PurposeClaim struct {
	Purpose              string   `json:"purpose"`
	PurposeCategory      []string `json:"purposeCategory"`
	ConsentType          string   `json:"consentType"`
	PIICategory          []string `json:"piiCategory"`
	PrimaryPurpose       bool     `json:"primaryPurpose"`
	Termination          string   `json:"termination"`
	ThirdPartyDisclosure bool     `json:"thirdPartyDisclosure"`
	ThirdPartyName       string   `json:"thirdPartyName,omitempty"`
}

// LedgerClaim is where a receipt's event sits in the subject's ledger.
type LedgerClaim struct {
	Sequence     int64  `json:"sequence"`
	PreviousHash string `json:"previousHash"`
}

// Pseudonym is the subject identifier receipts carry for a user: an HMAC of
// the user id under a secret, stable, and unlinkable to the account
// without that secret.
func (s *Service) Pseudonym(ctx context.Context, userID string) (string, error) {
	key, err := s.opts.Secrets.Get(ctx, SubjectSecret)
	if err != nil {
		return "", fmt.Errorf("subject pseudonym key: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("user:" + userID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// newReceiptID returns a random UUID (version 4), as Kantara asks.
func newReceiptID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

type receiptInput struct {
	subject   string
	purpose   policy.Purpose
	action    Action
	method    Method
	at        time.Time
	policy    PolicyVersion
	receiptID string
	ledger    *LedgerClaim
	// lang is the language of the receipt's human text (see language).
	lang string
}

// language is the one a receipt issued in ctx is written in: the request's
// (Accept-Language), else the controller's, else English, among those with
// a catalogue. The signed claims say which ("language"), and only the
// human text changes with it; the machine-readable claims (purpose id,
// mechanism, action, ledger) are the same in every language.
func (s *Service) language(ctx context.Context) string {
	if s.opts.Texts == nil {
		return s.opts.Controller.Language
	}
	return s.opts.Texts.Pick(i18n.FromContext(ctx), s.opts.Controller.Language)
}

// text is a receipt phrase in lang; English without catalogues.
func (s *Service) text(lang, key, english string) string {
	if s.opts.Texts == nil {
		return english
	}
	return s.opts.Texts.T(lang, key, nil)
}

func (s *Service) claims(in receiptInput) *Claims {
	c := s.opts.Controller
	issuer := c.URL
	if issuer == "" {
		issuer = c.Name
	}
	third := s.thirdParties(in.purpose, in.lang)
	termination := s.text(in.lang, "receipt.termination.withdrawable", "until withdrawn or the account is deleted")
	if in.purpose.Mechanism == policy.NoticeOnly {
		termination = s.text(in.lang, "receipt.termination.essential", "when the account is deleted")
	}
	cats := append([]string{}, in.purpose.DataCategories...)
	return &Claims{
		Issuer:           issuer,
		Subject:          in.subject,
		IssuedAt:         in.at.Unix(),
		ID:               in.receiptID,
		Version:          KantaraVersion,
		Jurisdiction:     c.Jurisdiction,
		ConsentTimestamp: in.at.Unix(),
		CollectionMethod: string(in.method),
		ConsentReceiptID: in.receiptID,
		Language:         in.lang,
		PIIPrincipalID:   in.subject,
		PIIControllers: []ControllerClaim{{
			PIIController: c.Name, Contact: c.Contact, Address: c.Address, Email: c.Email, Phone: c.Phone, URL: c.URL,
		}},
		PolicyURL: in.policy.URL,
		Services: []ServiceClaim{{
			Service: c.Name,
			Purposes: []PurposeClaim{{
				Purpose:              in.purpose.DescriptionIn(in.lang),
				PurposeCategory:      []string{in.purpose.ID},
				ConsentType:          string(in.purpose.Mechanism),
				PIICategory:          cats,
				PrimaryPurpose:       in.purpose.Mechanism == policy.NoticeOnly,
				Termination:          termination,
				ThirdPartyDisclosure: len(third) > 0,
				ThirdPartyName:       strings.Join(third, ", "),
			}},
		}},
		SPICat:        []string{},
		PolicyVersion: in.policy.Version,
		Purpose:       in.purpose.ID,
		Mechanism:     string(in.purpose.Mechanism),
		Action:        in.action,
		ThirdParties:  third,
		Ledger:        in.ledger,
		Log:           logOf(in.ledger, s.opts.LogURL),
	}
}

func (s *Service) sign(ctx context.Context, c *Claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode receipt: %w", err)
	}
	jws, err := s.opts.Signer.SignCompact(ctx, payload, ReceiptType)
	if err != nil {
		return "", fmt.Errorf("sign receipt: %w", err)
	}
	return jws, nil
}

// thirdParties are the purpose's configured third parties, named in lang,
// plus the processors bound to it.
func (s *Service) thirdParties(p policy.Purpose, lang string) []string {
	out := p.ThirdPartiesIn(lang)
	if s.opts.ThirdParties != nil {
		out = append(out, s.opts.ThirdParties(p.ID)...)
	}
	return out
}

// MaxReceiptLength bounds what VerifyReceipt looks at.
const MaxReceiptLength = 16 << 10

// Check is the outcome of verifying a receipt.
type Check struct {
	Valid bool
	// Reason says why an invalid receipt was rejected.
	Reason string
	// Kid is the signing key's id (set when the signature was checked).
	Kid string
	// Claims are set for valid receipts.
	Claims *Claims
}

// IssuedAt is when a valid receipt was issued.
func (c Check) IssuedAt() time.Time {
	if c.Claims == nil {
		return time.Time{}
	}
	return time.Unix(c.Claims.IssuedAt, 0).UTC()
}

// VerifyReceipt checks a receipt's signature against the published keys
// and that it is a consent receipt. It needs no account: anyone may ask.
// Why a receipt is not valid is said in the request's language.
func (s *Service) VerifyReceipt(ctx context.Context, receipt string) Check {
	c, err := s.verifyReceipt(ctx, strings.TrimSpace(receipt))
	if err == nil {
		return c
	}
	reason := err.Error()
	var r *invalidReceipt
	if errors.As(err, &r) && s.opts.Texts != nil {
		reason = s.opts.Texts.T(s.opts.Texts.Pick(i18n.FromContext(ctx)), "receipt.invalid."+r.key, r.params)
	}
	return Check{Reason: reason, Kid: c.Kid}
}

// invalidReceipt says why a receipt is not valid: a catalogue key
// ("receipt.invalid.<key>") and its English text, both with {params}.
type invalidReceipt struct {
	key, english string
	params       i18n.Params
}

func (e *invalidReceipt) Error() string { return i18n.Fill(e.english, e.params) }

func invalid(key, english string, params i18n.Params) error {
	return &invalidReceipt{key: key, english: english, params: params}
}

func (s *Service) verifyReceipt(ctx context.Context, receipt string) (Check, error) {
	if len(receipt) > MaxReceiptLength {
		return Check{}, invalid("tooLong", "not a consent receipt: longer than {max} bytes", i18n.Params{"max": MaxReceiptLength})
	}
	payload, hdr, err := s.opts.Signer.Verify(ctx, receipt)
	switch {
	case errors.Is(err, signing.ErrBadSignature):
		return Check{}, invalid("altered", "the signature does not match the content: the receipt was altered or forged", nil)
	case errors.Is(err, signing.ErrUnknownKey):
		return Check{}, invalid("unknownKey", "signed by a key this service does not publish (forged, or signed with a key that has expired)", nil)
	case errors.Is(err, signing.ErrWrongAlg):
		return Check{}, invalid("wrongAlgorithm", "not a receipt of this service: {detail}", i18n.Params{"detail": err.Error()})
	case errors.Is(err, signing.ErrMalformed):
		return Check{}, invalid("malformed", "not a compact JWS consent receipt: {detail}", i18n.Params{"detail": err.Error()})
	case err != nil:
		return Check{}, fmt.Errorf("could not check the signature: %w", err)
	}
	check := Check{Kid: hdr.Kid}
	if hdr.Typ != ReceiptType {
		return check, invalid("otherType", "signed by this service, but not a consent receipt (typ {type})", i18n.Params{"type": strconv.Quote(hdr.Typ)})
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil || c.Version != KantaraVersion || c.Purpose == "" || (c.Action != Grant && c.Action != Withdraw) {
		return check, invalid("otherClaims", "signed by this service, but its claims are not a consent receipt", nil)
	}
	check.Valid, check.Claims = true, &c
	return check, nil
}

// ParseClaims decodes a receipt's claims without checking its signature
// (for display of receipts already verified, e.g. stored ones).
func ParseClaims(receipt string) (*Claims, error) {
	parts := strings.Split(receipt, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("receipt payload: %w", err)
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("receipt claims: %w", err)
	}
	return &c, nil
}

// logOf is the log claim: only events are logged, not default states.
func logOf(ledger *LedgerClaim, url string) string {
	if ledger == nil {
		return ""
	}
	return url
}
