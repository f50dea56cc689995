package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// catchUpRunnerWorkload measures a projection catching up from the start
// through the projection runner: batches of 1,000 events read with
// ReadAll, each event decoded into its Go type by a typed handler, and the
// checkpoint committed per batch in a transaction (the exactly-once path).
// The baseline is the raw keyset scan of the catch-up workload.
func catchUpRunnerWorkload() workload {
	const perStream = 50
	scan := catchUpWorkload().baseline
	return workload{
		name:    "catch-up-runner",
		metrics: throughput("events/s"),
		setup: func(ctx context.Context, e *env) error {
			// Seed up to cfg.Events events (catch-up, when it ran before,
			// has seeded them already).
			var have int
			if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM chronicle.events").Scan(&have); err != nil {
				return err
			}
			if missing := e.cfg.Events - have; missing > 0 {
				streams := make([]string, (missing+perStream-1)/perStream)
				for i := range streams {
					streams[i] = fmt.Sprintf("catch-up-runner-acc-%07d", i)
				}
				if err := e.seed(ctx, streams, perStream); err != nil {
					return err
				}
			}
			return e.waitReadable(ctx)
		},
		baseline: scan,
		chronicle: func(ctx context.Context, e *env) ([]float64, error) {
			var (
				n     int
				total float64
			)
			h := projection.NewHandlers(e.registry)
			projection.On(h, func(_ context.Context, _ projection.Event, d Deposited) error {
				total += d.Amount
				n++
				return nil
			})
			name := "bench-catch-up-" + benchRandom()
			ps, err := postgres.NewProjectionStore(e.pool, nil)
			if err != nil {
				return nil, err
			}
			head, err := e.store.Head(ctx)
			if err != nil {
				return nil, err
			}
			t0 := time.Now()
			err = benchRunProjection(ctx, e.store, ps, projection.Projection{Name: name, Handler: h, BatchSize: catchUpPage}, 0,
				func(ctx context.Context, r *projection.Runner) error { return r.WaitFor(ctx, name, head) })
			elapsed := time.Since(t0)
			if err != nil {
				return nil, err
			}
			if n < e.cfg.Events || total <= 0 {
				return nil, fmt.Errorf("handled %d events, want at least %d", n, e.cfg.Events)
			}
			return []float64{rate(n, elapsed)}, nil
		},
	}
}

// benchRandom returns a short random hex string.
func benchRandom() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// benchRunProjection runs p on a runner until wait returns, then stops the
// runner. pollInterval 0 means the runner's default.
func benchRunProjection(ctx context.Context, store eventstore.Store, ps projectionstore.Storage, p projection.Projection, pollInterval time.Duration,
	wait func(context.Context, *projection.Runner) error) error {
	r, err := projection.New(store, ps, &projection.Config{Logger: slog.New(slog.DiscardHandler), PollInterval: pollInterval})
	if err != nil {
		return err
	}
	if err := r.Add(p); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	err = wait(ctx, r)
	cancel()
	return errors.Join(err, <-done)
}

// Tail-latency load: one writer appending at a steady rate.
const (
	tailRate     = 200                    // events per second
	tailPoll     = 100 * time.Millisecond // poll interval of the poll-only variant
	tailNotifyCh = "bench_baseline_events"
	// tailWarmup events are appended at the same rate before the measured
	// ones, and not measured, so that the latency is that of a steady
	// load: the pool grows on demand, and a read that had to wait for a
	// new connection under load took about 60 ms more on this project's
	// machine; prepared statements and the broker's consumers warm up too.
	tailWarmup = tailRate / 2
)

// tailLatencyWorkload measures the time from an append's commit to a live
// projection handling the event, under a steady load of tailRate appends
// per second (cfg.Commands events), as p50 and p99. With notify, the
// reader is woken by LISTEN/NOTIFY (polling every second as a fallback);
// with pollOnly, it polls every 100ms and nothing else wakes it. The
// baseline is a raw pgx tailer: a LISTEN connection (or a ticker) and a
// keyset query on the identity position, the writer notifying in the
// insert's statement.
func tailLatencyWorkload(pollOnly bool) workload {
	variant := "notify"
	if pollOnly {
		variant = "poll-only"
	}
	return workload{
		name:    "tail-latency",
		variant: variant,
		metrics: []metric{{label: "p50", unit: "ms", lowerIsBetter: true}, {label: "p99", unit: "ms", lowerIsBetter: true}},
		baseline: func(ctx context.Context, e *env) ([]float64, error) {
			return benchTailBaseline(ctx, e, pollOnly)
		},
		chronicle: func(ctx context.Context, e *env) ([]float64, error) {
			return benchTailChronicle(ctx, e, pollOnly)
		},
	}
}

