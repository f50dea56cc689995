package telemetry

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
)

// SpanRelayPublish is the name of the span of one batch published through
// a publisher wrapped with [NewPublisher]: from the first PublishAsync
// after a Flush to the next Flush.
const SpanRelayPublish = "chronicle.relay.publish"

// SpanBusHandle is the name of the span of one message handled by a bus
// handler wrapped with [NewBusHandler].
const SpanBusHandle = "chronicle.bus.handle"

// Metric names of the bus decorators.
const (
	// MetricRelayPublished counts the messages a publisher wrapped with
	// [NewPublisher] queued and the broker then acknowledged (by a
	// successful Flush) (counter).
	MetricRelayPublished = "chronicle.relay.published"
	// MetricRelayFlushDuration is the time a wrapped publisher's Flush
	// takes, waiting for the broker's acknowledgements, in seconds
	// (histogram; attribute outcome: "ok" or "error").
	MetricRelayFlushDuration = "chronicle.relay.flush.duration"
	// MetricRelayFailures counts the failures of a wrapped publisher
	// (counter; attribute operation: "publish" for a PublishAsync refused,
	// "flush" for a failed Flush).
	MetricRelayFailures = "chronicle.relay.failures"
	// MetricBusHandled counts the messages handled by a bus handler
	// wrapped with [NewBusHandler] (counter; attributes group, outcome:
	// "ok", "error" (retried) or "permanent" (dead-lettered at once)).
	MetricBusHandled = "chronicle.bus.handled"
	// MetricBusHandleDuration is the time a wrapped bus handler takes per
	// message, in seconds (histogram; attributes group, outcome).
	MetricBusHandleDuration = "chronicle.bus.handle.duration"
)

// Attribute keys of the bus decorators.
const (
	// AttrMessages is the number of messages of a publish span.
	AttrMessages = attribute.Key("chronicle.messages")
	// AttrBytes is the payload bytes of the messages of a publish span.
	AttrBytes = attribute.Key("chronicle.bytes")
	// AttrGroup is the consumer group of a handled message.
	AttrGroup = attribute.Key("chronicle.group")
)

// maxPublishLinks bounds the links of a publish span to the traces of its
// messages.
const maxPublishLinks = 128

// Publisher is an [eventbus.AsyncPublisher] that traces and measures the
// one it wraps. Create it with [NewPublisher].
type Publisher struct {
	next      eventbus.AsyncPublisher
	tracer    trace.Tracer
	prop      propagation.TextMapPropagator
	duration  metric.Float64Histogram
	published metric.Int64Counter
	failures  metric.Int64Counter

	mu    sync.Mutex
	batch *publishBatch // nil when nothing was queued since the last Flush
}

// publishBatch is what was queued since the last Flush.
type publishBatch struct {
	o        op
	messages int64
	bytes    int64
}

var _ eventbus.AsyncPublisher = (*Publisher)(nil)

// NewPublisher returns an [eventbus.AsyncPublisher] that publishes through
// next, for an [eventbus.Relay]. The messages queued from a Flush to the
// next form one span named [SpanRelayPublish] (a producer span, child of
// the span in the ctx of the first PublishAsync, linked to the traces of
// its messages' events; attributes [AttrMessages] and [AttrBytes] count
// what was queued), whose status is an error when the Flush fails. It
// records [MetricRelayPublished], [MetricRelayFlushDuration] and
// [MetricRelayFailures].
//
// Messages pass through unchanged: the trace context that a [Store] wrote
// into an event's metadata headers travels with the message to the
// consumers, where [NewBusHandler] continues it. A nil cfg means the
// defaults.
func NewPublisher(next eventbus.AsyncPublisher, cfg *Config) (*Publisher, error) {
	if next == nil {
		return nil, &eventstore.ValidationError{Field: "publisher", Reason: "must not be nil"}
	}
	c := cfg.withDefaults()
	meter := c.MeterProvider.Meter(ScopeName)
	p := &Publisher{next: next, tracer: c.TracerProvider.Tracer(ScopeName), prop: c.Propagator}
	var errs [3]error
	p.duration, errs[0] = newDuration(meter, MetricRelayFlushDuration, "Time a relay's publisher takes to flush, waiting for the broker's acknowledgements.")
	p.published, errs[1] = meter.Int64Counter(MetricRelayPublished, metric.WithUnit("{message}"),
		metric.WithDescription("Messages published by a relay and acknowledged by the broker."))
	p.failures, errs[2] = meter.Int64Counter(MetricRelayFailures, metric.WithUnit("{failure}"),
		metric.WithDescription("Publications refused and flushes failed of a relay's publisher."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return p, nil
}

// PublishAsync queues m with the wrapped publisher, in the current batch's
// span (started by the first PublishAsync after a Flush).
func (p *Publisher) PublishAsync(ctx context.Context, m eventbus.Message) error {
	p.mu.Lock()
	if p.batch == nil {
		_, o := startOp(ctx, p.tracer, SpanRelayPublish, "", trace.SpanKindProducer)
		p.batch = &publishBatch{o: o}
	}
	b := p.batch
	p.mu.Unlock()

	err := p.next.PublishAsync(ctx, m)
	if err != nil {
		if ctx.Err() == nil {
			p.failures.Add(ctx, 1, metric.WithAttributes(AttrOperation.String("publish")))
		}
		b.o.span.AddEvent("publish refused", trace.WithAttributes(AttrEventID.String(m.EventID.String()),
			attribute.String("exception.message", err.Error())))
		return err
	}
	p.mu.Lock()
	b.messages++
	b.bytes += int64(len(m.Data))
	n := b.messages
	p.mu.Unlock()
	if n <= maxPublishLinks && len(m.Metadata.Headers) > 0 {
		if sc := trace.SpanContextFromContext(p.prop.Extract(context.Background(), headerCarrier(m.Metadata.Headers))); sc.IsValid() {
			b.o.span.AddLink(trace.Link{SpanContext: sc})
		}
	}
	return nil
}

// Flush flushes the wrapped publisher and ends the batch's span, with an
// error status when the Flush fails.
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	b := p.batch
	p.batch = nil
	p.mu.Unlock()

	start := time.Now()
	err := p.next.Flush(ctx)
	oc := "ok"
	if err != nil {
		oc = "error"
		p.failures.Add(ctx, 1, metric.WithAttributes(AttrOperation.String("flush")))
	}
	if b == nil {
		p.duration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(AttrOutcome.String(oc)))
		return err
	}
	defer b.o.span.End()
	p.mu.Lock()
	messages, bytes := b.messages, b.bytes
	p.mu.Unlock()
	b.o.span.SetAttributes(AttrMessages.Int64(messages), AttrBytes.Int64(bytes))
	b.o.start = start // the histogram measures the Flush; the span the batch
	b.o.finish(ctx, p.duration, oc, err, true)
	if err == nil && messages > 0 {
		p.published.Add(ctx, messages)
	}
	return err
}

