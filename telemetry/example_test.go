package telemetry_test

import (
	"context"
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/telemetry"
)

// A traced and measured store: the append runs in a span whose context
// is stored in the event's metadata, and feeds the append metrics. In a
// service, the providers come from the SDK set up with your exporters
// (OTLP, Prometheus, stdout); here they record in memory.
func ExampleNewStore() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	store, err := telemetry.NewStore(memory.New(nil), &telemetry.Config{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		panic(err)
	}

	ctx, request := tp.Tracer("bank").Start(context.Background(), "POST /deposits")
	_, err = store.Append(ctx, "account-1", eventstore.NoStream, eventstore.Event{Type: "Deposited", Data: []byte(`{"amount":10}`)})
	if err != nil {
		panic(err)
	}
	request.End()

	recs, err := store.ReadStream(context.Background(), "account-1", eventstore.ReadStreamOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println("stored trace context:", recs[0].Metadata.Headers["traceparent"] != "")
	for _, s := range spans.Ended() {
		fmt.Println("span:", s.Name())
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
			fmt.Printf("%s: %d\n", m.Name, sum.DataPoints[0].Value)
		}
	}
	// Output:
	// stored trace context: true
	// span: chronicle.append
	// span: POST /deposits
	// span: chronicle.read_stream
	// chronicle.append.events: 1
	// chronicle.append.bytes: 13
	// chronicle.read.events: 1
}

// A handler wrapped with NewHandler continues the trace of the append
// that stored its event.
func ExampleNewHandler() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	cfg := &telemetry.Config{TracerProvider: tp}
	store, err := telemetry.NewStore(memory.New(nil), cfg)
	if err != nil {
		panic(err)
	}
	var handlerTrace trace.TraceID
	h, err := telemetry.NewHandler(projection.HandlerFunc(func(ctx context.Context, ev projection.Event) error {
		handlerTrace = trace.SpanContextFromContext(ctx).TraceID()
		return nil
	}), cfg)
	if err != nil {
		panic(err)
	}

	ctx, request := tp.Tracer("shop").Start(context.Background(), "POST /orders")
	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, eventstore.Event{Type: "Ordered", Data: []byte(`{}`)}); err != nil {
		panic(err)
	}
	request.End()

	// The projection runner delivers the stored event to the handler.
	recs, err := store.ReadAll(context.Background(), eventstore.Position{}, 10)
	if err != nil {
		panic(err)
	}
	if err := h.Handle(context.Background(), projection.Event{Record: recs[0], Projection: "shipping"}); err != nil {
		panic(err)
	}
	fmt.Println("handler in the request's trace:", handlerTrace == request.SpanContext().TraceID())
	// Output:
	// handler in the request's trace: true
}
