package telemetry_test

import (
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/eventstore/storetest"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/telemetry"
)

// TestConformance runs the store conformance suite through the wrapper:
// telemetry changes nothing a store does.
func TestConformance(t *testing.T) {
	t.Parallel()
	wrap := func(t *testing.T, cfg *telemetry.Config) eventstore.Store {
		s, err := telemetry.NewStore(memory.New(nil), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("noop", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) eventstore.Store {
			return wrap(t, &telemetry.Config{TracerProvider: noop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()})
		}, nil)
	})
	// Recording spans and metrics, without the trace context headers (the
	// suite reads back exactly the metadata it appended; the headers are
	// tested in TestTraceContextInMetadata).
	t.Run("sdk", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) eventstore.Store {
			tp := sdktrace.NewTracerProvider()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			return wrap(t, &telemetry.Config{TracerProvider: tp, MeterProvider: mp, Propagator: propagation.NewCompositeTextMapPropagator()})
		}, nil)
	})
}