// busHandler traces and measures a bus consumer's handler.
type busHandler struct {
	next     eventbus.Handler
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	duration metric.Float64Histogram
	handled  metric.Int64Counter
}

// NewBusHandler returns an [eventbus.Handler] that handles each message
// with next in a span named [SpanBusHandle] (a consumer span) and counts
// it ([MetricBusHandled], [MetricBusHandleDuration]). As with
// [NewHandler], the span's parent is the trace context found in the
// message's metadata headers, written by a [Store] on append and carried
// by the relay: the command that appended the event and the consumers
// reacting to it form one trace. A message without one gets a child of
// the span in ctx. A failure sets the span's error status.
//
// The wrapper tells next's event types (Types, as an [eventbus.Handlers]
// does, for [eventbus.Consumer]'s default) and registration mistakes
// (Err). A nil cfg means the defaults.
func NewBusHandler(next eventbus.Handler, cfg *Config) (eventbus.Handler, error) {
	if next == nil {
		return nil, &eventstore.ValidationError{Field: "handler", Reason: "must not be nil"}
	}
	if v, ok := next.(interface{ Err() error }); ok {
		if err := v.Err(); err != nil {
			return nil, &eventstore.ValidationError{Field: "handler", Reason: err.Error()}
		}
	}
	c := cfg.withDefaults()
	meter := c.MeterProvider.Meter(ScopeName)
	h := &busHandler{next: next, tracer: c.TracerProvider.Tracer(ScopeName), prop: c.Propagator}
	var errs [2]error
	h.duration, errs[0] = newDuration(meter, MetricBusHandleDuration, "Time bus handlers take per message.")
	h.handled, errs[1] = meter.Int64Counter(MetricBusHandled, metric.WithUnit("{message}"),
		metric.WithDescription("Messages handled by bus consumers, by outcome."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return h, nil
}

// Handle handles d with the wrapped handler, in a span continuing the
// trace of d's event.
func (h *busHandler) Handle(ctx context.Context, d eventbus.Delivery) error {
	if len(d.Metadata.Headers) > 0 {
		ctx = h.prop.Extract(ctx, headerCarrier(d.Metadata.Headers))
	}
	ctx, o := startOp(ctx, h.tracer, SpanBusHandle, "", trace.SpanKindConsumer,
		AttrGroup.String(d.Group), AttrAttempt.Int(d.Attempt),
		AttrEventID.String(d.EventID.String()), AttrEventType.String(d.Type), AttrStreamID.String(d.StreamID),
		AttrStreamVersion.Int64(d.StreamVersion), AttrPosition.String(d.Position.String()))
	defer o.span.End()
	err := h.next.Handle(ctx, d)
	oc := "ok"
	switch {
	case err == nil:
	case eventbus.IsPermanent(err):
		oc = "permanent"
	default:
		oc = "error"
	}
	o.finish(ctx, h.duration, oc, err, true, AttrGroup.String(d.Group))
	h.handled.Add(ctx, 1, metric.WithAttributes(AttrGroup.String(d.Group), AttrOutcome.String(oc)))
	return err
}

// Types returns the event types of the wrapped handler when it tells
// them, nil (every type) otherwise.
func (h *busHandler) Types() []string {
	if v, ok := h.next.(interface{ Types() []string }); ok {
		return v.Types()
	}
	return nil
}

// Err reports the wrapped handler's registration mistakes, if it can.
func (h *busHandler) Err() error {
	if v, ok := h.next.(interface{ Err() error }); ok {
		return v.Err()
	}
	return nil
}