// tailClock pairs commit and handling times by event.
type tailClock struct {
	mu        sync.Mutex
	committed map[string]time.Time
	handled   map[string]time.Time
	warmup    map[string]bool // events not measured
}

func newTailClock() *tailClock {
	return &tailClock{committed: map[string]time.Time{}, handled: map[string]time.Time{}, warmup: map[string]bool{}}
}

// skip marks id, about to be appended, as a warm-up event: not measured.
func (c *tailClock) skip(id string) {
	c.mu.Lock()
	c.warmup[id] = true
	c.mu.Unlock()
}

func (c *tailClock) commit(id string, at time.Time) {
	c.mu.Lock()
	c.committed[id] = at
	c.mu.Unlock()
}

func (c *tailClock) handle(id string, at time.Time) {
	c.mu.Lock()
	if _, ok := c.handled[id]; !ok && !c.warmup[id] {
		c.handled[id] = at
	}
	c.mu.Unlock()
}

func (c *tailClock) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.handled)
}

// percentiles returns p50 and p99 of the latencies in milliseconds.
func (c *tailClock) percentiles() ([]float64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lat := make([]float64, 0, len(c.committed))
	for id, at := range c.committed {
		h, ok := c.handled[id]
		if !ok {
			return nil, fmt.Errorf("event %s was never handled", id)
		}
		// The reader may see an event before the writer has its commit
		// acknowledged: that is a latency of 0.
		lat = append(lat, max(h.Sub(at), 0).Seconds()*1000)
	}
	if len(lat) == 0 {
		return nil, errors.New("no event measured")
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[int(math.Ceil(p*float64(len(lat))))-1] }
	return []float64{q(0.50), q(0.99)}, nil
}

// tailWrite appends tailWarmup events, then cfg.Commands events, at
// tailRate per second with appendOne, and records the commit time of
// each of the latter (numbered 0 to cfg.Commands-1; the warm-up events
// follow them in numbering).
func tailWrite(ctx context.Context, e *env, clock *tailClock, appendOne func(ctx context.Context, i int, id string) error) error {
	tick := time.NewTicker(time.Second / tailRate)
	defer tick.Stop()
	for k := range tailWarmup + e.cfg.Commands {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		id := eventstore.NewEventID().String()
		i := k - tailWarmup
		if k < tailWarmup {
			i = e.cfg.Commands + k
			clock.skip(id)
		}
		if err := appendOne(ctx, i, id); err != nil {
			return err
		}
		if k >= tailWarmup {
			clock.commit(id, time.Now())
		}
	}
	return nil
}

