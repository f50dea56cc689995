package postgres

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
)

// The benchmarks measure the store against a raw pgx baseline in the same
// run, interleaved: every iteration runs each variant once, in a new
// random order (so that no variant always runs after the same one), and
// each variant's time is accumulated separately, so drift and noise on a
// shared machine hit all variants alike. Each reports
// <variant>_ev/s (or loads/s) and <variant>/baseline ratios.
//
//	CHRONICLE_TEST_DATABASE_URL=postgres://... go test -run '^$' -bench . -benchtime 2000x ./postgres/
//
// The baseline is the minimal table of ../shared/BENCH.md (the same one
// internal/bench uses): identity position, stream id, version, type, jsonb
// data, jsonb metadata, timestamp, UNIQUE (stream_id, version).

const benchBaselineSchema = `
CREATE SCHEMA bench_baseline;
CREATE TABLE bench_baseline.events (
    position    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
)`

// benchBaselineInsert is the baseline append: one statement from arrays,
// versions computed by the caller (who knows the stream's version).
const benchBaselineInsert = `INSERT INTO bench_baseline.events (stream_id, version, type, data)
SELECT $1, u.version, $3, u.data FROM unnest($2::bigint[], $4::jsonb[]) AS u(version, data)`

// benchFloorInsert is the cheapest statement that stores events in
// Chronicle's events table: the baseline insert plus the event IDs, with
// versions computed by the caller and no expectation or order check. It is
// not a correct append (a stream shorter than the caller thinks gets a gap,
// and nothing checks the global order); it measures what the schema itself
// costs (the event_id key, the transaction id in the order key, the wider
// row), the ceiling of any append on this schema. benchFloorReturning adds
// the RETURNING the store needs to report versions and positions.
const (
	benchFloorInsert = `INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, data)
SELECT u.event_id, $1, u.version, $3, u.data FROM unnest($2::bigint[], $4::jsonb[], $5::uuid[]) AS u(version, data, event_id)`
	benchFloorReturning = benchFloorInsert + `
RETURNING stream_version, global_position, transaction_id`
)

// benchNoHeadOne and benchNoHeadMany are the events inserts of
// append_one_event.sql and append_one.sql without the head row: the same
// parameters ($2 is the caller's expected version, from which the events
// are numbered), the same columns and casts, but no head-row write, so no
// expectation, order or lifecycle check. Like the floor, they are not
// correct appends; next to the store's statement they show what its
// head-row write costs.
const (
	benchNoHeadOne = `INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
SELECT $3::uuid, $1, $2::bigint + 1, $4::text, $5::int, $6::text::jsonb, $7::text::jsonb
RETURNING stream_version, global_position, transaction_id`
	benchNoHeadMany = `INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
SELECT n.event_id, $1, $2::bigint + n.ord, n.event_type, n.schema_version, n.data::jsonb, n.metadata::jsonb
FROM unnest($3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[])
     WITH ORDINALITY AS n(event_id, event_type, schema_version, data, metadata, ord)
RETURNING stream_version, global_position, transaction_id`
)

const benchBaselineLoad = `SELECT position, stream_id, version, type, data, metadata, recorded_at
FROM bench_baseline.events WHERE stream_id = $1 ORDER BY version`

const benchBaselineScan = `SELECT position, stream_id, version, type, data, metadata, recorded_at
FROM bench_baseline.events WHERE position > $1 ORDER BY position LIMIT $2`

type benchRow struct {
	position   int64
	streamID   string
	version    int64
	typ        string
	data       []byte
	metadata   []byte
	recordedAt time.Time
}

