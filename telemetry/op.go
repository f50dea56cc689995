package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// op is one traced and measured call: its span, the value of its
// [AttrOperation] in the metrics ("" for none) and its start. Every
// decorator of this package goes through it: start, then finish with the
// outcome, then end the span.
type op struct {
	name  string
	span  trace.Span
	start time.Time
}

// startOp starts the span spanName, of kind, as a child of the span in ctx.
func startOp(ctx context.Context, tracer trace.Tracer, spanName, opName string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, op) {
	ctx, span := tracer.Start(ctx, spanName, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	return ctx, op{name: opName, span: span, start: time.Now()}
}

// finish records the outcome oc of the call: its duration in duration
// (attributes operation, if the op has a name, and outcome, then extra),
// the outcome on the span, and err as the span's error when failed (an
// answer such as "not found" is no failure of the span). It does not end
// the span.
func (o op) finish(ctx context.Context, duration metric.Float64Histogram, oc string, err error, failed bool, extra ...attribute.KeyValue) {
	attrs := make([]attribute.KeyValue, 0, 2+len(extra))
	if o.name != "" {
		attrs = append(attrs, AttrOperation.String(o.name))
	}
	attrs = append(attrs, AttrOutcome.String(oc))
	attrs = append(attrs, extra...)
	duration.Record(ctx, time.Since(o.start).Seconds(), metric.WithAttributes(attrs...))
	o.span.SetAttributes(AttrOutcome.String(oc))
	if err != nil && failed {
		o.span.RecordError(err)
		o.span.SetStatus(codes.Error, err.Error())
	}
}

// newDuration creates a latency histogram in seconds with the package's
// buckets.
func newDuration(meter metric.Meter, name, desc string) (metric.Float64Histogram, error) {
	return meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(durationBuckets...))
}
