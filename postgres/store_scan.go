package postgres

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
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
// one allocation per event (its payload) plus interned type and stream
// names, instead of pgx's generic per-column scanning. Other query exec
// modes fall back to rows.Scan.
func storeScanRecords(rows pgx.Rows, sizeHint int, streamHint string) ([]eventstore.Record, error) {
	defer rows.Close()
	recs := make([]eventstore.Record, 0, min(max(sizeHint, 16), 1024))
	fast, jsonbBinary := storeFastFormats(rows.FieldDescriptions())
	names := storeNames{hint: streamHint}
	var md []byte
	for rows.Next() {
		var (
			r   eventstore.Record
			err error
		)
		if fast {
			md, err = storeDecodeRecord(rows.RawValues(), &r, &names, jsonbBinary)
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
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return recs, nil
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
func storeDecodeRecord(v [][]byte, r *eventstore.Record, names *storeNames, jsonbBinary bool) (md []byte, err error) {
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
	r.Data = append([]byte(nil), data...)
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
