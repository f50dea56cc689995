package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"

	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/natsbus"
	"github.com/chronicle-go/chronicle/natsbus/natstest"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/projection"
)

func quiet() *slog.Logger {
	if os.Getenv("CHRONICLE_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(discard{}, &slog.HandlerOptions{Level: slog.LevelError + 1}))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// appender appends events to streams streams of store until stop is
// closed or n events were appended, and returns their IDs.
func appendEvents(t *testing.T, ctx context.Context, store eventstore.Store, prefix string, streams, n int, pause time.Duration) []eventstore.EventID {
	t.Helper()
	ids := make([]eventstore.EventID, 0, n)
	versions := make([]int64, streams)
	for i := range n {
		s := rand.IntN(streams)
		ev := eventstore.Event{ID: eventstore.NewEventID(), Type: "Thing", SchemaVersion: 1, Data: fmt.Appendf(nil, `{"i":%d}`, i)}
		if _, err := store.Append(ctx, fmt.Sprintf("%s-%d", prefix, s), eventstore.Exact(versions[s]), ev); err != nil {
			t.Error(err)
			return ids
		}
		versions[s]++
		ids = append(ids, ev.ID)
		if pause > 0 && i%10 == 0 {
			time.Sleep(pause)
		}
	}
	return ids
}

// requireStreamHolds checks that the JetStream stream of bus holds every
// event of ids exactly once, each aggregate stream in version order.
func requireStreamHolds(t *testing.T, ctx context.Context, url string, bus *natsbus.Bus, ids []eventstore.EventID) {
	t.Helper()
	_, stream := busStream(t, ctx, url, "chronicle-test-reader", bus)
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An ordered consumer streams the messages in order, in batches: one
	// request per message would take minutes on a loaded machine.
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	last := map[string]int64{}
	lastMove := time.Now()
	for seq := uint64(0); seq < info.State.LastSeq; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			meta, err := msg.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			seq, lastMove = meta.Sequence.Stream, time.Now()
			seen[msg.Headers().Get(jetstream.MsgIDHeader)]++
			m, err := natsbus.DecodeForTest(msg.Data(), msg.Headers())
			if err != nil {
				t.Fatal(err)
			}
			if m.StreamVersion != last[m.StreamID]+1 {
				t.Fatalf("stream %s: version %d stored after %d", m.StreamID, m.StreamVersion, last[m.StreamID])
			}
			last[m.StreamID] = m.StreamVersion
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
		if time.Since(lastMove) > hangLimit {
			t.Fatalf("reading the stream: stuck at sequence %d of %d", seq, info.State.LastSeq)
		}
	}
	if len(seen) != len(ids) {
		t.Fatalf("the stream holds %d distinct events, want %d", len(seen), len(ids))
	}
	for _, id := range ids {
		if seen[id.String()] != 1 {
			t.Fatalf("event %s stored %d times", id, seen[id.String()])
		}
	}
}

// hangLimit is how long a fault test waits without progress before it
// fails: a bound on a hang, not an assumption about the machine's speed.
const hangLimit = 2 * time.Minute

// waitRelay waits until relay has published everything the store holds.
// It fails only when the relay's checkpoint stops moving for hangLimit,
// however slowly it moves, and logs its status then.
func waitRelay(t *testing.T, ctx context.Context, relay *eventbus.Relay) {
	t.Helper()
	start := time.Now()
	var last eventstore.Position
	lastMove := time.Now()
	for {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := relay.Runner().WaitForHead(wctx, relay.Name())
		cancel()
		if err == nil {
			if d := time.Since(start); d > 15*time.Second {
				t.Logf("the relay took %s to catch up", d.Round(time.Millisecond))
			}
			return
		}
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("wait for the relay: %v", err)
		}
		sts, err := relay.Runner().Status(ctx)
		if err != nil {
			t.Fatalf("relay status: %v", err)
		}
		var pos eventstore.Position
		for _, st := range sts {
			pos = st.Position
		}
		if pos != last {
			last, lastMove = pos, time.Now()
		}
		if time.Since(lastMove) > hangLimit {
			t.Fatalf("the relay made no progress for %s: %+v", hangLimit, sts)
		}
	}
}

