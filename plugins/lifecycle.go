package plugins

import "context"

// Closer is implemented by processors that hold resources (connections,
// goroutines, buffers to flush). The core calls Close once at server
// shutdown, after the dispatcher stopped handing it work; ctx carries the
// shutdown deadline.
type Closer interface {
	Close(ctx context.Context) error
}

// HealthChecker is implemented by processors that can tell whether their
// provider is reachable and accepts their credentials (e.g. a ping
// endpoint). The core calls Health in the background (at start-up, then
// every minute, and when an admin asks for a fresh check) with a short
// deadline, and shows the cached result to admins as Processor.health; it
// never calls Health from a user's request. Return nil when healthy, or
// an error whose text tells an admin what is wrong (never personal data).
type HealthChecker interface {
	Health(ctx context.Context) error
}
