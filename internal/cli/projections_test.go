package cli

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

func TestProjectionsArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args      []string
		wantCode  int
		wantError string
	}{
		{[]string{"projections"}, 2, "missing subcommand"},
		{[]string{"projections", "sideways"}, 2, `unknown subcommand "sideways"`},
		{[]string{"projections", "status", "a", "b"}, 2, "at most one projection name"},
		{[]string{"projections", "rebuild"}, 2, "one projection name"},
		{[]string{"projections", "dead-letters"}, 2, "missing dead-letters subcommand"},
		{[]string{"projections", "dead-letters", "bury"}, 2, `unknown dead-letters subcommand "bury"`},
		{[]string{"projections", "dead-letters", "list", "x"}, 2, "takes no arguments"},
		{[]string{"projections", "dead-letters", "list", "--state", "lost"}, 2, `"lost" is not parked`},
		{[]string{"projections", "dead-letters", "list", "--status", "lost"}, 2, `"lost" is not parked`},
		{[]string{"projections", "dead-letters", "list", "--limit=-1"}, 2, "must not be negative"},
		{[]string{"projections", "dead-letters", "retry"}, 2, "one or more dead letter IDs"},
		{[]string{"projections", "dead-letters", "skip", "x1"}, 2, `"x1" is not a dead letter ID`},
		{[]string{"projections", "dead-letters", "skip", "0"}, 2, `"0" is not a dead letter ID`},
		{[]string{"projections", "status"}, 1, "no database url"},
	}
	for _, tt := range tests {
		code, _, stderr := run(t, nil, tt.args...)
		if code != tt.wantCode || !strings.Contains(stderr, tt.wantError) {
			t.Errorf("chronicle %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), code, stderr, tt.wantCode, tt.wantError)
		}
	}
	out, _ := mustRun(t, nil, 0, "help", "projections")
	wantContains(t, "help projections", out, "dead-letters retry ID")
}

