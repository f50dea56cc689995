package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/snapshot"
)

// testEvents returns n events with fresh IDs and numbered payloads.
func testEvents(typ string, n int) []eventstore.Event {
	evs := make([]eventstore.Event, n)
	for i := range evs {
		evs[i] = eventstore.Event{ID: eventstore.NewEventID(), Type: typ, Data: fmt.Appendf(nil, `{"n":%d}`, i+1)}
	}
	return evs
}

// streamIDs returns the event IDs of a stream, in version order.
func streamEventIDs(t testing.TB, s *Store, streamID string) []eventstore.EventID {
	t.Helper()
	recs, err := s.ReadStream(context.Background(), streamID, eventstore.ReadStreamOptions{})
	if err != nil {
		t.Fatalf("ReadStream(%q): %v", streamID, err)
	}
	ids := make([]eventstore.EventID, len(recs))
	for i, r := range recs {
		if r.StreamVersion != int64(i+1) {
			t.Fatalf("stream %q: event %d has version %d", streamID, i, r.StreamVersion)
		}
		ids[i] = r.EventID
	}
	return ids
}

func requireStreamIDs(t testing.TB, s *Store, streamID string, want []eventstore.Event) {
	t.Helper()
	got := streamEventIDs(t, s, streamID)
	if len(got) != len(want) {
		t.Fatalf("stream %q has %d events, want %d", streamID, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i].ID {
			t.Fatalf("stream %q v%d is %s, want %s", streamID, i+1, got[i], want[i].ID)
		}
	}
}

// createAccounts creates a business table next to the events.
func createAccounts(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), `CREATE TABLE accounts (id text PRIMARY KEY, balance bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

func accountExists(t testing.TB, pool *pgxpool.Pool, id string) bool {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM accounts WHERE id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestAppendTxCommitsWithBusinessRows(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	createAccounts(t, pool)
	ctx := t.Context()

	// Commit: the row and the events appear together.
	opened := testEvents("AccountOpened", 2)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO accounts VALUES ('acc-1', 100)`); err != nil {
		t.Fatal(err)
	}
	res, err := s.AppendTx(ctx, tx, "account-1", eventstore.NoStream, opened...)
	if err != nil {
		t.Fatalf("AppendTx: %v", err)
	}
	if res.StreamID != "account-1" || res.Version != 2 || res.Position.IsZero() {
		t.Fatalf("AppendTx result %+v", res)
	}
	// The events carry the caller's transaction id, not the savepoint's.
	var xid uint64
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()`).Scan(&xid); err != nil || res.Position.Transaction != xid {
		t.Fatalf("position transaction %d, caller's transaction %d (%v)", res.Position.Transaction, xid, err)
	}
	// Not visible outside the transaction before commit.
	if ids := streamEventIDs(t, s, "account-1"); len(ids) != 0 {
		t.Fatalf("uncommitted events visible: %v", ids)
	}
	if recs, err := s.ReadAll(ctx, eventstore.Position{}, 10); err != nil || len(recs) != 0 {
		t.Fatalf("ReadAll before commit = %d records, %v; want none", len(recs), err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if !accountExists(t, pool, "acc-1") {
		t.Fatal("business row missing after commit")
	}
	requireStreamIDs(t, s, "account-1", opened)
	recs := readAllUntil(t, s, eventstore.Position{}, 2)
	if recs[1].Position != res.Position {
		t.Fatalf("ReadAll position %s, AppendTx returned %s", recs[1].Position, res.Position)
	}

	// Rollback: neither appears.
	tx, err = pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO accounts VALUES ('acc-2', 5)`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendTx(ctx, tx, "account-2", eventstore.NoStream, testEvents("AccountOpened", 1)...); err != nil {
		t.Fatalf("AppendTx: %v", err)
	}
	if _, err := s.AppendStreamsTx(ctx, tx,
		eventstore.StreamAppend{StreamID: "account-1", Expected: eventstore.Exact(2), Events: testEvents("Deposited", 1)},
		eventstore.StreamAppend{StreamID: "account-3", Expected: eventstore.NoStream, Events: testEvents("AccountOpened", 1)},
	); err != nil {
		t.Fatalf("AppendStreamsTx: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if accountExists(t, pool, "acc-2") {
		t.Fatal("business row present after rollback")
	}
	for _, id := range []string{"account-2", "account-3"} {
		if ids := streamEventIDs(t, s, id); len(ids) != 0 {
			t.Fatalf("stream %s has %d events after rollback", id, len(ids))
		}
	}
	requireStreamIDs(t, s, "account-1", opened)
	if more, err := s.ReadAll(ctx, recs[1].Position, 10); err != nil || len(more) != 0 {
		t.Fatalf("ReadAll after rollback = %d records, %v; want none", len(more), err)
	}
}

