package telemetry

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/snapshot"
)

// Span names of a [SnapshotStore].
const (
	SpanSnapshotSave       = "chronicle.snapshot.save"
	SpanSnapshotLoad       = "chronicle.snapshot.load"
	SpanSnapshotLoadStream = "chronicle.snapshot.load_stream"
	SpanSnapshotDelete     = "chronicle.snapshot.delete"
)

// MetricSnapshotDuration is the latency of snapshot store operations, in
// seconds (histogram; attributes operation: "save", "load",
// "load_stream" or "delete", and outcome: "ok", "not_found", "invalid",
// "unsupported", "canceled" or "error").
const MetricSnapshotDuration = "chronicle.snapshot.duration"

// SnapshotStore is a [snapshot.Store] that traces and measures another
// one: each operation runs in a span and feeds [MetricSnapshotDuration].
// With a [Store] and a SnapshotStore, an aggregate repository's load is a
// snapshot span and read spans, and its save an append span (and, every
// N events, a snapshot save span).
//
// It implements [snapshot.StreamLoader] and passes LoadStream to the
// wrapped store with the event store a [Store] wraps, so that the
// PostgreSQL snapshot store still reads the snapshot and the events in one
// round trip behind a traced event store. When the wrapped store is no
// StreamLoader, LoadStream fails with [errors.ErrUnsupported] and the
// repository reads them apart, as it would without telemetry.
type SnapshotStore struct {
	next     snapshot.Store
	tracer   trace.Tracer
	duration metric.Float64Histogram
}

var (
	_ snapshot.Store        = (*SnapshotStore)(nil)
	_ snapshot.StreamLoader = (*SnapshotStore)(nil)
	_ snapshot.TxBinder     = (*SnapshotStore)(nil)
)

// NewSnapshotStore returns a SnapshotStore that traces and measures next.
// A nil cfg means the defaults.
func NewSnapshotStore(next snapshot.Store, cfg *Config) (*SnapshotStore, error) {
	if next == nil {
		return nil, &eventstore.ValidationError{Field: "snapshot store", Reason: "must not be nil"}
	}
	c := cfg.withDefaults()
	duration, err := newDuration(c.MeterProvider.Meter(ScopeName), MetricSnapshotDuration, "Latency of snapshot store operations.")
	if err != nil {
		return nil, err
	}
	return &SnapshotStore{next: next, tracer: c.TracerProvider.Tracer(ScopeName), duration: duration}, nil
}

// Save saves as the wrapped store does, in a span named
// [SpanSnapshotSave].
func (s *SnapshotStore) Save(ctx context.Context, snap snapshot.Snapshot) error {
	ctx, o := s.start(ctx, SpanSnapshotSave, "save", AttrStreamID.String(snap.StreamID), AttrStreamVersion.Int64(snap.Version))
	err := s.next.Save(ctx, snap)
	s.done(ctx, o, err)
	return err
}

// Load loads as the wrapped store does, in a span named
// [SpanSnapshotLoad]. A stream without a snapshot is no error of the span.
func (s *SnapshotStore) Load(ctx context.Context, streamID string) (snapshot.Snapshot, error) {
	ctx, o := s.start(ctx, SpanSnapshotLoad, "load", AttrStreamID.String(streamID))
	snap, err := s.next.Load(ctx, streamID)
	if err == nil {
		o.span.SetAttributes(AttrStreamVersion.Int64(snap.Version))
	}
	s.done(ctx, o, err)
	return snap, err
}

// LoadStream implements [snapshot.StreamLoader] in a span named
// [SpanSnapshotLoadStream], with the wrapped store's LoadStream; events
// wrapped in a [Store] are unwrapped for it.
func (s *SnapshotStore) LoadStream(ctx context.Context, events eventstore.Store, streamID, typ string, schemaVersion int, limit int) (snapshot.StreamLoad, error) {
	loader, ok := s.next.(snapshot.StreamLoader)
	if !ok {
		return snapshot.StreamLoad{}, fmt.Errorf("telemetry snapshot store: %T reads no stream with its snapshot: %w", s.next, errors.ErrUnsupported)
	}
	events = unwrapStore(events)
	ctx, o := s.start(ctx, SpanSnapshotLoadStream, "load_stream", AttrStreamID.String(streamID))
	res, err := loader.LoadStream(ctx, events, streamID, typ, schemaVersion, limit)
	if err == nil {
		o.span.SetAttributes(attribute.Bool("chronicle.snapshot.found", res.Found), AttrEvents.Int(len(res.Records)))
	}
	s.done(ctx, o, err)
	return res, err
}

// BindTx implements [snapshot.TxBinder]: the wrapped store bound to the
// transaction view events (unwrapped from a [Store]), traced and measured
// like s. It reports false when the wrapped store cannot bind, as the
// wrapped store itself would: a repository then takes no snapshots in the
// transaction.
func (s *SnapshotStore) BindTx(events eventstore.Store) (snapshot.Store, bool) {
	b, ok := s.next.(snapshot.TxBinder)
	if !ok {
		return nil, false
	}
	bound, ok := b.BindTx(unwrapStore(events))
	if !ok || bound == nil {
		return nil, false
	}
	w := *s
	w.next = bound
	return &w, true
}

// Delete deletes as the wrapped store does, in a span named
// [SpanSnapshotDelete].
func (s *SnapshotStore) Delete(ctx context.Context, streamID string) error {
	ctx, o := s.start(ctx, SpanSnapshotDelete, "delete", AttrStreamID.String(streamID))
	err := s.next.Delete(ctx, streamID)
	s.done(ctx, o, err)
	return err
}

func (s *SnapshotStore) start(ctx context.Context, name, opName string, attrs ...attribute.KeyValue) (context.Context, op) {
	return startOp(ctx, s.tracer, name, opName, trace.SpanKindClient, attrs...)
}

// done records an operation's outcome on its span, which it ends, and in
// the metric.
func (s *SnapshotStore) done(ctx context.Context, o op, err error) {
	defer o.span.End()
	oc := outcome(err)
	switch {
	case errors.Is(err, snapshot.ErrNotFound):
		oc = "not_found"
	case errors.Is(err, errors.ErrUnsupported):
		oc = "unsupported"
	}
	o.finish(ctx, s.duration, oc, err, oc != "not_found" && oc != "unsupported")
}
