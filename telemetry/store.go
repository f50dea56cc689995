package telemetry

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Metric names of a [Store].
const (
	// MetricAppendDuration is the latency of appends, in seconds
	// (histogram; attributes operation, outcome).
	MetricAppendDuration = "chronicle.append.duration"
	// MetricAppendEvents counts the events of successful appends
	// (counter; attribute operation).
	MetricAppendEvents = "chronicle.append.events"
	// MetricAppendBytes counts the payload bytes of successful appends
	// (counter; attribute operation).
	MetricAppendBytes = "chronicle.append.bytes"
	// MetricAppendConflicts counts the appends refused by the optimistic
	// concurrency check (counter; attribute operation).
	MetricAppendConflicts = "chronicle.append.conflicts"
	// MetricReadDuration is the latency of reads, in seconds (histogram;
	// attributes operation, outcome).
	MetricReadDuration = "chronicle.read.duration"
	// MetricReadEvents counts the events returned by reads (counter;
	// attribute operation).
	MetricReadEvents = "chronicle.read.events"
)

// Span names of a [Store].
const (
	SpanAppend             = "chronicle.append"
	SpanAppendStreams      = "chronicle.append_streams"
	SpanReadStream         = "chronicle.read_stream"
	SpanReadStreamPayloads = "chronicle.read_stream_payloads"
	SpanReadAll            = "chronicle.read_all"
	SpanStreamVersion      = "chronicle.stream_version"
	SpanHead               = "chronicle.head"
	SpanListStreams        = "chronicle.list_streams"
)

// Store is an [eventstore.Store] that traces and measures another one. Each
// append and read runs in a span (a child of the span in ctx) and feeds
// the metrics named Metric*; each appended event carries the append span's
// trace context in its metadata headers ("traceparent" with the default
// propagator), so that the handlers that react to it, wrapped with
// [NewHandler], continue the same trace. Watch is passed through.
//
// Telemetry never changes what the wrapped store does: results and
// errors are returned unchanged, and an exporter that fails (or a
// provider that is shut down) only loses telemetry.
//
// The added headers count towards the store's maximum event size (about
// 70 bytes for "traceparent").
type Store struct {
	next   eventstore.Store
	tracer trace.Tracer
	prop   propagation.TextMapPropagator

	appendDuration  metric.Float64Histogram
	appendEvents    metric.Int64Counter
	appendBytes     metric.Int64Counter
	appendConflicts metric.Int64Counter
	readDuration    metric.Float64Histogram
	readEvents      metric.Int64Counter
}

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.PayloadReader = (*Store)(nil)
	_ eventstore.RecordReader  = (*Store)(nil)
	_ eventstore.StreamLister  = (*Store)(nil)
)

// NewStore returns a Store that traces and measures next. A nil cfg means
// the defaults.
func NewStore(next eventstore.Store, cfg *Config) (*Store, error) {
	if next == nil {
		return nil, &eventstore.ValidationError{Field: "store", Reason: "must not be nil"}
	}
	c := cfg.withDefaults()
	meter := c.MeterProvider.Meter(ScopeName)
	s := &Store{next: next, tracer: c.TracerProvider.Tracer(ScopeName), prop: c.Propagator}
	var errs [6]error
	s.appendDuration, errs[0] = newDuration(meter, MetricAppendDuration, "Latency of event store appends.")
	s.appendEvents, errs[1] = meter.Int64Counter(MetricAppendEvents, metric.WithUnit("{event}"),
		metric.WithDescription("Events appended."))
	s.appendBytes, errs[2] = meter.Int64Counter(MetricAppendBytes, metric.WithUnit("By"),
		metric.WithDescription("Payload bytes appended."))
	s.appendConflicts, errs[3] = meter.Int64Counter(MetricAppendConflicts, metric.WithUnit("{append}"),
		metric.WithDescription("Appends refused by the optimistic concurrency check."))
	s.readDuration, errs[4] = newDuration(meter, MetricReadDuration, "Latency of event store reads.")
	s.readEvents, errs[5] = meter.Int64Counter(MetricReadEvents, metric.WithUnit("{event}"),
		metric.WithDescription("Events returned by reads."))
	if err := firstError(errs[:]); err != nil {
		return nil, err
	}
	return s, nil
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() eventstore.Store { return s.next }

// With returns a Store that traces and measures next with s's tracer,
// instruments and propagator: wrap a transaction view with it (such as
// postgres.Store.InTx(tx), for aggregate.Repository.With) without
// creating instruments per transaction.
func (s *Store) With(next eventstore.Store) (*Store, error) {
	if next == nil {
		return nil, &eventstore.ValidationError{Field: "store", Reason: "must not be nil"}
	}
	w := *s
	w.next = next
	return &w, nil
}

// unwrapStore returns the store under any number of [Store] wrappers.
func unwrapStore(store eventstore.Store) eventstore.Store {
	for {
		w, ok := store.(*Store)
		if !ok {
			return store
		}
		store = w.next
	}
}

// Append appends as the wrapped store does, in a span named [SpanAppend],
// with the trace context written into each event's metadata headers.
func (s *Store) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	ctx, o := startOp(ctx, s.tracer, SpanAppend, "append", trace.SpanKindProducer,
		AttrStreamID.String(streamID), AttrEvents.Int(len(events)), AttrExpectedVersion.String(expected.String()))
	defer o.span.End()
	res, err := s.next.Append(ctx, streamID, expected, s.inject(ctx, events)...)
	s.appended(ctx, o, err, events)
	if err == nil {
		o.span.SetAttributes(AttrStreamVersion.Int64(res.Version), AttrPosition.String(res.Position.String()))
	}
	return res, err
}