// readAllUntil reads from after until it has n events (waiting for the
// horizon, which other tests' transactions may hold back for a while), and
// checks nothing follows.
func readAllUntil(t testing.TB, s *Store, after eventstore.Position, n int) []eventstore.Record {
	t.Helper()
	var all []eventstore.Record
	deadline := time.Now().Add(30 * time.Second)
	for len(all) < n {
		recs, err := s.ReadAll(t.Context(), after, 1000)
		if err != nil {
			t.Fatalf("ReadAll(%s): %v", after, err)
		}
		if len(recs) > 0 {
			all = append(all, recs...)
			after = recs[len(recs)-1].Position
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReadAll returned %d events, want %d", len(all), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(all) != n {
		t.Fatalf("ReadAll returned %d events, want %d", len(all), n)
	}
	if more, err := s.ReadAll(t.Context(), after, 1000); err != nil || len(more) != 0 {
		t.Fatalf("ReadAll after %d events = %d more, %v", n, len(more), err)
	}
	return all
}

func TestAppendTxFailureLeavesTxUsable(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	createAccounts(t, pool)
	ctx := t.Context()

	first := testEvents("E", 2)
	orig, err := s.Append(ctx, "s", eventstore.NoStream, first...)
	if err != nil {
		t.Fatal(err)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after commit

	if _, err := tx.Exec(ctx, `INSERT INTO accounts VALUES ('a', 1)`); err != nil {
		t.Fatal(err)
	}
	// Expectation failure detected by the statement's check.
	_, err = s.AppendTx(ctx, tx, "s", eventstore.Exact(1), testEvents("E", 1)...)
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) || ce.Actual != 2 {
		t.Fatalf("AppendTx with a stale version: %v, want a ConcurrencyError with actual 2", err)
	}
	// Unique violation on the event id (aborts the statement, not the tx).
	reused := eventstore.Event{ID: first[0].ID, Type: "E", Data: []byte(`{"other":true}`)}
	if _, err = s.AppendTx(ctx, tx, "t", eventstore.Any, reused); !errors.Is(err, eventstore.ErrDuplicateEvent) {
		t.Fatalf("AppendTx with a reused event id: %v, want ErrDuplicateEvent", err)
	}
	// Unique violation on (stream, version) that is an idempotent retry.
	again, err := s.AppendTx(ctx, tx, "s", eventstore.Any, first...)
	if err != nil || again != orig {
		t.Fatalf("idempotent retry in tx = %+v, %v; want %+v", again, err, orig)
	}
	// The transaction still works.
	more := testEvents("E", 1)
	if _, err := s.AppendTx(ctx, tx, "s", eventstore.Exact(2), more...); err != nil {
		t.Fatalf("AppendTx after failures: %v", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE accounts SET balance = 2 WHERE id = 'a'`); err != nil {
		t.Fatalf("tx unusable after failed appends: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	requireStreamIDs(t, s, "s", append(first, more...))
	if !accountExists(t, pool, "a") {
		t.Fatal("business row lost")
	}
	if ids := streamEventIDs(t, s, "t"); len(ids) != 0 {
		t.Fatalf("stream t has %d events", len(ids))
	}
}

func TestAppendTxNilTx(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, nil)
	if _, err := s.AppendTx(t.Context(), nil, "s", eventstore.Any, testEvents("E", 1)...); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("AppendTx(nil tx): %v, want ErrInvalidInput", err)
	}
	if _, err := s.AppendStreamsTx(t.Context(), nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("AppendStreamsTx(nil tx): %v, want ErrInvalidInput", err)
	}
}

// waitBlocked waits until a backend of the pool's database waits for a lock.
func waitBlocked(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no backend blocked on a lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAppendRacesOnTheUniqueKey makes an append wait on the
// (stream_id, stream_version) key of an uncommitted insert, then lets that
// insert commit: an Exact append reports the conflict with the real
// version, an Any append is retried internally and lands after it.
func TestAppendRacesOnTheUniqueKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expected eventstore.ExpectedVersion
		wantErr  bool
	}{
		{eventstore.Exact(1), true},
		{eventstore.Any, false},
		{eventstore.StreamExists, false},
	} {
		t.Run(tc.expected.String(), func(t *testing.T) {
			t.Parallel()
			s, pool := setupStore(t, nil)
			ctx := t.Context()
			if _, err := s.Append(ctx, "s", eventstore.NoStream, testEvents("E", 1)...); err != nil {
				t.Fatal(err)
			}
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background()) //nolint:errcheck
			winner := testEvents("Winner", 1)
			if _, err := s.AppendTx(ctx, tx, "s", eventstore.Exact(1), winner...); err != nil {
				t.Fatal(err)
			}
			loser := testEvents("Loser", 2)
			type result struct {
				res eventstore.AppendResult
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, err := s.Append(ctx, "s", tc.expected, loser...)
				done <- result{res, err}
			}()
			waitBlocked(t, pool)
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if tc.wantErr {
				var ce *eventstore.ConcurrencyError
				if !errors.As(r.err, &ce) || ce.Actual != 2 || ce.StreamID != "s" || ce.Expected != tc.expected {
					t.Fatalf("Append = %v, want a ConcurrencyError with actual version 2", r.err)
				}
				if v, _ := s.StreamVersion(ctx, "s"); v != 2 {
					t.Fatalf("stream at version %d, want 2", v)
				}
				return
			}
			if r.err != nil || r.res.Version != 4 {
				t.Fatalf("Append = %+v, %v; want version 4 after an internal retry", r.res, r.err)
			}
			ids := streamEventIDs(t, s, "s")
			if ids[1] != winner[0].ID || ids[2] != loser[0].ID || ids[3] != loser[1].ID {
				t.Fatalf("stream order %v", ids)
			}
		})
	}
}

func TestAppendStreamsAtomicInTx(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()
	if _, err := s.Append(ctx, "b", eventstore.NoStream, testEvents("B", 1)...); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck
	_, err = s.AppendStreamsTx(ctx, tx,
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.NoStream, Events: testEvents("A", 3)},
		eventstore.StreamAppend{StreamID: "b", Expected: eventstore.NoStream, Events: testEvents("B", 1)},
	)
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) || ce.StreamID != "b" || ce.Actual != 1 {
		t.Fatalf("AppendStreamsTx = %v, want a conflict on b at 1", err)
	}
	a := testEvents("A", 2)
	res, err := s.AppendStreamsTx(ctx, tx,
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.NoStream, Events: a},
		eventstore.StreamAppend{StreamID: "b", Expected: eventstore.Exact(1), Events: testEvents("B", 1)},
	)
	if err != nil || len(res) != 2 || res[0].Version != 2 || res[1].Version != 2 {
		t.Fatalf("AppendStreamsTx = %+v, %v", res, err)
	}
	if res[0].Position.Transaction != res[1].Position.Transaction || res[0].Position.Compare(res[1].Position) >= 0 {
		t.Fatalf("positions %s and %s: want one transaction, in call order", res[0].Position, res[1].Position)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	requireStreamIDs(t, s, "a", a)
	if v, err := s.StreamVersion(ctx, "b"); err != nil || v != 2 {
		t.Fatalf("b at %d, %v", v, err)
	}
}

func TestStreamIDsAreData(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()
	valid := []string{
		`'; DROP TABLE chronicle.events; --`,
		`"quoted"`,
		`it's`,
		`semi;colon`,
		`back\slash\\`,
		`$1::text`,
		`%s %d %v`,
		`percent%_under`,
		`ünïcødé-账户-🙂`,
		`a b`,
		strings.Repeat("x", eventstore.MaxStreamIDLength),
		strings.Repeat("é", eventstore.MaxStreamIDLength/2),
	}
	for _, id := range valid {
		evs := testEvents("E", 2)
		res, err := s.Append(ctx, id, eventstore.NoStream, evs...)
		if err != nil || res.StreamID != id {
			t.Fatalf("Append(%q) = %+v, %v", id, res, err)
		}
		requireStreamIDs(t, s, id, evs)
		recs, err := s.ReadStream(ctx, id, eventstore.ReadStreamOptions{Direction: eventstore.Backward, Limit: 1})
		if err != nil || len(recs) != 1 || recs[0].StreamID != id || recs[0].StreamVersion != 2 {
			t.Fatalf("ReadStream(%q) backward = %+v, %v", id, recs, err)
		}
		if v, err := s.StreamVersion(ctx, id); err != nil || v != 2 {
			t.Fatalf("StreamVersion(%q) = %d, %v", id, v, err)
		}
	}
	all := readAllUntil(t, s, eventstore.Position{}, 2*len(valid))
	for i, id := range valid {
		if all[2*i].StreamID != id || all[2*i+1].StreamID != id {
			t.Fatalf("ReadAll event %d: stream %q, want %q", 2*i, all[2*i].StreamID, id)
		}
	}

	invalid := []string{
		"",
		"bad\xffutf8",
		"\xc3\x28",
		"nul\x00byte",
		"new\nline",
		strings.Repeat("x", eventstore.MaxStreamIDLength+1),
	}
	for _, id := range invalid {
		_, err := s.Append(ctx, id, eventstore.Any, testEvents("E", 1)...)
		var ve *eventstore.ValidationError
		if !errors.As(err, &ve) || ve.Field != "stream id" {
			t.Fatalf("Append(%q) = %v, want a ValidationError on the stream id", id, err)
		}
		if _, err := s.ReadStream(ctx, id, eventstore.ReadStreamOptions{}); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Fatalf("ReadStream(%q) = %v, want ErrInvalidInput", id, err)
		}
		if _, err := s.StreamVersion(ctx, id); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Fatalf("StreamVersion(%q) = %v, want ErrInvalidInput", id, err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM chronicle.events`).Scan(&n); err != nil || n != 2*len(valid) {
		t.Fatalf("events table holds %d rows, %v; want %d", n, err, 2*len(valid))
	}
}

func TestEventSizeLimit(t *testing.T) {
	t.Parallel()
	const limit = 1000
	s, _ := setupStore(t, &Config{MaxEventSize: limit})
	ctx := t.Context()
	payload := func(size int) []byte { // a JSON string of exactly size bytes
		return []byte(`"` + strings.Repeat("a", size-2) + `"`)
	}
	ok := eventstore.Event{ID: eventstore.NewEventID(), Type: "E", Data: payload(limit)}
	big := eventstore.Event{ID: eventstore.NewEventID(), Type: "E", Data: payload(limit + 1)}
	bigMeta := eventstore.Event{ID: eventstore.NewEventID(), Type: "E", Data: payload(limit - 10),
		Metadata: eventstore.Metadata{CorrelationID: strings.Repeat("c", 11)}}

	_, err := s.Append(ctx, "s", eventstore.Any, ok, big)
	var te *eventstore.EventTooLargeError
	if !errors.As(err, &te) || te.Index != 1 || te.Size != limit+1 || te.Limit != limit || !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("oversized event: %v, want an EventTooLargeError for events[1]", err)
	}
	if _, err := s.Append(ctx, "s", eventstore.Any, bigMeta); !errors.As(err, &te) {
		t.Fatalf("oversized metadata: %v, want an EventTooLargeError", err)
	}
	if ids := streamEventIDs(t, s, "s"); len(ids) != 0 {
		t.Fatalf("a rejected append stored %d events", len(ids))
	}
	if _, err := s.Append(ctx, "s", eventstore.Any, ok); err != nil {
		t.Fatalf("event at the limit: %v", err)
	}

	// The default limit is eventstore.DefaultMaxEventSize.
	d, _ := setupStore(t, nil)
	huge := eventstore.Event{Type: "E", Data: payload(eventstore.DefaultMaxEventSize + 1)}
	if _, err := d.Append(ctx, "s", eventstore.Any, huge); !errors.Is(err, eventstore.ErrEventTooLarge) {
		t.Fatalf("event over the default limit: %v, want ErrEventTooLarge", err)
	}
}

func TestAppendInvalidInput(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, nil)
	ctx := t.Context()
	id := eventstore.NewEventID()
	tests := []struct {
		name   string
		events []eventstore.Event
	}{
		{"no events", nil},
		{"empty type", []eventstore.Event{{Type: "", Data: []byte(`{}`)}}},
		{"invalid json", []eventstore.Event{{Type: "E", Data: []byte(`{"a":`)}}},
		{"nul escape", []eventstore.Event{{Type: "E", Data: []byte(`{"a":"\u0000"}`)}}},
		{"invalid utf-8 type", []eventstore.Event{{Type: "E\xff", Data: []byte(`{}`)}}},
		{"invalid utf-8 header", []eventstore.Event{{Type: "E", Data: []byte(`{}`), Metadata: eventstore.Metadata{Headers: map[string]string{"k": "\xff"}}}}},
		{"id used twice", []eventstore.Event{{ID: id, Type: "E", Data: []byte(`{}`)}, {ID: id, Type: "E", Data: []byte(`{}`)}}},
		{"negative schema version", []eventstore.Event{{Type: "E", SchemaVersion: -1, Data: []byte(`{}`)}}},
	}
	for _, tt := range tests {
		if _, err := s.Append(ctx, "s", eventstore.Any, tt.events...); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("%s: %v, want ErrInvalidInput", tt.name, err)
		}
	}
	if _, err := s.Append(ctx, "s", eventstore.ExpectedVersion(-3), testEvents("E", 1)...); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("invalid expected version: %v", err)
	}
	if ids := streamEventIDs(t, s, "s"); len(ids) != 0 {
		t.Fatalf("invalid appends stored %d events", len(ids))
	}
}

// TestAppendDataRejectedByServer appends JSON that jsonb cannot hold (a
// number beyond numeric's range). eventstore.ValidateAppend refuses it
// before anything is sent (the memory store refuses exactly the same), so
// a caller's transaction stays usable; and should the server still refuse
// data (a JSON limit the client does not know), the statement's error is
// a ValidationError on the events' data, and nothing is stored.
func TestAppendDataRejectedByServer(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	createAccounts(t, pool)
	ctx := t.Context()
	bad := func() eventstore.Event { return eventstore.Event{Type: "E", Data: []byte(`{"a":1e200000}`)} }
	check := func(what string, err error) {
		t.Helper()
		var ve *eventstore.ValidationError
		if !errors.Is(err, eventstore.ErrInvalidInput) || !errors.As(err, &ve) || !strings.Contains(ve.Reason, "numeric") {
			t.Fatalf("%s: %v, want a ValidationError about numeric", what, err)
		}
	}
	_, err := s.Append(ctx, "s", eventstore.Any, bad())
	check("Append", err)
	_, err = s.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "s", Expected: eventstore.NoStream, Events: testEvents("E", 1)},
		eventstore.StreamAppend{StreamID: "t", Expected: eventstore.NoStream, Events: []eventstore.Event{bad()}})
	check("AppendStreams", err)

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after commit
	if _, err := tx.Exec(ctx, `INSERT INTO accounts VALUES ('a', 1)`); err != nil {
		t.Fatal(err)
	}
	_, err = s.AppendTx(ctx, tx, "s", eventstore.NoStream, bad())
	check("AppendTx", err)
	good := testEvents("E", 1)
	if _, err := s.AppendTx(ctx, tx, "u", eventstore.NoStream, good...); err != nil {
		t.Fatalf("AppendTx after a rejected append: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// The server's refusal, sent past the client's validation: the
	// statement fails as a whole and its error reads as invalid input.
	for _, appends := range [][]eventstore.StreamAppend{
		{{StreamID: "s", Expected: eventstore.Any, Events: []eventstore.Event{bad()}}},
		{{StreamID: "s", Expected: eventstore.NoStream, Events: testEvents("E", 1)}, {StreamID: "t", Expected: eventstore.NoStream, Events: []eventstore.Event{bad()}}},
	} {
		in, err := eventsql.Flatten(appends)
		if err != nil {
			t.Fatal(err)
		}
		_, conflict, err := s.appendOnce(ctx, nil, in)
		if conflict != nil || err == nil {
			t.Fatalf("unvalidated append of %s: conflict %v, err %v; want the server's error", in.Op(), conflict, err)
		}
		err = appendError(nil, in, err, 0)
		var ve *eventstore.ValidationError
		if !errors.Is(err, eventstore.ErrInvalidInput) || !errors.As(err, &ve) || ve.Field != "events data" || !strings.Contains(ve.Reason, "numeric") {
			t.Fatalf("server's refusal: %v, want a ValidationError on events data about numeric", err)
		}
	}
	for _, id := range []string{"s", "t"} {
		if ids := streamEventIDs(t, s, id); len(ids) != 0 {
			t.Fatalf("rejected appends stored %d events in %q", len(ids), id)
		}
	}
	requireStreamIDs(t, s, "u", good)
	if !accountExists(t, pool, "a") {
		t.Fatal("business row lost")
	}
}

// TestAppendTxAfterNewerCommit reproduces the ordering hazard of AppendTx:
// transaction A takes its transaction id with a business write, B (a
// larger id) appends version 1 and commits, and A, having read version 1,
// appends version 2. Stored, version 2 would sort before version 1 in the
// global order. The append must fail with a concurrency conflict, and A's
// retry in a new transaction must succeed, leaving the stream in order in
// ReadAll.
func TestAppendTxAfterNewerCommit(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	createAccounts(t, pool)
	ctx := t.Context()

	for _, tt := range []struct {
		name     string
		expected eventstore.ExpectedVersion
		streams  bool // through AppendStreamsTx, with a second, new stream
	}{
		{"exact", eventstore.Exact(1), false},
		{"any", eventstore.Any, false},
		{"stream exists", eventstore.StreamExists, false},
		{"streams exact", eventstore.Exact(1), true},
		{"streams any", eventstore.Any, true},
	} {
		stream := "order-" + strings.ReplaceAll(tt.name, " ", "-")
		other := stream + "-other"
		appendA := func(tx pgx.Tx, evs []eventstore.Event) error {
			if tt.streams {
				_, err := s.AppendStreamsTx(ctx, tx,
					eventstore.StreamAppend{StreamID: other, Expected: eventstore.NoStream, Events: testEvents("O", 1)},
					eventstore.StreamAppend{StreamID: stream, Expected: tt.expected, Events: evs})
				return err
			}
			_, err := s.AppendTx(ctx, tx, stream, tt.expected, evs...)
			return err
		}

		txA, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// A no-op after commit or rollback; on failure, frees the connection.
		defer func(tx pgx.Tx) { _ = tx.Rollback(context.Background()) }(txA)
		if _, err := txA.Exec(ctx, `INSERT INTO accounts VALUES ($1, 1)`, stream); err != nil {
			t.Fatal(err)
		}
		var xidA, xidB uint64
		if err := txA.QueryRow(ctx, `SELECT pg_current_xact_id_if_assigned()::text::bigint`).Scan(&xidA); err != nil {
			t.Fatal(err)
		}
		// B appends version 1 and commits; its id is larger than A's.
		v1 := testEvents("E", 1)
		txB, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func(tx pgx.Tx) { _ = tx.Rollback(context.Background()) }(txB)
		resB, err := s.AppendTx(ctx, txB, stream, eventstore.NoStream, v1...)
		if err != nil {
			t.Fatal(err)
		}
		if err := txB.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if xidB = resB.Position.Transaction; xidB <= xidA {
			t.Fatalf("%s: B's transaction id %d is not larger than A's %d", tt.name, xidB, xidA)
		}
		// A sees version 1 (READ COMMITTED) and appends version 2.
		cur, err := s.StreamVersion(ctx, stream)
		if err != nil || cur != 1 {
			t.Fatalf("%s: StreamVersion = %d, %v; want 1", tt.name, cur, err)
		}
		v2 := testEvents("E", 1)
		err = appendA(txA, v2)
		var tce *eventstore.TransactionConflictError
		if !errors.Is(err, eventstore.ErrTransactionConflict) || !errors.As(err, &tce) || tce.StreamID != stream {
			t.Fatalf("%s: append after a newer transaction's commit: %v, want a TransactionConflictError on %q", tt.name, err, stream)
		}
		if err := txA.Rollback(ctx); err != nil {
			t.Fatal(err)
		}

		// The retry in a new transaction gets a new, larger id.
		txA, err = pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func(tx pgx.Tx) { _ = tx.Rollback(context.Background()) }(txA)
		if _, err := txA.Exec(ctx, `INSERT INTO accounts VALUES ($1, 1)`, stream); err != nil {
			t.Fatal(err)
		}
		if err := appendA(txA, v2); err != nil {
			t.Fatalf("%s: retry in a new transaction: %v", tt.name, err)
		}
		if err := txA.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		requireStreamIDs(t, s, stream, append(v1, v2...))
	}

	// Every stream's versions appear in order in the global order: 2
	// events per case, and 1 in each other stream.
	all := readAllUntil(t, s, eventstore.Position{}, 5*2+2)
	last := map[string]int64{}
	for _, r := range all {
		if r.StreamVersion != last[r.StreamID]+1 {
			t.Fatalf("ReadAll: %s v%d after v%d", r.StreamID, r.StreamVersion, last[r.StreamID])
		}
		last[r.StreamID] = r.StreamVersion
	}
}

// poolWithAppName opens a pool on url whose connections carry
// application_name name, closed when the test ends.
func poolWithAppName(t testing.TB, url, name string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = name
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestReadsSurviveTerminatedConnections terminates every backend of the
// store's pool while the connections sit idle in it, as a restart or a
// failover does, then reads at once: each kind of read succeeds, retrying
// once on a live connection instead of failing on the stale one.
func TestReadsSurviveTerminatedConnections(t *testing.T) {
	t.Parallel()
	const name = "chronicle-stale-reads"
	pool := poolWithAppName(t, postgrestest.DatabaseURL(t), name)
	s := newStoreOn(t, pool, &Config{PollOnly: true})
	snaps, err := NewSnapshotStore(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := adminConn(t)
	ctx := t.Context()
	if _, err := s.Append(ctx, "acc-1", eventstore.NoStream, testEvents("E", 3)...); err != nil {
		t.Fatal(err)
	}
	// ReadAllInto below expects the 3 events: wait until they are below
	// the transaction-id horizon, which another test's open transaction
	// may hold back.
	readAllUntil(t, s, eventstore.Position{}, 3)
	reads := []struct {
		name string
		read func() error
	}{
		{"ReadStream", func() error {
			recs, err := s.ReadStream(ctx, "acc-1", eventstore.ReadStreamOptions{})
			if err == nil && len(recs) != 3 {
				err = fmt.Errorf("%d events, want 3", len(recs))
			}
			return err
		}},
		{"ReadStreamPayloads", func() error {
			_, err := s.ReadStreamPayloads(ctx, "acc-1", eventstore.ReadStreamOptions{})
			return err
		}},
		{"ReadAll", func() error {
			_, err := s.ReadAll(ctx, eventstore.Position{}, 10)
			return err
		}},
		{"ReadAllInto", func() error {
			var recs []eventstore.Record
			n, err := s.ReadAllInto(ctx, eventstore.Position{}, 10, func(i int) *eventstore.Record {
				if i == len(recs) {
					recs = append(recs, eventstore.Record{})
				}
				return &recs[i]
			})
			if err == nil && (n != 3 || recs[0].StreamID != "acc-1" || recs[2].StreamVersion != 3) {
				err = fmt.Errorf("%d events %+v, want acc-1's 3", n, recs[:n])
			}
			return err
		}},
		{"Head", func() error { _, err := s.Head(ctx); return err }},
		{"StreamVersion", func() error { _, err := s.StreamVersion(ctx, "acc-1"); return err }},
		{"TailLag", func() error { _, err := s.TailLag(ctx); return err }},
		{"snapshot Load", func() error {
			_, err := snaps.Load(ctx, "acc-1")
			if errors.Is(err, snapshot.ErrNotFound) {
				err = nil
			}
			return err
		}},
	}
	for _, r := range reads {
		// Fill the pool with connections, then terminate all of them while
		// they are idle, and read within pgxpool's one-second idle window
		// (it pings connections idle for longer before handing them out).
		// Start each read from a pool of fresh connections: stale ones
		// left by the read before would be handed out again (they have
		// been idle for less than a second) and fill fewer backends.
		pool.Reset()
		conns := make([]*pgxpool.Conn, 4)
		for i := range conns {
			if conns[i], err = pool.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range conns {
			c.Release()
		}
		// Count only backends that are gone: pg_terminate_backend returns
		// false when one outlives the timeout (a loaded machine), and a
		// backend still dying while the read runs is another scenario.
		var killed int
		if err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 60000)) FROM pg_stat_activity WHERE application_name = $1`, name).Scan(&killed); err != nil {
			t.Fatal(err)
		}
		if killed < len(conns) {
			t.Fatalf("terminated %d backends, want at least %d", killed, len(conns))
		}
		if err := r.read(); err != nil {
			t.Errorf("%s after every pooled backend was terminated: %v", r.name, err)
		}
	}
}

// TestAppendSurvivesKilledConnection blocks an append on a table lock and
// terminates its backend: the append fails with an error (no panic),
// stores nothing, and a retry with the same event IDs stores it once.
//
// It runs with group commit off and on (a lone append in a group).
func TestAppendSurvivesKilledConnection(t *testing.T) {
	t.Parallel()
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%t", group), func(t *testing.T) {
			t.Parallel()
			testAppendSurvivesKilledConnection(t, &Config{GroupCommit: group})
		})
	}
}

