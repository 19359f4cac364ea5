package graph

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/consentgraph/consentgraph/internal/apperr"
)

// CharClass is what characters a string argument may hold.
type CharClass int

const (
	// Printable: valid UTF-8 without control characters (names, versions).
	Printable CharClass = iota
	// Token: ASCII letters, digits and - _ . ~ + / = : (ids, cursors,
	// JWS, API tokens, URLs' worth of safe characters).
	Token
	// Secret: any valid UTF-8 without NUL (passwords are checked further
	// by the domain; nothing else may be assumed about them).
	Secret
	// URL: printable ASCII without spaces.
	URL
)

// StringRule limits one string argument or input field.
type StringRule struct {
	MaxBytes int
	Class    CharClass
}

// InputRules is the input policy of the API, in one place: every String or
// ID argument and input field ("Type.field.arg" for arguments,
// "InputType.field" for input fields) has a length limit and a character
// class, every list argument ("…" with MaxItems) a cap. A schema walk
// (inputlimits_test.go) fails for any string or list input without a rule.
// Domain validation (usernames, emails, countries) still runs after this;
// this layer only bounds what reaches it.
var InputRules = map[string]StringRule{
	"Mutation.login.username":                   {64, Printable},
	"Mutation.login.password":                   {1024, Secret},
	"RegisterInput.username":                    {64, Printable},
	"RegisterInput.password":                    {1024, Secret},
	"RegisterInput.email":                       {254, Printable},
	"ProfileInput.country":                      {8, Printable},
	"ProfileInput.language":                     {16, Printable},
	"Mutation.setEmail.email":                   {254, Printable},
	"Mutation.verifyEmail.token":                {256, Token},
	"Mutation.deleteMyAccount.password":         {1024, Secret},
	"Mutation.changePassword.currentPassword":   {1024, Secret},
	"Mutation.changePassword.newPassword":       {1024, Secret},
	"Mutation.requestPasswordReset.email":       {254, Printable},
	"Mutation.resetPassword.token":              {256, Token},
	"Mutation.resetPassword.newPassword":        {1024, Secret},
	"Mutation.eraseUser.id":                     {64, Token},
	"Mutation.grantConsent.purpose":             {64, Token},
	"Mutation.withdrawConsent.purpose":          {64, Token},
	"Mutation.publishPolicy.version":            {64, Printable},
	"Mutation.publishPolicy.url":                {2048, URL},
	"Mutation.publishPolicy.reconsent":          {64, Token},
	"Mutation.createPartner.name":               {128, Printable},
	"Mutation.revokePartner.id":                 {64, Token},
	"Mutation.setProcessorEnabled.name":         {64, Token},
	"Mutation.retryDelivery.id":                 {64, Token},
	"Mutation.requestProcessorAction.processor": {64, Token},
	"Mutation.requestProcessorAction.action":    {64, Token},
	"Query.verifyReceipt.receipt":               {16 << 10, Token},
	"Query.auditLog.after":                      {256, Token},
	"Query.outbox.after":                        {256, Token},
	"Query.partners.after":                      {256, Token},
	"User.consentHistory.after":                 {256, Token},
	"User.disclosures.after":                    {256, Token},
}

// ListCaps caps every list argument or input field by the same keys.
var ListCaps = map[string]int{
	"Mutation.publishPolicy.reconsent": 100,
	"Query.demographics.groupBy":       8,
}

// InputLimits enforces InputRules and ListCaps on every field argument,
// before any resolver sees it. Strings without a rule (a schema change
// that forgot one) get the default of 1024 printable bytes.
type InputLimits struct {
	schema *ast.Schema
}

var _ interface {
	graphql.HandlerExtension
	graphql.FieldInterceptor
} = (*InputLimits)(nil)

// ExtensionName implements graphql.HandlerExtension.
func (*InputLimits) ExtensionName() string { return "InputLimits" }

// Validate implements graphql.HandlerExtension and keeps the schema.
func (l *InputLimits) Validate(s graphql.ExecutableSchema) error {
	l.schema = s.Schema()
	return nil
}

var defaultRule = StringRule{1024, Printable}

// InterceptField implements graphql.FieldInterceptor.
func (l *InputLimits) InterceptField(ctx context.Context, next graphql.Resolver) (any, error) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || len(fc.Args) == 0 || fc.Field.Definition == nil {
		return next(ctx)
	}
	for _, a := range fc.Field.Definition.Arguments {
		v, ok := fc.Args[a.Name]
		if !ok {
			continue
		}
		key := fc.Object + "." + fc.Field.Name + "." + a.Name
		if err := l.check(key, a.Name, a.Type, reflect.ValueOf(v), 0); err != nil {
			return nil, err
		}
	}
	return next(ctx)
}

func (l *InputLimits) check(key, field string, t *ast.Type, v reflect.Value, depth int) error {
	if depth > 8 {
		return apperr.Invalid(field, "input is nested too deeply")
	}
	v = unwrap(v)
	if !v.IsValid() {
		return nil
	}
	if t.Elem != nil {
		if v.Kind() != reflect.Slice {
			return nil
		}
		limit, ok := ListCaps[key]
		if !ok {
			limit = 100
		}
		if v.Len() > limit {
			return apperr.Invalid(field, "at most %d items", limit)
		}
		for i := range v.Len() {
			if err := l.check(key, field, t.Elem, v.Index(i), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if v.Kind() == reflect.String && (t.NamedType == "String" || t.NamedType == "ID") {
		rule, ok := InputRules[key]
		if !ok {
			rule = defaultRule
		}
		return CheckString(field, v.String(), rule)
	}
	if v.Kind() != reflect.Struct || l.schema == nil {
		return nil
	}
	def := l.schema.Types[t.NamedType]
	if def == nil || def.Kind != ast.InputObject {
		return nil
	}
	for _, f := range def.Fields {
		sf, ok := structFieldByJSON(v, f.Name)
		if !ok {
			continue
		}
		if err := l.check(def.Name+"."+f.Name, field+"."+f.Name, f.Type, sf, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// unwrap follows pointers, interfaces and graphql.Omittable.
func unwrap(v reflect.Value) reflect.Value {
	for v.IsValid() {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if v.IsNil() {
				return reflect.Value{}
			}
			v = v.Elem()
			continue
		case reflect.Struct:
			if strings.HasPrefix(v.Type().Name(), "Omittable[") {
				if m := v.MethodByName("Value"); m.IsValid() {
					v = m.Call(nil)[0]
					continue
				}
			}
		}
		return v
	}
	return v
}

func structFieldByJSON(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
		if tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// CheckString applies one rule.
func CheckString(field, s string, r StringRule) error {
	if len(s) > r.MaxBytes {
		return apperr.Invalid(field, "at most %d bytes", r.MaxBytes)
	}
	if !utf8.ValidString(s) {
		return apperr.Invalid(field, "must be valid UTF-8")
	}
	for _, c := range s {
		if !allowed(r.Class, c) {
			return apperr.Invalid(field, "must not contain %s", describe(c))
		}
	}
	return nil
}

func allowed(class CharClass, c rune) bool {
	switch class {
	case Token:
		return c < utf8.RuneSelf && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.~+/=:", c))
	case URL:
		return c > ' ' && c < 0x7f
	case Secret:
		return c != 0
	default:
		return !unicode.IsControl(c) && c != utf8.RuneError && !unicode.Is(unicode.Cf, c)
	}
}

func describe(c rune) string {
	if c < 0x20 || c == 0x7f || c >= 0x80 {
		return fmt.Sprintf("the character U+%04X", c)
	}
	return fmt.Sprintf("%q", c)
}