// AppendStreams appends as the wrapped store does, in a span named
// [SpanAppendStreams], with the trace context written into each event's
// metadata headers.
func (s *Store) AppendStreams(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	n := 0
	for _, a := range appends {
		n += len(a.Events)
	}
	ctx, o := startOp(ctx, s.tracer, SpanAppendStreams, "append_streams", trace.SpanKindProducer,
		AttrStreams.Int(len(appends)), AttrEvents.Int(n))
	defer o.span.End()
	stamped := make([]eventstore.StreamAppend, len(appends))
	var all []eventstore.Event
	for i, a := range appends {
		a.Events = s.inject(ctx, a.Events)
		stamped[i] = a
		all = append(all, appends[i].Events...)
	}
	res, err := s.next.AppendStreams(ctx, stamped...)
	s.appended(ctx, o, err, all)
	return res, err
}

// inject returns a copy of events whose metadata carries the trace
// context of ctx. The caller's events and header maps are not modified.
func (s *Store) inject(ctx context.Context, events []eventstore.Event) []eventstore.Event {
	if len(events) == 0 {
		return events
	}
	out := make([]eventstore.Event, len(events))
	for i, e := range events {
		e.Metadata = injectMetadata(ctx, s.prop, e.Metadata)
		out[i] = e
	}
	return out
}

// appended records an append's outcome on its span and in the metrics.
func (s *Store) appended(ctx context.Context, o op, err error, events []eventstore.Event) {
	oc := outcome(err)
	o.finish(ctx, s.appendDuration, oc, err, true)
	opAttr := AttrOperation.String(o.name)
	if err != nil {
		if oc == "conflict" {
			s.appendConflicts.Add(ctx, 1, metric.WithAttributes(opAttr))
		}
		return
	}
	var bytes int64
	for _, e := range events {
		bytes += int64(len(e.Data))
	}
	set := metric.WithAttributeSet(attribute.NewSet(opAttr))
	s.appendEvents.Add(ctx, int64(len(events)), set)
	s.appendBytes.Add(ctx, bytes, set)
}

// ReadStream reads as the wrapped store does, in a span named
// [SpanReadStream]. Loading an aggregate reads its stream this way (or
// with ReadStreamPayloads).
func (s *Store) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	ctx, o := s.startRead(ctx, SpanReadStream, "read_stream", AttrStreamID.String(streamID))
	recs, err := s.next.ReadStream(ctx, streamID, opts)
	s.read(ctx, o, err, len(recs))
	return recs, err
}

