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

// A disconnection fails the publications awaiting their acknowledgement at
// once (the server may never have received them), not after the ack
// timeout.
func TestPublishAsyncFailsOnDisconnection(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	bus, nc := setup(t, srv.URL(), &natsbus.Config{AckTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A silent subscriber in the stream's place: the publication stays
	// unacknowledged until the disconnection.
	if err := bus.DeleteStreams(ctx); err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(bus.Config().SubjectPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	m := eventbus.Message{EventID: eventstore.NewEventID(), Type: "T", SchemaVersion: 1, StreamID: "s", StreamVersion: 1}
	if err := bus.PublishAsync(ctx, m); err != nil {
		t.Fatalf("queue: %v", err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("the publication did not reach the silent subscriber: %v", err)
	}
	start := time.Now()
	srv.Restart(t, 100*time.Millisecond)
	err = bus.Flush(ctx)
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
	// The test answers in the stream's place.
	if err := bus.DeleteStreams(ctx); err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(bus.Config().SubjectPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	ok := []byte(`{"stream":"` + bus.Config().Stream + `","seq":1}`)
	refused := []byte(`{"error":{"code":400,"err_code":10070,"description":"wrong last msg ID"},"stream":"` + bus.Config().Stream + `","seq":0}`)
	publish := func() string {
		t.Helper()
		m := eventbus.Message{EventID: eventstore.NewEventID(), Type: "T", SchemaVersion: 1, StreamID: "s", StreamVersion: 1}
		if err := bus.PublishAsync(ctx, m); err != nil {
			t.Fatalf("queue: %v", err)
		}
		got, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no publication: %v", err)
		}
		return got.Reply
	}
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
