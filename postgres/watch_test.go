package postgres

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/notify"
)

// wakeBound bounds every wait for a wake-up: a safety net against hangs,
// far above the expected latency, not a performance assertion.
const wakeBound = 20 * time.Second

func requireWake(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: watch channel closed", what)
		}
	case <-time.After(wakeBound):
		t.Fatalf("%s: no wake-up within %s", what, wakeBound)
	}
}

// drain empties a coalescing watch channel.
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// waitListener waits until the pool's database has n LISTEN connections
// of the store, and returns their pids.
func waitListener(t testing.TB, pool *pgxpool.Pool, n int) []int32 {
	t.Helper()
	deadline := time.Now().Add(wakeBound)
	for {
		var pids []int32
		rows, err := pool.Query(t.Context(), `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1 AND query = 'LISTEN '||$2`,
			listenerAppName, notify.Channel)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var pid int32
			if err := rows.Scan(&pid); err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(pids) == n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d listener connections, want %d", len(pids), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchWakesOnNotification watches on one store and appends through
// another, so that only the NOTIFY can wake the watcher: the poll interval
// is an hour.
func TestWatchWakesOnNotification(t *testing.T) {
	t.Parallel()
	watcher, pool := setupStore(t, &Config{PollInterval: time.Hour})
	writer := newStoreOn(t, pool, &Config{PollOnly: true})
	ctx := t.Context()
	ch := watcher.Watch(ctx)
	waitListener(t, pool, 1)
	requireWake(t, ch, "first connection") // not to be mistaken for the notification's

	if _, err := writer.Append(ctx, "s", eventstore.Any, testEvents("E", 1)...); err != nil {
		t.Fatal(err)
	}
	requireWake(t, ch, "after Append")

	// An append inside a caller's transaction notifies at commit only.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck
	if _, err := writer.AppendTx(ctx, tx, "s", eventstore.Any, testEvents("E", 1)...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case <-ch:
		t.Fatal("woken before the transaction committed")
	default:
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	requireWake(t, ch, "after AppendTx committed")
	recs := readAllUntil(t, watcher, eventstore.Position{}, 2)
	if len(recs) != 2 {
		t.Fatalf("read %d events", len(recs))
	}
}

// TestWatchPollOnly wakes watchers on the poll tick, and at once after the
// store's own appends.
func TestWatchPollOnly(t *testing.T) {
	t.Parallel()
	t.Run("tick", func(t *testing.T) {
		t.Parallel()
		watcher, pool := setupStore(t, &Config{PollOnly: true, PollInterval: 20 * time.Millisecond})
		writer := newStoreOn(t, pool, &Config{PollOnly: true})
		ch := watcher.Watch(t.Context())
		if _, err := writer.Append(t.Context(), "s", eventstore.Any, testEvents("E", 1)...); err != nil {
			t.Fatal(err)
		}
		requireWake(t, ch, "poll tick")
		requireWake(t, ch, "second poll tick")
		var listeners int
		if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&listeners); err != nil || listeners != 0 {
			t.Fatalf("%d LISTEN connections in poll-only mode, %v", listeners, err)
		}
	})
	t.Run("own appends", func(t *testing.T) {
		t.Parallel()
		s, _ := setupStore(t, &Config{PollOnly: true, PollInterval: time.Hour})
		ch := s.Watch(t.Context())
		drain(ch)
		if _, err := s.Append(t.Context(), "s", eventstore.Any, testEvents("E", 1)...); err != nil {
			t.Fatal(err)
		}
		requireWake(t, ch, "own append")
		if _, err := s.AppendStreams(t.Context(), eventstore.StreamAppend{StreamID: "t", Expected: eventstore.Any, Events: testEvents("E", 1)}); err != nil {
			t.Fatal(err)
		}
		requireWake(t, ch, "own AppendStreams")
	})
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestWatchSurvivesListenerKill terminates the LISTEN connection: the
// store reconnects, wakes every watcher after reconnecting (notifications
// sent meanwhile are lost), logs both, and notifications work again.
func TestWatchSurvivesListenerKill(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	watcher, pool := setupStore(t, &Config{
		PollInterval: time.Hour,
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	})
	writer := newStoreOn(t, pool, &Config{PollOnly: true})
	admin := adminConn(t)
	ctx := t.Context()
	ch := watcher.Watch(ctx)
	second := watcher.Watch(ctx)
	// The wake-up that follows the first connection, so that it cannot be
	// mistaken for the one after a reconnect.
	requireWake(t, ch, "first connection")
	requireWake(t, second, "first connection (second watcher)")

	for round := range 2 {
		pids := waitListener(t, pool, 1)
		drain(ch)
		drain(second)
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, pids[0]); err != nil {
			t.Fatal(err)
		}
		// Woken after reconnecting, with no append at all.
		requireWake(t, ch, "reconnect")
		requireWake(t, second, "reconnect (second watcher)")
		for deadline := time.Now().Add(wakeBound); ; {
			// The terminated backend may linger in pg_stat_activity.
			if newPids := waitListener(t, pool, 1); newPids[0] != pids[0] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: listener pid unchanged", round)
			}
			time.Sleep(10 * time.Millisecond)
		}
		drain(ch)
		if _, err := writer.Append(ctx, "s", eventstore.Any, testEvents("E", 1)...); err != nil {
			t.Fatal(err)
		}
		requireWake(t, ch, "append after reconnect")
	}
	out := logs.String()
	if !strings.Contains(out, "lost the connection listening") || !strings.Contains(out, "listening for event notifications again") {
		t.Fatalf("log does not report the reconnect:\n%s", out)
	}
}

// TestWatchListenerUnreachable points LISTEN at a port where nothing
// listens: watchers still wake on the poll tick, and the store logs why.
func TestWatchListenerUnreachable(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	pool := mustPool(t)
	lc := pool.Config().ConnConfig.Copy()
	lc.Host, lc.Port = "127.0.0.1", 1
	lc.Fallbacks = nil // with sslmode=prefer they hold the real host and port
	lc.ConnectTimeout = time.Second
	s := newStoreOn(t, pool, &Config{
		PollInterval: 20 * time.Millisecond,
		ListenConfig: lc,
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	})
	ch := s.Watch(t.Context())
	requireWake(t, ch, "poll tick without a listener")
	requireWake(t, ch, "second poll tick without a listener")
	deadline := time.Now().Add(wakeBound)
	for !strings.Contains(logs.String(), "cannot listen for event notifications") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning logged:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	_, pool := setupStore(t, &Config{PollOnly: true})
	return pool
}

func TestWatchClosing(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, &Config{PollInterval: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	ch := s.Watch(ctx)
	keep := s.Watch(t.Context())
	cancel()
	requireClosed(t, ch, "after cancel")
	select {
	case _, ok := <-keep:
		if !ok {
			t.Fatal("other watcher closed by an unrelated cancel")
		}
	default:
	}
	if done := s.Watch(ctx); done == nil {
		t.Fatal("nil channel")
	} else {
		requireClosed(t, done, "Watch with a done context")
	}
	s.Close()
	requireClosed(t, keep, "after Close")
	requireClosed(t, s.Watch(t.Context()), "Watch after Close")
	s.Close() // idempotent
}

func requireClosed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	deadline := time.After(wakeBound)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("%s: channel not closed", what)
		}
	}
}
