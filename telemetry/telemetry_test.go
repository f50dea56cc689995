package telemetry_test

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/telemetry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a PostgreSQL store wrapped with telemetry that records into
// in-memory SDK exporters.
type fixture struct {
	pool   *pgxpool.Pool
	pg     *postgres.Store
	ps     *postgres.ProjectionStore
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	cfg    *telemetry.Config
	store  *telemetry.Store
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{pool: postgrestest.Pool(t), spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	var err error
	f.pg, err = postgres.New(f.pool, &postgres.Config{PollOnly: true, PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.pg.Close)
	if f.ps, err = postgres.NewProjectionStore(f.pool, nil); err != nil {
		t.Fatal(err)
	}
	f.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(f.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader))
	t.Cleanup(func() {
		_ = f.tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	f.cfg = &telemetry.Config{TracerProvider: f.tp, MeterProvider: mp}
	if f.store, err = telemetry.NewStore(f.pg, f.cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

// waitVisible waits until ReadAll can return the event at pos: a writing
// transaction that another test (or anything else on the server) keeps
// open holds the read horizon back until it ends.
func (f *fixture) waitVisible(t *testing.T, pos eventstore.Position) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		head, err := f.pg.Head(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if head.Compare(pos) >= 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("head %s has not reached %s after 10s", head, pos)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// collect reads the metrics.
func (f *fixture) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(t.Context(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	return rm
}

// point is one data point of a metric, whatever its kind.
type point struct {
	attrs attribute.Set
	value float64 // the value of a sum or gauge, the sum of a histogram
	count uint64  // a histogram's count
}

// points returns the data points of the metric named name.
func points(rm metricdata.ResourceMetrics, name string) []point {
	var out []point
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out = append(out, point{attrs: p.Attributes, value: float64(p.Value)})
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out = append(out, point{attrs: p.Attributes, value: float64(p.Value)})
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out = append(out, point{attrs: p.Attributes, value: p.Value})
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out = append(out, point{attrs: p.Attributes, value: p.Sum, count: p.Count})
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					out = append(out, point{attrs: p.Attributes, value: float64(p.Sum), count: p.Count})
				}
			}
		}
	}
	return out
}

// find returns the point of name whose attributes include attrs.
func find(t *testing.T, rm metricdata.ResourceMetrics, name string, attrs ...attribute.KeyValue) point {
	t.Helper()
	for _, p := range points(rm, name) {
		if slices.IndexFunc(attrs, func(kv attribute.KeyValue) bool { v, ok := p.attrs.Value(kv.Key); return !ok || v != kv.Value }) < 0 {
			return p
		}
	}
	t.Fatalf("no point of %s with %v among %+v", name, attrs, points(rm, name))
	return point{}
}

// spansNamed returns the ended spans named name.
func (f *fixture) spansNamed(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range f.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func event(typ, data string) eventstore.Event {
	return eventstore.Event{Type: typ, Data: []byte(data)}
}

func TestStoreAppendAndReadTelemetry(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()

	res, err := f.store.Append(ctx, "acc-1", eventstore.NoStream, event("Opened", `{"a":1}`), event("Deposited", `{"amount":10}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.store.Append(ctx, "acc-1", eventstore.NoStream, event("Opened", `{}`))
	if !errors.Is(err, eventstore.ErrConcurrencyConflict) {
		t.Fatalf("second append: %v, want a conflict", err)
	}
	multi, err := f.store.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "acc-2", Expected: eventstore.NoStream, Events: []eventstore.Event{event("Opened", `{}`)}},
		eventstore.StreamAppend{StreamID: "acc-3", Expected: eventstore.NoStream, Events: []eventstore.Event{event("Opened", `{}`)}},
	)
	if err != nil {
		t.Fatal(err)
	}
	f.waitVisible(t, multi[1].Position)
	recs, err := f.store.ReadStream(ctx, "acc-1", eventstore.ReadStreamOptions{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("ReadStream: %d records, %v", len(recs), err)
	}
	if recs, err = f.store.ReadStreamPayloads(ctx, "acc-1", eventstore.ReadStreamOptions{}); err != nil || len(recs) != 2 {
		t.Fatalf("ReadStreamPayloads: %d records, %v", len(recs), err)
	}
	if recs, err = f.store.ReadAll(ctx, eventstore.Position{}, 100); err != nil || len(recs) != 4 {
		t.Fatalf("ReadAll: %d records, %v", len(recs), err)
	}
	if _, err := f.store.StreamVersion(ctx, "nobody"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("StreamVersion: %v", err)
	}
	if _, err := f.store.Head(ctx); err != nil {
		t.Fatal(err)
	}

	appends := f.spansNamed(telemetry.SpanAppend)
	if len(appends) != 2 {
		t.Fatalf("%d append spans, want 2", len(appends))
	}
	ok, conflict := appends[0], appends[1]
	if ok.SpanKind() != trace.SpanKindProducer || attr(ok, telemetry.AttrStreamID).AsString() != "acc-1" ||
		attr(ok, telemetry.AttrEvents).AsInt64() != 2 || attr(ok, telemetry.AttrStreamVersion).AsInt64() != 2 ||
		attr(ok, telemetry.AttrPosition).AsString() != res.Position.String() || ok.Status().Code == codes.Error {
		t.Errorf("append span: kind %s, attributes %v, status %v", ok.SpanKind(), ok.Attributes(), ok.Status())
	}
	if conflict.Status().Code != codes.Error || attr(conflict, telemetry.AttrOutcome).AsString() != "conflict" || len(conflict.Events()) == 0 {
		t.Errorf("conflicting append span: status %v, attributes %v, events %v", conflict.Status(), conflict.Attributes(), conflict.Events())
	}
	if s := f.spansNamed(telemetry.SpanAppendStreams); len(s) != 1 || attr(s[0], telemetry.AttrStreams).AsInt64() != 2 {
		t.Errorf("append streams spans: %v", s)
	}
	for _, name := range []string{telemetry.SpanReadStream, telemetry.SpanReadStreamPayloads, telemetry.SpanReadAll, telemetry.SpanStreamVersion, telemetry.SpanHead} {
		s := f.spansNamed(name)
		if len(s) != 1 {
			t.Errorf("%d spans named %s, want 1", len(s), name)
			continue
		}
		if s[0].Status().Code == codes.Error {
			t.Errorf("%s: status %v; a read that succeeds (or finds no stream) is no error", name, s[0].Status())
		}
	}

	rm := f.collect(t)
	op := telemetry.AttrOperation.String
	if p := find(t, rm, telemetry.MetricAppendEvents, op("append")); p.value != 2 {
		t.Errorf("append events %v, want 2", p.value)
	}
	if p := find(t, rm, telemetry.MetricAppendEvents, op("append_streams")); p.value != 2 {
		t.Errorf("append_streams events %v, want 2", p.value)
	}
	if p := find(t, rm, telemetry.MetricAppendBytes, op("append")); p.value != float64(len(`{"a":1}`)+len(`{"amount":10}`)) {
		t.Errorf("append bytes %v", p.value)
	}
	if p := find(t, rm, telemetry.MetricAppendConflicts, op("append")); p.value != 1 {
		t.Errorf("conflicts %v, want 1", p.value)
	}
	for _, oc := range []string{"ok", "conflict"} {
		if p := find(t, rm, telemetry.MetricAppendDuration, op("append"), telemetry.AttrOutcome.String(oc)); p.count != 1 || p.value <= 0 {
			t.Errorf("append duration %s: count %d, sum %v", oc, p.count, p.value)
		}
	}
	if p := find(t, rm, telemetry.MetricReadEvents, op("read_all")); p.value != 4 {
		t.Errorf("read_all events %v, want 4", p.value)
	}
	if p := find(t, rm, telemetry.MetricReadDuration, op("stream_version"), telemetry.AttrOutcome.String("not_found")); p.count != 1 {
		t.Errorf("stream_version not_found count %d, want 1", p.count)
	}
}

func TestTraceContextInMetadata(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx, root := f.tp.Tracer("test").Start(t.Context(), "request")
	mine := map[string]string{"tenant": "t1"}
	events := []eventstore.Event{{Type: "Opened", Data: []byte(`{}`), Metadata: eventstore.Metadata{Headers: mine}}}
	if _, err := f.store.Append(ctx, "acc-1", eventstore.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	root.End()
	if len(mine) != 1 || events[0].Metadata.Headers["traceparent"] != "" {
		t.Errorf("the caller's headers were modified: %v", mine)
	}
	recs, err := f.pg.ReadStream(t.Context(), "acc-1", eventstore.ReadStreamOptions{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	h := recs[0].Metadata.Headers
	appendSpan := f.spansNamed(telemetry.SpanAppend)[0]
	want := "00-" + root.SpanContext().TraceID().String() + "-" + appendSpan.SpanContext().SpanID().String() + "-01"
	if h["tenant"] != "t1" || h["traceparent"] != want {
		t.Errorf("stored headers %v, want tenant t1 and traceparent %s", h, want)
	}
	got := trace.SpanContextFromContext(telemetry.ContextFromMetadata(t.Context(), recs[0].Metadata, nil))
	if got.TraceID() != root.SpanContext().TraceID() || got.SpanID() != appendSpan.SpanContext().SpanID() || !got.IsRemote() {
		t.Errorf("extracted %v, want the append span's context", got)
	}
	md := telemetry.InjectMetadata(ctx, eventstore.Metadata{CorrelationID: "c"}, nil)
	if md.CorrelationID != "c" || md.Headers["traceparent"] == "" {
		t.Errorf("InjectMetadata: %+v", md)
	}
	if md := telemetry.InjectMetadata(context.Background(), eventstore.Metadata{}, nil); md.Headers != nil {
		t.Errorf("InjectMetadata without a span: %+v, want no headers", md)
	}
}

// TestCausationChainIsOneTrace runs a projection whose handler reacts to
// an event by appending another: the request, both appends and both
// handler calls are one trace, each the child of its cause.
func TestCausationChainIsOneTrace(t *testing.T) {
	t.Parallel()
	f := setup(t)
	h, err := telemetry.NewHandler(projection.HandlerFunc(func(ctx context.Context, ev projection.Event) error {
		if ev.Type != "Ordered" {
			return nil
		}
		_, err := f.store.Append(ctx, "shipment-"+ev.StreamID, eventstore.NoStream, event("ShipmentRequested", `{}`))
		return err
	}), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := projection.New(f.store, f.ps, &projection.Config{Logger: slog.New(slog.DiscardHandler), PollInterval: 20 * time.Millisecond, AcquireInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Add(projection.Projection{Name: "shipping", Handler: h, Mode: projection.AtLeastOnce}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	defer func() { stop(); <-done }()

	ctx, root := f.tp.Tracer("test").Start(t.Context(), "request")
	if _, err := f.store.Append(ctx, "order-1", eventstore.NoStream, event("Ordered", `{}`)); err != nil {
		t.Fatal(err)
	}
	root.End()
	deadline := time.Now().Add(10 * time.Second)
	var handles []sdktrace.ReadOnlySpan
	for len(handles) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		handles = f.spansNamed(telemetry.SpanHandle)
	}
	if len(handles) != 2 {
		t.Fatalf("%d handle spans, want 2 (the order and the shipment)", len(handles))
	}
	byStream := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range f.spansNamed(telemetry.SpanAppend) {
		byStream[attr(s, telemetry.AttrStreamID).AsString()] = s
	}
	for _, s := range handles {
		byStream["handle "+attr(s, telemetry.AttrStreamID).AsString()] = s
	}
	chain := []string{"order-1", "handle order-1", "shipment-order-1", "handle shipment-order-1"}
	parent := root.SpanContext()
	for _, name := range chain {
		s, ok := byStream[name]
		if !ok {
			t.Fatalf("no span for %s", name)
		}
		if s.SpanContext().TraceID() != root.SpanContext().TraceID() || s.Parent().SpanID() != parent.SpanID() {
			t.Errorf("%s: trace %s parent %s, want trace %s parent %s", name, s.SpanContext().TraceID(), s.Parent().SpanID(),
				root.SpanContext().TraceID(), parent.SpanID())
		}
		parent = s.SpanContext()
	}
	if s := byStream["handle order-1"]; s.SpanKind() != trace.SpanKindConsumer || attr(s, telemetry.AttrProjection).AsString() != "shipping" ||
		attr(s, telemetry.AttrEventType).AsString() != "Ordered" {
		t.Errorf("handle span: kind %s, attributes %v", s.SpanKind(), s.Attributes())
	}
	rm := f.collect(t)
	if p := find(t, rm, telemetry.MetricHandleDuration, telemetry.AttrProjection.String("shipping"), telemetry.AttrOutcome.String("ok")); p.count != 2 {
		t.Errorf("handle duration count %d, want 2", p.count)
	}
}

func memoryStore() eventstore.Store { return memory.New(nil) }

// A traced store is an eventstore.RecordReader whatever it wraps: through
// PostgreSQL's ReadAllInto, or through the memory store's ReadAll; both
// read what ReadAll reads, in a read_all span that counts the events.
func TestStoreReadAllInto(t *testing.T) {
	t.Parallel()
	for name, setup := range map[string]func(*testing.T) *fixture{"postgres": setup, "memory": setupMemory} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			ctx := t.Context()
			res, err := f.store.Append(ctx, "acc-1", eventstore.NoStream, event("Opened", `{}`), event("Deposited", `{"amount":10}`))
			if err != nil {
				t.Fatal(err)
			}
			if f.pg != nil {
				f.waitVisible(t, res.Position)
			}
			want, err := f.store.ReadAll(ctx, eventstore.Position{}, 10)
			if err != nil || len(want) != 2 {
				t.Fatalf("ReadAll: %d records, %v", len(want), err)
			}
			got := make([]eventstore.Record, 10)
			n, err := f.store.ReadAllInto(ctx, eventstore.Position{}, 10, func(i int) *eventstore.Record { return &got[i] })
			if err != nil || n != 2 || !reflect.DeepEqual(got[:n], want) {
				t.Fatalf("ReadAllInto: %d records %+v, %v; want %+v", n, got[:n], err, want)
			}
			if _, err := f.store.ReadAllInto(ctx, eventstore.Position{}, 10, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Fatalf("ReadAllInto without next: %v, want ErrInvalidInput", err)
			}
			// ReadAll, ReadAllInto, and the failed ReadAllInto (no count).
			spans := f.spansNamed(telemetry.SpanReadAll)
			var events []int64
			var failed int
			for _, s := range spans {
				events = append(events, attr(s, telemetry.AttrEvents).AsInt64())
				if s.Status().Code == codes.Error {
					failed++
				}
			}
			if !slices.Equal(events, []int64{2, 2, 0}) || failed != 1 {
				t.Fatalf("read_all spans count %v events, %d failed; want 2 2 0, the last failed", events, failed)
			}
		})
	}
}
