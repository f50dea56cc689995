package postgres

import (
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

// restoreFixSQL is the repair docs/postgres.md prescribes after a
// logical restore into a cluster whose transaction ids are behind the
// source's: every restored event gets transaction id 1, below any running
// transaction, so the restored history is readable again (in
// global_position order) and sorts before every new event. Keep the two in
// sync.
const restoreFixSQL = `
BEGIN;
LOCK TABLE chronicle.events IN EXCLUSIVE MODE;
UPDATE chronicle.events SET transaction_id = '1';
COMMIT;`

// TestRestoreProcedure simulates a logical restore from a cluster whose
// transaction ids are ahead of the target's (rows stamped with future
// transaction ids), shows what goes wrong, and checks the documented fix.
func TestRestoreProcedure(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()

	// "Restored" history: three events of two transactions of the old
	// cluster, far ahead of this cluster's transaction ids.
	if _, err := pool.Exec(ctx, `
INSERT INTO chronicle.events (transaction_id, event_id, stream_id, stream_version, event_type, data)
SELECT ((pg_current_xact_id()::text::bigint + 1000000000 + tx)::text)::xid8, gen_random_uuid(), 'old', v, 'Old', '{}'
FROM (VALUES (1, 1), (1, 2), (2, 3)) AS r(tx, v)`); err != nil {
		t.Fatal(err)
	}

	// The problem: the restored events are above the horizon, so ReadAll
	// does not return them...
	if recs, err := s.ReadAll(ctx, eventstore.Position{}, 10); err != nil || len(recs) != 0 {
		t.Fatalf("ReadAll before the fix = %d events, %v; want none (the restored ids are in the future)", len(recs), err)
	}
	// ...and a new event sorts before them.
	first, err := s.Append(ctx, "new", eventstore.NoStream, testEvents("New", 1)...)
	if err != nil {
		t.Fatal(err)
	}
	var restoredTx uint64
	if err := pool.QueryRow(ctx, `SELECT min(transaction_id) FROM chronicle.events WHERE stream_id = 'old'`).Scan(&restoredTx); err != nil {
		t.Fatal(err)
	}
	if first.Position.Transaction >= restoredTx {
		t.Fatalf("new event at transaction %d, restored ones at %d: the simulation is wrong", first.Position.Transaction, restoredTx)
	}

	// The fix.
	if _, err := pool.Exec(ctx, restoreFixSQL); err != nil {
		t.Fatal(err)
	}
	later, err := s.Append(ctx, "new", eventstore.Exact(1), testEvents("New", 1)...)
	if err != nil {
		t.Fatal(err)
	}
	recs := readAllUntil(t, s, eventstore.Position{}, 5)
	want := []string{"old", "old", "old", "new", "new"}
	for i, r := range recs {
		if r.StreamID != want[i] {
			t.Fatalf("after the fix, event %d is of stream %q, want %q", i, r.StreamID, want[i])
		}
	}
	if recs[2].StreamVersion != 3 || recs[4].Position != later.Position {
		t.Fatalf("after the fix: %+v", recs)
	}
}
