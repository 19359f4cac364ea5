package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// Without an OTLP endpoint there is no exporter and no SDK at all: the
// provider is the no-op one, and the server installs no instrumentation.
func TestNoEndpointNoExporter(t *testing.T) {
	for name, e := range map[string]map[string]string{
		"unset":          {"OTEL_SERVICE_NAME": "x"},
		"sdk disabled":   {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"},
		"exporter none":  {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"},
		"traces not set": {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:1"},
	} {
		p, err := Setup(context.Background(), env(e))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := p.TracerProvider.(noop.TracerProvider); !ok || p.Exporting {
			t.Errorf("%s: provider %T (exporting %v), want the no-op one", name, p.TracerProvider, p.Exporting)
		}
		if err := p.Shutdown(context.Background()); err != nil {
			t.Errorf("%s: shutdown: %v", name, err)
		}
	}
}

func TestEndpointMakesAnExporter(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		p, err := Setup(context.Background(), env(map[string]string{k: "http://127.0.0.1:1"}))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.TracerProvider.(*sdktrace.TracerProvider); !ok || !p.Exporting {
			t.Errorf("%s: provider %T, want the SDK's", k, p.TracerProvider)
		}
		_ = p.Shutdown(context.Background())
	}
	if _, err := Setup(context.Background(), env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})); err == nil {
		t.Error("grpc protocol accepted, but only http/protobuf is built in")
	}
}

// A record logged inside a span carries its trace and span ids; one
// outside carries none.
func TestLogHandlerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("component", "test")
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	log.InfoContext(ctx, "inside")
	span.End()
	log.Info("outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := "trace_id=" + span.SpanContext().TraceID().String() + " span_id=" + span.SpanContext().SpanID().String()
	if !strings.Contains(lines[0], want) {
		t.Errorf("inside a span: %q, want %q", lines[0], want)
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("outside a span: %q has a trace id", lines[1])
	}
}
