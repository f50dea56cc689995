package eventsql

import (
	"slices"

	"github.com/chronicle-go/chronicle/eventstore"
)

// StoredEvent is an event of an append as lookup_events.sql found it
// stored.
type StoredEvent struct {
	Found         bool
	StreamID      string
	Version       int64
	Type          string
	SchemaVersion int32
	SameData      bool
	Position      eventstore.Position
}

// Decide says what an append that wrote nothing means, given what its
// event IDs are stored as (stored, parallel to in.IDs; all zero when the
// caller supplied none), each stream's current version and whether its
// last append passes the order check (see current_versions.sql). It
// returns the original results of an idempotent retry, or an error (a
// [*eventstore.DuplicateEventError], a [*eventstore.ConcurrencyError] or,
// for a failed order check, a [*eventstore.TransactionConflictError]), or
// retry=true for a lost race: every expectation holds now, so running the
// statement again can succeed.
//
// A failed order check is never worth retrying in the same transaction:
// only a new transaction (a new transaction id) can append after that
// stream's last event.
func Decide(in *Input, stored []StoredEvent, current []int64, ordered []bool) (res []eventstore.AppendResult, retry bool, err error) {
	res = make([]eventstore.AppendResult, len(in.Appends))
	retried, first := 0, 0
	for i, a := range in.Appends {
		evs := stored[first : first+len(a.Events)]
		ids := in.IDs[first : first+len(a.Events)]
		base := first
		first += len(a.Events)
		found := 0
		for _, e := range evs {
			if e.Found {
				found++
			}
		}
		if found == 0 {
			continue
		}
		if found < len(evs) { // part of it stored: not a retry
			k := slices.IndexFunc(evs, func(e StoredEvent) bool { return e.Found })
			return nil, false, &eventstore.DuplicateEventError{EventID: ids[k].Bytes, StreamID: a.StreamID}
		}
		for j := range evs {
			if !samePlace(a, evs, j, in.Types[base+j], in.SchemaVer[base+j]) {
				return nil, false, &eventstore.DuplicateEventError{EventID: ids[j].Bytes, StreamID: a.StreamID}
			}
		}
		last := evs[len(evs)-1]
		res[i] = eventstore.AppendResult{StreamID: a.StreamID, Version: last.Version, Position: last.Position}
		retried++
	}
	switch {
	case retried == len(in.Appends):
		return res, false, nil
	case retried > 0:
		// Part of this append is an earlier append, part is new: not a
		// retry of one atomic append.
		first = 0
		for i, a := range in.Appends {
			if res[i].Version > 0 {
				return nil, false, &eventstore.DuplicateEventError{EventID: in.IDs[first].Bytes, StreamID: a.StreamID}
			}
			first += len(a.Events)
		}
	}
	for i, a := range in.Appends {
		if !a.Expected.Check(current[i]) {
			return nil, false, &eventstore.ConcurrencyError{StreamID: a.StreamID, Expected: a.Expected, Actual: current[i]}
		}
	}
	for i, a := range in.Appends {
		if !ordered[i] {
			return nil, false, &eventstore.TransactionConflictError{
				StreamID: a.StreamID,
				Reason:   "its last append was committed by a transaction that took its id after this one",
			}
		}
	}
	return nil, true, nil
}

// samePlace reports whether evs[j] is stored as event j of append a would
// have been: in the same stream, with the same type, schema version and
// jsonb-equal data, right after evs[j-1], and the first event at the
// version the expectation implies (Exact, NoStream) or anywhere (Any,
// StreamExists).
func samePlace(a eventstore.StreamAppend, evs []StoredEvent, j int, typ string, schemaVer int32) bool {
	e := evs[j]
	if e.StreamID != a.StreamID || e.Type != typ || e.SchemaVersion != schemaVer || !e.SameData {
		return false
	}
	switch {
	case j > 0:
		return e.Version == evs[j-1].Version+1
	case a.Expected >= 0:
		return e.Version == int64(a.Expected)+1
	default: // Any, StreamExists: the caller did not say where
		return true
	}
}