func testAppendSurvivesKilledConnection(t *testing.T, cfg *Config) {
	s, pool := setupStore(t, cfg)
	admin := adminConn(t)
	ctx := t.Context()
	var db string
	if err := pool.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "s", eventstore.NoStream, testEvents("E", 1)...); err != nil {
		t.Fatal(err)
	}

	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `LOCK TABLE chronicle.events IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	evs := testEvents("E", 3)
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, "s", eventstore.Exact(1), evs...)
		done <- err
	}()
	waitBlocked(t, pool)
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND wait_event_type = 'Lock'`, db).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d backends, %v", killed, err)
	}
	err = <-done
	if err == nil || errors.Is(err, eventstore.ErrConcurrencyConflict) || errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Append on a killed connection = %v, want a connection error", err)
	}
	t.Logf("append on a killed connection: %v", err)
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := streamEventIDs(t, s, "s"); len(ids) != 1 {
		t.Fatalf("stream has %d events after the failed append, want 1", len(ids))
	}
	res, err := s.Append(ctx, "s", eventstore.Exact(1), evs...)
	if err != nil || res.Version != 4 {
		t.Fatalf("retry = %+v, %v", res, err)
	}
	again, err := s.Append(ctx, "s", eventstore.Exact(1), evs...)
	if err != nil || again != res {
		t.Fatalf("second retry = %+v, %v; want the original %+v", again, err, res)
	}
	if ids := streamEventIDs(t, s, "s"); len(ids) != 4 {
		t.Fatalf("stream has %d events, want 4", len(ids))
	}
}

