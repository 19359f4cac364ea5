// Package mail sends outgoing mail (double opt-in confirmations, email
// verification) through any SMTP server.
//
// The server is configured with one URL, CONSENTGRAPH_SMTP_URL:
//
//	smtp://user:pass@mail.example.org:587?from=Consentgraph%20<noreply@example.org>
//	smtps://user:pass@mail.example.org:465?from=noreply@example.org
//
// Messages are built here (RFC 5322, MIME, UTF-8) and delivered with
// net/smtp over a connection that honours the caller's context. Failures
// are classified: [IsPermanent] reports the ones a retry cannot fix.
package mail

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// TLSMode selects how the connection to the SMTP server is secured.
type TLSMode string

const (
	// TLSOpportunistic (smtp://, the default) upgrades with STARTTLS when
	// the server offers it and otherwise continues in plain text. The
	// certificate is verified whenever TLS is used. Credentials are never
	// sent over plain text except to a loopback server.
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSRequired (smtp://...?starttls=required) fails unless the server
	// offers STARTTLS and the upgrade succeeds.
	TLSRequired TLSMode = "required"
	// TLSImplicit (smtps://) speaks TLS from the first byte (port 465).
	TLSImplicit TLSMode = "implicit"
)

// Default ports when the URL has none: the submission ports.
const (
	DefaultSMTPPort  = 587
	DefaultSMTPSPort = 465
)

// DefaultTimeout bounds one Send when the caller's context has no deadline.
const DefaultTimeout = time.Minute

// Config says where and how to deliver mail. Build it with [ParseURL];
// RootCAs can only be set in code.
type Config struct {
	Host     string
	Port     int
	Username string // empty: no AUTH
	Password string
	// From is the sender as "Name <addr@example.org>" or "addr@example.org";
	// its address is also the SMTP envelope sender.
	From string
	TLS  TLSMode
	// InsecureSkipVerify disables certificate verification (test servers only).
	InsecureSkipVerify bool
	// RootCAs, when set, replaces the system roots for verifying the server.
	RootCAs *x509.CertPool
	// HeloName is sent with EHLO; empty means this host's FQDN if it has
	// one, else the address literal of the local end of the connection.
	HeloName string
	// Timeout bounds one Send when its context has no deadline; zero means
	// DefaultTimeout.
	Timeout time.Duration
}

// String renders the configuration as a URL with the password redacted,
// so a Config can be logged.
func (c Config) String() string {
	u := url.URL{Scheme: "smtp", Host: net.JoinHostPort(c.Host, strconv.Itoa(c.Port))}
	if c.TLS == TLSImplicit {
		u.Scheme = "smtps"
	}
	if c.Username != "" {
		if c.Password != "" {
			u.User = url.UserPassword(c.Username, "REDACTED")
		} else {
			u.User = url.User(c.Username)
		}
	}
	q := url.Values{}
	q.Set("from", c.From)
	if c.TLS == TLSRequired {
		q.Set("starttls", "required")
	}
	if c.InsecureSkipVerify {
		q.Set("insecure_skip_verify", "true")
	}
	if c.HeloName != "" {
		q.Set("helo", c.HeloName)
	}
	if c.Timeout != 0 {
		q.Set("timeout", c.Timeout.String())
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// ParseURL parses a CONSENTGRAPH_SMTP_URL value.
//
// Scheme smtp (STARTTLS, port 587 by default) or smtps (implicit TLS, port
// 465 by default); optional user:password (percent-encoded); query options:
//
//	from=                      required, "Name <addr>" or "addr"
//	starttls=opportunistic     default for smtp: STARTTLS when offered
//	starttls=required          smtp only: refuse to send without STARTTLS
//	insecure_skip_verify=true  do not verify the certificate (test servers)
//	helo=name                  name sent with EHLO
//	timeout=30s                bound for a Send without context deadline
//
// Errors never contain the password.
func ParseURL(raw string) (Config, error) {
	var cfg Config
	if strings.TrimSpace(raw) == "" {
		return cfg, errors.New("mail: SMTP URL is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL, password included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return cfg, fmt.Errorf("mail: invalid SMTP URL: %w", err)
	}

	defaultPort := DefaultSMTPPort
	switch u.Scheme {
	case "smtp":
		cfg.TLS = TLSOpportunistic
	case "smtps":
		cfg.TLS = TLSImplicit
		defaultPort = DefaultSMTPSPort
	case "":
		return cfg, errors.New("mail: SMTP URL has no scheme (want smtp:// or smtps://)")
	default:
		return cfg, fmt.Errorf("mail: unsupported SMTP URL scheme %q (want smtp or smtps)", u.Scheme)
	}
	if u.Opaque != "" {
		return cfg, errors.New("mail: SMTP URL must look like smtp://host:port?from=...")
	}

	cfg.Host = u.Hostname()
	if cfg.Host == "" {
		return cfg, errors.New("mail: SMTP URL has no host")
	}
	if strings.ContainsAny(cfg.Host, " \t\r\n/%") {
		return cfg, fmt.Errorf("mail: invalid SMTP host %q", cfg.Host)
	}
	cfg.Port = defaultPort
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return cfg, fmt.Errorf("mail: invalid SMTP port %q (want 1-65535)", p)
		}
		cfg.Port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return cfg, errors.New("mail: SMTP URL has an empty port")
	}
	if u.Path != "" && u.Path != "/" {
		return cfg, fmt.Errorf("mail: SMTP URL must not have a path (got %q)", u.Path)
	}
	if u.Fragment != "" {
		return cfg, errors.New("mail: SMTP URL must not have a fragment")
	}

	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
		if cfg.Username == "" && cfg.Password != "" {
			return cfg, errors.New("mail: SMTP URL has a password but no user name")
		}
		if strings.ContainsAny(cfg.Username+cfg.Password, "\x00") {
			return cfg, errors.New("mail: SMTP credentials must not contain NUL")
		}
	}

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return cfg, fmt.Errorf("mail: invalid SMTP URL query: %w", err)
	}
	for key, vals := range q {
		if len(vals) > 1 {
			return cfg, fmt.Errorf("mail: SMTP URL option %q given more than once", key)
		}
		val := vals[0]
		switch key {
		case "from":
			cfg.From = val
		case "starttls":
			switch strings.ToLower(val) {
			case "opportunistic":
				if cfg.TLS == TLSImplicit {
					return cfg, errors.New("mail: starttls does not apply to smtps:// (TLS is implicit)")
				}
			case "required":
				if cfg.TLS == TLSImplicit {
					return cfg, errors.New("mail: starttls does not apply to smtps:// (TLS is implicit)")
				}
				cfg.TLS = TLSRequired
			default:
				return cfg, fmt.Errorf("mail: invalid starttls=%q (want required or opportunistic)", val)
			}
		case "insecure_skip_verify":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return cfg, fmt.Errorf("mail: invalid insecure_skip_verify=%q (want true or false)", val)
			}
			cfg.InsecureSkipVerify = b
		case "helo":
			if !validHeloName(val) {
				return cfg, fmt.Errorf("mail: invalid helo=%q (want a host name or address literal)", val)
			}
			cfg.HeloName = val
		case "timeout":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return cfg, fmt.Errorf("mail: invalid timeout=%q (want a positive duration such as 30s)", val)
			}
			cfg.Timeout = d
		default:
			return cfg, fmt.Errorf("mail: unknown SMTP URL option %q (known: from, starttls, insecure_skip_verify, helo, timeout)", key)
		}
	}

	if cfg.From == "" {
		return cfg, errors.New("mail: SMTP URL needs a from= option, e.g. ?from=Consentgraph%20<noreply@example.org>")
	}
	if _, err := parseAddress(cfg.From); err != nil {
		return cfg, fmt.Errorf("mail: invalid from=: %w", err)
	}
	return cfg, nil
}

// validate checks a Config built in code as thoroughly as ParseURL does.
func (c Config) validate() (*netmail.Address, error) {
	if c.Host == "" {
		return nil, errors.New("no SMTP host configured")
	}
	if c.Port < 1 || c.Port > 65535 {
		return nil, fmt.Errorf("invalid SMTP port %d", c.Port)
	}
	switch c.TLS {
	case "", TLSOpportunistic, TLSRequired, TLSImplicit:
	default:
		return nil, fmt.Errorf("invalid TLS mode %q", c.TLS)
	}
	if c.HeloName != "" && !validHeloName(c.HeloName) {
		return nil, fmt.Errorf("invalid HELO name %q", c.HeloName)
	}
	from, err := parseAddress(c.From)
	if err != nil {
		return nil, fmt.Errorf("invalid from address: %w", err)
	}
	return from, nil
}

// validHeloName accepts a domain name or an address literal ("[192.0.2.1]",
// "[IPv6:2001:db8::1]").
func validHeloName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		lit := strings.TrimPrefix(s[1:len(s)-1], "IPv6:")
		return net.ParseIP(lit) != nil
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
	}
	return true
}