func benchScanRows(rows pgx.Rows) ([]benchRow, error) {
	defer rows.Close()
	var out []benchRow
	for rows.Next() {
		var r benchRow
		if err := rows.Scan(&r.position, &r.streamID, &r.version, &r.typ, &r.data, &r.metadata, &r.recordedAt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func benchPayload(account int) []byte {
	return fmt.Appendf(nil, `{"account_id":"acc-%06d","amount":125.5,"currency":"EUR","note":"deposit via ATM 42"}`, account)
}

// benchDB returns a pool of up to conns connections on a fresh migrated
// database with the baseline table next to the events table.
func benchDB(b *testing.B, conns int32) *pgxpool.Pool {
	b.Helper()
	pool := poolWithConns(b, conns)
	if _, err := pool.Exec(b.Context(), benchBaselineSchema); err != nil {
		b.Fatal(err)
	}
	return pool
}

// benchNotifyTrigger is the NOTIFY trigger an earlier version of the schema
// had, kept here to measure what it costs.
const benchNotifyTrigger = `
CREATE FUNCTION chronicle.notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronicle_events', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_notify AFTER INSERT ON chronicle.events
FOR EACH STATEMENT EXECUTE FUNCTION chronicle.notify_events()`

type benchVariant struct {
	name string
	// op runs iteration i and returns how many units (events, loads) it did.
	op func(ctx context.Context, i int) (int, error)
}

// benchInterleaved runs b.N iterations of every variant, interleaved, and
// reports each variant's rate and its ratio to the first variant.
func benchInterleaved(b *testing.B, unit string, variants ...benchVariant) {
	b.Helper()
	ctx := b.Context()
	elapsed := make([]time.Duration, len(variants))
	units := make([]int, len(variants))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for _, v := range rand.Perm(len(variants)) {
			start := time.Now()
			n, err := variants[v].op(ctx, i)
			elapsed[v] += time.Since(start)
			if err != nil {
				b.Fatalf("%s: %v", variants[v].name, err)
			}
			units[v] += n
		}
	}
	b.StopTimer()
	rates := make([]float64, len(variants))
	for v := range variants {
		rates[v] = float64(units[v]) / elapsed[v].Seconds()
		b.ReportMetric(rates[v], variants[v].name+"_"+unit)
	}
	for v := 1; v < len(variants); v++ {
		b.ReportMetric(rates[v]/rates[0], variants[v].name+"/"+variants[0].name)
	}
	b.ReportMetric(0, "ns/op") // the per-variant rates are the result
}

// benchAppend measures appends of perOp events by writers concurrent
// writers, each to its own 50 existing account streams, with Exact
// expectations as a repository uses. One iteration is a round in which
// each variant's writers each run 10 commands. Next to the baseline and
// the store it measures the schema floor (benchFloorInsert, with and
// without RETURNING), the store's own statement sent with raw pgx
// (without the store's validation and bookkeeping), the same statement
// without its head-row write ("no-head", benchNoHeadOne), the store on a
// table with the NOTIFY trigger of an earlier schema, and the store with
// group commit off ("chronicle" and "chronicle-trigger" have it on).
func benchAppend(b *testing.B, perOp, writers int) {
	conns := int32(writers + 2)
	pool := benchDB(b, conns)
	s := newStoreOn(b, pool, &Config{PollOnly: true, GroupCommit: true})
	// The same store with group commit off: one statement and commit per
	// append, as the baseline.
	noGroup := newStoreOn(b, pool, &Config{PollOnly: true})
	// The same store on a database with a NOTIFY trigger on the events
	// table, the design this store replaced, to measure its cost.
	trigPool := benchDB(b, conns)
	if _, err := trigPool.Exec(b.Context(), benchNotifyTrigger); err != nil {
		b.Fatal(err)
	}
	trig := newStoreOn(b, trigPool, &Config{PollOnly: true, GroupCommit: true})

	const streams, commands = 50, 10
	type writer struct {
		versions [streams]int64
		next     int
	}
	sides := make([][]writer, 8)
	for i := range sides {
		sides[i] = make([]writer, writers)
	}
	stream := func(side, w, a int) string { return fmt.Sprintf("account-%d-%d-%d", side, w, a) }

	// insertWith runs sql, the baseline's parameters plus event IDs when
	// ids is set, computing the versions itself.
	insertWith := func(sql string, side int, ids bool) func(ctx context.Context, w int) error {
		return func(ctx context.Context, w int) error {
			wr := &sides[side][w]
			data := make([][]byte, perOp)
			versions := make([]int64, perOp)
			eventIDs := make([][16]byte, perOp)
			for range commands {
				a := wr.next % streams
				wr.next++
				for j := range perOp {
					data[j] = benchPayload(a)
					versions[j] = wr.versions[a] + int64(j) + 1
					if ids {
						eventIDs[j] = eventstore.NewEventID()
					}
				}
				args := []any{stream(side, w, a), versions, "Deposited", data}
				if ids {
					args = append(args, eventIDs)
				}
				if _, err := pool.Exec(ctx, sql, args...); err != nil {
					return err
				}
				wr.versions[a] += int64(perOp)
			}
			return nil
		}
	}
	appendWith := func(st *Store, side int) func(ctx context.Context, w int) error {
		return func(ctx context.Context, w int) error {
			wr := &sides[side][w]
			events := make([]eventstore.Event, perOp)
			for range commands {
				a := wr.next % streams
				wr.next++
				for j := range events {
					events[j] = eventstore.Event{ID: eventstore.NewEventID(), Type: "Deposited", SchemaVersion: 1, Data: benchPayload(a)}
				}
				res, err := st.Append(ctx, stream(side, w, a), eventstore.Exact(wr.versions[a]), events...)
				if err != nil {
					return err
				}
				wr.versions[a] = res.Version
			}
			return nil
		}
	}
	// statementWith sends the append statement the store would send, with
	// the store's parameters but without eventstore.ValidateAppend, and
	// reads its result; with noHead set it sends benchNoHeadOne or
	// benchNoHeadMany instead, with the same parameters.
	statementWith := func(side int, noHead bool) func(ctx context.Context, w int) error {
		return func(ctx context.Context, w int) error {
			wr := &sides[side][w]
			events := make([]eventstore.Event, perOp)
			for range commands {
				a := wr.next % streams
				wr.next++
				for j := range events {
					events[j] = eventstore.Event{ID: eventstore.NewEventID(), Type: "Deposited", SchemaVersion: 1, Data: benchPayload(a)}
				}
				in, err := eventsql.Flatten([]eventstore.StreamAppend{{StreamID: stream(side, w, a), Expected: eventstore.Exact(wr.versions[a]), Events: events}})
				if err != nil {
					return err
				}
				sql, args := in.Statement()
				if noHead {
					sql = benchNoHeadMany
					if perOp == 1 {
						sql = benchNoHeadOne
					}
				}
				rows, err := pool.Query(ctx, sql, args...)
				if err != nil {
					return err
				}
				res, ok, err := in.ScanResult(rows)
				if err != nil || !ok {
					return fmt.Errorf("statement: %v, inserted %t", err, ok)
				}
				wr.versions[a] = res[0].Version
			}
			return nil
		}
	}
	concurrently := func(fn func(ctx context.Context, w int) error) func(ctx context.Context, i int) (int, error) {
		return func(ctx context.Context, _ int) (int, error) {
			errs := make(chan error, writers)
			for w := range writers {
				go func() { errs <- fn(ctx, w) }()
			}
			var err error
			for range writers {
				err = cmp.Or(err, <-errs)
			}
			return writers * commands * perOp, err
		}
	}
	benchInterleaved(b, "ev/s",
		benchVariant{"baseline", concurrently(insertWith(benchBaselineInsert, 0, false))},
		benchVariant{"chronicle", concurrently(appendWith(s, 1))},
		benchVariant{"chronicle-trigger", concurrently(appendWith(trig, 2))},
		benchVariant{"floor", concurrently(insertWith(benchFloorInsert, 3, true))},
		benchVariant{"floor-returning", concurrently(insertWith(benchFloorReturning, 4, true))},
		benchVariant{"statement", concurrently(statementWith(5, false))},
		benchVariant{"no-head", concurrently(statementWith(7, true))},
		benchVariant{"chronicle-nogroup", concurrently(appendWith(noGroup, 6))},
	)
}

func BenchmarkAppend1(b *testing.B)           { benchAppend(b, 1, 1) }
func BenchmarkAppend10(b *testing.B)          { benchAppend(b, 10, 1) }
func BenchmarkAppend1Writers8(b *testing.B)   { benchAppend(b, 1, 8) }
func BenchmarkAppend10Writers8(b *testing.B)  { benchAppend(b, 10, 8) }
func BenchmarkAppend1Writers32(b *testing.B)  { benchAppend(b, 1, 32) }
func BenchmarkAppend10Writers32(b *testing.B) { benchAppend(b, 10, 32) }

// BenchmarkAppendTx measures the savepoint AppendTx adds: a transaction
// with the append statement and a commit, with and without the savepoint,
// against the baseline insert in a transaction.
func BenchmarkAppendTx(b *testing.B) {
	pool := benchDB(b, 4)
	s := newStoreOn(b, pool, &Config{PollOnly: true})
	const streams = 50
	var base, withSP, withoutSP [streams]int64
	inTx := func(ctx context.Context, fn func(pgx.Tx) error) error {
		return pgx.BeginFunc(ctx, pool, fn)
	}
	streamOf := func(prefix string, i int) (string, int) {
		a := i % streams
		return fmt.Sprintf("%s-%d", prefix, a), a
	}
	event := func(a int) eventstore.Event {
		return eventstore.Event{ID: eventstore.NewEventID(), Type: "Deposited", Data: benchPayload(a)}
	}
	benchInterleaved(b, "ev/s",
		benchVariant{"baseline", func(ctx context.Context, i int) (int, error) {
			id, a := streamOf("b", i)
			return 1, inTx(ctx, func(tx pgx.Tx) error {
				base[a]++
				_, err := tx.Exec(ctx, benchBaselineInsert, id, []int64{base[a]}, "Deposited", [][]byte{benchPayload(a)})
				return err
			})
		}},
		benchVariant{"appendtx", func(ctx context.Context, i int) (int, error) {
			id, a := streamOf("sp", i)
			return 1, inTx(ctx, func(tx pgx.Tx) error {
				res, err := s.AppendTx(ctx, tx, id, eventstore.Exact(withSP[a]), event(a))
				withSP[a] = res.Version
				return err
			})
		}},
		benchVariant{"no-savepoint", func(ctx context.Context, i int) (int, error) {
			id, a := streamOf("nosp", i)
			in, err := s.prepareAppend([]eventstore.StreamAppend{{StreamID: id, Expected: eventstore.Exact(withoutSP[a]), Events: []eventstore.Event{event(a)}}})
			if err != nil {
				return 0, err
			}
			return 1, inTx(ctx, func(tx pgx.Tx) error {
				sql, args := in.Statement()
				rows, err := tx.Query(ctx, sql, args...)
				if err != nil {
					return err
				}
				res, ok, err := in.ScanResult(rows)
				if err == nil && !ok {
					err = fmt.Errorf("conflict")
				}
				if err == nil {
					withoutSP[a] = res[0].Version
				}
				return err
			})
		}},
	)
}

// BenchmarkLoad100 reads whole streams of 100 events (rehydrating an
// account), without decoding the payloads on either side.
func BenchmarkLoad100(b *testing.B) {
	pool := benchDB(b, 4)
	s := newStoreOn(b, pool, &Config{PollOnly: true})
	ctx := b.Context()
	const accounts = 20
	for a := range accounts {
		id := fmt.Sprintf("account-%d", a)
		evs := make([]eventstore.Event, 100)
		data := make([][]byte, 100)
		versions := make([]int64, 100)
		for j := range evs {
			data[j] = benchPayload(a)
			versions[j] = int64(j + 1)
			evs[j] = eventstore.Event{Type: "Deposited", Data: data[j]}
		}
		if _, err := s.Append(ctx, id, eventstore.NoStream, evs...); err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, benchBaselineInsert, id, versions, "Deposited", data); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	benchInterleaved(b, "loads/s",
		benchVariant{"baseline", func(ctx context.Context, i int) (int, error) {
			rows, err := pool.Query(ctx, benchBaselineLoad, fmt.Sprintf("account-%d", i%accounts))
			if err != nil {
				return 0, err
			}
			out, err := benchScanRows(rows)
			if err == nil && len(out) != 100 {
				err = fmt.Errorf("loaded %d events", len(out))
			}
			return 1, err
		}},
		benchVariant{"chronicle", func(ctx context.Context, i int) (int, error) {
			recs, err := s.ReadStream(ctx, fmt.Sprintf("account-%d", i%accounts), eventstore.ReadStreamOptions{})
			if err == nil && len(recs) != 100 {
				err = fmt.Errorf("loaded %d events", len(recs))
			}
			return 1, err
		}},
	)
}

// BenchmarkReadAll scans the global order in pages of 1000: ReadAll under
// the transaction-id horizon against a keyset scan on the identity column.
func BenchmarkReadAll(b *testing.B) {
	pool := benchDB(b, 4)
	s := newStoreOn(b, pool, &Config{PollOnly: true})
	ctx := b.Context()
	const total, page, batch = 50_000, 1000, 1000
	for n := 0; n < total; n += batch {
		evs := make([]eventstore.Event, batch)
		data := make([][]byte, batch)
		versions := make([]int64, batch)
		id := fmt.Sprintf("account-%d", n/batch)
		for j := range evs {
			data[j] = benchPayload(n / batch)
			versions[j] = int64(j + 1)
			evs[j] = eventstore.Event{Type: "Deposited", Data: data[j]}
		}
		if _, err := s.Append(ctx, id, eventstore.NoStream, evs...); err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, benchBaselineInsert, id, versions, "Deposited", data); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	// Page start positions, read once (not timed).
	var starts []eventstore.Position
	deadline := time.Now().Add(time.Minute)
	for p := (eventstore.Position{}); len(starts) < total/page; {
		recs, err := s.ReadAll(ctx, p, page)
		if err != nil {
			b.Fatal(err)
		}
		if len(recs) < page {
			if time.Now().After(deadline) {
				lag, _ := s.TailLag(ctx)
				b.Fatalf("the horizon is held back (tail lag %s): an old transaction is open in the cluster", lag)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		starts = append(starts, p)
		p = recs[len(recs)-1].Position
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Compare(starts[j]) < 0 })
	benchInterleaved(b, "ev/s",
		benchVariant{"baseline", func(ctx context.Context, i int) (int, error) {
			rows, err := pool.Query(ctx, benchBaselineScan, int64((i%len(starts))*page), page)
			if err != nil {
				return 0, err
			}
			out, err := benchScanRows(rows)
			return len(out), err
		}},
		benchVariant{"chronicle", func(ctx context.Context, i int) (int, error) {
			recs, err := s.ReadAll(ctx, starts[i%len(starts)], page)
			return len(recs), err
		}},
	)
}
