package postgres

import (
	"strconv"
)

// PostgreSQL caches the plan of a prepared statement per connection and
// keeps it until something invalidates it (an ANALYZE or VACUUM of the
// table, DDL). A statement that looks events up by stream_id, planned while
// chronicle.events holds a page or two (a fresh deployment, a test database
// analyzed with a few rows), reads the table sequentially and sorts: the
// cheapest plan at that size, but one that grows with the table, and the
// cached plan keeps it until autovacuum's next ANALYZE, a minute or more
// away. The store keeps its statements off that path in two ways.
//
// Appends never look events up by stream: they lock and move the stream's
// head row in chronicle.streams, through ON CONFLICT, which uses the
// primary key whatever the plan (see internal/eventsql).
//
// Stream reads (and StreamVersion) name a table-size class instead: a comment that
// changes each time the global positions the store's appends return pass
// the next power of two from storePlanFirst to storePlanLast. pgx prepares
// a statement per distinct text, so each connection prepares the new text
// once, and PostgreSQL plans it for the table as it is then (the planner
// reads the table's current size; only the row density comes from the last
// ANALYZE). Past storePlanLast the text no longer changes: a table that size
// plans with its indexes. The cost is one more prepare per connection and
// read statement, at most 18 times over a table's life.

// storeStmt names a statement of storeStmtSQL.
type storeStmt int

// The statements whose text depends on the table's size.
const (
	storeStmtReadForward storeStmt = iota
	storeStmtReadBackward
	storeStmtReadPayloadsForward
	storeStmtReadPayloadsBackward
	storeStmtStreamVersion
	storeStmtCount
)

// storeStmtSQL is the text of each storeStmt for a small table, without
// the size class.
var storeStmtSQL = [storeStmtCount]string{
	storeStmtReadForward:          storeReadForwardSQL,
	storeStmtReadBackward:         storeReadBackwardSQL,
	storeStmtReadPayloadsForward:  storeReadPayloadsForwardSQL,
	storeStmtReadPayloadsBackward: storeReadPayloadsBackwardSQL,
	storeStmtStreamVersion:        storeStreamVersionSQL,
}

// The first and the last global position at which the store changes the
// read statements' size class.
const (
	storePlanFirst int64 = 128
	storePlanLast  int64 = 1 << 24
)

// storePlanSet is the statements' text for one size class.
type storePlanSet struct {
	sql [storeStmtCount]string
	// next is the global position from which the next size class applies;
	// 0 when this is the last one.
	next int64
}

// storeNewPlanSet returns the plan set for a table whose events reach the
// global position pos.
func storeNewPlanSet(pos int64) *storePlanSet {
	next := storePlanFirst
	for next <= pos && next <= storePlanLast {
		next *= 2
	}
	p := &storePlanSet{next: next}
	class := "-- chronicle: table size class " + strconv.FormatInt(next, 10)
	if next > storePlanLast {
		p.next, class = 0, "-- chronicle: table size class large"
	}
	for st, sql := range storeStmtSQL {
		p.sql[st] = sql + "\n" + class
	}
	return p
}

// sql returns the text of st for the table's current size class.
func (s *Store) sql(st storeStmt) string { return s.plans.Load().sql[st] }

// notePosition moves the statements to the next size class when an append
// returned a global position at or beyond it.
func (s *Store) notePosition(global int64) {
	p := s.plans.Load()
	if p.next != 0 && global >= p.next {
		s.plans.CompareAndSwap(p, storeNewPlanSet(global))
	}
}
