// Package telemetry traces and measures Chronicle with OpenTelemetry.
//
// It uses the OpenTelemetry API only (go.opentelemetry.io/otel, metric and
// trace): the application chooses the SDK and the exporters, and sets them
// in [Config] or as the global providers. Nothing else in Chronicle
// imports this package, so a program that does not use it does not link
// OpenTelemetry.
//
// # Decorators
//
// Telemetry wraps the core types instead of changing them:
//
//   - [NewStore] wraps an [eventstore.Store] (the PostgreSQL or the
//     in-memory store): a span per append and read, and the append and
//     read metrics (events, bytes, conflicts, latency). The aggregate
//     repository built on it gets spans for its loads and saves;
//     [Store.With] wraps a transaction view the same way.
//   - [NewSnapshotStore] wraps a [snapshot.Store]: a span per snapshot
//     save, load and delete, and [MetricSnapshotDuration].
//   - [NewHandler] wraps a [projection.Handler]: a span per handled event,
//     continuing the trace of the append that stored the event.
//   - [NewPublisher] wraps the [eventbus.AsyncPublisher] an
//     [eventbus.Relay] publishes through: a span per published batch
//     ([SpanRelayPublish], from the first message to the Flush) and
//     [MetricRelayPublished], [MetricRelayFlushDuration] and
//     [MetricRelayFailures]. Messages keep the trace context of their
//     events.
//   - [NewBusHandler] wraps an [eventbus.Handler] of a bus consumer: a
//     span per handled message ([SpanBusHandle]) continuing the trace of
//     the append, and [MetricBusHandled] by outcome.
//   - [NewBatchObserver] is a [projection.BatchObserver] for a runner's
//     Observer: a span per batch and [MetricBatchDuration] and
//     [MetricBatchEvents].
//   - [NewGauges] observes projections (lag in events and in time,
//     stopped and held partitions, dead letters) and the PostgreSQL
//     store's read horizon.
//   - [NewGroupCommitMetrics] records the size of each flush of the
//     PostgreSQL store's group commit, through the store's
//     Config.GroupObserver (the store does not import this package).
//
// # One trace from command to reaction
//
// A [Store] writes the trace context of each append's span into the
// metadata headers of the appended events ("traceparent" and
// "tracestate", W3C Trace Context, with the default propagator). A
// handler wrapped with [NewHandler] (or a bus consumer's handler wrapped
// with [NewBusHandler], the relay passing the headers on) starts its span
// as a child of that context, and an event it appends through a Store with its ctx carries
// the handler span's context in turn. The request that appended the first
// event, the projections and the reactions it caused are then one trace.
// [InjectMetadata] and [ContextFromMetadata] do the same by hand, for
// appends that bypass the Store (postgres.Store.AppendTx) and for readers
// of events other than projection handlers.
//
// # Metric names
//
// Store: [MetricAppendDuration], [MetricAppendEvents],
// [MetricAppendBytes], [MetricAppendConflicts], [MetricReadDuration],
// [MetricReadEvents]. Snapshot store: [MetricSnapshotDuration]. Handler:
// [MetricHandleDuration]. Relay publisher: [MetricRelayPublished],
// [MetricRelayFlushDuration], [MetricRelayFailures]. Bus handler:
// [MetricBusHandled], [MetricBusHandleDuration]. Batch observer: [MetricBatchDuration],
// [MetricBatchEvents]. Gauges:
// [MetricProjectionLagEvents], [MetricProjectionLagAge],
// [MetricProjectionStopped], [MetricProjectionHeld], [MetricDeadLetters],
// [MetricReadHorizonAge]. Group commit: [MetricGroupCommitAppends],
// [MetricGroupCommitEvents]. docs/operations.md says what to alert on.
//
// # Failures
//
// Telemetry never changes the result of an operation: a failing exporter
// or an SDK that is shut down loses spans and points, never events. Keep
// exporters off the append path: use the SDK's batching span processor
// (sdktrace.WithBatcher), not a synchronous one, in production.
package telemetry
