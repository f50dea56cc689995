package postgres

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

// BenchmarkWatchLatency measures the time from an append's commit to a
// reader in another store (as in another process) having read the event
// after a Watch wake-up, as p50/p99 in ms. "sparse" appends every 30ms
// (longer than NotifyDebounce: every notification is the first of its
// burst), "steady" every 5ms (200 events/s, the tail-latency workload of
// BENCH.md). The baseline is a raw LISTEN connection, notified by the
// writer after each commit: the latency without any debounce.
//
//	CHRONICLE_TEST_DATABASE_URL=postgres://... go test -run '^$' -bench WatchLatency -benchtime 400x ./postgres/
func BenchmarkWatchLatency(b *testing.B) {
	for _, bc := range []struct {
		name     string
		interval time.Duration
	}{{"sparse", 30 * time.Millisecond}, {"steady", 5 * time.Millisecond}} {
		b.Run(bc.name, func(b *testing.B) { benchWatchLatency(b, bc.interval) })
	}
}

func benchWatchLatency(b *testing.B, interval time.Duration) {
	ctx := b.Context()
	pool := postgrestest.Pool(b)
	writer := newStoreOn(b, pool, nil)
	reader := newStoreOn(b, pool, nil)
	const rawChannel = "bench_watch_raw"
	raw, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close(context.Background())
	if _, err := raw.Exec(ctx, "LISTEN "+rawChannel); err != nil {
		b.Fatal(err)
	}

	var (
		mu                    sync.Mutex
		committed, seen, note []time.Time
	)
	committed = make([]time.Time, b.N)
	seen = make([]time.Time, b.N)
	note = make([]time.Time, b.N)
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	watch := reader.Watch(rctx)
	// Wait for the reader's LISTEN connection: its first wake-up.
	select {
	case <-watch:
	case <-time.After(5 * time.Second):
		b.Fatal("no wake-up after Watch")
	}
	go func() { // the reader: read after each wake-up until a short page
		defer wg.Done()
		var after eventstore.Position
		for range watch {
			for {
				recs, err := reader.ReadAll(rctx, after, 100)
				if err != nil {
					return
				}
				now := time.Now()
				mu.Lock()
				for _, r := range recs {
					var d struct{ I int }
					if err := json.Unmarshal(r.Data, &d); err == nil && d.I < b.N && seen[d.I].IsZero() {
						seen[d.I] = now
					}
					after = r.Position
				}
				mu.Unlock()
				if len(recs) < 100 {
					break
				}
			}
		}
	}()
	go func() { // the raw baseline
		defer wg.Done()
		i := 0
		for i < b.N {
			if _, err := raw.WaitForNotification(rctx); err != nil {
				return
			}
			now := time.Now()
			mu.Lock()
			for ; i < b.N && !committed[i].IsZero(); i++ {
				note[i] = now
			}
			mu.Unlock()
		}
	}()

	b.ResetTimer()
	tick := time.NewTicker(interval)
	for i := range b.N {
		<-tick.C
		ev := eventstore.Event{Type: "E", Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
		if _, err := writer.Append(ctx, "s", eventstore.Any, ev); err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		committed[i] = time.Now()
		mu.Unlock()
		if _, err := pool.Exec(ctx, `SELECT pg_notify($1, '')`, rawChannel); err != nil {
			b.Fatal(err)
		}
	}
	tick.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := !seen[b.N-1].IsZero() && !note[b.N-1].IsZero()
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	reader.Close()
	wg.Wait()

	pct := func(at []time.Time) (p50, p99 float64) {
		lat := make([]float64, 0, b.N)
		for i := range b.N {
			if at[i].IsZero() {
				b.Fatalf("event %d never seen", i)
			}
			lat = append(lat, max(at[i].Sub(committed[i]), 0).Seconds()*1000)
		}
		slices.Sort(lat)
		return lat[len(lat)/2], lat[len(lat)*99/100]
	}
	c50, c99 := pct(seen)
	r50, r99 := pct(note)
	b.ReportMetric(c50, "watch-p50-ms")
	b.ReportMetric(c99, "watch-p99-ms")
	b.ReportMetric(r50, "raw-listen-p50-ms")
	b.ReportMetric(r99, "raw-listen-p99-ms")
	b.ReportMetric(0, "ns/op")
}
