package telemetry

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/chronicle-go/chronicle/projection"
)

// SpanBatch is the name of the span of one batch a projection runner
// handles, through a [BatchObserver].
const SpanBatch = "chronicle.projection.batch"

// Metric names of a [BatchObserver].
const (
	// MetricBatchDuration is the time a runner takes per batch, from its
	// handling to its checkpoint's commit, in seconds (histogram;
	// attributes projection, outcome: "ok", "stopped", "lease_lost",
	// "canceled" or "error").
	MetricBatchDuration = "chronicle.projection.batch.duration"
	// MetricBatchEvents counts the events of the batches runners handled
	// (counter; attributes projection, outcome). Events of other
	// partitions, which a partition skips, count too.
	MetricBatchEvents = "chronicle.projection.batch.events"
)

// BatchObserver is a [projection.BatchObserver] that traces and measures
// the batches of projection runners: set it in [projection.Config]'s
// Observer. Each batch runs in a span named [SpanBatch] and feeds
// [MetricBatchDuration] and [MetricBatchEvents]. The handler spans of
// [NewHandler] inside it are its children, unless the event carries the
// trace context of the append that stored it: they then continue that
// trace (the causation chain), as without a BatchObserver.
type BatchObserver struct {
	tracer   trace.Tracer
	duration metric.Float64Histogram
	events   metric.Int64Counter
}

var _ projection.BatchObserver = (*BatchObserver)(nil)

// NewBatchObserver returns a BatchObserver. A nil cfg means the defaults.
func NewBatchObserver(cfg *Config) (*BatchObserver, error) {
	c := cfg.withDefaults()
	meter := c.MeterProvider.Meter(ScopeName)
	o := &BatchObserver{tracer: c.TracerProvider.Tracer(ScopeName)}
	var err1, err2 error
	o.duration, err1 = newDuration(meter, MetricBatchDuration, "Time projection runners take per batch, handlers and checkpoint commit included.")
	o.events, err2 = meter.Int64Counter(MetricBatchEvents, metric.WithUnit("{event}"),
		metric.WithDescription("Events of the batches projection runners handled."))
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return o, nil
}

// StartBatch implements [projection.BatchObserver]: it starts the batch's
// span, a child of the span in ctx.
func (o *BatchObserver) StartBatch(ctx context.Context, b projection.Batch) (context.Context, func(error)) {
	ctx, op := startOp(ctx, o.tracer, SpanBatch, "", trace.SpanKindInternal,
		AttrProjection.String(b.Projection), AttrPartition.Int(b.Partition), AttrEvents.Int(b.Events),
		AttrPosition.String(b.To.String()), AttrFromPosition.String(b.From.String()))
	return ctx, func(err error) {
		defer op.span.End()
		oc := batchOutcome(err)
		proj := AttrProjection.String(b.Projection)
		op.finish(ctx, o.duration, oc, err, oc != "canceled", proj)
		o.events.Add(ctx, int64(b.Events), metric.WithAttributes(proj, AttrOutcome.String(oc)))
	}
}

// batchOutcome classifies the outcome of a batch for [AttrOutcome].
func batchOutcome(err error) string {
	switch {
	case errors.Is(err, projection.ErrStopped):
		return "stopped"
	case errors.Is(err, projection.ErrLeaseLost):
		return "lease_lost"
	case err == nil:
		return "ok"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "error"
	}
}
