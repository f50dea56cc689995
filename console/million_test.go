package console

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// envMillion enables TestPageLoadsOnAMillionEvents, which fills a
// database with a million events (about a minute on a small machine).
const envMillion = "CHRONICLE_UI_MILLION"

// TestPageLoadsOnAMillionEvents measures the time each page takes to load,
// through HTTP, on a database of a million events in 90,001 streams (one
// of 100,000 events), with a projection caught up, one at the start (its
// lag count capped) and 1,000 dead letters. Every page must load in under
// 100 ms (median of 7 loads). With -v it prints the timings and the plans
// of the statements that matter. docs/ui.md has the numbers.
func TestPageLoadsOnAMillionEvents(t *testing.T) {
	if os.Getenv(envMillion) == "" {
		t.Skip("set " + envMillion + "=1 to measure the pages on a million events (slow)")
	}
	e := setup(t, setupOptions{cfg: &Config{SampleInterval: time.Hour}})
	ctx := context.Background()
	start := time.Now()
	// 90,000 streams of 10 events, in 90 transactions of 10,000 events.
	for b := range 90 {
		_, err := e.pool.Exec(ctx, `
INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, data, metadata, recorded_at)
SELECT gen_random_uuid(), 'acct-' || (s / 10), s % 10 + 1, 'Deposited',
       jsonb_build_object('account', 'acct-' || (s / 10), 'amount', s % 1000),
       '{"correlation_id":"req"}', clock_timestamp() - interval '1 hour'
FROM generate_series($1::bigint, $1::bigint + 9999) AS s`, int64(b*10000))
		if err != nil {
			t.Fatal(err)
		}
	}
	// One long stream of 100,000 events, in 10 transactions.
	for b := range 10 {
		_, err := e.pool.Exec(ctx, `
INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, data, recorded_at)
SELECT gen_random_uuid(), 'ledger-main', v, 'Posted', jsonb_build_object('line', v), clock_timestamp()
FROM generate_series($1::bigint, $1::bigint + 9999) AS v`, int64(b*10000+1))
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, stmt := range []string{
		`INSERT INTO chronicle.streams (stream_id, version, last_transaction_id)
		 SELECT stream_id, max(stream_version), max(transaction_id) FROM chronicle.events GROUP BY stream_id
		 ON CONFLICT (stream_id) DO NOTHING`,
		// A projection caught up at the head and one never started.
		`INSERT INTO chronicle.projection_checkpoints (projection, partition, partitions, transaction_id, global_position, holder)
		 SELECT 'balances', 0, 1, transaction_id, global_position, 'svc-1'
		 FROM chronicle.events ORDER BY transaction_id DESC, global_position DESC LIMIT 1`,
		`INSERT INTO chronicle.projection_checkpoints (projection, partition, partitions) VALUES ('audit', 0, 2), ('audit', 1, 2)`,
		`INSERT INTO chronicle.projection_dead_letters (projection, partition, event_id, stream_id, stream_version, transaction_id, global_position, event_type, error, attempts)
		 SELECT 'balances', 0, event_id, stream_id, stream_version, transaction_id, global_position, event_type, 'boom', 5
		 FROM chronicle.events WHERE stream_id = 'ledger-main' AND stream_version <= 1000`,
		`ANALYZE chronicle.events`,
		`ANALYZE chronicle.streams`,
	} {
		if _, err := e.pool.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("filled 1,000,017 events in %s", time.Since(start).Round(time.Second))

	var last int64
	if err := e.pool.QueryRow(ctx, `SELECT max(global_position) FROM chronicle.events`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	e.waitForHead("every event", func(head eventstore.Position) bool { return head.Global >= last })
	mid, err := e.store.ReadAllBackward(ctx, eventstore.Position{}, 1)
	if err != nil || len(mid) != 1 {
		t.Fatal(err)
	}
	half := mid[0].Position
	half.Global /= 2
	pages := []string{
		"",
		"streams",
		"streams?prefix=acct-4500",
		"streams?prefix=nomatch",
		"streams?prefix=acct-1",
		"streams?prefix=acct-1&before=10000",
		"streams?before=45000",
		"log",
		"log?before=" + half.String(),
		"stream?id=acct-45000",
		"stream?id=ledger-main",
		"stream?id=ledger-main&from=99951",
		"stream?id=ledger-main&upto=50000&from=49951",
		"projections",
		"dead-letters",
		"dead-letters?projection=balances&status=parked&after=900",
		"dead-letter?id=500",
		"bus",
	}
	var report strings.Builder
	for _, p := range pages {
		if status, body := e.get(p); status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, status, body)
		}
		times := make([]time.Duration, 7)
		for i := range times {
			t0 := time.Now()
			resp, err := http.Get(e.base + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			times[i] = time.Since(t0)
		}
		slices.Sort(times)
		median := times[len(times)/2]
		fmt.Fprintf(&report, "%-50s median %6.1f ms  max %6.1f ms\n", "/"+p, ms(median), ms(times[len(times)-1]))
		if median > 100*time.Millisecond {
			t.Errorf("GET /%s: median %s, over 100ms", p, median)
		}
	}
	t.Logf("page loads on a million events (7 loads each):\n%s", report.String())

	if !testing.Verbose() {
		return
	}
	head, _ := e.store.Head(ctx)
	// The store's statement, as it is in package postgres.
	listStreams, err := os.ReadFile("../postgres/internal/eventsql/list_streams.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		name string
		sql  string
		args []any
	}{
		{"EventCount", `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT CASE WHEN c.reltuples >= $1 THEN c.reltuples::bigint ELSE (SELECT count(*) FROM chronicle.events) END, c.reltuples < $1 FROM pg_class c WHERE c.oid = 'chronicle.events'::regclass`, []any{100000.0}},
		{"ReadAllBackward (newest page)", `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT global_position, transaction_id, event_id, stream_id, stream_version, event_type, schema_version, data, metadata, recorded_at FROM chronicle.events WHERE (transaction_id, global_position) < ($1::xid8, $2::bigint) AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY transaction_id DESC, global_position DESC LIMIT $3`, []any{int64(1<<63 - 1), int64(1<<63 - 1), int64(50)}},
		{"AppendRate", `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT count(*), min(recorded_at) FROM (SELECT recorded_at FROM chronicle.events ORDER BY transaction_id DESC, global_position DESC LIMIT $2) newest WHERE recorded_at >= clock_timestamp() - make_interval(secs => $1)`, []any{60.0, int64(10000)}},
		{"CountEventsUpTo (projection at the start)", `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT count(*) FROM (SELECT 1 FROM chronicle.events WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint) AND (transaction_id, global_position) <= ($3::xid8, $4::bigint) LIMIT $5) counted`, []any{uint64(0), int64(0), head.Transaction, head.Global, int64(lagCountLimit)}},
		{"ListStreams with a prefix no stream has", "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + string(listStreams), []any{"nomatch", int64(1<<63 - 1), int64(50)}},
		{"ListStreams with a prefix of 11,111 old streams", "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + string(listStreams), []any{"acct-1", int64(1<<63 - 1), int64(50)}},
		{"ListStreams without a prefix", "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + string(listStreams), []any{"", int64(1<<63 - 1), int64(50)}},
	} {
		rows, err := e.pool.Query(ctx, q.sql, q.args...)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		var plan strings.Builder
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan.WriteString(line + "\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s:\n%s", q.name, plan.String())
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
