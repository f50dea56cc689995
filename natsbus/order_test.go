package natsbus_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/natsbus"
	"github.com/chronicle-go/chronicle/natsbus/natstest"
)

// TestPublishAsyncNeverOvertakesAFailure fails one asynchronous
// publication on the server (the stream's size limit was lowered behind
// the bus's back): the publications queued after it must not be stored
// ahead of it, or a republished message would land after its stream's
// later events. Once Flush reported the failure, publishing again works.
func TestPublishAsyncNeverOvertakesAFailure(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	url := natstest.URL(t)
	bus, _ := setup(t, url, nil)
	js, stream := busStream(t, ctx, url, "chronicle-test-admin", bus)
	cfg := stream.CachedInfo().Config
	cfg.MaxMsgSize = 2048
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	msg := func(stream string, v int64, size int) eventbus.Message {
		return eventbus.Message{EventID: eventstore.NewEventID(), Type: "Thing", SchemaVersion: 1, StreamID: stream, StreamVersion: v, Data: make([]byte, size)}
	}
	m1, m2, m3, m4 := msg("s", 1, 10), msg("s", 2, 4000), msg("s", 3, 10), msg("t", 1, 10)
	for _, m := range []eventbus.Message{m1, m2, m3, m4} {
		if err := bus.PublishAsync(ctx, m); err != nil {
			t.Fatalf("publish async: %v", err)
		}
	}
	if err := bus.Flush(ctx); !errors.Is(err, eventbus.ErrMessageTooLarge) {
		t.Fatalf("flush: %v, want the server's refusal of the large message", err)
	}
	if got, want := storedIDs(t, ctx, stream), []string{m1.EventID.String()}; !slices.Equal(got, want) {
		t.Fatalf("the stream holds %v, want only %v: publications after a failed one must not be stored", got, want)
	}

	// The relay parks the large message and publishes the rest again.
	for _, m := range []eventbus.Message{m3, m4} {
		if err := bus.PublishAsync(ctx, m); err != nil {
			t.Fatalf("publish async after the failure: %v", err)
		}
	}
	if err := bus.Flush(ctx); err != nil {
		t.Fatalf("flush after the failure: %v", err)
	}
	want := []string{m1.EventID.String(), m3.EventID.String(), m4.EventID.String()}
	if got := storedIDs(t, ctx, stream); !slices.Equal(got, want) {
		t.Fatalf("the stream holds %v, want %v", got, want)
	}
}

// busStream connects to url as name and returns the JetStream context and
// bus's stream; the connection closes when the test ends.
func busStream(t *testing.T, ctx context.Context, url, name string, bus *natsbus.Bus) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	nc := connect(t, url, name)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, bus.Config().Stream)
	if err != nil {
		t.Fatal(err)
	}
	return js, stream
}

// storedIDs returns the message IDs of the stream's messages, in order.
func storedIDs(t *testing.T, ctx context.Context, stream jetstream.Stream) []string {
	t.Helper()
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		raw, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, raw.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}

// TestPublishExpectsItsStream replaces the bus's JetStream stream behind
// its back with one of another name on the same subjects: publications
// must fail (each expects the bus's stream) instead of landing in it.
func TestPublishExpectsItsStream(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	url := natstest.URL(t)
	bus, _ := setup(t, url, nil)
	js, stream := busStream(t, ctx, url, "chronicle-test-admin", bus)
	cfg := stream.CachedInfo().Config
	if err := js.DeleteStream(ctx, cfg.Name); err != nil {
		t.Fatal(err)
	}
	cfg.Name += "-impostor"
	impostor, err := js.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), cfg.Name) })
	m := eventbus.Message{EventID: eventstore.NewEventID(), Type: "Thing", SchemaVersion: 1, StreamID: "s", StreamVersion: 1, Data: []byte(`{}`)}
	if err := bus.PublishAsync(ctx, m); err != nil {
		t.Fatalf("publish async: %v", err)
	}
	// The server's refusal: "expected stream does not match" (10060).
	if err := bus.Flush(ctx); !errors.Is(err, eventbus.ErrPublishFailed) || !strings.Contains(err.Error(), "expected stream does not match") {
		t.Fatalf("flush: %v, want a failed publication (the stream is not the bus's)", err)
	}
	if err := bus.Publish(ctx, m); err == nil || !strings.Contains(err.Error(), "expected stream does not match") {
		t.Fatalf("publish: %v, want the server's refusal (the stream is not the bus's)", err)
	}
	if got := storedIDs(t, ctx, impostor); len(got) != 0 {
		t.Fatalf("the impostor stream holds %v, want nothing", got)
	}
}
