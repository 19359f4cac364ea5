package telemetry

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Store spans are made only inside a trace (a request, an outbox
// delivery): background polls would otherwise start a trace of their own
// for every tick of every job.

// inTrace reports whether ctx belongs to a sampled trace. It does not ask
// whether the span in ctx still records: that span may have ended (see
// GraphQL.InterceptField) while its trace goes on.
func inTrace(ctx context.Context) bool {
	sc := trace.SpanContextFromContext(ctx)
	return sc.IsValid() && sc.IsSampled()
}

// RoundTrip records one store round trip that began at start and ended
// now, as a child of the span in ctx. system is "sqlite" or "mongodb",
// command the adapter's name for it ("read", "write", "find" ...). The
// span is made after the fact: the embedded adapter learns of the
// outcome in a deferred call, and a span started that late with the real
// start time is the same span to a trace viewer.
func RoundTrip(ctx context.Context, tracer trace.Tracer, system, command string, start time.Time, err error) {
	if tracer == nil || !inTrace(ctx) {
		return
	}
	_, span := tracer.Start(ctx, system+" "+command, trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", system), attribute.String("db.operation.name", command)))
	endStore(span, err)
}

func endStore(span trace.Span, err error) {
	if err != nil {
		// The type only: a driver's message can quote a key value.
		t := ErrorType(err)
		span.SetAttributes(attribute.String("error.type", t))
		span.SetStatus(codes.Error, t)
	}
	span.End()
}

// ErrorType names an error for a span without its message, which may
// quote stored values.
func ErrorType(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	var coded interface{ HasErrorCode(int) bool }
	if errors.As(err, &coded) {
		return "server_error"
	}
	return "_OTHER"
}

// MongoMonitor makes a client span per MongoDB command, named after the
// command and its collection ("mongodb find users"). It is written here
// because go.opentelemetry.io/contrib's otelmongo for mongo-driver/v2 is
// not available to this build, and because it records the command
// document (db.query.text) unless told not to; this one never looks past
// the command's name and collection.
func MongoMonitor(tracer trace.Tracer) *event.CommandMonitor {
	var open sync.Map // driver request id -> trace.Span
	done := func(id int64, err error) {
		if s, ok := open.LoadAndDelete(id); ok {
			endStore(s.(trace.Span), err)
		}
	}
	return &event.CommandMonitor{
		Started: func(ctx context.Context, e *event.CommandStartedEvent) {
			if !inTrace(ctx) {
				return
			}
			attrs := []attribute.KeyValue{attribute.String("db.system.name", "mongodb"), attribute.String("db.operation.name", e.CommandName)}
			name := "mongodb " + e.CommandName
			// The first element of a command names its collection
			// ({find: "users", ...}); nothing else of it is read.
			if el, err := e.Command.IndexErr(0); err == nil && el.Key() == e.CommandName {
				if coll, ok := el.Value().StringValueOK(); ok {
					attrs = append(attrs, attribute.String("db.collection.name", coll))
					name += " " + coll
				}
			}
			_, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
			open.Store(e.RequestID, span)
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) { done(e.RequestID, nil) },
		Failed:    func(_ context.Context, e *event.CommandFailedEvent) { done(e.RequestID, e.Failure) },
	}
}
