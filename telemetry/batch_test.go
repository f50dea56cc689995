package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/telemetry"
)

// TestBatchObserver runs a projection whose runner has a BatchObserver
// over PostgreSQL: each batch is a span with its partition, event count
// and positions, the handler spans of events without a trace context are
// its children, and the batch metrics count the batches and their events.
func TestBatchObserver(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	// Appended without telemetry: the events carry no trace context.
	var last eventstore.AppendResult
	for i := range 7 {
		res, err := f.pg.Append(ctx, fmt.Sprintf("acct-%d", i%2), eventstore.Any, event("Deposited", `{}`))
		if err != nil {
			t.Fatal(err)
		}
		last = res
	}
	f.waitVisible(t, last.Position)

	obs, err := telemetry.NewBatchObserver(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := telemetry.NewHandler(projection.HandlerFunc(func(ctx context.Context, ev projection.Event) error {
		if ev.StreamID == "acct-1" && ev.StreamVersion == 2 {
			return projection.Permanent(errors.New("parked on purpose"))
		}
		return nil
	}), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := projection.New(f.store, f.ps, &projection.Config{
		Logger: slog.New(slog.DiscardHandler), PollInterval: 20 * time.Millisecond, AcquireInterval: 20 * time.Millisecond,
		BatchSize: 3, Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Add(projection.Projection{Name: "batched", Handler: h, OnFailure: projection.ParkOnFailure}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	defer func() { stop(); <-done }()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := runner.WaitFor(wctx, "batched", last.Position); err != nil {
		t.Fatal(err)
	}
	// The last batch's span ends after the commit that WaitFor saw.
	var batches []sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
		batches = f.spansNamed(telemetry.SpanBatch)
		if len(batches) >= 3 || time.Now().After(deadline) {
			break
		}
	}
	if len(batches) != 3 {
		t.Fatalf("%d batch spans, want 3 (3, 3 and 1 events)", len(batches))
	}
	byID := map[string]sdktrace.ReadOnlySpan{}
	events := int64(0)
	for i, s := range batches {
		byID[s.SpanContext().SpanID().String()] = s
		events += attr(s, telemetry.AttrEvents).AsInt64()
		if attr(s, telemetry.AttrProjection).AsString() != "batched" || attr(s, telemetry.AttrPartition).AsInt64() != 0 ||
			attr(s, telemetry.AttrOutcome).AsString() != "ok" || s.Status().Code == codes.Error {
			t.Errorf("batch span %d: attributes %v, status %v", i, s.Attributes(), s.Status())
		}
		if _, err := eventstore.ParsePosition(attr(s, telemetry.AttrPosition).AsString()); err != nil {
			t.Errorf("batch span %d: position %q", i, attr(s, telemetry.AttrPosition).AsString())
		}
		if _, err := eventstore.ParsePosition(attr(s, telemetry.AttrFromPosition).AsString()); err != nil {
			t.Errorf("batch span %d: from position %q", i, attr(s, telemetry.AttrFromPosition).AsString())
		}
	}
	if events != 7 {
		t.Errorf("batch spans count %d events, want 7", events)
	}
	handles := f.spansNamed(telemetry.SpanHandle)
	if len(handles) < 7 {
		t.Fatalf("%d handle spans, want at least 7", len(handles))
	}
	for _, s := range handles {
		if _, ok := byID[s.Parent().SpanID().String()]; !ok {
			t.Errorf("handle span of %s v%d is not the child of a batch span", attr(s, telemetry.AttrStreamID).AsString(), attr(s, telemetry.AttrStreamVersion).AsInt64())
		}
	}
	rm := f.collect(t)
	if p := find(t, rm, telemetry.MetricBatchDuration, telemetry.AttrProjection.String("batched"), telemetry.AttrOutcome.String("ok")); p.count != 3 {
		t.Errorf("batch duration count %d, want 3", p.count)
	}
	if p := find(t, rm, telemetry.MetricBatchEvents, telemetry.AttrProjection.String("batched"), telemetry.AttrOutcome.String("ok")); p.value != 7 {
		t.Errorf("batch events %v, want 7", p.value)
	}
}
