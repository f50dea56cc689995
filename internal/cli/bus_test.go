package cli

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/natsbus"
	"github.com/chronicle-go/chronicle/natsbus/natstest"
)

func TestBusArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args      []string
		wantCode  int
		wantError string
	}{
		{[]string{"bus"}, 2, "missing subcommand"},
		{[]string{"bus", "queues"}, 2, `unknown subcommand "queues"`},
		{[]string{"bus", "dead-letters"}, 2, "missing dead-letters subcommand"},
		{[]string{"bus", "dead-letters", "bury"}, 2, `unknown dead-letters subcommand "bury"`},
		{[]string{"bus", "dead-letters", "list", "x"}, 2, "takes no arguments"},
		{[]string{"bus", "dead-letters", "list", "--limit=-1"}, 2, "must not be negative"},
		{[]string{"bus", "dead-letters", "replay"}, 2, "one or more dead letter IDs"},
		{[]string{"bus", "dead-letters", "discard", "x1"}, 2, `"x1" is not a dead letter ID`},
		{[]string{"bus", "dead-letters", "list"}, 1, "no nats url"},
		{[]string{"bus", "dead-letters", "list", "--nats", "nats://127.0.0.1:1"}, 1, "event bus unavailable"},
	}
	for _, tt := range tests {
		code, _, stderr := run(t, nil, tt.args...)
		if code != tt.wantCode || !strings.Contains(stderr, tt.wantError) {
			t.Errorf("chronicle %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), code, stderr, tt.wantCode, tt.wantError)
		}
	}
}

func TestBusDeadLetters(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := natstest.PrivateURL(t)
	nc, err := natsbus.Connect(url, "cli-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	bus, err := natsbus.New(ctx, nc, &natsbus.Config{Stream: "CLITEST", SubjectPrefix: "clitest.events", DeadLetterPrefix: "clitest.dead", Partitions: 2, MemoryStorage: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.DeleteStreams(context.Background())
	if code, _, stderr := run(t, nil, "bus", "dead-letters", "list", "--nats", url, "--stream", "MISSING"); code != 1 || !strings.Contains(stderr, "stream not found") {
		t.Fatalf("missing stream: exit %d, %q", code, stderr)
	}

	sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "mailer", Handler: eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		if d.Attempt == 1 && d.StreamID != "replayed" {
			return eventbus.Permanent(errors.New("mailbox full"))
		}
		return nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close(ctx)
	for _, s := range []string{"user-1", "user-2"} {
		if err := bus.Publish(ctx, eventbus.Message{EventID: eventstore.NewEventID(), Type: "UserRegistered", SchemaVersion: 1, StreamID: s, StreamVersion: 1}); err != nil {
			t.Fatal(err)
		}
	}
	var dls []eventbus.DeadLetter
	waitFor(t, func() bool {
		dls, err = bus.DeadLetters(ctx, eventbus.DeadLetterFilter{})
		return err == nil && len(dls) == 2
	})
	out, _ := mustRun(t, nil, 0, "bus", "dead-letters", "list", "--nats", url, "--stream", "CLITEST")
	wantContains(t, "list", out, "mailbox full")
	wantContains(t, "list", out, "mailer")
	out, _ = mustRun(t, nil, 0, "bus", "dead-letters", "list", "--nats", url, "--stream", "CLITEST", "--json", "--group", "mailer")
	var listed []busDeadLetterJSON
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != 2 || listed[0].Attempts != 1 {
		t.Fatalf("json list %q: %v", out, err)
	}
	mustRun(t, nil, 0, "bus", "dead-letters", "discard", dls[0].ID, "--nats", url, "--stream", "CLITEST")
	out, _ = mustRun(t, nil, 0, "bus", "dead-letters", "replay", dls[1].ID, "--nats", url, "--stream", "CLITEST")
	wantContains(t, "replay", out, "replayed")
	// The replay is handled (attempt 1 of the replay consumer fails: mailbox
	// full again) and comes back as a new dead letter.
	waitFor(t, func() bool {
		dls, err = bus.DeadLetters(ctx, eventbus.DeadLetterFilter{})
		return err == nil && len(dls) == 1 && dls[0].ID != listed[1].ID
	})
	if code, _, stderr := run(t, nil, "bus", "dead-letters", "discard", dls[0].ID+"0", "--nats", url, "--stream", "CLITEST"); code != 1 || !strings.Contains(stderr, "dead letter not found") {
		t.Fatalf("discard unknown: exit %d, %q", code, stderr)
	}
}