// TestAppendsUnderRandomKills runs appenders while an admin connection
// keeps terminating the database's active backends. Every append that
// fails is either wholly stored or not at all, and retrying it with the
// same event IDs until it succeeds stores each event exactly once.
//
// It runs with group commit off and on: with it on, a killed group's
// members are each resolved on their own.
func TestAppendsUnderRandomKills(t *testing.T) {
	t.Parallel()
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%t", group), func(t *testing.T) {
			t.Parallel()
			testAppendsUnderRandomKills(t, &Config{GroupCommit: group})
		})
	}
}

func testAppendsUnderRandomKills(t *testing.T, cfg *Config) {
	// The killer terminates the backends of the store under test (found by
	// their application_name), never those of the verifier, which reads
	// through a pool of its own: the test's oracle must not be subject to
	// the faults it checks.
	const target = "chronicle-kill-target"
	url := postgrestest.DatabaseURL(t)
	s := newStoreOn(t, poolWithAppName(t, url, target), cfg)
	verifier := newStoreOn(t, poolWithAppName(t, url, "chronicle-kill-verifier"), nil)
	admin := adminConn(t)
	ctx := t.Context()

	// The killer runs for a chaos phase, then stops, so that every writer
	// is sure to finish: a lone writer whose every attempt is killed (an
	// append on a fresh connection under -race on a loaded machine can take
	// longer than the killer's period) would otherwise never get through,
	// which tests the killer, not the store. Every append that fails during
	// the chaos is checked all-or-nothing and retried.
	const writers, appendsPerWriter, chaos = 4, 40, 3 * time.Second
	stop := make(chan struct{})
	killerDone := make(chan int)
	go func() {
		kills := 0
		calm := time.After(chaos)
		for {
			select {
			case <-stop:
				killerDone <- kills
				return
			case <-calm:
				<-stop
				killerDone <- kills
				return
			case <-time.After(time.Duration(1000+rand.IntN(9000)) * time.Microsecond):
			}
			// One random active backend every 1–10ms. Killing every active
			// backend every few milliseconds starved the writers outright
			// on a loaded machine (an append under -race takes longer than
			// that), which tests the killer, not the store.
			var n int
			err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM (
				SELECT pid FROM pg_stat_activity
				WHERE application_name = $1 AND state = 'active'
				ORDER BY random() LIMIT 1) victim`, target).Scan(&n)
			if err != nil {
				t.Errorf("kill: %v", err)
			}
			kills += n
		}
	}()

	var wg sync.WaitGroup
	var mu sync.Mutex
	failures, committedAnyway := 0, 0
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("w-%d", w)
			var version int64
			for range appendsPerWriter {
				evs := testEvents("E", 1+rand.IntN(4))
				expected := eventstore.Exact(version)
				if rand.IntN(2) == 0 {
					expected = eventstore.Any
				}
				for attempt := 0; ; attempt++ {
					res, err := s.Append(ctx, stream, expected, evs...)
					if err == nil {
						if res.Version != version+int64(len(evs)) {
							t.Errorf("%s: version %d, want %d", stream, res.Version, version+int64(len(evs)))
						}
						version = res.Version
						break
					}
					if errors.Is(err, eventstore.ErrConcurrencyConflict) || errors.Is(err, eventstore.ErrDuplicateEvent) || errors.Is(err, eventstore.ErrInvalidInput) {
						t.Errorf("%s: %v", stream, err)
						return
					}
					mu.Lock()
					failures++
					mu.Unlock()
					// All or nothing: the events are either all stored, in
					// order, right after version, or none is.
					if requireAllOrNothing(t, verifier, stream, version, evs) {
						mu.Lock()
						committedAnyway++
						mu.Unlock()
					}
					if ctx.Err() != nil {
						t.Errorf("%s: giving up after %d attempts: %v", stream, attempt, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	kills := <-killerDone
	if t.Failed() {
		return
	}
	t.Logf("%d backends killed, %d appends failed (%d of them had committed), all retried", kills, failures, committedAnyway)
	if failures == 0 {
		t.Log("no append failed: the kills missed every statement this time")
	}
	// Each event exactly once, versions without holes.
	for w := range writers {
		stream := fmt.Sprintf("w-%d", w)
		ids := streamEventIDs(t, verifier, stream)
		seen := map[eventstore.EventID]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("%s: event %s stored twice", stream, id)
			}
			seen[id] = true
		}
	}
}

// requireAllOrNothing checks that evs are either all stored in stream at
// versions after+1... or that none of them is stored anywhere, and reports
// which.
func requireAllOrNothing(t testing.TB, s *Store, stream string, after int64, evs []eventstore.Event) (stored bool) {
	t.Helper()
	recs, err := s.ReadStream(context.Background(), stream, eventstore.ReadStreamOptions{From: after + 1})
	if err != nil {
		t.Errorf("ReadStream: %v", err)
		return false
	}
	if len(recs) == 0 {
		return false
	}
	if len(recs) != len(evs) {
		t.Errorf("%s: %d of %d events stored after a failed append", stream, len(recs), len(evs))
		return false
	}
	for i, r := range recs {
		if r.EventID != evs[i].ID {
			t.Errorf("%s v%d: %s, want %s", stream, r.StreamVersion, r.EventID, evs[i].ID)
		}
	}
	return true
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Append(ctx, "s", eventstore.Any, testEvents("E", 1)...); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append: %v, want context.Canceled", err)
	}
	if _, err := s.ReadAll(ctx, eventstore.Position{}, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadAll: %v, want context.Canceled", err)
	}
	if ids := streamEventIDs(t, s, "s"); len(ids) != 0 {
		t.Fatalf("canceled append stored %d events", len(ids))
	}
}

// TestAppendExecModes checks the statements under every pgx query mode, as
// used behind PgBouncer.
func TestAppendExecModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeSimpleProtocol,
	} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			_, base := setupStore(t, nil)
			cfg := base.Config()
			cfg.ConnConfig.DefaultQueryExecMode = mode
			pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			s := newStoreOn(t, pool, &Config{PollOnly: true})
			ctx := t.Context()
			evs := testEvents("E", 3)
			evs[1].Metadata = eventstore.Metadata{CorrelationID: "c'1", Headers: map[string]string{"k": `v"\`}}
			res, err := s.Append(ctx, `it's; "x"`, eventstore.NoStream, evs...)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if _, err := s.Append(ctx, `it's; "x"`, eventstore.NoStream, evs...); err != nil {
				t.Fatalf("idempotent retry: %v", err)
			}
			if _, err := s.Append(ctx, `it's; "x"`, eventstore.NoStream, testEvents("E", 1)...); !errors.Is(err, eventstore.ErrConcurrencyConflict) {
				t.Fatalf("conflict: %v", err)
			}
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background()) //nolint:errcheck
			if _, err := s.AppendTx(ctx, tx, "t", eventstore.Exact(1), testEvents("E", 1)...); !errors.Is(err, eventstore.ErrConcurrencyConflict) {
				t.Fatalf("AppendTx conflict: %v", err)
			}
			if _, err := s.AppendTx(ctx, tx, `it's; "x"`, eventstore.Any, eventstore.Event{ID: evs[0].ID, Type: "E", Data: []byte(`{"other":1}`)}); !errors.Is(err, eventstore.ErrDuplicateEvent) {
				t.Fatalf("AppendTx duplicate: %v", err)
			}
			if _, err := s.AppendTx(ctx, tx, "t", eventstore.NoStream, testEvents("E", 1)...); err != nil {
				t.Fatalf("AppendTx: %v", err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			multi := []eventstore.StreamAppend{
				{StreamID: "m1", Expected: eventstore.NoStream, Events: testEvents("M", 2)},
				{StreamID: "t", Expected: eventstore.Exact(1), Events: testEvents("M", 1)},
			}
			mres, err := s.AppendStreams(ctx, multi...)
			if err != nil || len(mres) != 2 || mres[0].Version != 2 || mres[1].Version != 2 {
				t.Fatalf("AppendStreams = %+v, %v", mres, err)
			}
			if again, err := s.AppendStreams(ctx, multi...); err != nil || again[1] != mres[1] {
				t.Fatalf("AppendStreams retry = %+v, %v", again, err)
			}
			if _, err := s.AppendStreams(ctx, eventstore.StreamAppend{StreamID: "m2", Expected: eventstore.Any, Events: testEvents("M", 1)},
				eventstore.StreamAppend{StreamID: "m1", Expected: eventstore.NoStream, Events: testEvents("M", 1)}); !errors.Is(err, eventstore.ErrConcurrencyConflict) {
				t.Fatalf("AppendStreams conflict: %v", err)
			}
			recs := readAllUntil(t, s, eventstore.Position{}, 7)
			if recs[2].Position != res.Position || recs[1].Metadata.CorrelationID != "c'1" || recs[1].Metadata.Headers["k"] != `v"\` {
				t.Fatalf("ReadAll = %+v", recs)
			}
			if h, err := s.Head(ctx); err != nil || h != recs[6].Position || h != mres[1].Position {
				t.Fatalf("Head = %s, %v; want %s", h, err, recs[6].Position)
			}
			if back, err := s.ReadStream(ctx, `it's; "x"`, eventstore.ReadStreamOptions{Direction: eventstore.Backward, From: 2, Limit: 5}); err != nil || len(back) != 2 {
				t.Fatalf("ReadStream backward = %d, %v", len(back), err)
			}
			full, err := s.ReadStream(ctx, `it's; "x"`, eventstore.ReadStreamOptions{})
			if err != nil {
				t.Fatal(err)
			}
			payloads, err := s.ReadStreamPayloads(ctx, `it's; "x"`, eventstore.ReadStreamOptions{})
			if err != nil || len(payloads) != len(full) {
				t.Fatalf("ReadStreamPayloads = %d, %v; want %d", len(payloads), err, len(full))
			}
			for i, p := range payloads {
				f := full[i]
				if p.StreamID != f.StreamID || p.StreamVersion != f.StreamVersion || p.Type != f.Type ||
					p.SchemaVersion != f.SchemaVersion || !bytes.Equal(p.Data, f.Data) || !p.Position.IsZero() {
					t.Fatalf("ReadStreamPayloads[%d] = %+v, want the payload of %+v", i, p, f)
				}
			}
		})
	}
}

