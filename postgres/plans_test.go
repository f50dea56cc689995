package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
)

// seedTinyAnalyzedTable stores one event in each of 50 streams and
// analyzes the table: the statistics of a fresh deployment, which make a
// sequential scan look cheapest.
func seedTinyAnalyzedTable(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	for i := range 50 {
		if _, err := s.Append(ctx, fmt.Sprintf("tiny-%02d", i), eventstore.NoStream, testEvents("Seeded", 1)...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE chronicle.events, chronicle.streams"); err != nil {
		t.Fatal(err)
	}
}

// explainGeneric returns the generic plan PostgreSQL caches for sql with
// args, the plan a prepared statement keeps after its first executions.
// The connection is left as it was.
func explainGeneric(t *testing.T, conn *pgx.Conn, sql string, args ...string) string {
	t.Helper()
	prepareGeneric(t, conn, "probe", sql)
	defer deallocate(t, conn, "probe")
	return explainPrepared(t, conn, "probe", args...)
}

// prepareGeneric prepares sql as name on conn, to be planned generically.
func prepareGeneric(t *testing.T, conn *pgx.Conn, name, sql string) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), "SET plan_cache_mode = force_generic_plan; PREPARE "+name+" AS "+sql); err != nil {
		t.Fatalf("prepare: %v\n%s", err, sql)
	}
}

// explainPrepared returns the plan of the prepared statement name.
func explainPrepared(t *testing.T, conn *pgx.Conn, name string, args ...string) string {
	t.Helper()
	rows, err := conn.Query(t.Context(), "EXPLAIN EXECUTE "+name+"("+strings.Join(args, ", ")+")", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

func deallocate(t *testing.T, conn *pgx.Conn, name string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), "DEALLOCATE "+name+"; RESET plan_cache_mode"); err != nil {
		t.Error(err)
	}
}

// The append statements reach a stream's head row through the primary key
// even when their plan is made on tiny analyzed tables: a cached
// sequential scan would make every append scan chronicle.streams as it
// grows.
func TestAppendLookupsUseIndexOnTinyTable(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, nil)
	seedTinyAnalyzedTable(t, s)
	conn, err := s.pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	id := `'00000000-0000-7000-8000-000000000001'`
	for _, c := range []struct {
		name string
		sql  string
		args []string
	}{
		{"one event", eventsql.AppendOneEventSQL, []string{`'tiny-07'`, `1`, id, `'T'`, `1`, `'{}'`, `NULL`}},
		{"one stream", eventsql.AppendOneSQL, []string{`'tiny-07'`, `1`, `ARRAY[` + id + `]::uuid[]`, `'{T}'`, `'{1}'`, `'{"{}"}'`, `'{NULL}'`}},
		{"several streams", eventsql.AppendStreamsSQL, []string{`'{tiny-07,tiny-08}'`, `'{1,1}'`, `'{1,1}'`, `'{1,2}'`, `'{1,1}'`, `ARRAY[` + id + `, '00000000-0000-7000-8000-000000000002']::uuid[]`, `'{T,T}'`, `'{1,1}'`, `'{"{}","{}"}'`, `'{NULL,NULL}'`}},
		{"current versions", eventsql.CurrentVersionsSQL, []string{`'{tiny-07,tiny-08}'`}},
	} {
		plan := explainGeneric(t, conn.Conn(), c.sql, c.args...)
		if strings.Contains(plan, "Seq Scan on streams") || !strings.Contains(plan, "streams_pkey") {
			t.Errorf("%s: the head-row lookup does not use streams_pkey:\n%s", c.name, plan)
		}
	}
}

// fillEvents inserts n one-event streams behind the store's back, growing
// the table without moving its size class.
func fillEvents(t *testing.T, s *Store, n int64) {
	t.Helper()
	if _, err := s.pool.Exec(t.Context(), `INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, data)
SELECT gen_random_uuid(), 'fill-' || g, 1, 'Filled', '{}' FROM generate_series(1, $1::bigint) g`, n); err != nil {
		t.Fatal(err)
	}
}

