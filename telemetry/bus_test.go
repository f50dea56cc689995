package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/telemetry"
)

// setupMemory is a fixture without PostgreSQL: in-memory exporters and a
// telemetry store wrapping the memory store.
func setupMemory(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	f.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(f.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader))
	t.Cleanup(func() {
		_ = f.tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	f.cfg = &telemetry.Config{TracerProvider: f.tp, MeterProvider: mp}
	var err error
	if f.store, err = telemetry.NewStore(memory.New(nil), f.cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRelayAndConsumerTrace: an append under a command's span, relayed
// through a wrapped publisher to a consumer whose handler is wrapped,
// gives publish spans counting the messages and handler spans in the
// command's trace, children of the append span.
func TestRelayAndConsumerTrace(t *testing.T) {
	t.Parallel()
	f := setupMemory(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	cmdCtx, cmd := f.tp.Tracer("test").Start(ctx, "command")
	events := []eventstore.Event{event("Opened", `{"a":1}`), event("Deposited", `{"amount":10}`), event("Deposited", `{"amount":7}`)}
	if _, err := f.store.Append(cmdCtx, "acc-1", eventstore.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	cmd.End()
	var wantBytes int64
	for _, e := range events {
		wantBytes += int64(len(e.Data))
	}
	stored, err := f.store.ReadStream(ctx, "acc-1", eventstore.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}

	bus := eventbus.NewMemoryBus(&eventbus.MemoryConfig{Logger: quiet})
	pub, err := telemetry.NewPublisher(bus, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := memory.NewProjectionStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := eventbus.NewRelay(f.store, ps, pub, &eventbus.RelayConfig{
		Logger: quiet,
		Runner: &projection.Config{Logger: quiet, PollInterval: 10 * time.Millisecond, AcquireInterval: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var got []eventbus.Delivery
	all := make(chan struct{})
	h, err := telemetry.NewBusHandler(eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, d)
		if len(got) == len(events) {
			close(all)
		}
		return nil
	}), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "mailer", Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	select {
	case <-all:
	case <-ctx.Done():
		t.Fatal("timed out waiting for the consumer")
	}
	// The checkpoint commits after the Flush that ends the publish span.
	if err := relay.Runner().WaitForHead(ctx, relay.Name()); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done
	if err := sub.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The trace context passes through the relay unchanged.
	for i, d := range got {
		if tp := d.Metadata.Headers["traceparent"]; tp == "" || tp != stored[i].Metadata.Headers["traceparent"] {
			t.Fatalf("message %d traceparent %q, stored %q", i, tp, stored[i].Metadata.Headers["traceparent"])
		}
	}

	appends := f.spansNamed("chronicle.append")
	if len(appends) != 1 {
		t.Fatalf("%d append spans, want 1", len(appends))
	}
	appendSC := appends[0].SpanContext()

	var messages, bytes int64
	linked := false
	for _, s := range f.spansNamed(telemetry.SpanRelayPublish) {
		if s.Status().Code == codes.Error {
			t.Fatalf("publish span failed: %v", s.Status())
		}
		if s.SpanKind() != trace.SpanKindProducer {
			t.Errorf("publish span kind %v", s.SpanKind())
		}
		messages += attr(s, telemetry.AttrMessages).AsInt64()
		bytes += attr(s, telemetry.AttrBytes).AsInt64()
		for _, l := range s.Links() {
			linked = linked || l.SpanContext.SpanID() == appendSC.SpanID()
		}
	}
	if messages != int64(len(events)) || bytes != wantBytes {
		t.Fatalf("publish spans count %d messages, %d bytes; want %d, %d", messages, bytes, len(events), wantBytes)
	}
	if !linked {
		t.Error("no publish span links to the append span")
	}

	handles := f.spansNamed(telemetry.SpanBusHandle)
	if len(handles) != len(events) {
		t.Fatalf("%d handle spans, want %d", len(handles), len(events))
	}
	for _, s := range handles {
		if s.SpanContext().TraceID() != cmd.SpanContext().TraceID() {
			t.Errorf("handle span in trace %s, want the command's %s", s.SpanContext().TraceID(), cmd.SpanContext().TraceID())
		}
		if s.Parent().SpanID() != appendSC.SpanID() {
			t.Errorf("handle span's parent %s, want the append span %s", s.Parent().SpanID(), appendSC.SpanID())
		}
		if g := attr(s, telemetry.AttrGroup).AsString(); g != "mailer" {
			t.Errorf("handle span group %q", g)
		}
	}

	rm := f.collect(t)
	if p := find(t, rm, telemetry.MetricRelayPublished); p.value != float64(len(events)) {
		t.Errorf("%s = %v, want %d", telemetry.MetricRelayPublished, p.value, len(events))
	}
	if p := find(t, rm, telemetry.MetricRelayFlushDuration, telemetry.AttrOutcome.String("ok")); p.count == 0 {
		t.Errorf("no %s point", telemetry.MetricRelayFlushDuration)
	}
	if p := find(t, rm, telemetry.MetricBusHandled, telemetry.AttrGroup.String("mailer"), telemetry.AttrOutcome.String("ok")); p.value != float64(len(events)) {
		t.Errorf("%s ok = %v, want %d", telemetry.MetricBusHandled, p.value, len(events))
	}
}

// flakyPublisher is an AsyncPublisher whose Flush fails while failFlush
// is set and whose PublishAsync refuses the message of type "Refused".
type flakyPublisher struct {
	mu        sync.Mutex
	failFlush bool
	queued    int
}

func (p *flakyPublisher) PublishAsync(ctx context.Context, m eventbus.Message) error {
	if m.Type == "Refused" {
		return fmt.Errorf("broker down: %w", eventbus.ErrUnavailable)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queued++
	return nil
}

func (p *flakyPublisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failFlush {
		return fmt.Errorf("ack timeout: %w", eventbus.ErrPublishFailed)
	}
	return nil
}

func message(typ, data string) eventbus.Message {
	return eventbus.Message{EventID: eventstore.NewEventID(), Type: typ, StreamID: "s", StreamVersion: 1, Data: []byte(data)}
}

// TestPublisherFlushFailure: a batch whose Flush fails is an error span,
// counted as a failure and not as published; the next batch is a span of
// its own.
func TestPublisherFlushFailure(t *testing.T) {
	t.Parallel()
	f := setupMemory(t)
	ctx := t.Context()
	next := &flakyPublisher{failFlush: true}
	pub, err := telemetry.NewPublisher(next, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(ctx); !errors.Is(err, eventbus.ErrPublishFailed) {
		t.Fatalf("empty flush: %v", err)
	}
	if n := len(f.spansNamed(telemetry.SpanRelayPublish)); n != 0 {
		t.Fatalf("an empty flush made %d spans", n)
	}
	for _, m := range []eventbus.Message{message("A", "12"), message("B", "345")} {
		if err := pub.PublishAsync(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.PublishAsync(ctx, message("Refused", "x")); !errors.Is(err, eventbus.ErrUnavailable) {
		t.Fatalf("refused message: %v, want ErrUnavailable", err)
	}
	if err := pub.Flush(ctx); !errors.Is(err, eventbus.ErrPublishFailed) {
		t.Fatalf("flush: %v, want ErrPublishFailed", err)
	}
	next.mu.Lock()
	next.failFlush = false
	next.mu.Unlock()
	if err := pub.PublishAsync(ctx, message("A", "6789")); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	spans := f.spansNamed(telemetry.SpanRelayPublish)
	if len(spans) != 2 {
		t.Fatalf("%d publish spans, want 2", len(spans))
	}
	failed, ok := spans[0], spans[1]
	if failed.Status().Code != codes.Error || attr(failed, telemetry.AttrMessages).AsInt64() != 2 || attr(failed, telemetry.AttrBytes).AsInt64() != 5 {
		t.Errorf("failed batch: status %v, messages %v, bytes %v", failed.Status(), attr(failed, telemetry.AttrMessages), attr(failed, telemetry.AttrBytes))
	}
	if !slices.ContainsFunc(failed.Events(), func(e sdktrace.Event) bool { return e.Name == "publish refused" }) {
		t.Error("the refused message is no event of the span")
	}
	if ok.Status().Code == codes.Error || attr(ok, telemetry.AttrMessages).AsInt64() != 1 || attr(ok, telemetry.AttrBytes).AsInt64() != 4 {
		t.Errorf("second batch: status %v, messages %v, bytes %v", ok.Status(), attr(ok, telemetry.AttrMessages), attr(ok, telemetry.AttrBytes))
	}

	rm := f.collect(t)
	if p := find(t, rm, telemetry.MetricRelayFailures, telemetry.AttrOperation.String("flush")); p.value != 2 {
		t.Errorf("flush failures = %v, want 2", p.value)
	}
	if p := find(t, rm, telemetry.MetricRelayFailures, telemetry.AttrOperation.String("publish")); p.value != 1 {
		t.Errorf("publish failures = %v, want 1", p.value)
	}
	if p := find(t, rm, telemetry.MetricRelayPublished); p.value != 1 {
		t.Errorf("published = %v, want 1 (the failed batch is not)", p.value)
	}
	if p := find(t, rm, telemetry.MetricRelayFlushDuration, telemetry.AttrOutcome.String("error")); p.count != 2 {
		t.Errorf("failed flush durations = %d, want 2", p.count)
	}
}

// TestBusHandler: outcomes, error status, the parent of a message without
// trace context, and the pass-through of Types and Err.
func TestBusHandler(t *testing.T) {
	t.Parallel()
	f := setupMemory(t)
	errBoom := errors.New("boom")
	h, err := telemetry.NewBusHandler(eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		switch d.Type {
		case "Fails":
			return errBoom
		case "Poison":
			return eventbus.Permanent(errBoom)
		}
		return nil
	}), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	parentCtx, parent := f.tp.Tracer("test").Start(t.Context(), "consumer loop")
	for _, typ := range []string{"Ok", "Fails", "Poison"} {
		err := h.Handle(parentCtx, eventbus.Delivery{Message: message(typ, "{}"), Group: "g", Attempt: 2})
		if (typ == "Ok") != (err == nil) {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	parent.End()
	spans := f.spansNamed(telemetry.SpanBusHandle)
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	for i, want := range []codes.Code{codes.Unset, codes.Error, codes.Error} {
		if spans[i].Status().Code != want {
			t.Errorf("span %d status %v, want %v", i, spans[i].Status(), want)
		}
		if spans[i].Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %d: parent is not the span in ctx", i)
		}
		if spans[i].SpanKind() != trace.SpanKindConsumer || attr(spans[i], telemetry.AttrAttempt).AsInt64() != 2 {
			t.Errorf("span %d: kind %v, attempt %v", i, spans[i].SpanKind(), attr(spans[i], telemetry.AttrAttempt))
		}
	}
	rm := f.collect(t)
	for _, oc := range []string{"ok", "error", "permanent"} {
		if p := find(t, rm, telemetry.MetricBusHandled, telemetry.AttrGroup.String("g"), telemetry.AttrOutcome.String(oc)); p.value != 1 {
			t.Errorf("handled %s = %v, want 1", oc, p.value)
		}
	}

	// Types and Err of the wrapped handler show through the wrapper.
	reg := eventstore.NewRegistry(nil)
	if err := eventstore.Register[opened](reg, "Opened"); err != nil {
		t.Fatal(err)
	}
	typed := eventbus.NewHandlers(reg)
	eventbus.On(typed, func(context.Context, eventbus.Delivery, opened) error { return nil })
	if err := typed.Err(); err != nil {
		t.Fatal(err)
	}
	wrapped, err := telemetry.NewBusHandler(typed, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := eventbus.Consumer{Group: "g", Handler: wrapped}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Types, typed.Types()) || len(c.Types) != 1 {
		t.Errorf("consumer types %v, want the handler's %v", c.Types, typed.Types())
	}
	unregistered := eventbus.NewHandlers(reg)
	eventbus.On(unregistered, func(context.Context, eventbus.Delivery, struct{ X int }) error { return nil })
	if _, err := telemetry.NewBusHandler(unregistered, f.cfg); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("handler with a registration mistake: %v, want ErrInvalidInput", err)
	}
	if _, err := telemetry.NewBusHandler(nil, f.cfg); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("nil handler: %v, want ErrInvalidInput", err)
	}
	if _, err := telemetry.NewPublisher(nil, f.cfg); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("nil publisher: %v, want ErrInvalidInput", err)
	}
}

type opened struct {
	Owner string `json:"owner"`
}
