package telemetry_test

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/telemetry"
)

// The relay publishes through a publisher wrapped with NewPublisher, and a
// consumer's handler wrapped with NewBusHandler continues the trace of the
// append that stored the event.
func ExampleNewBusHandler() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	cfg := &telemetry.Config{TracerProvider: tp}
	store, err := telemetry.NewStore(memory.New(nil), cfg)
	if err != nil {
		panic(err)
	}
	pub, err := telemetry.NewPublisher(eventbus.NewMemoryBus(nil), cfg) // eventbus.NewRelay(store, storage, pub, nil)
	if err != nil {
		panic(err)
	}
	var handlerTrace trace.TraceID
	h, err := telemetry.NewBusHandler(eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		handlerTrace = trace.SpanContextFromContext(ctx).TraceID()
		return nil
	}), cfg) // eventbus.Consumer{Group: "mailer", Handler: h}
	if err != nil {
		panic(err)
	}

	ctx, request := tp.Tracer("shop").Start(context.Background(), "POST /orders")
	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, eventstore.Event{Type: "Ordered", Data: []byte(`{}`)}); err != nil {
		panic(err)
	}
	request.End()

	// What the relay does with each stored event, then what the bus does.
	recs, err := store.ReadAll(context.Background(), eventstore.Position{}, 10)
	if err != nil {
		panic(err)
	}
	m := eventbus.FromRecord(recs[0])
	if err := pub.PublishAsync(context.Background(), m); err != nil {
		panic(err)
	}
	if err := pub.Flush(context.Background()); err != nil {
		panic(err)
	}
	if err := h.Handle(context.Background(), eventbus.Delivery{Message: m, Group: "mailer", Attempt: 1}); err != nil {
		panic(err)
	}
	for _, s := range spans.Ended() {
		if s.Name() == telemetry.SpanRelayPublish {
			fmt.Println("span:", s.Name(), "messages:", attr(s, telemetry.AttrMessages).AsInt64())
		}
	}
	fmt.Println("consumer in the request's trace:", handlerTrace == request.SpanContext().TraceID())
	// Output:
	// span: chronicle.relay.publish messages: 1
	// consumer in the request's trace: true
}