func TestProjectionsCommands(t *testing.T) {
	t.Parallel()
	db := postgrestest.DatabaseURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Config{Logger: slog.New(slog.DiscardHandler), PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ps, err := postgres.NewProjectionStore(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	var last eventstore.AppendResult
	for _, stream := range []string{"acc-1", "poison", "acc-2", "poison-2", "acc-1"} {
		if last, err = store.Append(ctx, stream, eventstore.Any, eventstore.Event{Type: "Deposited", Data: []byte(`{"amount":1}`)}); err != nil {
			t.Fatal(err)
		}
	}

	var resets, handled atomic.Int32
	var fixed, fixedAll atomic.Bool
	h := projection.HandlerFunc(func(_ context.Context, ev projection.Event) error {
		if strings.HasPrefix(ev.StreamID, "poison") && !fixedAll.Load() && !(fixed.Load() && ev.StreamID == "poison") {
			return errors.New("cannot handle\nthis")
		}
		handled.Add(1)
		return nil
	})
	runner, err := projection.New(store, ps, &projection.Config{
		Logger: slog.New(slog.DiscardHandler), Holder: "test-runner",
		PollInterval: 50 * time.Millisecond, AcquireInterval: 50 * time.Millisecond,
		Retry: projection.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Add(projection.Projection{
		Name: "balances", Handler: h, OnFailure: projection.ParkOnFailure,
		Reset: func(context.Context, int) error { resets.Add(1); return nil },
	}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if err := runner.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatal(err)
	}

	out, _ := mustRun(t, nil, 0, "projections", "status", "--database-url", db)
	for _, want := range []string{"PROJECTION", "balances", "0/1", last.Position.String(), "test-runner", "live"} {
		wantContains(t, "status", out, want)
	}
	out, _ = mustRun(t, map[string]string{"DATABASE_URL": db}, 0, "projections", "status", "balances", "--json")
	var sts []projStatusJSON
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(sts) != 1 || sts[0].Parked != 2 || sts[0].Holder != "test-runner" || sts[0].LagEvents != 0 || sts[0].State != "live" {
		t.Fatalf("status --json = %+v", sts)
	}
	_, stderr := mustRun(t, nil, 1, "projections", "status", "nope", "--database-url", db)
	wantContains(t, "status of an unknown projection", stderr, "unknown projection")

	out, _ = mustRun(t, nil, 0, "projections", "dead-letters", "list", "--database-url", db)
	for _, want := range []string{"ID", `"poison"`, `"poison-2"`, "balances", "parked", "cannot handle this"} {
		wantContains(t, "dead-letters list", out, want)
	}
	out, _ = mustRun(t, nil, 0, "projections", "dead-letters", "list", "--json", "--state", "parked", "--projection", "balances", "--database-url", db)
	var dls []projDeadLetterJSON
	for dec := json.NewDecoder(strings.NewReader(out)); dec.More(); {
		var dl projDeadLetterJSON
		if err := dec.Decode(&dl); err != nil {
			t.Fatalf("dead-letters list --json: %v\n%s", err, out)
		}
		dls = append(dls, dl)
	}
	if len(dls) != 2 || dls[0].StreamID != "poison" || dls[0].Attempts != 2 || dls[0].Error != "cannot handle\nthis" || dls[1].StreamID != "poison-2" {
		t.Fatalf("dead letters = %+v", dls)
	}
	dl, dl2 := dls[0], dls[1]
	out, _ = mustRun(t, nil, 0, "projections", "dead-letters", "list", "--state", "skipped", "--database-url", db)
	wantContains(t, "empty list", out, "no dead letters")

	// A skipped letter leaves the default (parked) list and cannot be retried.
	id2 := strconv.FormatInt(dl2.ID, 10)
	out, _ = mustRun(t, nil, 0, "projections", "dead-letters", "skip", id2, "--database-url", db)
	wantContains(t, "skip", out, "skipped")
	_, stderr = mustRun(t, nil, 1, "projections", "dead-letters", "retry", id2, "--database-url", db)
	wantContains(t, "retry skipped", stderr, "cannot retry dead letter "+id2+": it was skipped")
	out, _ = mustRun(t, nil, 0, "projections", "dead-letters", "list", "--database-url", db)
	if !strings.Contains(out, `"poison"`) || strings.Contains(out, `"poison-2"`) {
		t.Fatalf("default list shows skipped letters or misses parked ones:\n%s", out)
	}
	out, _ = mustRun(t, nil, 0, "projections", "dead-letters", "list", "--state", "skipped", "--database-url", db)
	if !strings.Contains(out, `"poison-2"`) || strings.Contains(out, `"poison"`) {
		t.Fatalf("--state skipped:\n%s", out)
	}

	fixed.Store(true)
	id := strconv.FormatInt(dl.ID, 10)
	out, _ = mustRun(t, nil, 0, "projections", "dead-letters", "retry", id, "--database-url", db)
	wantContains(t, "retry", out, "retry requested")
	waitFor(t, func() bool {
		dls, err := ps.DeadLetters(ctx, projectionstore.DeadLetterFilter{Status: projectionstore.DeadLetterResolved})
		return err == nil && len(dls) == 1
	})
	out, _ = mustRun(t, nil, 0, "projections", "dead-letters", "list", "--state", "all", "--database-url", db)
	for _, want := range []string{"resolved", "skipped"} {
		wantContains(t, "list --state all", out, want)
	}
	_, stderr = mustRun(t, nil, 1, "projections", "dead-letters", "skip", id, "999999", "--database-url", db)
	wantContains(t, "skip resolved", stderr, "it is resolved")
	wantContains(t, "skip unknown", stderr, "dead letter not found: 999999")

	fixedAll.Store(true) // the rebuild replays every event, the skipped one included
	before := handled.Load()
	out, stderr = mustRun(t, nil, 0, "projections", "rebuild", "balances", "--database-url", db)
	wantContains(t, "rebuild", out, "rebuild of balances requested")
	wantContains(t, "rebuild", out, "rebuilt balances")
	wantContains(t, "rebuild progress", stderr, "100%")
	if resets.Load() != 1 || handled.Load() != before+5 {
		t.Fatalf("after rebuild: %d resets, %d events handled again; want 1 and 5", resets.Load(), handled.Load()-before)
	}
	out, _ = mustRun(t, nil, 0, "projections", "rebuild", "balances", "--no-wait", "--database-url", db)
	wantContains(t, "rebuild --no-wait", out, "requested")
	if strings.Contains(out, "rebuilt") {
		t.Errorf("rebuild --no-wait waited: %q", out)
	}
	_, stderr = mustRun(t, nil, 1, "projections", "rebuild", "nope", "--database-url", db)
	wantContains(t, "rebuild unknown", stderr, "unknown projection")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
