package natsbus

import (
	"errors"
	"testing"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
)

// BenchmarkEncode measures building the NATS message of one event, which
// the relay does for every event it publishes.
func BenchmarkEncode(b *testing.B) {
	cfg := Config{Stream: "CHRONICLE", SubjectPrefix: "chronicle.events", Partitions: 16}
	cfg.Subject = func(m eventbus.Message) string { return TypeToken(m.Type) }
	bus := &Bus{cfg: cfg, maxSize: 1 << 20}
	m := envelopeMessage("account-000042", eventstore.Metadata{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bus.encode(m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEncodeCountsPublishHeaders checks that the size limit counts the
// headers PublishAsync adds after encode (the expected stream and last
// message ID): a message that fits only without them is refused before
// it is sent, instead of by the server.
func TestEncodeCountsPublishHeaders(t *testing.T) {
	t.Parallel()
	cfg := Config{Stream: "CHRONICLE", SubjectPrefix: "chronicle.events", Partitions: 16}
	cfg.Subject = func(m eventbus.Message) string { return TypeToken(m.Type) }
	m := envelopeMessage("account-000042", eventstore.Metadata{})
	probe := &Bus{cfg: cfg, maxSize: 1 << 20}
	o, err := probe.encode(m)
	if err != nil {
		t.Fatal(err)
	}
	encoded := msgSize(&o.msg) // without the publication's headers
	full := encoded + publishHeadersSize(cfg.Stream)
	for _, tt := range []struct {
		limit int
		ok    bool
	}{{full, true}, {full - 1, false}, {encoded, false}} {
		b := &Bus{cfg: cfg, maxSize: tt.limit}
		_, err := b.encode(m)
		if tt.ok && err != nil {
			t.Errorf("limit %d (the full size): %v", tt.limit, err)
		}
		if !tt.ok && !errors.Is(err, eventbus.ErrMessageTooLarge) {
			t.Errorf("limit %d (below the full size %d): error %v, want ErrMessageTooLarge", tt.limit, full, err)
		}
	}
}
