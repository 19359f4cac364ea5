// Package config reads the server configuration from flags and
// CONSENTGRAPH_* environment variables (a flag wins over its variable).
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Config is everything the server can be told.
type Config struct {
	Addr       string
	DataDir    string
	MongoDBURI string
	Database   string
	Dev        bool
	ConfigFile string
	// Getenv reads the environment Load was given; processor settings
	// take ${NAME} from it at start-up (nil: os.Getenv).
	Getenv func(string) string
	// Tracing, if set, is the tracer provider to use instead of the one
	// the OTEL_* environment configures (tests record spans in memory).
	Tracing trace.TracerProvider

	CORSOrigins []string
	// CORSHeaders are request headers browser apps may send besides
	// Authorization, Content-Type and Accept (e.g. apollographql-client-name).
	CORSHeaders []string

	// SMTPURL is where mail goes (smtp://user:pass@host:587?from=...).
	SMTPURL string
	// PublicURL is how users reach this server, for links in mail.
	PublicURL string

	AdminUsername string
	AdminPassword string

	// MasterKey is base64 of 32 bytes; empty means a key file in DataDir.
	MasterKey          string
	PreviousMasterKeys []string

	SessionTTL time.Duration
	// PasswordResetTTL is how long a mailed password reset token works.
	PasswordResetTTL time.Duration
	MaxBodyBytes     int64
	// MaxComplexity is the largest cost one request may have (graph/cost.go);
	// MaxFields the most fields a query document may hold, counted while
	// parsing, before validation.
	MaxComplexity  int
	MaxFields      int
	MaxDepth       int
	RequestTimeout time.Duration

	Argon2MemoryKiB   uint32
	Argon2Iterations  uint32
	Argon2Parallelism uint8
	Argon2Concurrency int

	// DemographicsK is the floor of the threshold a demographics group's
	// noisy count must reach to be released to partners; never below 2.
	DemographicsK int
	// DemographicsDelta is the δ of one differentially private report: the
	// probability bound for showing a group that exists because of one person.
	DemographicsDelta float64
	// DemographicsMaxEpsilon caps the epsilon a partner may spend on one report.
	DemographicsMaxEpsilon float64
	// DemographicsReconcileInterval is how often the demographic aggregates
	// are recounted from the users and repaired.
	DemographicsReconcileInterval time.Duration
	// OutboxPoll is how often this replica's outbox dispatcher looks for due
	// work; negative runs no dispatcher here (tests drive their own).
	OutboxPoll time.Duration

	// TLSCert and TLSKey are PEM files; with them the server speaks only HTTPS.
	TLSCert string
	TLSKey  string
	// DevTLS serves HTTPS with a self-signed certificate made at start-up.
	DevTLS bool
	// RateLimits turns the abuse limits on (the default); see internal/ratelimit.
	RateLimits bool
	// TrustedProxies are the load balancers whose X-Forwarded-For is
	// believed: the client address is the rightmost hop not in this list.
	TrustedProxies []string
	// MutationsPerMinute is the rate of mutations one IP and one account may
	// send; AuthPerMinute that of register and login per IP; PartnerPerMinute
	// that of requests per partner key.
	MutationsPerMinute int
	AuthPerMinute      int
	PartnerPerMinute   int
	// CostPerMinute is the cost (graph/cost.go) of the requests one account
	// or one partner key may send per minute, AnonymousCostPerMinute that of
	// anonymous requests per IP; ExpensiveReadsPerMinute is how many exports,
	// ledger checks and long history pages one account may read per minute.
	CostPerMinute           int
	AnonymousCostPerMinute  int
	ExpensiveReadsPerMinute int
	// RateLimitSync is how often a replica adds what it admitted to the
	// counters all replicas share, and learns their totals.
	RateLimitSync time.Duration

	// MetricsToken, when set, is the bearer token /metrics requires; when
	// empty /metrics answers only loopback clients.
	MetricsToken string

	LogLevel  string
	LogFormat string
}

// Option describes one setting, for the usage text and the README table.
type Option struct {
	Flag, Env, Default, Usage string
}

