package rowscan

import (
	"bytes"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chronicle-go/chronicle/eventstore"
)

// encodeRecord encodes a record's columns the way PostgreSQL sends them in
// binary format, with pgx's own codecs.
func encodeRecord(t *testing.T, m *pgtype.Map, r eventstore.Record, md []byte) [][]byte {
	t.Helper()
	enc := func(oid uint32, v any) []byte {
		b, err := m.Encode(oid, pgx.BinaryFormatCode, v, nil)
		if err != nil {
			t.Fatalf("encode %T: %v", v, err)
		}
		return b
	}
	var mdCol []byte
	if md != nil {
		mdCol = enc(pgtype.JSONBOID, md)
	}
	return [][]byte{
		enc(pgtype.Int8OID, r.Position.Global),
		enc(pgtype.XID8OID, r.Position.Transaction),
		enc(pgtype.UUIDOID, [16]byte(r.EventID)),
		enc(pgtype.TextOID, r.StreamID),
		enc(pgtype.Int8OID, r.StreamVersion),
		enc(pgtype.TextOID, r.Type),
		enc(pgtype.Int4OID, int32(r.SchemaVersion)),
		enc(pgtype.JSONBOID, r.Data),
		mdCol,
		enc(pgtype.TimestamptzOID, r.RecordedAt),
	}
}

// decodeWithPgx decodes the same wire values with pgx's codecs.
func decodeWithPgx(t *testing.T, m *pgtype.Map, v [][]byte) (eventstore.Record, []byte) {
	t.Helper()
	var (
		r        eventstore.Record
		id       [16]byte
		schema   int32
		data     []byte
		md       []byte
		recorded time.Time
	)
	scans := []struct {
		oid uint32
		dst any
	}{
		{pgtype.Int8OID, &r.Position.Global},
		{pgtype.XID8OID, &r.Position.Transaction},
		{pgtype.UUIDOID, &id},
		{pgtype.TextOID, &r.StreamID},
		{pgtype.Int8OID, &r.StreamVersion},
		{pgtype.TextOID, &r.Type},
		{pgtype.Int4OID, &schema},
		{pgtype.JSONBOID, &data},
		{pgtype.JSONBOID, &md},
		{pgtype.TimestamptzOID, &recorded},
	}
	for i, s := range scans {
		if err := m.Scan(s.oid, pgx.BinaryFormatCode, v[i], s.dst); err != nil {
			t.Fatalf("pgx scan of column %d: %v", i, err)
		}
	}
	r.EventID, r.SchemaVersion, r.Data, r.RecordedAt = id, int(schema), data, recorded.UTC()
	return r, md
}

// FuzzDecodeRecord checks the fast decoder against pgx's decoding of the
// same wire values, and that any corruption of a value is an error, never
// a panic or a wrong record.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(int64(1), uint64(740), []byte("0123456789abcdef"), "account-42", int64(1), "Deposited", int32(1),
		`{"amount":100}`, `{"correlation_id":"c"}`, int64(1733390000000000), -1, byte(0))
	f.Add(int64(1<<40), uint64(1<<33), []byte("fedcba9876543210"), "ü/ß-ledger", int64(1<<31), "T", int32(7),
		`[1,2,{"a":null}]`, ``, int64(-5), 7, byte(0xff))
	f.Fuzz(func(t *testing.T, global int64, tx uint64, id []byte, stream string, version int64, typ string,
		schema int32, data, md string, micros int64, corrupt int, junk byte) {
		if len(id) != 16 {
			return
		}
		m := pgtype.NewMap()
		r := eventstore.Record{
			EventID: eventstore.EventID(id), StreamID: stream, StreamVersion: version,
			Position: eventstore.Position{Transaction: tx, Global: global},
			Type:     typ, SchemaVersion: int(schema), Data: []byte(data),
			RecordedAt: time.UnixMicro(micros).UTC(),
		}
		if len(r.Data) == 0 {
			r.Data = []byte(`null`)
		}
		var mdJSON []byte
		if md != "" {
			mdJSON = []byte(md)
		}
		v := encodeRecord(t, m, r, mdJSON)
		if corrupt >= 0 && corrupt < len(v) && v[corrupt] != nil {
			// Truncate or extend one column: the decoder must refuse what
			// has the wrong size, and never panic.
			if junk%2 == 0 && len(v[corrupt]) > 0 {
				v[corrupt] = v[corrupt][:len(v[corrupt])-1]
			} else {
				v[corrupt] = append(v[corrupt], junk)
			}
		}
		var (
			got   eventstore.Record
			arena blockArena
		)
		names := nameCache{arena: &arena}
		gotMD, err := decodeRecord(v, &got, &names, &arena, true)
		if err != nil {
			return // a corrupted fixed-size column; pgx would refuse it too
		}
		want, wantMD := decodeWithPgx(t, m, v)
		if got.EventID != want.EventID || got.StreamID != want.StreamID || got.StreamVersion != want.StreamVersion ||
			got.Position != want.Position || got.Type != want.Type || got.SchemaVersion != want.SchemaVersion ||
			!bytes.Equal(got.Data, want.Data) || !got.RecordedAt.Equal(want.RecordedAt) || !bytes.Equal(gotMD, wantMD) {
			t.Fatalf("fast decode %+v (metadata %q)\npgx decode  %+v (metadata %q)", got, gotMD, want, wantMD)
		}
	})
}

// FuzzDecodeGarbage feeds arbitrary bytes as every column of both layouts:
// errors are fine, panics are not.
func FuzzDecodeGarbage(f *testing.F) {
	f.Add([]byte{1, 2, 3}, 3)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, nils int) {
		v := make([][]byte, 10)
		for i := range v {
			if nils&(1<<i) == 0 {
				v[i] = b
			}
		}
		for _, jsonbBinary := range []bool{true, false} {
			var (
				r     eventstore.Record
				arena blockArena
			)
			names := nameCache{hint: "s", arena: &arena}
			_, _ = decodeRecord(v, &r, &names, &arena, jsonbBinary)
			_, _ = decodePayload(v[:4], &r, &names, &arena, jsonbBinary)
		}
	})
}
