package natsbus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/natsbus"
	"github.com/chronicle-go/chronicle/natsbus/natstest"
)

// The answers a JetStream server gives to a publication, as the
// asynchronous publisher reads them.
func TestAckDecoding(t *testing.T) {
	t.Parallel()
	noResponders := &nats.Msg{Header: nats.Header{"Status": []string{"503"}}}
	for _, tc := range []struct {
		name string
		msg  *nats.Msg
		want error // nil: acknowledged
	}{
		{"ack", &nats.Msg{Data: []byte(`{"stream":"EV","seq":42}`)}, nil},
		{"ack with domain", &nats.Msg{Data: []byte(`{"stream":"EV", "domain":"hub", "seq":42}`)}, nil},
		{"duplicate", &nats.Msg{Data: []byte(`{"stream":"EV","seq":42,"duplicate":true}`)}, nil},
		{"fields in another order", &nats.Msg{Data: []byte(`{"seq":42,"stream":"EV"}`)}, nil},
		{"no stream", noResponders, jetstream.ErrNoStreamResponse},
		{"wrong last message id", &nats.Msg{Data: []byte(`{"error":{"code":400,"err_code":10070,"description":"wrong last msg ID: x"}}`)}, &jetstream.APIError{ErrorCode: 10070}},
		{"wrong last message id, as the server writes it", &nats.Msg{Data: []byte(`{"error":{"code":400,"err_code":10070,"description":"wrong last msg ID: x"},"stream":"EV","seq":0}`)}, &jetstream.APIError{ErrorCode: 10070}},
		{"another status", &nats.Msg{Header: nats.Header{"Status": []string{"408"}}}, jetstream.ErrInvalidJSAck},
		{"another stream", &nats.Msg{Data: []byte(`{"stream":"EVX","seq":1}`)}, jetstream.ErrInvalidJSAck},
		{"a prefix of the stream", &nats.Msg{Data: []byte(`{"stream":"E","seq":1}`)}, jetstream.ErrInvalidJSAck},
		{"not JSON", &nats.Msg{Data: []byte(`+OK`)}, jetstream.ErrInvalidJSAck},
		{"empty", &nats.Msg{}, jetstream.ErrInvalidJSAck},
		{"no stream named", &nats.Msg{Data: []byte(`{"seq":1}`)}, jetstream.ErrInvalidJSAck},
	} {
		err := natsbus.AckErrorForTest("EV", tc.msg)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v, want acknowledged", tc.name, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// standIn replaces bus's event stream with a plain subscriber to its
// subjects, which answers nothing: the test sees each publication and
// answers it (or not) in the stream's place.
func standIn(t *testing.T, ctx context.Context, bus *natsbus.Bus, nc *nats.Conn) *nats.Subscription {
	t.Helper()
	if err := bus.DeleteStreams(ctx); err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(bus.Config().SubjectPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// publishSeen queues a message and returns its publication as the
// stand-in received it.
func publishSeen(t *testing.T, ctx context.Context, bus *natsbus.Bus, sub *nats.Subscription) *nats.Msg {
	t.Helper()
	m := eventbus.Message{EventID: eventstore.NewEventID(), Type: "T", SchemaVersion: 1, StreamID: "s", StreamVersion: 1}
	if err := bus.PublishAsync(ctx, m); err != nil {
		t.Fatalf("queue: %v", err)
	}
	got, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("the publication did not reach the stand-in: %v", err)
	}
	return got
}

// An acknowledgement that never comes fails the publication after
// Config.AckTimeout, reported by one Flush.
func TestPublishAsyncAckTimeout(t *testing.T) {
	t.Parallel()
	bus, nc := setup(t, "", &natsbus.Config{AckTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := standIn(t, ctx, bus, nc)
	start := time.Now()
	publishSeen(t, ctx, bus, sub)
	err := bus.Flush(ctx)
	if !errors.Is(err, eventbus.ErrPublishFailed) || !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
		t.Fatalf("flush with no acknowledgement: %v, want ErrPublishFailed from the ack timeout", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Fatalf("the timeout came after %v, want about 300ms", d)
	}
	if err := bus.Flush(ctx); err != nil {
		t.Fatalf("a second flush: %v, want the failure reported once", err)
	}
}

// A disconnection fails the publications awaiting their acknowledgement at
// once (the server may never have received them), not after the ack
// timeout.
func TestPublishAsyncFailsOnDisconnection(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	bus, nc := setup(t, srv.URL(), &natsbus.Config{AckTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Nobody answers: the publication stays unacknowledged until the
	// disconnection.
	publishSeen(t, ctx, bus, standIn(t, ctx, bus, nc))
	start := time.Now()
	srv.Restart(t, 100*time.Millisecond)
	err := bus.Flush(ctx)
	if !errors.Is(err, eventbus.ErrPublishFailed) || !errors.Is(err, nats.ErrDisconnected) {
		t.Fatalf("flush across a disconnection: %v, want ErrPublishFailed from the disconnection", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the failure came after %v, want it at the disconnection", d)
	}
}

// Answers are matched to publications by their reply subjects: in any
// order, and an answer to a publication no longer awaited (its slot of the
// window reused) counts for nothing.
func TestPublishAsyncMatchesAnswers(t *testing.T) {
	t.Parallel()
	bus, nc := setup(t, "", &natsbus.Config{PublishWindow: 2, AckTimeout: 20 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := standIn(t, ctx, bus, nc)
	ok := []byte(`{"stream":"` + bus.Config().Stream + `","seq":1}`)
	refused := []byte(`{"error":{"code":400,"err_code":10070,"description":"wrong last msg ID"},"stream":"` + bus.Config().Stream + `","seq":0}`)
	publish := func() string { return publishSeen(t, ctx, bus, sub).Reply }
	answer := func(reply string, data []byte) {
		t.Helper()
		if err := nc.Publish(reply, data); err != nil {
			t.Fatal(err)
		}
	}

	// Out of order.
	r1, r2 := publish(), publish()
	answer(r2, ok)
	answer(r1, ok)
	if err := bus.Flush(ctx); err != nil {
		t.Fatalf("flush after answers out of order: %v", err)
	}
	// A late refusal of the first publication, whose slot the third one
	// uses now, must not count for the third.
	r3, r4 := publish(), publish()
	answer(r1, refused)
	answer(r4, ok)
	answer(r3, ok)
	if err := bus.Flush(ctx); err != nil {
		t.Fatalf("flush after a late answer to an earlier publication: %v", err)
	}
	// A refusal counts for its own publication.
	r5, r6 := publish(), publish()
	answer(r5, ok)
	answer(r6, refused)
	if err := bus.Flush(ctx); !errors.Is(err, eventbus.ErrPublishFailed) || !errors.Is(err, &jetstream.APIError{ErrorCode: 10070}) {
		t.Fatalf("flush after a refusal: %v, want ErrPublishFailed with the server's error", err)
	}
}

// Closing the connection fails the publications awaiting their
// acknowledgement at once, not after the ack timeout.
func TestPublishAsyncFailsOnClose(t *testing.T) {
	t.Parallel()
	bus, nc := setup(t, "", &natsbus.Config{AckTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := standIn(t, ctx, bus, nc)
	publishSeen(t, ctx, bus, sub)
	publishSeen(t, ctx, bus, sub)
	start := time.Now()
	nc.Close()
	err := bus.Flush(ctx)
	if !errors.Is(err, eventbus.ErrPublishFailed) || !errors.Is(err, nats.ErrConnectionClosed) {
		t.Fatalf("flush after the connection closed: %v, want ErrPublishFailed from the closed connection", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the failure came after %v, want it at the closing", d)
	}
}
