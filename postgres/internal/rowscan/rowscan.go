package rowscan

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Layout is the shape of the rows a read returns: the full records of
// postgres/internal/eventsql's read_stream_*.sql and read_all.sql, or the
// payloads of read_payloads_*.sql.
type Layout struct {
	// columns is the number of columns; binary lists those that must come
	// in binary format for decode, and jsonb the data (and metadata)
	// columns, which must share one format.
	columns int
	binary  []int
	jsonb   []int
	// decode decodes one row of wire values into r and returns the
	// metadata JSON (nil when NULL or not read), which aliases the row
	// buffer and is only valid until the next row.
	decode func(v [][]byte, r *eventstore.Record, names *nameCache, arena *blockArena, jsonbBinary bool) ([]byte, error)
	// scan is the generic fallback for other formats: it scans the row
	// into r and appends the metadata JSON to md.
	scan func(rows pgx.Rows, r *eventstore.Record, md *[]byte) error
}

// Records is the layout of the record reads: global_position,
// transaction_id, event_id, stream_id, stream_version, event_type,
// schema_version, data, metadata, recorded_at.
var Records = Layout{
	columns: 10,
	binary:  []int{0, 1, 2, 4, 6, 9},
	jsonb:   []int{7, 8},
	decode:  decodeRecord,
	scan: func(rows pgx.Rows, r *eventstore.Record, md *[]byte) error {
		err := rows.Scan(&r.Position.Global, &r.Position.Transaction, (*[16]byte)(&r.EventID), &r.StreamID,
			&r.StreamVersion, &r.Type, &r.SchemaVersion, &r.Data, md, &r.RecordedAt)
		r.RecordedAt = r.RecordedAt.UTC()
		return err
	},
}

// Payloads is the layout of the payload reads: stream_version,
// event_type, schema_version, data; the stream ID
// comes from the stream hint.
var Payloads = Layout{
	columns: 4,
	binary:  []int{0, 2},
	jsonb:   []int{3},
	decode:  decodePayload,
	scan: func(rows pgx.Rows, r *eventstore.Record, _ *[]byte) error {
		return rows.Scan(&r.StreamVersion, &r.Type, &r.SchemaVersion, &r.Data)
	},
}

// Scan reads rows of layout. streamHint, when not empty, is
// the stream every row belongs to (ReadStream): its string is shared by
// the records instead of allocated per row (and the payload layout, which
// has no stream column, takes it from there).
//
// When the server sends the layout's columns in binary format (pgx's
// default extended protocol), the rows are decoded straight from their wire
// bytes: payloads copied into shared blocks (see blockArena) plus interned
// type and stream names, instead of pgx's generic per-column scanning.
// Other query exec modes fall back to rows.Scan.
//
// limit is the statement's LIMIT (0 if it has none): a page that
// outgrows the pooled scratch slice grows to it at once.
func Scan(rows pgx.Rows, layout *Layout, streamHint string, limit int) ([]eventstore.Record, error) {
	return scan(rows, layout, streamHint, limit, true)
}

// ScanGeneric is [Scan] through pgx's own per-column scanning only: the
// plain path the fast decoder is measured and fuzzed against.
func ScanGeneric(rows pgx.Rows, layout *Layout, streamHint string, limit int) ([]eventstore.Record, error) {
	return scan(rows, layout, streamHint, limit, false)
}

