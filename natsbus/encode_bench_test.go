package natsbus

import (
	"testing"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
)

// BenchmarkEncode measures building the NATS message of one event, which
// the relay does for every event it publishes.
func BenchmarkEncode(b *testing.B) {
	cfg := Config{Stream: "CHRONICLE", SubjectPrefix: "chronicle.events", Partitions: 16}
	cfg.Subject = func(m eventbus.Message) string { return TypeToken(m.Type) }
	bus := &Bus{cfg: cfg, maxSize: 1 << 20, streamHeader: []string{cfg.Stream}}
	m := envelopeMessage("account-000042", eventstore.Metadata{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bus.encode(m); err != nil {
			b.Fatal(err)
		}
	}
}
