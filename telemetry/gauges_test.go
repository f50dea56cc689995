package telemetry_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/telemetry"
)

// failOn is a handler that fails permanently on events of type "Bad".
var failOn = projection.HandlerFunc(func(_ context.Context, ev projection.Event) error {
	if ev.Type == "Bad" {
		return projection.Permanent(errors.New("bad event"))
	}
	return nil
})

// runUntilSettled runs the projections on f until each has handled (or
// stopped at) every event appended so far, calls settled, then stops the
// runner.
func runUntilSettled(t *testing.T, f *fixture, settled func(), ps ...projection.Projection) {
	t.Helper()
	runner, err := projection.New(f.pg, f.ps, &projection.Config{Logger: slog.New(slog.DiscardHandler), PollInterval: 20 * time.Millisecond, AcquireInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if err := runner.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	defer func() { stop(); <-done }()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, p := range ps {
		if err := runner.WaitForHead(ctx, p.Name); err != nil && !errors.Is(err, projection.ErrStopped) {
			t.Fatalf("%s: %v", p.Name, err)
		}
	}
	settled()
}

func TestGauges(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	first, err := f.pg.Append(ctx, "s-1", eventstore.NoStream, event("Good", `{}`), event("Bad", `{}`), event("Good", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	f.waitVisible(t, first.Position)                    // else WaitForHead may find an empty head
	g, err := telemetry.NewGauges(f.store, f.ps, f.cfg) // the wrapped store: its reads are not traced
	if err != nil {
		t.Fatal(err)
	}
	runUntilSettled(t, f, func() {
		if p := find(t, f.collect(t), telemetry.MetricProjectionHeld, telemetry.AttrProjection.String("parks")); p.value != 1 {
			t.Errorf("held %v while the runner runs, want 1", p.value)
		}
	},
		projection.Projection{Name: "parks", Handler: failOn, OnFailure: projection.ParkOnFailure},
		projection.Projection{Name: "stops", Handler: failOn, OnFailure: projection.StopOnFailure},
		projection.Projection{Name: "lags", Handler: failOn, Partitions: 2, OnFailure: projection.ParkOnFailure},
	)
	// Events the stopped runner has not seen: every projection lags.
	res, err := f.pg.Append(ctx, "s-1", eventstore.Any, event("Good", `{}`), event("Good", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	f.waitVisible(t, res.Position)
	time.Sleep(20 * time.Millisecond) // a lag age of at least 20ms

	f.spans.Reset()
	rm := f.collect(t)
	if n := len(f.spans.Ended()); n != 0 {
		t.Errorf("observing made %d spans, want none", n)
	}
	part := func(name string, p int) []attribute.KeyValue {
		return []attribute.KeyValue{telemetry.AttrProjection.String(name), telemetry.AttrPartition.Int(p)}
	}
	lagsPart := projection.PartitionOf("s-1", 2)
	tests := []struct {
		metric string
		attrs  []attribute.KeyValue
		want   float64
	}{
		{telemetry.MetricProjectionLagEvents, part("parks", 0), 2},
		{telemetry.MetricProjectionLagEvents, part("lags", lagsPart), 2},
		{telemetry.MetricProjectionLagEvents, part("stops", 0), 4}, // stopped at the second of five
		{telemetry.MetricProjectionStopped, part("stops", 0), 1},
		{telemetry.MetricProjectionStopped, part("parks", 0), 0},
		{telemetry.MetricDeadLetters, part("parks", 0), 1},
		{telemetry.MetricDeadLetters, part("lags", lagsPart), 1},
		{telemetry.MetricDeadLetters, part("lags", 1-lagsPart), 0},
		{telemetry.MetricDeadLetters, part("stops", 0), 0},
	}
	for _, tt := range tests {
		if p := find(t, rm, tt.metric, tt.attrs...); p.value != tt.want {
			t.Errorf("%s %v = %v, want %v", tt.metric, tt.attrs, p.value, tt.want)
		}
	}
	if p := find(t, rm, telemetry.MetricProjectionLagAge, part("parks", 0)...); p.value < 0.02 {
		t.Errorf("lag age %v, want at least 20ms", p.value)
	}
	if p := find(t, rm, telemetry.MetricReadHorizonAge); p.value < 0 {
		t.Errorf("read horizon age %v", p.value)
	}

	// A transaction that has written and stays open holds the horizon.
	conn, err := f.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if p := find(t, f.collect(t), telemetry.MetricReadHorizonAge); p.value < 0.1 {
		t.Errorf("read horizon age %v with a transaction open for 100ms, want at least 0.1", p.value)
	}
	_ = tx.Rollback(ctx)

	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if ps := points(f.collect(t), telemetry.MetricProjectionLagEvents); len(ps) != 0 {
		t.Errorf("after Close: %d points", len(ps))
	}
}

// TestGaugesObservationFailure: projections that cannot be read (their
// pool is closed) lose their gauges, not the horizon gauge, and do not
// disturb the store.
func TestGaugesObservationFailure(t *testing.T) {
	t.Parallel()
	f := setup(t)
	closed, err := pgxpool.New(t.Context(), f.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	broken, err := postgres.NewProjectionStore(closed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := telemetry.NewGauges(f.pg, broken, f.cfg); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(t.Context(), &rm); err == nil {
		t.Error("collect with a closed pool: no error")
	}
	if p := find(t, rm, telemetry.MetricReadHorizonAge); p.value < 0 {
		t.Errorf("horizon %v", p.value)
	}
	if ps := points(rm, telemetry.MetricProjectionLagEvents); len(ps) != 0 {
		t.Errorf("lag points %v from a failed observation", ps)
	}
	if _, err := f.store.Append(t.Context(), "s", eventstore.NoStream, event("E", `{}`)); err != nil {
		t.Errorf("append after a failed observation: %v", err)
	}
}

func TestNewGaugesInvalid(t *testing.T) {
	t.Parallel()
	if _, err := telemetry.NewGauges(nil, new(postgres.ProjectionStore), nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("nil store: %v", err)
	}
	if _, err := telemetry.NewGauges(memoryStore(), nil, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("nothing to observe: %v", err)
	}
}