// EnvName derives a setting's environment variable from its flag name.
func EnvName(flagName string) string {
	return "CONSENTGRAPH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Load parses args (without the program name) and the environment.
func Load(args []string, getenv func(string) string, usageOut io.Writer) (Config, error) {
	c := Config{Getenv: getenv}
	fs := flag.NewFlagSet("consentgraph", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	fs.Usage = func() {
		fmt.Fprintln(usageOut, "server flags (each also read from the environment variable named with it; a flag wins):")
		fs.PrintDefaults()
	}
	var problems []error
	env := func(name, def string) string {
		if v := getenv(EnvName(name)); v != "" {
			return v
		}
		return def
	}
	str := func(p *string, name, def, usage string) {
		fs.StringVar(p, name, env(name, def), usage+" (env "+EnvName(name)+")")
	}
	num := func(name string, def int, usage string) *int {
		v := env(name, strconv.Itoa(def))
		n, err := strconv.Atoi(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %q is not a whole number", EnvName(name), v))
		}
		return fs.Int(name, n, usage+" (env "+EnvName(name)+")")
	}
	dur := func(p *time.Duration, name string, def time.Duration, usage string) {
		v := env(name, def.String())
		d, err := time.ParseDuration(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %q is not a duration like 30s or 24h", EnvName(name), v))
		}
		fs.DurationVar(p, name, d, usage+" (env "+EnvName(name)+")")
	}
	float := func(p *float64, name string, def float64, usage string) {
		v := env(name, strconv.FormatFloat(def, 'g', -1, 64))
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %q is not a number", EnvName(name), v))
		}
		fs.Float64Var(p, name, f, usage+" (env "+EnvName(name)+")")
	}
	str(&c.Addr, "addr", "127.0.0.1:8080", "address to listen on")
	str(&c.DataDir, "data-dir", "data", "directory of the embedded store and generated keys")
	str(&c.MongoDBURI, "mongodb-uri", "", "MongoDB connection string; empty starts the embedded store")
	str(&c.Database, "database", "consentgraph", "database name")
	str(&c.ConfigFile, "config", "", "YAML file with purposes, processors and policy")
	devDefault := env("dev", "false")
	dev, err := strconv.ParseBool(devDefault)
	if err != nil {
		problems = append(problems, fmt.Errorf("%s: %q is not true or false", EnvName("dev"), devDefault))
	}
	fs.BoolVar(&c.Dev, "dev", dev, "development mode: introspection and field suggestions on (env "+EnvName("dev")+")")
	var cors, corsHeaders, prevKeys string
	str(&cors, "cors-origins", "", "comma-separated origins allowed to call the API from a browser")
	str(&corsHeaders, "cors-headers", "", "comma-separated request headers browser apps may send besides Authorization, Content-Type and Accept")
	str(&c.PublicURL, "public-url", "", "URL users reach the server at, for links in mail (default http://ADDR, with 127.0.0.1 for an address on every interface)")
	str(&c.AdminUsername, "admin-username", "", "username of the admin account created at start-up")
	// Secrets come only from the environment: flags are visible in ps.
	c.AdminPassword = getenv(EnvName("admin-password"))
	c.MasterKey = getenv(EnvName("master-key"))
	c.SMTPURL = getenv(EnvName("smtp-url")) // may hold a password
	c.MetricsToken = getenv(EnvName("metrics-token"))
	prevKeys = getenv(EnvName("previous-master-keys"))
	dur(&c.SessionTTL, "session-ttl", 7*24*time.Hour, "how long a session lasts")
	dur(&c.PasswordResetTTL, "password-reset-ttl", 30*time.Minute, "how long a mailed password reset token works")
	maxBody := num("max-body-bytes", 64<<10, "largest accepted request body in bytes")
	maxComplexity := num("max-complexity", 5000, "largest accepted cost of one request (the Privacy Center's page costs about 2500)")
	maxFields := num("max-fields", 500, "most fields (aliases and fragment fields included) in one query document, checked before validation")
	maxDepth := num("max-depth", 12, "deepest accepted query nesting")
	dur(&c.RequestTimeout, "request-timeout", 15*time.Second, "time limit for one request")
	mem := num("argon2-memory-kib", 19*1024, "argon2id memory per hash in KiB (OWASP minimum 19456)")
	iter := num("argon2-iterations", 2, "argon2id passes (minimum 2)")
	par := num("argon2-parallelism", 1, "argon2id lanes")
	conc := num("argon2-concurrency", runtime.NumCPU(), "password hashes computed at once; bounds memory under bursts")
	demoK := num("demographics-k", 10, "floor of the noisy count a demographics group needs to be shown to partners (at least 2)")
	float(&c.DemographicsDelta, "demographics-delta", 1e-9, "delta of one differentially private demographics report (above 0, at most 0.001)")
	float(&c.DemographicsMaxEpsilon, "demographics-max-epsilon", 1.0, "largest epsilon one demographics report may spend (0.01 to 10)")
	dur(&c.DemographicsReconcileInterval, "demographics-reconcile-interval", time.Hour, "how often demographic aggregates are recounted and repaired")
	dur(&c.OutboxPoll, "outbox-poll", time.Second, "how often the processor outbox is checked for due deliveries (negative: no dispatcher)")
	str(&c.TLSCert, "tls-cert", "", "PEM certificate chain; with --tls-key serves HTTPS only")
	str(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	boolFlag := func(p *bool, name string, def bool, usage string) {
		v := env(name, strconv.FormatBool(def))
		b, err := strconv.ParseBool(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %q is not true or false", EnvName(name), v))
		}
		fs.BoolVar(p, name, b, usage+" (env "+EnvName(name)+")")
	}
	boolFlag(&c.DevTLS, "dev-tls", false, "serve HTTPS with a generated self-signed certificate (local use only)")
	boolFlag(&c.RateLimits, "rate-limits", true, "enforce the per-IP, per-account and per-partner rate limits")
	var trusted string
	str(&trusted, "trusted-proxies", "", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client")
	mutRate := num("mutations-per-minute", 60, "mutations per minute per IP and per account")
	authRate := num("auth-per-minute", 20, "register and login calls per minute per IP")
	partnerRate := num("partner-requests-per-minute", 120, "requests per minute per partner key")
	costRate := num("cost-per-minute", 30000, "request cost per minute per account and per partner key")
	anonCostRate := num("anonymous-cost-per-minute", 20000, "cost of anonymous requests per minute per IP")
	readRate := num("expensive-reads-per-minute", 30, "exports, ledger checks, audit log pages and history or disclosure pages over 20 items per minute per account")
	dur(&c.RateLimitSync, "rate-limit-sync", time.Second, "how often replicas share their rate-limit counts through the store")
	str(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	c.CORSOrigins = splitList(cors)
	c.CORSHeaders = splitList(corsHeaders)
	for _, h := range c.CORSHeaders {
		if !validHeaderName(h) {
			problems = append(problems, fmt.Errorf("cors-headers: %q is not a header name", h))
		}
	}
	c.TrustedProxies = splitList(trusted)
	for _, cidr := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			problems = append(problems, fmt.Errorf("trusted-proxies: %q is not a CIDR like 10.0.0.0/8", cidr))
		}
	}
	if c.PublicURL == "" {
		scheme := "http://"
		if c.TLSCert != "" || c.DevTLS {
			scheme = "https://"
		}
		c.PublicURL = scheme + reachableAddr(c.Addr)
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	c.PreviousMasterKeys = splitList(prevKeys)
	c.MaxBodyBytes = int64(*maxBody)
	c.MaxComplexity, c.MaxFields, c.MaxDepth = *maxComplexity, *maxFields, *maxDepth
	c.CostPerMinute, c.AnonymousCostPerMinute, c.ExpensiveReadsPerMinute = *costRate, *anonCostRate, *readRate
	c.Argon2Concurrency = *conc
	c.DemographicsK = *demoK
	c.MutationsPerMinute, c.AuthPerMinute, c.PartnerPerMinute = *mutRate, *authRate, *partnerRate
	if *mem < 0 || *iter < 0 || *par < 1 || *par > 255 {
		problems = append(problems, errors.New("argon2 parameters out of range"))
	} else {
		c.Argon2MemoryKiB, c.Argon2Iterations, c.Argon2Parallelism = uint32(*mem), uint32(*iter), uint8(*par)
	}
	problems = append(problems, c.validate()...)
	return c, errors.Join(problems...)
}

func (c Config) validate() []error {
	var errs []error
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, errors.New("max-body-bytes must be at least 1024"))
	}
	if c.MaxComplexity < 10 || c.MaxDepth < 3 {
		errs = append(errs, errors.New("max-complexity must be at least 10 and max-depth at least 3"))
	}
	if c.MaxFields < 10 {
		errs = append(errs, errors.New("max-fields must be at least 10"))
	}
	if c.CostPerMinute < 1 || c.AnonymousCostPerMinute < 1 || c.ExpensiveReadsPerMinute < 1 {
		errs = append(errs, errors.New("cost-per-minute, anonymous-cost-per-minute and expensive-reads-per-minute must be at least 1"))
	}
	if c.SessionTTL < time.Minute {
		errs = append(errs, errors.New("session-ttl must be at least 1m"))
	}
	if c.PasswordResetTTL <= 0 || c.PasswordResetTTL > 24*time.Hour {
		errs = append(errs, errors.New("password-reset-ttl must be more than 0 and at most 24h"))
	}
	if c.DemographicsK < 2 {
		errs = append(errs, errors.New("demographics-k must be at least 2: a cell of one person is that person"))
	}
	if !(c.DemographicsDelta > 0 && c.DemographicsDelta <= 1e-3) {
		errs = append(errs, fmt.Errorf("demographics-delta %g: must be above 0 and at most 0.001 (it is the chance of exposing a group of one)", c.DemographicsDelta))
	}
	if !(c.DemographicsMaxEpsilon >= 0.01 && c.DemographicsMaxEpsilon <= 10) {
		errs = append(errs, fmt.Errorf("demographics-max-epsilon %g: must be between 0.01 and 10", c.DemographicsMaxEpsilon))
	}
	if c.DemographicsReconcileInterval < time.Minute {
		errs = append(errs, errors.New("demographics-reconcile-interval must be at least 1m"))
	}
	if (c.AdminUsername == "") != (c.AdminPassword == "") {
		errs = append(errs, errors.New("set both CONSENTGRAPH_ADMIN_USERNAME and CONSENTGRAPH_ADMIN_PASSWORD, or neither"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("set both tls-cert and tls-key, or neither"))
	}
	if c.DevTLS && c.TLSCert != "" {
		errs = append(errs, errors.New("dev-tls and tls-cert exclude each other"))
	}
	if c.MutationsPerMinute < 1 || c.AuthPerMinute < 1 || c.PartnerPerMinute < 1 {
		errs = append(errs, errors.New("mutations-per-minute, auth-per-minute and partner-requests-per-minute must be at least 1"))
	}
	if c.RateLimitSync < 10*time.Millisecond || c.RateLimitSync > time.Minute {
		errs = append(errs, errors.New("rate-limit-sync must be between 10ms and 1m"))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log-format %q: want text or json", c.LogFormat))
	}
	for _, o := range c.CORSOrigins {
		if err := checkOrigin(o); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// checkOrigin accepts only an exact origin, scheme://host[:port]: the
// origins are echoed with credentials allowed, so a pattern would hand any
// matching site a signed-in user's data.
func checkOrigin(o string) error {
	bad := func(why string) error {
		return fmt.Errorf("cors-origins: %q %s; list exact origins like https://app.example.com", o, why)
	}
	if strings.Contains(o, "*") {
		return bad("is a wildcard, which would let any matching site read signed-in users' data")
	}
	u, err := url.Parse(o)
	if err != nil {
		return bad("is not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("must start with http:// or https://")
	case u.Host == "" || u.Hostname() == "":
		return bad("has no host")
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "?"):
		return bad("is not an origin (no user, path, query or fragment)")
	case o != strings.ToLower(strings.TrimSuffix(o, "/")):
		return bad("must be lower case with no trailing slash, as browsers send it")
	}
	return nil
}

// validHeaderName reports whether h is an HTTP field name (RFC 9110 token).
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, r := range h {
		if r > 0x7e || r <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Logger returns the structured logger the configuration asks for
// (--log-level, --log-format), writing to w; every command uses it.
func (c Config) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// reachableAddr is addr with a host a browser can open: listening on every
// interface (":8080", "0.0.0.0:8080", "[::]:8080") names no host, and a link
// to "http://:8080" in a mail goes nowhere, so this machine's loopback
// stands in until --public-url says better.
func reachableAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if NoHost(host) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// NoHost reports whether host names no machine a browser can open: empty,
// or a wildcard address (0.0.0.0, ::) that means "every interface".
func NoHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}
