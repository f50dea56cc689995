package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
)

// TestExportToStdout runs the story with -otel-stdout's exporters: the
// spans of the appends and of the projection handler that handled them
// share traces. Not parallel: it sets the global providers.
func TestExportToStdout(t *testing.T) {
	tp, mp := otel.GetTracerProvider(), otel.GetMeterProvider()
	t.Cleanup(func() {
		otel.SetTracerProvider(tp)
		otel.SetMeterProvider(mp)
	})
	var exported, story bytes.Buffer
	shutdown, err := exportToStdout(&exported)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), &story, ""); err != nil {
		t.Fatalf("run: %v\n%s", err, story.String())
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	traces := map[string][]string{} // trace ID -> span names
	dec := json.NewDecoder(&exported)
	metrics := 0
	for dec.More() {
		var v struct {
			Name         string
			SpanContext  struct{ TraceID string }
			ScopeMetrics []struct {
				Metrics []struct{ Name string }
			}
		}
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("exported output: %v", err)
		}
		if v.Name != "" {
			traces[v.SpanContext.TraceID] = append(traces[v.SpanContext.TraceID], v.Name)
		}
		for _, sm := range v.ScopeMetrics {
			metrics += len(sm.Metrics)
		}
	}
	joined := 0
	for _, names := range traces {
		s := strings.Join(names, " ")
		if strings.Contains(s, "chronicle.append") && strings.Contains(s, "chronicle.projection.handle") {
			joined++
		}
	}
	if joined == 0 || metrics == 0 {
		t.Errorf("%d traces with an append and its handling, %d metrics; traces: %v", joined, metrics, traces)
	}
}
