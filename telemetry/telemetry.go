package telemetry

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/chronicle-go/chronicle/eventstore"
)

// ScopeName is the instrumentation scope of Chronicle's tracer and meter.
const ScopeName = "github.com/chronicle-go/chronicle/telemetry"

// Config configures the decorators of this package. The zero value (or a
// nil *Config) gives the defaults: the global providers of package otel
// and the W3C trace context propagator.
type Config struct {
	// TracerProvider creates the tracer of the spans. Defaults to
	// [otel.GetTracerProvider].
	TracerProvider trace.TracerProvider

	// MeterProvider creates the meter of the metrics. Defaults to
	// [otel.GetMeterProvider].
	MeterProvider metric.MeterProvider

	// Propagator writes the trace context into the metadata headers of
	// appended events and reads it back for handlers. Defaults to
	// [propagation.TraceContext]: the W3C headers "traceparent" and
	// "tracestate". (The global propagator of package otel is not the
	// default: it propagates nothing until the application sets it.)
	Propagator propagation.TextMapPropagator
}

func (cfg *Config) withDefaults() Config {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	if c.Propagator == nil {
		c.Propagator = propagation.TraceContext{}
	}
	return c
}

// Attribute keys of the spans and metrics.
const (
	// AttrOperation is the store operation of a metric point: "append",
	// "append_streams", "read_stream", "read_stream_payloads", "read_all",
	// "stream_version", "head" or "list_streams".
	AttrOperation = attribute.Key("chronicle.operation")
	// AttrOutcome is how an operation ended: "ok", "conflict" (including a
	// transaction conflict), "duplicate", "invalid", "not_found",
	// "unknown" (the connection broke during an append, which may have
	// been committed), "canceled" or "error".
	AttrOutcome = attribute.Key("chronicle.outcome")
	// AttrStreamID is the stream of a span (never of a metric: unbounded).
	AttrStreamID = attribute.Key("chronicle.stream.id")
	// AttrStreams is the number of streams of an AppendStreams span.
	AttrStreams = attribute.Key("chronicle.streams")
	// AttrEvents is the number of events appended or read by a span.
	AttrEvents = attribute.Key("chronicle.events")
	// AttrExpectedVersion is an append's expected version, as
	// [eventstore.ExpectedVersion.String] writes it.
	AttrExpectedVersion = attribute.Key("chronicle.expected_version")
	// AttrStreamVersion is a stream version: the version after an append,
	// or the handled event's.
	AttrStreamVersion = attribute.Key("chronicle.stream.version")
	// AttrPosition is a global position, as "transaction/global": of a
	// read, an append, a handled event, or the last event of a batch.
	AttrPosition = attribute.Key("chronicle.position")
	// AttrFromPosition is the checkpoint a projection batch starts after.
	AttrFromPosition = attribute.Key("chronicle.from_position")
	// AttrEventID is the handled event's ID.
	AttrEventID = attribute.Key("chronicle.event.id")
	// AttrEventType is the handled event's type name.
	AttrEventType = attribute.Key("chronicle.event.type")
	// AttrProjection is a projection's name.
	AttrProjection = attribute.Key("chronicle.projection")
	// AttrPartition is a projection's partition.
	AttrPartition = attribute.Key("chronicle.partition")
	// AttrAttempt is the delivery attempt of a handled event.
	AttrAttempt = attribute.Key("chronicle.attempt")
)

// durationBuckets are the histogram boundaries of the latencies, in
// seconds: from half a millisecond to ten seconds.
var durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// outcome classifies err for [AttrOutcome].
func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, eventstore.ErrOutcomeUnknown):
		return "unknown"
	case errors.Is(err, eventstore.ErrConcurrencyConflict):
		return "conflict"
	case errors.Is(err, eventstore.ErrDuplicateEvent):
		return "duplicate"
	case errors.Is(err, eventstore.ErrStreamNotFound):
		return "not_found"
	case errors.Is(err, eventstore.ErrInvalidInput), errors.Is(err, eventstore.ErrEventTooLarge),
		errors.Is(err, eventstore.ErrUnknownEventType):
		return "invalid"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "error"
	}
}

// headerCarrier adapts event metadata headers to the propagators.
type headerCarrier map[string]string

func (c headerCarrier) Get(key string) string { return c[key] }
func (c headerCarrier) Set(key, value string) { c[key] = value }
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

var _ propagation.TextMapCarrier = headerCarrier(nil)

// ContextFromMetadata returns ctx carrying the trace context that md's
// headers hold (written on append by a [Store]), read with the propagator
// of cfg. A handler, relay or consumer that starts its span from it
// continues the trace of the command that appended the event. Without a
// trace context in md, ctx is returned as it is.
func ContextFromMetadata(ctx context.Context, md eventstore.Metadata, cfg *Config) context.Context {
	if len(md.Headers) == 0 {
		return ctx
	}
	c := cfg.withDefaults()
	return c.Propagator.Extract(ctx, headerCarrier(md.Headers))
}

// InjectMetadata returns md with the trace context of ctx written into a
// copy of its headers, with the propagator of cfg; md's own headers map is
// not modified. A [Store] does it on every append; call it yourself for
// appends that bypass it, such as postgres.Store.AppendTx inside your
// transaction. Without a trace context in ctx, md is returned as it is.
func InjectMetadata(ctx context.Context, md eventstore.Metadata, cfg *Config) eventstore.Metadata {
	c := cfg.withDefaults()
	return injectMetadata(ctx, c.Propagator, md)
}

func injectMetadata(ctx context.Context, prop propagation.TextMapPropagator, md eventstore.Metadata) eventstore.Metadata {
	carrier := headerCarrier{}
	prop.Inject(ctx, carrier)
	if len(carrier) == 0 {
		return md
	}
	headers := make(map[string]string, len(md.Headers)+len(carrier))
	for k, v := range md.Headers {
		headers[k] = v
	}
	for k, v := range carrier {
		headers[k] = v
	}
	md.Headers = headers
	return md
}
