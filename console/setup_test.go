package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// mountPath is where the tests mount the console, to check that every
// link is relative to it.
const mountPath = "/admin/chronicle"

// hostileID is a stream ID made to break out of HTML, attributes, URLs and
// scripts if anything interpolated it unescaped.
const hostileID = `<script>alert(1)</script>"'&<img src=x onerror=alert(2)>`

// testEnv is one test's console: a fresh database with events, a
// projection runner that parks the events it is told to fail, and the
// console served by an httptest server under mountPath.
type testEnv struct {
	t       *testing.T
	pool    *pgxpool.Pool
	store   *postgres.Store
	ps      *postgres.ProjectionStore
	console *Console
	srv     *httptest.Server
	// base is the console's URL, ending in "/".
	base string

	// failing holds the event IDs the projection "ledger" fails on until
	// healed; busFailing the streams whose events the consumer group
	// "mailer" dead-letters until healed.
	mu         sync.Mutex
	failing    map[eventstore.EventID]bool
	busFailing map[string]bool

	// The event bus (setupOptions.bus): a memory bus, fed by a relay
	// through gate, closed until openGate.
	bus   *eventbus.MemoryBus
	gate  *gatedPublisher
	relay *eventbus.Relay
}

type setupOptions struct {
	cfg *Config
	// runner starts the projection runner with two parked dead letters.
	runner bool
	// bus gives the console a memory bus, fed by a relay whose broker is
	// down until openGate, with the consumer groups "mailer" (which
	// dead-letters the events of account-1 and hostileID until healed)
	// and "audit".
	bus bool
	// pool replaces the test database's pool (e.g. through a proxy).
	dial func(t *testing.T, dbURL string) *pgxpool.Pool
}

var quietLogger = slog.New(slog.DiscardHandler)