func scan(rows pgx.Rows, layout *Layout, streamHint string, limit int, allowFast bool) ([]eventstore.Record, error) {
	defer rows.Close()
	// Rows are gathered in a pooled scratch slice and copied at the end
	// into a slice of about their number: a page is usually much shorter
	// than its limit (a stream of 100 events read with a limit of 1000),
	// and allocating (and zeroing) the limit's worth of records dominated
	// the cost of reading it. A page that outgrows the scratch (a
	// catch-up page, typically full) moves to a slice of its own, grown
	// fourfold up to the limit, and is returned as it is when at least
	// half full: growing the scratch step by step and copying the page
	// once more at the end took a third (catch-up) to a half (the relay,
	// whose garbage collections empty the pool more often) of the scan's
	// CPU.
	scratch := recordScratch.Get().(*[]eventstore.Record)
	recs := (*scratch)[:0]
	own := false   // recs is no longer the scratch
	inScratch := 0 // records written into the scratch, if recs moved
	defer func() {
		if !own {
			inScratch = len(recs)
		}
		clear((*scratch)[:inScratch]) // drop references to payloads and names
		recordScratch.Put(scratch)
	}()
	d := newRowDecoder(rows, layout, streamHint, allowFast)
	for rows.Next() {
		// Decode in place: a local Record would escape (rows.Scan takes
		// its fields' addresses) and cost an allocation per row.
		if len(recs) == cap(recs) {
			// Grow fourfold, to the limit at most: a catch-up page of
			// 1,000 moves once, one of 10,000 three times, and a page
			// much shorter than a large (or unbounded) limit costs at
			// most four times its size.
			n := 4 * cap(recs)
			if limit > cap(recs) {
				n = min(n, limit)
			}
			grown := make([]eventstore.Record, len(recs), n)
			copy(grown, recs)
			if !own {
				inScratch = len(recs)
			}
			recs, own = grown, true
		}
		recs = append(recs, eventstore.Record{})
		if err := d.decode(rows, &recs[len(recs)-1]); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	switch {
	case len(recs) == 0:
		return []eventstore.Record{}, nil
	case own && len(recs) >= cap(recs)/2:
		return recs, nil
	}
	return slices.Clone(recs), nil
}

// ScanInto is [Scan] into records the caller provides: it decodes the
// i-th row into *next(base+i), called once per row in order, and returns
// the number of rows. A record is overwritten whole, whatever it held.
// After an error, the records written are incomplete.
func ScanInto(rows pgx.Rows, layout *Layout, streamHint string, base int, next func(i int) *eventstore.Record) (int, error) {
	defer rows.Close()
	d := newRowDecoder(rows, layout, streamHint, true)
	n := 0
	for rows.Next() {
		r := next(base + n)
		*r = eventstore.Record{}
		if err := d.decode(rows, r); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// rowDecoder decodes the rows of one read: the format check, the page's
// names and payload blocks, and the metadata buffer of the generic path.
type rowDecoder struct {
	layout      *Layout
	hint        string
	fast        bool
	jsonbBinary bool
	md          []byte
	arena       blockArena
	names       nameCache
}

func newRowDecoder(rows pgx.Rows, layout *Layout, streamHint string, allowFast bool) *rowDecoder {
	fast, jsonbBinary := layout.fastFormats(rows.FieldDescriptions())
	d := &rowDecoder{layout: layout, hint: streamHint, fast: fast && allowFast, jsonbBinary: jsonbBinary}
	d.names = nameCache{hint: streamHint, arena: &d.arena}
	return d
}

// decode decodes the current row into r, which must be zero.
func (d *rowDecoder) decode(rows pgx.Rows, r *eventstore.Record) error {
	var (
		md  []byte
		err error
	)
	if d.fast {
		md, err = d.layout.decode(rows.RawValues(), r, &d.names, &d.arena, d.jsonbBinary)
	} else {
		d.md = d.md[:0]
		err = d.layout.scan(rows, r, &d.md)
		md = d.md
		if r.StreamID == "" {
			r.StreamID = d.hint
		}
	}
	if err != nil {
		return err
	}
	if len(md) > 0 {
		if err := json.Unmarshal(md, &r.Metadata); err != nil {
			return &eventstore.DecodeError{Type: r.Type, SchemaVersion: r.SchemaVersion, EventID: r.EventID, Err: fmt.Errorf("metadata: %w", err)}
		}
	}
	return nil
}

// recordScratch holds *[]eventstore.Record scratch slices for
// Scan.
var recordScratch = sync.Pool{New: func() any {
	s := make([]eventstore.Record, 0, 256)
	return &s
}}

// arenaChunk is the size of the blocks arena carves payloads
// from; payloads larger than a quarter of it get their own allocation.
const arenaChunk = 8 << 10

// blockArena copies the payloads of one page into shared blocks instead of
// one allocation per event. A record kept after its page is dropped keeps
// at most one block (8 KiB) alive.
type blockArena struct{ buf []byte }

// copy returns a copy of b whose capacity is its length, so that appending
// to it never writes into another record's payload.
func (a *blockArena) copy(b []byte) []byte {
	n := len(b)
	if n > arenaChunk/4 {
		return append([]byte(nil), b...)
	}
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, arenaChunk)
	}
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[start:len(a.buf):len(a.buf)]
}

// string returns b as a string carved from the arena. The arena never
// writes bytes it has handed out, so the string is immutable like any other.
func (a *blockArena) string(b []byte) string {
	c := a.copy(b)
	return unsafe.String(unsafe.SliceData(c), len(c))
}

// fastFormats reports whether the row format allows decoding the wire
// bytes directly: the layout's numeric, uuid and timestamp columns in
// binary (pgx asks for it), the text columns in either format (the bytes
// are the same), and the jsonb columns in one format, reported as
// jsonbBinary.
func (l *Layout) fastFormats(fields []pgconn.FieldDescription) (fast, jsonbBinary bool) {
	if len(fields) != l.columns {
		return false, false
	}
	for _, i := range l.binary {
		if fields[i].Format != pgx.BinaryFormatCode {
			return false, false
		}
	}
	format := fields[l.jsonb[0]].Format
	for _, i := range l.jsonb[1:] {
		if fields[i].Format != format {
			return false, false
		}
	}
	return true, format == pgx.BinaryFormatCode
}

// nameCache turns the type names and stream IDs of one page into
// strings without an allocation per row. Type names are few: they are
// interned (map lookups by string(bytes) do not allocate). Stream IDs are
// often all different (a catch-up page spans many streams): the expected
// stream (hint) and a repeat of the previous row's stream share one string,
// and any other is carved from the page's arena.
type nameCache struct {
	hint   string
	arena  *blockArena
	last   string // the previous row's stream
	types  map[string]string
	lastTy string
}

func (n *nameCache) stream(b []byte) string {
	switch {
	case n.hint != "" && string(b) == n.hint:
		return n.hint
	case n.last != "" && string(b) == n.last:
		return n.last
	}
	n.last = n.arena.string(b)
	return n.last
}

func (n *nameCache) typ(b []byte) string {
	if n.lastTy != "" && string(b) == n.lastTy {
		return n.lastTy
	}
	if s, ok := n.types[string(b)]; ok {
		n.lastTy = s
		return s
	}
	if n.types == nil {
		n.types = make(map[string]string, 8)
	}
	if len(n.types) >= 256 { // many distinct types: stop growing
		return n.arena.string(b)
	}
	s := string(b)
	n.types[s], n.lastTy = s, s
	return s
}

// pgEpoch is PostgreSQL's timestamp epoch, 2000-01-01 UTC.
var pgEpochMicros = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

// decodeRecord decodes one row of binary values of the Records layout
// into r and returns the metadata JSON (nil when NULL), which aliases the
// row buffer and is only valid until the next row.
func decodeRecord(v [][]byte, r *eventstore.Record, names *nameCache, arena *blockArena, jsonbBinary bool) (md []byte, err error) {
	if len(v[0]) != 8 {
		return nil, badColumn("global_position")
	}
	r.Position.Global = int64(binary.BigEndian.Uint64(v[0]))
	if len(v[1]) != 8 {
		return nil, badColumn("transaction_id")
	}
	r.Position.Transaction = binary.BigEndian.Uint64(v[1])
	if len(v[2]) != 16 {
		return nil, badColumn("event_id")
	}
	copy(r.EventID[:], v[2])
	if v[3] == nil {
		return nil, badColumn("stream_id")
	}
	r.StreamID = names.stream(v[3])
	if len(v[4]) != 8 {
		return nil, badColumn("stream_version")
	}
	r.StreamVersion = int64(binary.BigEndian.Uint64(v[4]))
	if v[5] == nil {
		return nil, badColumn("event_type")
	}
	r.Type = names.typ(v[5])
	if len(v[6]) != 4 {
		return nil, badColumn("schema_version")
	}
	r.SchemaVersion = int(int32(binary.BigEndian.Uint32(v[6])))
	// jsonb's binary form is a version byte (1) followed by the JSON text.
	data, ok := jsonbText(v[7], jsonbBinary)
	if !ok || len(data) == 0 {
		return nil, badColumn("data")
	}
	r.Data = arena.copy(data)
	if v[8] != nil {
		if md, ok = jsonbText(v[8], jsonbBinary); !ok {
			return nil, badColumn("metadata")
		}
	}
	if len(v[9]) != 8 {
		return nil, badColumn("recorded_at")
	}
	r.RecordedAt = time.UnixMicro(pgEpochMicros + int64(binary.BigEndian.Uint64(v[9]))).UTC()
	return md, nil
}

// decodePayload decodes one row of binary values of
// the Payloads layout into r; the stream is the cache's hint.
func decodePayload(v [][]byte, r *eventstore.Record, names *nameCache, arena *blockArena, jsonbBinary bool) ([]byte, error) {
	r.StreamID = names.hint
	if len(v[0]) != 8 {
		return nil, badColumn("stream_version")
	}
	r.StreamVersion = int64(binary.BigEndian.Uint64(v[0]))
	if v[1] == nil {
		return nil, badColumn("event_type")
	}
	r.Type = names.typ(v[1])
	if len(v[2]) != 4 {
		return nil, badColumn("schema_version")
	}
	r.SchemaVersion = int(int32(binary.BigEndian.Uint32(v[2])))
	data, ok := jsonbText(v[3], jsonbBinary)
	if !ok || len(data) == 0 {
		return nil, badColumn("data")
	}
	r.Data = arena.copy(data)
	return nil, nil
}

// badColumn is the error for a wire value of the wrong size or a NULL
// where the schema has none.
func badColumn(col string) error {
	return fmt.Errorf("decode column %s: unexpected binary value", col)
}

// jsonbText returns the JSON text of a jsonb value in either wire format.
func jsonbText(b []byte, binaryFormat bool) ([]byte, bool) {
	if !binaryFormat {
		return b, b != nil
	}
	if len(b) < 1 || b[0] != 1 {
		return nil, false
	}
	return b[1:], true
}
