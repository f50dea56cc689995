package telemetry_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/telemetry"
)

var errExport = errors.New("collector unreachable")

// failingSpans is a span exporter that always fails.
type failingSpans struct{ calls atomic.Int64 }

func (e *failingSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	e.calls.Add(1)
	return errExport
}
func (e *failingSpans) Shutdown(context.Context) error { return errExport }

// failingMetrics is a metric exporter that always fails.
type failingMetrics struct{ calls atomic.Int64 }

func (e *failingMetrics) Temporality(k metric.InstrumentKind) metricdata.Temporality {
	return metric.DefaultTemporalitySelector(k)
}
func (e *failingMetrics) Aggregation(k metric.InstrumentKind) metric.Aggregation {
	return metric.DefaultAggregationSelector(k)
}
func (e *failingMetrics) Export(context.Context, *metricdata.ResourceMetrics) error {
	e.calls.Add(1)
	return errExport
}
func (e *failingMetrics) ForceFlush(context.Context) error { return errExport }
func (e *failingMetrics) Shutdown(context.Context) error   { return errExport }

// TestFailingExporters: exporters that fail on every call, synchronously
// on the append path, and providers shut down half-way, change nothing of
// what the store and the handlers do.
func TestFailingExporters(t *testing.T) {
	t.Parallel()
	f := setup(t)
	spans, points := &failingSpans{}, &failingMetrics{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	mp := metric.NewMeterProvider(metric.WithReader(metric.NewPeriodicReader(points, metric.WithInterval(5*time.Millisecond))))
	t.Cleanup(func() { // before the pool closes, also when the test fails early
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	cfg := &telemetry.Config{TracerProvider: tp, MeterProvider: mp}
	store, err := telemetry.NewStore(f.pg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := telemetry.NewGauges(store, f.ps, cfg); err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	h, err := telemetry.NewHandler(projection.HandlerFunc(func(context.Context, projection.Event) error {
		handled.Add(1)
		return nil
	}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var last eventstore.Position
	appendAndRead := func(stream string) {
		t.Helper()
		res, err := store.Append(ctx, stream, eventstore.NoStream, event("E", `{"n":1}`), event("E", `{"n":2}`))
		if err != nil || res.Version != 2 {
			t.Fatalf("append to %s: %+v, %v", stream, res, err)
		}
		last = res.Position
		if _, err := store.Append(ctx, stream, eventstore.NoStream, event("E", `{}`)); !errors.Is(err, eventstore.ErrConcurrencyConflict) {
			t.Fatalf("conflicting append to %s: %v", stream, err)
		}
		recs, err := store.ReadStream(ctx, stream, eventstore.ReadStreamOptions{})
		if err != nil || len(recs) != 2 {
			t.Fatalf("read %s: %d records, %v", stream, len(recs), err)
		}
		for _, r := range recs {
			if err := h.Handle(ctx, projection.Event{Record: r, Projection: "p"}); err != nil {
				t.Fatalf("handle: %v", err)
			}
		}
	}
	appendAndRead("a")
	for deadline := time.Now().Add(10 * time.Second); points.calls.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // a few failed metric exports
	}
	if spans.calls.Load() == 0 || points.calls.Load() == 0 {
		t.Fatalf("exporters called %d and %d times: the test does not exercise them", spans.calls.Load(), points.calls.Load())
	}
	_ = tp.Shutdown(ctx)
	_ = mp.Shutdown(ctx)
	appendAndRead("b")

	// Everything acknowledged is stored, exactly once.
	f.waitVisible(t, last)
	recs, err := f.pg.ReadAll(ctx, eventstore.Position{}, 100)
	if err != nil || len(recs) != 4 {
		t.Fatalf("stored %d events, %v; want 4", len(recs), err)
	}
	if handled.Load() != 4 {
		t.Errorf("handled %d events, want 4", handled.Load())
	}
}

type resettable struct{ projection.HandlerFunc }

func (resettable) Reset(context.Context, int) error { return errors.New("reset called") }

func TestNewHandler(t *testing.T) {
	t.Parallel()
	plain := projection.HandlerFunc(func(context.Context, projection.Event) error { return nil })
	h, err := telemetry.NewHandler(plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.(projection.Resetter); ok {
		t.Error("a handler without Reset became a Resetter: a rebuild would skip clearing nothing silently")
	}
	h, err = telemetry.NewHandler(resettable{plain}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rs, ok := h.(projection.Resetter); !ok || rs.Reset(t.Context(), 0) == nil {
		t.Error("the wrapper of a Resetter does not reset through it")
	}
	if _, err := telemetry.NewHandler(nil, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("nil handler: %v", err)
	}
	// Registration mistakes of a *projection.Handlers are not hidden.
	broken := projection.NewHandlers(nil)
	if _, err := telemetry.NewHandler(broken, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("handlers with a nil registry: %v", err)
	}
	if _, err := telemetry.NewStore(nil, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("nil store: %v", err)
	}
}
