package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
)

// SpanHandle is the name of the span of one event handled by a handler
// wrapped with [NewHandler].
const SpanHandle = "chronicle.projection.handle"

// MetricHandleDuration is the time handlers wrapped with [NewHandler] take
// per event, in seconds (histogram; attributes projection, outcome: "ok"
// or "error").
const MetricHandleDuration = "chronicle.projection.handle.duration"

// handler traces and measures a projection handler.
type handler struct {
	next     projection.Handler
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	duration metric.Float64Histogram
}

// resettingHandler is a handler whose wrapped handler is a
// [projection.Resetter].
type resettingHandler struct{ *handler }

// NewHandler returns a [projection.Handler] that handles each event with
// next in a span named [SpanHandle] and measures it
// ([MetricHandleDuration]). The span's parent is the trace context found
// in the event's metadata headers (written by a [Store] on append), so
// that the append and every handler reacting to the event form one trace;
// an event without one gets a child of the span in ctx. Events that next
// appends with the handler's ctx through a [Store] carry the handler
// span's context in turn: the causation chain stays one trace.
//
// The wrapper is a [projection.Resetter] exactly when next is one, and
// reports next's registration mistakes (a [*projection.Handlers]' Err)
// both here and to [projection.Runner.Add]. A nil cfg means the defaults.
//
// The span covers one handler call. To trace the runner's batches (the
// handlers, the transaction and the checkpoint's commit) too, set a
// [BatchObserver] as the runner's Observer.
func NewHandler(next projection.Handler, cfg *Config) (projection.Handler, error) {
	if next == nil {
		return nil, &eventstore.ValidationError{Field: "handler", Reason: "must not be nil"}
	}
	if v, ok := next.(interface{ Err() error }); ok {
		if err := v.Err(); err != nil {
			return nil, &eventstore.ValidationError{Field: "handler", Reason: err.Error()}
		}
	}
	c := cfg.withDefaults()
	duration, err := newDuration(c.MeterProvider.Meter(ScopeName), MetricHandleDuration, "Time projection handlers take per event.")
	if err != nil {
		return nil, err
	}
	h := &handler{next: next, tracer: c.TracerProvider.Tracer(ScopeName), prop: c.Propagator, duration: duration}
	if _, ok := next.(projection.Resetter); ok {
		return resettingHandler{h}, nil
	}
	return h, nil
}

// Handle handles ev with the wrapped handler, in a span.
func (h *handler) Handle(ctx context.Context, ev projection.Event) error {
	if len(ev.Metadata.Headers) > 0 {
		ctx = h.prop.Extract(ctx, headerCarrier(ev.Metadata.Headers))
	}
	ctx, o := startOp(ctx, h.tracer, SpanHandle, "", trace.SpanKindConsumer,
		AttrProjection.String(ev.Projection), AttrPartition.Int(ev.Partition), AttrAttempt.Int(ev.Attempt),
		AttrEventID.String(ev.EventID.String()), AttrEventType.String(ev.Type), AttrStreamID.String(ev.StreamID),
		AttrStreamVersion.Int64(ev.StreamVersion), AttrPosition.String(ev.Position.String()))
	defer o.span.End()
	err := h.next.Handle(ctx, ev)
	oc := "ok"
	if err != nil {
		oc = "error"
	}
	o.finish(ctx, h.duration, oc, err, true, AttrProjection.String(ev.Projection))
	return err
}

// Err reports the wrapped handler's registration mistakes, if it can.
func (h *handler) Err() error {
	if v, ok := h.next.(interface{ Err() error }); ok {
		return v.Err()
	}
	return nil
}

// Reset calls the wrapped handler's Reset.
func (h resettingHandler) Reset(ctx context.Context, partition int) error {
	return h.next.(projection.Resetter).Reset(ctx, partition)
}
