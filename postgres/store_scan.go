package postgres

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chronicle-go/chronicle/eventstore"
)

// storeScanRecords reads rows of storeRecordColumns. streamHint, when not
// empty, is the stream every row is expected to belong to (ReadStream): its
// string is shared by the records instead of allocated per row.
//
// When the server sends every column in binary format (pgx's default
// extended protocol), the rows are decoded straight from their wire bytes:
// payloads copied into shared blocks (see storeArena) plus interned type
// and stream names, instead of pgx's generic per-column scanning. Other query exec
// modes fall back to rows.Scan.
func storeScanRecords(rows pgx.Rows, streamHint string) ([]eventstore.Record, error) {
	defer rows.Close()
	// Rows are gathered in a pooled scratch slice and copied into one of
	// the exact length at the end: a page is usually much shorter than its
	// limit (a stream of 100 events read with a limit of 1000), and
	// allocating (and zeroing) the limit's worth of records dominated the
	// cost of reading it.
	scratch := storeRecordScratch.Get().(*[]eventstore.Record)
	recs := (*scratch)[:0]
	defer func() {
		clear(recs) // drop references to payloads and names
		if cap(recs) <= storeMaxScratch {
			*scratch = recs[:0]
			storeRecordScratch.Put(scratch)
		}
	}()
	fast, jsonbBinary := storeFastFormats(rows.FieldDescriptions())
	names := storeNames{hint: streamHint}
	var (
		md    []byte
		arena storeArena
	)
	for rows.Next() {
		// Decode in place: a local Record would escape (rows.Scan takes
		// its fields' addresses) and cost an allocation per row.
		recs = append(recs, eventstore.Record{})
		r := &recs[len(recs)-1]
		var err error
		if fast {
			md, err = storeDecodeRecord(rows.RawValues(), r, &names, &arena, jsonbBinary)
		} else {
			md = md[:0]
			err = rows.Scan(&r.Position.Global, &r.Position.Transaction, (*[16]byte)(&r.EventID), &r.StreamID,
				&r.StreamVersion, &r.Type, &r.SchemaVersion, &r.Data, &md, &r.RecordedAt)
			r.RecordedAt = r.RecordedAt.UTC()
		}
		if err != nil {
			return nil, err
		}
		if len(md) > 0 {
			if err := json.Unmarshal(md, &r.Metadata); err != nil {
				return nil, &eventstore.DecodeError{Type: r.Type, SchemaVersion: r.SchemaVersion, EventID: r.EventID, Err: fmt.Errorf("metadata: %w", err)}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return []eventstore.Record{}, nil
	}
	return slices.Clone(recs), nil
}

// storeMaxScratch bounds the capacity of the scratch slices kept in
// storeRecordScratch, so that one huge page does not pin its memory.
const storeMaxScratch = 4096

// storeRecordScratch holds *[]eventstore.Record scratch slices for
// storeScanRecords.
var storeRecordScratch = sync.Pool{New: func() any {
	s := make([]eventstore.Record, 0, 256)
	return &s
}}

// storeArenaChunk is the size of the blocks storeArena carves payloads
// from; payloads larger than a quarter of it get their own allocation.
const storeArenaChunk = 8 << 10

// storeArena copies the payloads of one page into shared blocks instead of
// one allocation per event. A record kept after its page is dropped keeps
// at most one block (8 KiB) alive.
type storeArena struct{ buf []byte }

// copy returns a copy of b whose capacity is its length, so that appending
// to it never writes into another record's payload.
func (a *storeArena) copy(b []byte) []byte {
	n := len(b)
	if n > storeArenaChunk/4 {
		return append([]byte(nil), b...)
	}
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, storeArenaChunk)
	}
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[start:len(a.buf):len(a.buf)]
}

// storeFastFormats reports whether the row format allows decoding the
// wire bytes directly: the numeric, uuid and timestamp columns in binary
// (pgx asks for it), the text columns in either format (the bytes are the
// same), and both jsonb columns in one format, reported as jsonbBinary.
func storeFastFormats(fields []pgconn.FieldDescription) (fast, jsonbBinary bool) {
	if len(fields) != 10 {
		return false, false
	}
	for _, i := range []int{0, 1, 2, 4, 6, 9} {
		if fields[i].Format != pgx.BinaryFormatCode {
			return false, false
		}
	}
	if fields[7].Format != fields[8].Format {
		return false, false
	}
	return true, fields[7].Format == pgx.BinaryFormatCode
}

// storeNames interns the type names and stream IDs of one page: a page
// holds few distinct values, and map lookups by string(bytes) do not
// allocate.
type storeNames struct {
	hint  string
	names map[string]string
}

func (n *storeNames) get(b []byte) string {
	if n.hint != "" && string(b) == n.hint {
		return n.hint
	}
	if s, ok := n.names[string(b)]; ok {
		return s
	}
	if n.names == nil {
		n.names = make(map[string]string, 8)
	}
	if len(n.names) >= 4096 { // many distinct streams: stop growing
		return string(b)
	}
	s := string(b)
	n.names[s] = s
	return s
}

// pgEpoch is PostgreSQL's timestamp epoch, 2000-01-01 UTC.
var pgEpochMicros = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

// storeDecodeRecord decodes one row of binary values of storeRecordColumns
// into r and returns the metadata JSON (nil when NULL), which aliases the
// row buffer and is only valid until the next row.
func storeDecodeRecord(v [][]byte, r *eventstore.Record, names *storeNames, arena *storeArena, jsonbBinary bool) (md []byte, err error) {
	bad := func(col string) error {
		return fmt.Errorf("decode column %s: unexpected binary value", col)
	}
	if len(v[0]) != 8 {
		return nil, bad("global_position")
	}
	r.Position.Global = int64(binary.BigEndian.Uint64(v[0]))
	if len(v[1]) != 8 {
		return nil, bad("transaction_id")
	}
	r.Position.Transaction = binary.BigEndian.Uint64(v[1])
	if len(v[2]) != 16 {
		return nil, bad("event_id")
	}
	copy(r.EventID[:], v[2])
	if v[3] == nil {
		return nil, bad("stream_id")
	}
	r.StreamID = names.get(v[3])
	if len(v[4]) != 8 {
		return nil, bad("stream_version")
	}
	r.StreamVersion = int64(binary.BigEndian.Uint64(v[4]))
	if v[5] == nil {
		return nil, bad("event_type")
	}
	r.Type = names.get(v[5])
	if len(v[6]) != 4 {
		return nil, bad("schema_version")
	}
	r.SchemaVersion = int(int32(binary.BigEndian.Uint32(v[6])))
	// jsonb's binary form is a version byte (1) followed by the JSON text.
	data, ok := storeJSONB(v[7], jsonbBinary)
	if !ok || len(data) == 0 {
		return nil, bad("data")
	}
	r.Data = arena.copy(data)
	if v[8] != nil {
		if md, ok = storeJSONB(v[8], jsonbBinary); !ok {
			return nil, bad("metadata")
		}
	}
	if len(v[9]) != 8 {
		return nil, bad("recorded_at")
	}
	r.RecordedAt = time.UnixMicro(pgEpochMicros + int64(binary.BigEndian.Uint64(v[9]))).UTC()
	return md, nil
}

// storeJSONB returns the JSON text of a jsonb value in either wire format.
func storeJSONB(b []byte, binaryFormat bool) ([]byte, bool) {
	if !binaryFormat {
		return b, b != nil
	}
	if len(b) < 1 || b[0] != 1 {
		return nil, false
	}
	return b[1:], true
}