// ReadStreamPayloads implements [eventstore.PayloadReader] in a span named
// [SpanReadStreamPayloads]: with the wrapped store's ReadStreamPayloads
// when it has one, otherwise with its ReadStream, keeping only the fields
// that PayloadReader promises.
func (s *Store) ReadStreamPayloads(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	ctx, o := s.startRead(ctx, SpanReadStreamPayloads, "read_stream_payloads", AttrStreamID.String(streamID))
	var (
		recs []eventstore.Record
		err  error
	)
	if pr, ok := s.next.(eventstore.PayloadReader); ok {
		recs, err = pr.ReadStreamPayloads(ctx, streamID, opts)
	} else {
		recs, err = s.next.ReadStream(ctx, streamID, opts)
		for i, r := range recs {
			recs[i] = eventstore.Record{StreamID: r.StreamID, StreamVersion: r.StreamVersion, Type: r.Type,
				SchemaVersion: r.SchemaVersion, Data: r.Data}
		}
	}
	s.read(ctx, o, err, len(recs))
	return recs, err
}

// ReadAll reads as the wrapped store does, in a span named [SpanReadAll].
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.Record, error) {
	ctx, o := s.startRead(ctx, SpanReadAll, "read_all", AttrPosition.String(after.String()))
	recs, err := s.next.ReadAll(ctx, after, limit)
	s.read(ctx, o, err, len(recs))
	return recs, err
}

// ReadAllInto reads as the wrapped store does, in a span named
// [SpanReadAll], making a traced store an [eventstore.RecordReader] too:
// through the wrapped store's ReadAllInto when it has one, otherwise with
// its ReadAll, each record then copied into *next(i).
func (s *Store) ReadAllInto(ctx context.Context, after eventstore.Position, limit int, next func(i int) *eventstore.Record) (int, error) {
	ctx, o := s.startRead(ctx, SpanReadAll, "read_all", AttrPosition.String(after.String()))
	var (
		n   int
		err error
	)
	switch rr, ok := s.next.(eventstore.RecordReader); {
	case ok:
		n, err = rr.ReadAllInto(ctx, after, limit, next)
	case next == nil:
		err = &eventstore.ValidationError{Field: "next", Reason: "must not be nil"}
	default:
		var recs []eventstore.Record
		recs, err = s.next.ReadAll(ctx, after, limit)
		for i := range recs {
			*next(i) = recs[i]
		}
		n = len(recs)
	}
	s.read(ctx, o, err, n)
	return n, err
}

// StreamVersion reads as the wrapped store does, in a span named
// [SpanStreamVersion]. A stream that does not exist is not an error of
// the span.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	ctx, o := s.startRead(ctx, SpanStreamVersion, "stream_version", AttrStreamID.String(streamID))
	v, err := s.next.StreamVersion(ctx, streamID)
	s.read(ctx, o, err, 0)
	return v, err
}

// Head reads as the wrapped store does, in a span named [SpanHead].
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	ctx, o := s.startRead(ctx, SpanHead, "head")
	pos, err := s.next.Head(ctx)
	s.read(ctx, o, err, 0)
	return pos, err
}

// ListStreams implements [eventstore.StreamLister] with the wrapped
// store's ListStreams, in a span named [SpanListStreams]. Both of
// Chronicle's stores have it; a wrapped store without it fails with an
// error matching [errors.ErrUnsupported].
func (s *Store) ListStreams(ctx context.Context, opts eventstore.ListStreamsOptions) ([]eventstore.StreamInfo, error) {
	lister, ok := s.next.(eventstore.StreamLister)
	if !ok {
		return nil, fmt.Errorf("telemetry store: %T lists no streams: %w", s.next, errors.ErrUnsupported)
	}
	ctx, o := s.startRead(ctx, SpanListStreams, "list_streams")
	streams, err := lister.ListStreams(ctx, opts)
	s.read(ctx, o, err, 0)
	return streams, err
}

// Watch returns the wrapped store's Watch, without telemetry.
func (s *Store) Watch(ctx context.Context) <-chan struct{} { return s.next.Watch(ctx) }

func (s *Store) startRead(ctx context.Context, name, opName string, attrs ...attribute.KeyValue) (context.Context, op) {
	return startOp(ctx, s.tracer, name, opName, trace.SpanKindClient, attrs...)
}

// read records a read's outcome on its span, which it ends, and in the
// metrics.
func (s *Store) read(ctx context.Context, o op, err error, n int) {
	defer o.span.End()
	oc := outcome(err)
	o.finish(ctx, s.readDuration, oc, err, oc != "not_found")
	if err != nil {
		return
	}
	o.span.SetAttributes(AttrEvents.Int(n))
	if n > 0 {
		s.readEvents.Add(ctx, int64(n), metric.WithAttributes(AttrOperation.String(o.name)))
	}
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
