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