func fastRunner() *projection.Config {
	return &projection.Config{Logger: quiet(), BatchSize: 50, PollInterval: 20 * time.Millisecond, AcquireInterval: 20 * time.Millisecond}
}

// TestFaultRelayKilled kills the relay (its connection closed and its
// context cancelled at once) at random points many times while events are
// appended: the stream ends with every event exactly once, in per-stream
// order.
func TestFaultRelayKilled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	url := natstest.URL(t)
	bus, _ := setup(t, url, nil)
	store := memory.New(nil)
	storage := mustProjectionStore()

	var ids []eventstore.EventID
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		ids = appendEvents(t, ctx, store, "s", 20, 1500, time.Millisecond)
	}()
	start := time.Now()
	kills := 0
	for kills < 25 {
		nc := connect(t, url, "chronicle-relay")
		cfg := bus.Config()
		cfg.Logger = quiet()
		pub, err := natsbus.New(ctx, nc, &cfg)
		if err != nil {
			t.Fatal(err)
		}
		relay, err := eventbus.NewRelay(store, storage, pub, &eventbus.RelayConfig{Runner: fastRunner(), Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = relay.Run(runCtx); close(done) }()
		time.Sleep(time.Duration(5+rand.IntN(60)) * time.Millisecond)
		nc.Close() // the process dies: nothing in flight is acknowledged
		stop()
		<-done
		kills++
	}
	<-appended
	t.Logf("%d kills and %d appends took %s", kills, len(ids), time.Since(start).Round(time.Millisecond))

	nc := connect(t, url, "chronicle-relay")
	defer nc.Close()
	cfg := bus.Config()
	pub, err := natsbus.New(ctx, nc, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := eventbus.NewRelay(store, storage, pub, &eventbus.RelayConfig{Runner: fastRunner(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = relay.Run(runCtx); close(done) }()
	waitRelay(t, ctx, relay)
	stop()
	<-done
	requireStreamHolds(t, ctx, url, bus, ids)
}

// TestFaultNATSRestart restarts the NATS server while the relay publishes:
// the relay resumes and the stream holds every event once, in order.
func TestFaultNATSRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	srv := natstest.Start(t)
	bus, _ := setup(t, srv.URL(), &natsbus.Config{Stream: "RESTART", SubjectPrefix: "restart.events", DeadLetterPrefix: "restart.dead", Logger: quiet()})
	store := memory.New(nil)
	relay, err := eventbus.NewRelay(store, mustProjectionStore(), bus, &eventbus.RelayConfig{Runner: fastRunner(), Logger: quiet(),
		Backoff: eventbus.Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = relay.Run(runCtx); close(done) }()

	var ids []eventstore.EventID
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		ids = appendEvents(t, ctx, store, "s", 10, 1500, 2*time.Millisecond)
	}()
	time.Sleep(100 * time.Millisecond)
	srv.Restart(t, 500*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	srv.Restart(t, 100*time.Millisecond)
	<-appended
	waitRelay(t, ctx, relay)
	stop()
	<-done
	requireStreamHolds(t, ctx, srv.URL(), bus, ids)
}

// TestFaultConsumerKilledMidHandler kills a consumer after its handler
// committed but before it acknowledged: the message goes to another
// member, and the idempotent helper keeps the effect single.
func TestFaultConsumerKilledMidHandler(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pool := postgrestest.Pool(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE points (event_id uuid NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	url := natstest.URL(t)
	bus, _ := setup(t, url, &natsbus.Config{Logger: quiet()})
	var effects atomic.Int64
	award := postgres.Idempotent(pool, "points", func(ctx context.Context, tx pgx.Tx, d eventbus.Delivery) error {
		effects.Add(1)
		_, err := tx.Exec(ctx, `INSERT INTO points VALUES ($1)`, d.EventID.String())
		return err
	})

	// Member A: a connection of its own, dies after the commit.
	ncA := connect(t, url, "member-a")
	cfgA := bus.Config()
	busA, err := natsbus.New(ctx, ncA, &cfgA)
	if err != nil {
		t.Fatal(err)
	}
	committed := make(chan struct{})
	ctxA, killA := context.WithCancel(ctx)
	subA, err := busA.Subscribe(ctxA, eventbus.Consumer{Group: "points", AckWait: time.Second, Handler: eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		if err := award.Handle(ctx, d); err != nil {
			return err
		}
		close(committed)
		<-ctx.Done() // dies before the acknowledgement
		return ctx.Err()
	})})
	if err != nil {
		t.Fatal(err)
	}
	m := eventbus.Message{EventID: eventstore.NewEventID(), Type: "UserRegistered", SchemaVersion: 1, StreamID: "user-1", StreamVersion: 1, Data: []byte(`{}`)}
	if err := bus.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	select {
	case <-committed:
	case <-ctx.Done():
		t.Fatal("member A never handled the message")
	}
	ncA.Close() // the process dies
	killA()
	_ = subA.Close(ctx)

	// Member B gets it again after the ack wait.
	redelivered := make(chan int, 1)
	subscribeMember(t, ctx, bus, eventbus.Consumer{Group: "points", AckWait: time.Second, Handler: eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		err := award.Handle(ctx, d)
		select {
		case redelivered <- d.Attempt:
		default:
		}
		return err
	})})
	select {
	case attempt := <-redelivered:
		if attempt < 2 {
			t.Fatalf("member B got attempt %d, want a redelivery", attempt)
		}
	case <-ctx.Done():
		t.Fatal("the message was not redelivered")
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM points`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || effects.Load() != 1 {
		t.Fatalf("%d rows, %d effects after a redelivery; want 1 and 1", rows, effects.Load())
	}
}

func subscribeMember(t *testing.T, ctx context.Context, bus eventbus.Subscriber, c eventbus.Consumer) {
	t.Helper()
	sub, err := bus.Subscribe(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sub.Close(cctx)
	})
}

// TestFaultRelayTakeover runs two relays on one storage: one publishes,
// the other stands by; killing the active one hands over, and the stream
// still holds every event once, in order.
func TestFaultRelayTakeover(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	url := natstest.URL(t)
	bus, _ := setup(t, url, nil)
	store := memory.New(nil)
	storage := mustProjectionStore()
	type instance struct {
		relay *eventbus.Relay
		kill  func()
		done  chan struct{}
	}
	start := func() *instance {
		nc := connect(t, url, "chronicle-relay")
		cfg := bus.Config()
		cfg.Logger = quiet()
		pub, err := natsbus.New(ctx, nc, &cfg)
		if err != nil {
			t.Fatal(err)
		}
		relay, err := eventbus.NewRelay(store, storage, pub, &eventbus.RelayConfig{Runner: fastRunner(), Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		in := &instance{relay: relay, done: make(chan struct{})}
		in.kill = func() { nc.Close(); stop(); <-in.done }
		go func() { _ = relay.Run(runCtx); close(in.done) }()
		return in
	}
	a, b := start(), start()
	ids := appendEvents(t, ctx, store, "before", 5, 300, 0)
	waitRelay(t, ctx, a.relay)
	var active, standby *instance
	for _, in := range []*instance{a, b} {
		sts, err := in.relay.Runner().Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range sts {
			if st.Holder == in.relay.Runner().Holder() {
				if active != nil {
					t.Fatal("both relays hold the lease")
				}
				active = in
			}
		}
	}
	if active == nil {
		t.Fatal("no relay holds the lease")
	}
	standby = a
	if active == a {
		standby = b
	}
	active.kill()
	ids = append(ids, appendEvents(t, ctx, store, "after", 5, 300, 0)...)
	waitRelay(t, ctx, standby.relay)
	standby.kill()
	requireStreamHolds(t, ctx, url, bus, ids)
}

// mustProjectionStore returns an in-memory projection storage.
func mustProjectionStore() *memory.ProjectionStore {
	s, err := memory.NewProjectionStore(nil)
	if err != nil {
		panic(err)
	}
	return s
}