// tailWaitAll waits until every committed event has been handled.
func tailWaitAll(ctx context.Context, e *env, clock *tailClock) error {
	deadline := time.Now().Add(30 * time.Second)
	for clock.count() < e.cfg.Commands {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d events handled after 30s", clock.count(), e.cfg.Commands)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func benchTailChronicle(ctx context.Context, e *env, pollOnly bool) ([]float64, error) {
	clock := newTailClock()
	// The reader's store: its own, as another process's would be, so that
	// the writer's appends do not wake it directly.
	cfg := &postgres.Config{Logger: slog.New(slog.DiscardHandler)}
	poll := time.Duration(0)
	if pollOnly {
		cfg.PollOnly, cfg.PollInterval, poll = true, tailPoll, tailPoll
	}
	reader, err := postgres.New(e.pool, cfg)
	if err != nil {
		return nil, err
	}
	defer reader.Close()
	ps, err := postgres.NewProjectionStore(e.pool, nil)
	if err != nil {
		return nil, err
	}
	head, err := reader.Head(ctx)
	if err != nil {
		return nil, err
	}
	name := "bench-tail-" + benchRandom()
	h := projection.NewHandlers(e.registry)
	projection.On(h, func(_ context.Context, ev projection.Event, _ Deposited) error {
		if ev.Position.Compare(head) > 0 {
			clock.handle(ev.EventID.String(), time.Now())
		}
		return nil
	})
	err = benchRunProjection(ctx, reader, ps, projection.Projection{Name: name, Handler: h}, poll, func(ctx context.Context, r *projection.Runner) error {
		if err := r.WaitFor(ctx, name, head); err != nil { // caught up: now live
			return err
		}
		err := tailWrite(ctx, e, clock, func(ctx context.Context, i int, id string) error {
			ev, err := e.registry.Encode(deposit(fmt.Sprintf("tail-acc-%03d", i%50)))
			if err != nil {
				return err
			}
			if ev.ID, err = eventstore.ParseEventID(id); err != nil {
				return err
			}
			_, err = e.store.Append(ctx, fmt.Sprintf("tail-chronicle-acc-%03d", i%50), eventstore.Any, ev)
			return err
		})
		if err != nil {
			return err
		}
		return tailWaitAll(ctx, e, clock)
	})
	if err != nil {
		return nil, err
	}
	return clock.percentiles()
}

func benchTailBaseline(ctx context.Context, e *env, pollOnly bool) ([]float64, error) {
	clock := newTailClock()
	var after int64
	if err := e.pool.QueryRow(ctx, "SELECT coalesce(max(position), 0) FROM bench_baseline.events").Scan(&after); err != nil {
		return nil, err
	}
	listen, err := pgx.ConnectConfig(ctx, e.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, err
	}
	defer listen.Close(context.Background())
	if !pollOnly {
		if _, err := listen.Exec(ctx, "LISTEN "+tailNotifyCh); err != nil {
			return nil, err
		}
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	readErr := make(chan error, 1)
	go func() {
		const query = `SELECT position, data FROM bench_baseline.events WHERE position > $1 ORDER BY position LIMIT 1000`
		for {
			// Read until caught up.
			for {
				rows, err := e.pool.Query(rctx, query, after)
				if err != nil {
					readErr <- err
					return
				}
				got := 0
				for rows.Next() {
					var data []byte
					if err := rows.Scan(&after, &data); err != nil {
						rows.Close()
						readErr <- err
						return
					}
					var d struct {
						Deposited
						EventID string `json:"event_id"`
					}
					if err := json.Unmarshal(data, &d); err != nil {
						rows.Close()
						readErr <- err
						return
					}
					if d.EventID != "" {
						clock.handle(d.EventID, time.Now())
					}
					got++
				}
				if err := rows.Err(); err != nil {
					readErr <- err
					return
				}
				if got < 1000 {
					break
				}
			}
			// Wait for the poll tick, or a notification (with a 1s
			// fallback poll).
			if pollOnly {
				select {
				case <-rctx.Done():
					readErr <- nil
					return
				case <-time.After(tailPoll):
				}
				continue
			}
			wctx, cancel := context.WithTimeout(rctx, time.Second)
			_, err := listen.WaitForNotification(wctx)
			cancel()
			if rctx.Err() != nil {
				readErr <- nil
				return
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				readErr <- err
				return
			}
		}
	}()
	// The baseline's payload carries the event ID so that the reader can
	// pair it with its commit: the same bytes plus one field.
	const insert = `WITH ins AS (
    INSERT INTO bench_baseline.events (stream_id, version, type, data)
    SELECT $1, coalesce(max(version), 0) + 1, $2, $3 FROM bench_baseline.events WHERE stream_id = $1
    RETURNING 1)
SELECT pg_notify('` + tailNotifyCh + `', '') FROM ins`
	err = tailWrite(ctx, e, clock, func(ctx context.Context, i int, id string) error {
		data, err := json.Marshal(struct {
			Deposited
			EventID string `json:"event_id"`
		}{deposit(fmt.Sprintf("tail-acc-%03d", i%50)), id})
		if err != nil {
			return err
		}
		_, err = e.pool.Exec(ctx, insert, fmt.Sprintf("tail-baseline-acc-%03d", i%50), depositedType, data)
		return err
	})
	if err == nil {
		err = tailWaitAll(ctx, e, clock)
	}
	stop()
	if rerr := <-readErr; err == nil && rerr != nil && !errors.Is(rerr, context.Canceled) {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	return clock.percentiles()
}
