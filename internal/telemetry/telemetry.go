// Package telemetry sets up OpenTelemetry tracing: a tracer provider that
// exports with OTLP/HTTP when the standard OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set and is a no-op otherwise, and
// the instrumentation the server installs: a GraphQL extension (operation
// and resolver spans), store round-trip spans for both adapters, an HTTP
// middleware and a log/slog handler that stamps trace ids on log records.
//
// No span attribute may carry personal data: only operation names and
// types, field paths with list indexes collapsed, processor names, store
// command names and status or error codes. Query text, variables,
// arguments and error messages never become attributes.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of every span the server makes.
const ScopeName = "github.com/consentgraph/consentgraph"

// DefaultServiceName is service.name when OTEL_SERVICE_NAME is unset.
const DefaultServiceName = "consentgraph"

// Provider is the tracer provider of one server, and how to stop it.
type Provider struct {
	trace.TracerProvider
	// Exporting is true when spans leave the process (an OTLP endpoint is
	// configured, or a test injected a recording provider).
	Exporting bool
	shutdown  func(context.Context) error
}

// Shutdown flushes what is buffered and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.shutdown == nil {
		return nil
	}
	return p.shutdown(ctx)
}

// Tracer is the server's tracer from p (a no-op one for a nil p).
func (p *Provider) Tracer() trace.Tracer {
	if p == nil || p.TracerProvider == nil {
		return noop.NewTracerProvider().Tracer(ScopeName)
	}
	return p.TracerProvider.Tracer(ScopeName)
}

// Wrap uses an existing provider (a test's in-memory one): it records, and
// its owner shuts it down.
func Wrap(tp trace.TracerProvider) *Provider {
	if tp == nil {
		return &Provider{TracerProvider: noop.NewTracerProvider()}
	}
	_, isNoop := tp.(noop.TracerProvider)
	return &Provider{TracerProvider: tp, Exporting: !isNoop}
}

// Enabled reports whether getenv configures an OTLP trace export: an
// endpoint is set and neither OTEL_SDK_DISABLED nor OTEL_TRACES_EXPORTER
// (the standard switches) turns it off.
func Enabled(getenv func(string) string) bool {
	if getenv == nil {
		getenv = os.Getenv
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	if e := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); e != "" && !strings.EqualFold(e, "otlp") {
		return false // "none", or an exporter this build does not have
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup returns the provider the environment asks for: without an OTLP
// endpoint a no-op provider (no exporter, no batching goroutine, spans cost
// an interface call); with one, an SDK provider batching to an OTLP/HTTP
// exporter. The exporter reads the rest of the standard OTEL_EXPORTER_OTLP_*
// variables (headers, timeout, compression, certificates) itself, and the
// SDK reads OTEL_TRACES_SAMPLER and OTEL_BSP_*. Only http/protobuf is
// built in: a grpc OTEL_EXPORTER_OTLP_PROTOCOL is refused so that a
// misconfiguration is seen at start-up, not as silently missing traces.
func Setup(ctx context.Context, getenv func(string) string) (*Provider, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if !Enabled(getenv) {
		return &Provider{TracerProvider: noop.NewTracerProvider()}, nil
	}
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if proto != "" && proto != "http/protobuf" {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: this server exports traces with http/protobuf only", proto)
	}
	var opts []otlptracehttp.Option
	// The exporter reads the endpoint from the process environment; these
	// make the environment Setup was given win (config.Config.Getenv).
	if u := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); u != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(u))
	} else if u := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); u != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimRight(u, "/")+"/v1/traces"))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	res, err := serviceResource(ctx, getenv)
	if err != nil {
		return nil, errors.Join(err, exp.Shutdown(ctx))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Provider{TracerProvider: tp, Exporting: true, shutdown: tp.Shutdown}, nil
}

// serviceResource names the service: OTEL_SERVICE_NAME, else
// OTEL_RESOURCE_ATTRIBUTES' service.name, else "consentgraph".
func serviceResource(ctx context.Context, getenv func(string) string) (*resource.Resource, error) {
	fromEnv, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("otel resource: %w", err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		if v, ok := fromEnv.Set().Value("service.name"); ok && v.AsString() != "" {
			name = v.AsString()
		} else {
			name = DefaultServiceName
		}
	}
	// Merge keeps the second's values: the name chosen above wins over the
	// SDK's "unknown_service" default.
	return resource.Merge(fromEnv, resource.NewSchemaless(attribute.String("service.name", name)))
}

// propagator reads a caller's W3C traceparent, so a request joins the
// trace of the frontend or gateway that sent it. Baggage is not read: it is
// free text a client could fill with anything.
var propagator = propagation.TraceContext{}