func setup(t *testing.T, opts setupOptions) *testEnv {
	t.Helper()
	dbURL := postgrestest.DatabaseURL(t)
	var pool *pgxpool.Pool
	if opts.dial != nil {
		pool = opts.dial(t, dbURL)
	} else {
		var err error
		if pool, err = pgxpool.New(context.Background(), dbURL); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
	}
	store, err := postgres.New(pool, &postgres.Config{Logger: quietLogger, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	ps, err := postgres.NewProjectionStore(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{LiveInterval: 200 * time.Millisecond, SampleInterval: 200 * time.Millisecond}
	if opts.cfg != nil {
		cfg = *opts.cfg
	}
	cfg.Logger = quietLogger
	var (
		bus   *eventbus.MemoryBus
		gate  *gatedPublisher
		relay *eventbus.Relay
	)
	if opts.bus {
		bus = eventbus.NewMemoryBus(&eventbus.MemoryConfig{Logger: quietLogger})
		gate = &gatedPublisher{MemoryBus: bus}
		relay, err = eventbus.NewRelay(store, ps, gate, &eventbus.RelayConfig{
			Logger:  quietLogger,
			Backoff: eventbus.Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond},
			Runner: &projection.Config{Logger: quietLogger, Holder: "relay-runner", PollInterval: 100 * time.Millisecond,
				AcquireInterval: 100 * time.Millisecond, BatchTimeout: 10 * time.Minute},
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Bus, cfg.Relay = bus, relay
	}
	con, err := New(store, ps, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(mountPath+"/", http.StripPrefix(mountPath, con))
	mux.Handle(mountPath, http.StripPrefix(mountPath, con))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		con.Close()
		srv.Close()
	})
	e := &testEnv{t: t, pool: pool, store: store, ps: ps, console: con, srv: srv, base: srv.URL + mountPath + "/",
		failing: map[eventstore.EventID]bool{}, busFailing: map[string]bool{}, bus: bus, gate: gate, relay: relay}
	e.fill()
	if opts.bus {
		e.startBus()
	}
	if opts.runner {
		e.startRunner()
	}
	return e
}

// fill appends the fixture events: two accounts, a stream with the
// hostile ID, and an order with rich metadata.
func (e *testEnv) fill() {
	e.t.Helper()
	for i := range 3 {
		evs := make([]eventstore.Event, 5)
		for j := range evs {
			evs[j] = eventstore.Event{Type: "Deposited", Data: fmt.Appendf(nil, `{"account":"acc-%d","amount":%d}`, i, (j+1)*10)}
		}
		e.append(fmt.Sprintf("account-%d", i), evs...)
	}
	e.append(hostileID, eventstore.Event{Type: "Deposited", Data: []byte(`{"note":"</script><script>alert(3)</script>","quote":"\"'"}`)})
	last := e.append("order-7", eventstore.Event{
		Type: "OrderPlaced", SchemaVersion: 2, Data: []byte(`{"order":"order-7","lines":[{"sku":"A-1","qty":2}],"total":{"amount":1999,"currency":"EUR"}}`),
		Metadata: eventstore.Metadata{CorrelationID: "req-42", CausationID: "cmd-9", Headers: map[string]string{"tenant": "acme", "user": "ada"}},
	})
	// Under load, TestBusPage saw the relay 5 events behind instead of 17:
	// the horizon stood between two of these appends.
	e.waitForHead("the fixture", func(head eventstore.Position) bool { return head.Compare(last.Position) >= 0 })
}

// waitForHead waits until the store's head satisfies reached. The head,
// what reads return and every lag the pages show stop at the
// transaction-id horizon, which a transaction open anywhere on the server
// (another package's test, in CI) holds back: a test waits for its events
// to be below it before it reads them.
func (e *testEnv) waitForHead(what string, reached func(head eventstore.Position) bool) {
	e.t.Helper()
	e.waitFor(what+" below the horizon", func() bool {
		head, err := e.store.Head(context.Background())
		return err == nil && reached(head)
	})
}

func (e *testEnv) append(stream string, evs ...eventstore.Event) eventstore.AppendResult {
	e.t.Helper()
	res, err := e.store.Append(context.Background(), stream, eventstore.Any, evs...)
	if err != nil {
		e.t.Fatalf("append to %q: %v", stream, err)
	}
	return res
}

// startRunner runs the projection "ledger", which parks (after one
// attempt) the events of the stream hostileID and the first event of
// account-1 until healed, and waits until both are parked.
func (e *testEnv) startRunner() {
	e.t.Helper()
	ctx := context.Background()
	recs, err := e.store.ReadStream(ctx, hostileID, eventstore.ReadStreamOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	acc, err := e.store.ReadStream(ctx, "account-1", eventstore.ReadStreamOptions{Limit: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.failing[recs[0].EventID] = true
	e.failing[acc[0].EventID] = true
	e.mu.Unlock()
	r, err := projection.New(e.store, e.ps, &projection.Config{
		Logger: quietLogger, Holder: "test-runner", PollInterval: 100 * time.Millisecond, AcquireInterval: 100 * time.Millisecond,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	err = r.Add(projection.Projection{
		Name: "ledger", OnFailure: projection.ParkOnFailure, Retry: projection.RetryPolicy{MaxAttempts: 1},
		Handler: projection.HandlerFunc(func(ctx context.Context, ev projection.Event) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.failing[ev.EventID] {
				return fmt.Errorf("cannot apply %s to the ledger: <b>balance</b> would be \"negative\"", ev.Type)
			}
			return nil
		}),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			e.t.Errorf("runner: %v", err)
		}
	})
	e.waitFor("two parked dead letters", func() bool {
		dls, err := e.ps.DeadLetters(ctx, projectionstore.DeadLetterFilter{Status: projectionstore.DeadLetterParked})
		return err == nil && len(dls) == 2
	})
}

// heal makes the projection succeed on every event from now on.
func (e *testEnv) heal() {
	e.mu.Lock()
	clear(e.failing)
	clear(e.busFailing)
	e.mu.Unlock()
}

// deadLetters returns the dead letters of the stream, in ID order.
func (e *testEnv) deadLetter(stream string) projectionstore.DeadLetter {
	e.t.Helper()
	dls, err := e.ps.DeadLetters(context.Background(), projectionstore.DeadLetterFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, dl := range dls {
		if dl.StreamID == stream {
			return dl
		}
	}
	e.t.Fatalf("no dead letter for stream %q", stream)
	return projectionstore.DeadLetter{}
}

// waitFor polls cond for up to 30s.
func (e *testEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(2 * time.Minute) // a hang bound: other tests hold the horizon back under load
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get fetches path (relative to the console) and returns the status and
// body.
func (e *testEnv) get(path string) (int, string) {
	e.t.Helper()
	resp, err := http.Get(e.base + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s does not contain %q", what, w)
		}
	}
}
