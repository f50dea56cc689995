// Package chronicle is an event-sourcing persistence framework for Go on
// PostgreSQL.
//
// Chronicle stores every change to your domain as an immutable event in an
// append-only stream, rebuilds state by replaying those events, and keeps
// read models up to date by tailing one global, gap-free order of events.
// This root package holds no code; the framework is in its subpackages:
//
//   - [github.com/chronicle-go/chronicle/eventstore]: the core types (events,
//     streams, expected versions, positions), the Store interface, the typed
//     errors and the event type registry with upcasting.
//   - [github.com/chronicle-go/chronicle/memory]: the in-memory event,
//     snapshot and projection stores, the embedded default for tests and
//     single-process programs.
//   - [github.com/chronicle-go/chronicle/postgres]: the PostgreSQL store,
//     with optimistic concurrency on (stream, version), gap-safe global order
//     and appends inside your own transaction.
//   - [github.com/chronicle-go/chronicle/aggregate]: an embeddable aggregate
//     base type and a generic repository with retries and time travel.
//   - [github.com/chronicle-go/chronicle/snapshot]: snapshots for long streams.
//   - [github.com/chronicle-go/chronicle/projection]: the projection runner that
//     builds read models with checkpoints, retries and dead letters.
//   - [github.com/chronicle-go/chronicle/migrations]: the embedded SQL schema
//     and the Go API that applies it; `chronicle migrate` wraps it.
//
// Start with docs/getting-started.md in the repository, or run the example
// service with `go run ./examples/bank`.
package chronicle