// lossyConn drops the connection, once armed, right after the
// server has answered an INSERT and committed (its ReadyForQuery arrived),
// before the client sees the answer: the append is committed but the
// caller gets an error.
type lossyConn struct {
	net.Conn
	armed *atomic.Bool
}

func (c *lossyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.armed.Load() || n == 0 {
		return n, err
	}
	seen := append([]byte(nil), p[:n]...)
	tag := bytes.Index(seen, []byte("INSERT 0 "))
	if tag < 0 {
		return n, err
	}
	readyForQuery := []byte{'Z', 0, 0, 0, 5}
	for !bytes.Contains(seen[tag:], readyForQuery) && err == nil {
		var more int
		more, err = c.Conn.Read(p)
		seen = append(seen, p[:more]...)
	}
	c.armed.Store(false)
	c.Conn.Close()
	return 0, errors.New("test: connection lost after the server committed")
}

// TestAppendCommittedButConnectionLost loses the connection after the
// append committed: the caller gets an error saying the outcome is
// unknown, the events are all stored, and retrying with the same event IDs
// returns the original result without storing them again.
func TestAppendCommittedButConnectionLost(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(postgrestest.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	var armed atomic.Bool
	cfg.MaxConns = 1
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &lossyConn{Conn: conn, armed: &armed}, nil
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := newStoreOn(t, pool, &Config{PollOnly: true})
	ctx := t.Context()

	for _, expected := range []eventstore.ExpectedVersion{eventstore.NoStream, eventstore.Any, eventstore.Exact(6), eventstore.StreamExists} {
		evs := testEvents("E", 3)
		armed.Store(true)
		_, err := s.Append(ctx, "s", expected, evs...)
		if err == nil || !strings.Contains(err.Error(), "outcome unknown") {
			t.Fatalf("%s: Append on a lost connection = %v, want an outcome-unknown error", expected, err)
		}
		if armed.Load() {
			t.Fatalf("%s: the connection was not cut", expected)
		}
		before := streamEventIDs(t, s, "s")
		if got := before[len(before)-3:]; got[0] != evs[0].ID || got[2] != evs[2].ID {
			t.Fatalf("%s: the append was not committed: the test does not test what it says", expected)
		}
		res, err := s.Append(ctx, "s", expected, evs...)
		if err != nil || res.Version != int64(len(before)) {
			t.Fatalf("%s: retry = %+v, %v; want the original result at version %d", expected, res, err, len(before))
		}
		if after := streamEventIDs(t, s, "s"); len(after) != len(before) {
			t.Fatalf("%s: the retry stored %d more events", expected, len(after)-len(before))
		}
	}
}

// TestUnreachableDatabase: every call fails with a clear error, and an
// append that could not even connect is not reported as possibly stored.
func TestUnreachableDatabase(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(t.Context(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := newStoreOn(t, pool, &Config{PollOnly: true})
	ctx := t.Context()
	_, err = s.Append(ctx, "s", eventstore.Any, testEvents("E", 1)...)
	if err == nil || strings.Contains(err.Error(), "outcome unknown") || !strings.Contains(err.Error(), "acquire a connection") {
		t.Fatalf("Append = %v, want a connection failure that is not outcome-unknown", err)
	}
	if _, err := s.ReadAll(ctx, eventstore.Position{}, 10); err == nil {
		t.Fatal("ReadAll succeeded without a database")
	}
	if _, err := s.StreamVersion(ctx, "s"); err == nil || errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("StreamVersion = %v, want a connection error", err)
	}
	if _, err := s.TailLag(ctx); err == nil {
		t.Fatal("TailLag succeeded without a database")
	}
}

// TestAppendStoresEmptyMetadataAsNull checks each append statement (one
// event, several events of one stream, several streams) stores an event
// without metadata as SQL NULL and one with metadata as its JSON: the
// statements receive "" for no metadata.
func TestAppendStoresEmptyMetadataAsNull(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, &Config{PollOnly: true})
	ctx := t.Context()
	withMeta := func(evs []eventstore.Event, i int) []eventstore.Event {
		evs[i].Metadata = eventstore.Metadata{CorrelationID: "corr"}
		return evs
	}
	if _, err := s.Append(ctx, "one-bare", eventstore.NoStream, testEvents("E", 1)...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "one-meta", eventstore.NoStream, withMeta(testEvents("E", 1), 0)...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "many", eventstore.NoStream, withMeta(testEvents("E", 3), 1)...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "multi-a", Expected: eventstore.NoStream, Events: withMeta(testEvents("E", 2), 0)},
		eventstore.StreamAppend{StreamID: "multi-b", Expected: eventstore.NoStream, Events: testEvents("E", 1)},
	); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT stream_id || '/' || stream_version, metadata ->> 'correlation_id', metadata IS NULL
FROM chronicle.events ORDER BY stream_id, stream_version`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var place string
	var corr *string
	var null bool
	if _, err := pgx.ForEachRow(rows, []any{&place, &corr, &null}, func() error {
		switch {
		case null:
			got[place] = "NULL"
		case corr != nil:
			got[place] = *corr
		default:
			got[place] = "no correlation id"
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"one-bare/1": "NULL", "one-meta/1": "corr",
		"many/1": "NULL", "many/2": "corr", "many/3": "NULL",
		"multi-a/1": "corr", "multi-a/2": "NULL", "multi-b/1": "NULL",
	}
	if !maps.Equal(got, want) {
		t.Fatalf("metadata by event = %v, want %v", got, want)
	}
}