// The head-row lookups read the first key at or after the stream id: when
// the stream does not exist that entry belongs to a neighbouring stream,
// which must not count.
func TestAppendProbeNeighbouringStreams(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, nil)
	ctx := t.Context()
	for _, id := range []string{"acc-1", "acc-10x", "acc-0"} {
		if _, err := s.Append(ctx, id, eventstore.NoStream, testEvents("Opened", 3)...); err != nil {
			t.Fatal(err)
		}
	}
	// "acc-10" sorts between "acc-1" and "acc-10x"; "acc-2" after all.
	for _, id := range []string{"acc-10", "acc-2", "acc-"} {
		res, err := s.Append(ctx, id, eventstore.NoStream, testEvents("Opened", 1)...)
		if err != nil {
			t.Fatalf("NoStream append to empty %q next to other streams: %v", id, err)
		}
		if res.Version != 1 {
			t.Fatalf("append to %q: version %d, want 1", id, res.Version)
		}
	}
	res, err := s.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "acc-11", Expected: eventstore.Any, Events: testEvents("Opened", 1)},
		eventstore.StreamAppend{StreamID: "acc-1", Expected: eventstore.Exact(3), Events: testEvents("Deposited", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Version != 1 || res[1].Version != 5 {
		t.Fatalf("AppendStreams versions %d, %d; want 1, 5", res[0].Version, res[1].Version)
	}
	_, err = s.Append(ctx, "acc-12", eventstore.Exact(3), testEvents("Deposited", 1)...)
	var cerr *eventstore.ConcurrencyError
	if !errors.As(err, &cerr) || cerr.Actual != 0 {
		t.Fatalf("Exact(3) on empty acc-12 after acc-11: %v, want a conflict with actual 0", err)
	}
}

// The stream reads, planned generically while the tables are tiny and
// analyzed, range-scan events_stream_version_key and the head-row reads
// use their indexes; the plan prepared then is still right after the table
// has grown: there is nothing to re-plan.
func TestReadsUseIndexOnTinyTable(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, nil)
	ctx := t.Context()
	seedTinyAnalyzedTable(t, s)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	reads := []struct {
		name, sql, index string
		args             []string
	}{
		{"stream forward", eventsql.ReadStreamForwardSQL, "events_stream_version_key", []string{`'tiny-07'`, `1`, `NULL`}},
		{"stream backward", eventsql.ReadStreamBackwardSQL, "events_stream_version_key", []string{`'tiny-07'`, `9223372036854775807`, `NULL`}},
		{"payloads forward", eventsql.ReadPayloadsForwardSQL, "events_stream_version_key", []string{`'tiny-07'`, `1`, `NULL`}},
		{"payloads backward", eventsql.ReadPayloadsBackwardSQL, "events_stream_version_key", []string{`'tiny-07'`, `9223372036854775807`, `100`}},
		{"stream version", eventsql.StreamVersionSQL, "streams_pkey", []string{`'tiny-07'`}},
	}
	for i, r := range reads {
		name := fmt.Sprintf("early_%d", i)
		prepareGeneric(t, conn.Conn(), name, r.sql)
		defer deallocate(t, conn.Conn(), name)
		plan := explainPrepared(t, conn.Conn(), name, r.args...)
		if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, r.index) {
			t.Errorf("%s planned on the tiny table does not use %s:\n%s", r.name, r.index, plan)
		}
	}
	fillEvents(t, s, 5000)
	for i, r := range reads[:4] {
		if plan := explainPrepared(t, conn.Conn(), fmt.Sprintf("early_%d", i), r.args...); strings.Contains(plan, "Seq Scan") {
			t.Errorf("%s prepared on the tiny table scans the grown table:\n%s", r.name, plan)
		}
	}
	recs, err := s.ReadStreamPayloads(ctx, "tiny-07", eventstore.ReadStreamOptions{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("read after the table grew: %d records, %v", len(recs), err)
	}
}
