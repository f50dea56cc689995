package eventsql

import (
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chronicle-go/chronicle/eventstore"
)

// linearIDCheck is the number of events up to which Flatten checks event
// IDs for duplicates by linear search instead of a map.
const linearIDCheck = 16

// Input is a validated append flattened into the statements' parameters.
type Input struct {
	// Appends are the appends as the caller gave them.
	Appends []eventstore.StreamAppend

	StreamIDs []string
	Expected  []int64
	Counts    []int64 // events per stream

	EvStream  []int32 // 1-based index into StreamIDs
	EvPos     []int64 // 1-based offset within the stream's append
	IDs       []pgtype.UUID
	Types     []string
	SchemaVer []int32
	Data      []string  // JSON text, cast to jsonb by the statement
	Metadata  []*string // nil = SQL NULL

	// CallerIDs reports whether some event IDs came from the caller: only
	// then can a conflict be an idempotent retry.
	CallerIDs bool
}

// Flatten turns appends, each already checked by
// eventstore.ValidateAppend, into the statements' parameter arrays. Events
// without an ID get a new one; an ID used twice is a validation error.
func Flatten(appends []eventstore.StreamAppend) (*Input, error) {
	total := 0
	for _, a := range appends {
		total += len(a.Events)
	}
	in := &Input{
		Appends:   appends,
		StreamIDs: make([]string, len(appends)),
		Expected:  make([]int64, len(appends)),
		Counts:    make([]int64, len(appends)),
		EvStream:  make([]int32, 0, total),
		EvPos:     make([]int64, 0, total),
		IDs:       make([]pgtype.UUID, 0, total),
		Types:     make([]string, 0, total),
		SchemaVer: make([]int32, 0, total),
		Data:      make([]string, 0, total),
		Metadata:  make([]*string, 0, total),
	}
	var idAt map[eventstore.EventID]int
	if total > linearIDCheck {
		idAt = make(map[eventstore.EventID]int, total)
	}
	firstUse := func(id eventstore.EventID) (int, bool) {
		if idAt != nil {
			k, dup := idAt[id]
			return k, dup
		}
		for k, other := range in.IDs {
			if other.Bytes == id {
				return k, true
			}
		}
		return 0, false
	}
	for i, a := range appends {
		in.StreamIDs[i] = a.StreamID
		in.Expected[i] = int64(a.Expected)
		in.Counts[i] = int64(len(a.Events))
		for j, ev := range a.Events {
			id := ev.ID
			if id.IsZero() {
				id = eventstore.NewEventID()
			} else {
				in.CallerIDs = true
				if k, dup := firstUse(id); dup {
					return nil, &eventstore.ValidationError{
						Field:  EventField(len(appends), i, j, "id"),
						Reason: fmt.Sprintf("%s is used twice in this append (first at event %d)", id, k),
					}
				}
			}
			if idAt != nil {
				idAt[id] = len(in.IDs)
			}
			var md *string
			if !ev.Metadata.IsZero() {
				b, err := json.Marshal(ev.Metadata)
				if err != nil { // cannot happen: strings only
					return nil, &eventstore.ValidationError{Field: EventField(len(appends), i, j, "metadata"), Reason: err.Error()}
				}
				m := string(b)
				md = &m
			}
			in.EvStream = append(in.EvStream, int32(i+1))
			in.EvPos = append(in.EvPos, int64(j+1))
			in.IDs = append(in.IDs, pgtype.UUID{Bytes: id, Valid: true})
			in.Types = append(in.Types, ev.Type)
			in.SchemaVer = append(in.SchemaVer, int32(max(ev.SchemaVersion, 1)))
			in.Data = append(in.Data, string(ev.Data))
			in.Metadata = append(in.Metadata, md)
		}
	}
	return in, nil
}

// EventField names event j of append i for an error message.
func EventField(nAppends, i, j int, field string) string {
	if nAppends == 1 {
		return fmt.Sprintf("events[%d].%s", j, field)
	}
	return fmt.Sprintf("appends[%d].events[%d].%s", i, j, field)
}

// Op describes the append for error messages.
func (in *Input) Op() string {
	if len(in.StreamIDs) == 1 {
		return fmt.Sprintf("append to stream %q", in.StreamIDs[0])
	}
	return fmt.Sprintf("append to %d streams", len(in.StreamIDs))
}

// Statement returns the append statement for in and its arguments:
// append_one_event.sql, append_one.sql or append_streams.sql.
func (in *Input) Statement() (string, []any) {
	switch {
	case len(in.StreamIDs) == 1 && len(in.IDs) == 1:
		return AppendOneEventSQL, []any{in.StreamIDs[0], in.Expected[0], in.IDs[0], in.Types[0], in.SchemaVer[0], in.Data[0], in.Metadata[0]}
	case len(in.StreamIDs) == 1:
		return AppendOneSQL, []any{in.StreamIDs[0], in.Expected[0], in.IDs, in.Types, in.SchemaVer, in.Data, in.Metadata}
	default:
		return AppendStreamsSQL, []any{in.StreamIDs, in.Expected, in.Counts, in.EvStream, in.EvPos, in.IDs, in.Types, in.SchemaVer, in.Data, in.Metadata}
	}
}

// ScanResult reads the rows of in.Statement: one result per stream, with
// the stream's new version and its last event's position. ok is false when
// nothing was inserted (a one-stream statement whose expectation or order
// check failed).
func (in *Input) ScanResult(rows pgx.Rows) (res []eventstore.AppendResult, ok bool, err error) {
	defer rows.Close()
	res = make([]eventstore.AppendResult, len(in.StreamIDs))
	multi := len(in.StreamIDs) > 1
	var (
		streamID        string
		version, global int64
		txid            uint64
	)
	dest := []any{&version, &global, &txid}
	if multi {
		dest = []any{&streamID, &version, &global, &txid}
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, false, err
		}
		i := 0
		if multi {
			i = in.streamIndex(streamID)
			if i < 0 {
				return nil, false, fmt.Errorf("append returned a row for stream %q, which it did not append to", streamID)
			}
		}
		if r := &res[i]; version > r.Version {
			r.StreamID = in.StreamIDs[i]
			r.Version = version
			r.Position = eventstore.Position{Transaction: txid, Global: global}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	for _, r := range res {
		if r.Version == 0 {
			return nil, false, nil
		}
	}
	return res, true, nil
}

func (in *Input) streamIndex(streamID string) int {
	for i, s := range in.StreamIDs {
		if s == streamID {
			return i
		}
	}
	return -1
}
