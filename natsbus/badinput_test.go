package natsbus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/natsbus"
)

func TestUnreachableServer(t *testing.T) {
	t.Parallel()
	_, err := natsbus.Connect("nats://127.0.0.1:1", "nobody")
	if !errors.Is(err, eventbus.ErrUnavailable) {
		t.Fatalf("connect to a closed port: %v, want ErrUnavailable", err)
	}
}

func TestMessageTooLarge(t *testing.T) {
	t.Parallel()
	bus, _ := setup(t, "", &natsbus.Config{MaxMsgSize: 4096})
	ctx := context.Background()
	m := eventbus.Message{EventID: eventstore.NewEventID(), Type: "Big", SchemaVersion: 1, StreamID: "s", StreamVersion: 1, Data: make([]byte, 5000)}
	for name, err := range map[string]error{"Publish": bus.Publish(ctx, m), "PublishAsync": bus.PublishAsync(ctx, m)} {
		if !errors.Is(err, eventbus.ErrMessageTooLarge) || !errors.Is(err, eventbus.ErrPermanent) {
			t.Errorf("%s of a message too large: %v, want ErrMessageTooLarge and ErrPermanent", name, err)
		}
	}
	if err := bus.Flush(ctx); err != nil {
		t.Fatalf("flush after a refused message: %v", err)
	}
}

func TestMissingStream(t *testing.T) {
	t.Parallel()
	bus, nc := setup(t, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.DeleteStreams(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "g", Handler: eventbus.HandlerFunc(func(context.Context, eventbus.Delivery) error { return nil })})
	if !errors.Is(err, eventbus.ErrUnavailable) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("subscribe without a stream: %v, want ErrUnavailable saying it is missing", err)
	}
	m := eventbus.Message{EventID: eventstore.NewEventID(), Type: "T", SchemaVersion: 1, StreamID: "s", StreamVersion: 1}
	if err := bus.Publish(ctx, m); !errors.Is(err, eventbus.ErrPublishFailed) {
		t.Fatalf("publish without a stream: %v, want ErrPublishFailed", err)
	}
	// Asynchronously: the server answers "no responders" at once, well
	// before the ack timeout.
	start := time.Now()
	if err := bus.PublishAsync(ctx, m); err != nil {
		t.Fatalf("queue without a stream: %v, want the failure at Flush", err)
	}
	if err := bus.Flush(ctx); !errors.Is(err, eventbus.ErrPublishFailed) || !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("flush without a stream: %v, want ErrPublishFailed from no stream response", err)
	}
	if d := time.Since(start); d >= bus.Config().AckTimeout {
		t.Fatalf("the failure took %v, as long as the ack timeout", d)
	}
	cfg := bus.Config()
	cfg.Existing = true
	if _, err := natsbus.New(ctx, nc, &cfg); !errors.Is(err, natsbus.ErrStreamNotFound) {
		t.Fatalf("open a missing stream: %v, want ErrStreamNotFound", err)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	_, nc := setup(t, "", nil)
	ctx := context.Background()
	for _, cfg := range []natsbus.Config{
		{Stream: "has space"},
		{SubjectPrefix: "a.*.b"},
		{SubjectPrefix: "same", DeadLetterPrefix: "same"},
		{Partitions: 5000},
		{Duplicates: -time.Second},
	} {
		if _, err := natsbus.New(ctx, nc, &cfg); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("New(%+v): %v, want ErrInvalidInput", cfg, err)
		}
	}
	if _, err := natsbus.New(ctx, nil, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("New without a connection: %v, want ErrInvalidInput", err)
	}
	bus, _ := setup(t, "", nil)
	cfg := bus.Config()
	cfg.Partitions++
	if _, err := natsbus.New(ctx, nc, &cfg); !errors.Is(err, eventstore.ErrInvalidInput) || !strings.Contains(err.Error(), "partitions") {
		t.Errorf("changing the partitions of a stream: %v, want ErrInvalidInput", err)
	}
}

func TestTypeToken(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"UserRegistered":  "UserRegistered",
		"user.registered": "user~2Eregistered",
		"a b*>":           "a~20b~2A~3E",
		"":                "~",
		"é":               "~C3~A9",
	} {
		if got := natsbus.TypeToken(in); got != want {
			t.Errorf("TypeToken(%q) = %q, want %q", in, got, want)
		}
	}
}

// A stream opened as it exists (Config.Existing) whose subject prefix has
// a wildcard is refused at New: publications check only their last token.
func TestExistingStreamWithWildcardPrefix(t *testing.T) {
	t.Parallel()
	bus, nc := setup(t, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := bus.Config()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: cfg.Stream, Subjects: []string{"wild.*.>"}}); err != nil {
		t.Fatal(err)
	}
	cfg.Existing = true
	_, err = natsbus.New(ctx, nc, &cfg)
	if !errors.Is(err, eventstore.ErrInvalidInput) || !strings.Contains(err.Error(), `"wild.*"`) {
		t.Fatalf("open a stream whose subject prefix has a wildcard: %v, want ErrInvalidInput naming it", err)
	}
}
