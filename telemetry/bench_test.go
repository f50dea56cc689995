package telemetry_test

import (
	"context"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/telemetry"
)

// BenchmarkAppendOverhead measures what the Store wrapper adds to an
// append on the in-memory store (the cheapest store, so the worst ratio):
// bare, wrapped with no-op providers, wrapped with the SDK (every span
// sampled and recorded, no exporter; a manual metric reader).
func BenchmarkAppendOverhead(b *testing.B) {
	sdk := func() *telemetry.Config {
		return &telemetry.Config{
			TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample())),
			MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
		}
	}
	cases := []struct {
		name string
		cfg  *telemetry.Config // nil: bare store
	}{
		{"bare", nil},
		{"noop", &telemetry.Config{TracerProvider: noop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()}},
		{"sdk", sdk()},
	}
	ev := eventstore.Event{Type: "Deposited", Data: []byte(`{"amount":10}`)}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var store eventstore.Store = memory.New(nil)
			if c.cfg != nil {
				s, err := telemetry.NewStore(store, c.cfg)
				if err != nil {
					b.Fatal(err)
				}
				store = s
			}
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := store.Append(ctx, "acc", eventstore.Exact(int64(i)), ev); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
