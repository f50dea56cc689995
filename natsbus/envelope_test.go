package natsbus

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
)

// marshalEnvelope is the reference encoding: json.Marshal of the envelope.
func marshalEnvelope(m eventbus.Message) ([]byte, error) {
	return json.Marshal(envelope{
		EventID: m.EventID, SchemaVersion: m.SchemaVersion, StreamID: m.StreamID, StreamVersion: m.StreamVersion,
		Position: m.Position.String(), RecordedAt: m.RecordedAt, Metadata: m.Metadata,
	})
}

// checkEnvelope fails unless appendEnvelope encodes m as valid JSON that
// decodes to what json.Marshal's encoding decodes to, and decode reads m
// back from it.
func checkEnvelope(t *testing.T, m eventbus.Message) {
	t.Helper()
	got, err := appendEnvelope([]byte("prefix"), m)
	want, werr := marshalEnvelope(m)
	if (err != nil) != (werr != nil) {
		t.Fatalf("appendEnvelope error %v, json.Marshal error %v", err, werr)
	}
	if err != nil {
		return
	}
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("appendEnvelope dropped what dst held: %s", got)
	}
	got = got[len("prefix"):]
	if id := string(got[envelopeIDStart : envelopeIDStart+eventIDLen]); id != m.EventID.String() {
		t.Fatalf("the envelope holds %q at envelopeIDStart, want the event ID %s", id, m.EventID)
	}
	if !json.Valid(got) {
		t.Fatalf("appendEnvelope wrote invalid JSON: %s", got)
	}
	var g, w map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("appendEnvelope decodes to\n%v\njson.Marshal to\n%v\n(%s vs %s)", g, w, got, want)
	}
	h := nats.Header{}
	h.Set(HeaderEnvelope, string(got))
	h.Set(HeaderType, m.Type)
	back, err := decode(m.Data, h)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	var ref envelope
	if err := json.Unmarshal(want, &ref); err != nil {
		t.Fatal(err)
	}
	if back.StreamID != ref.StreamID || back.EventID != m.EventID || back.Position != m.Position ||
		back.StreamVersion != m.StreamVersion || back.SchemaVersion != m.SchemaVersion ||
		!back.RecordedAt.Equal(m.RecordedAt) || !reflect.DeepEqual(back.Metadata, ref.Metadata) {
		t.Fatalf("decode(appendEnvelope(m)) = %+v, want the fields of %+v", back, m)
	}
}

func envelopeMessage(streamID string, md eventstore.Metadata) eventbus.Message {
	return eventbus.Message{
		EventID: eventstore.NewEventID(), Type: "Deposited", SchemaVersion: 2, StreamID: streamID, StreamVersion: 42,
		Position: eventstore.Position{Transaction: 981, Global: 77}, Data: []byte(`{}`),
		RecordedAt: time.Date(2026, 12, 5, 13, 4, 5, 123456789, time.FixedZone("x", 3600)), Metadata: md,
	}
}

func TestAppendEnvelopeMatchesJSONMarshal(t *testing.T) {
	for _, id := range []string{
		"account-1", "", `quote"back\slash`, "tab\tnew\nline\rcr", "ctl\x00\x01\x1f\x7f", "<html>&amp;",
		"héllo wörld ✓ 𝄞", "bad\xffutf8\xc3", "line\u2028para\u2029sep", "\xed\xa0\x80 surrogate",
	} {
		checkEnvelope(t, envelopeMessage(id, eventstore.Metadata{}))
	}
	checkEnvelope(t, envelopeMessage("with-metadata", eventstore.Metadata{
		CorrelationID: "corr\"1", CausationID: "cause", Headers: map[string]string{"tenant": "a\nb", "user": "ü"},
	}))
	m := envelopeMessage("zero-time", eventstore.Metadata{})
	m.RecordedAt = time.Time{}
	checkEnvelope(t, m)
}

func TestAppendEnvelopeRefusesWhatJSONRefuses(t *testing.T) {
	m := envelopeMessage("far-future", eventstore.Metadata{})
	m.RecordedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := appendEnvelope(nil, m); err == nil {
		t.Fatal("appendEnvelope accepted a time json.Marshal refuses")
	}
	checkEnvelope(t, m) // and agrees with json.Marshal on it
}

func FuzzAppendEnvelope(f *testing.F) {
	f.Add("account-1", "corr", "k", "v", int64(3), 1, int64(1700000000), int64(123456789), 0)
	f.Add("bad\xff\"\\\u2028", "", "", "", int64(-1), -5, int64(0), int64(0), 60)
	f.Add("far", "", "", "", int64(1), 1, int64(253402300800), int64(1), 0)
	f.Add("year-0", "", "", "", int64(1), 1, int64(-62167219200), int64(0), 0)
	f.Add("year-9999", "", "", "", int64(1), 1, int64(253402300799), int64(999999999), 0)
	f.Add("year--1", "", "", "", int64(1), 1, int64(-62198755200), int64(5), 0)
	f.Fuzz(func(t *testing.T, streamID, corr, key, val string, version int64, schema int, unix, nanos int64, offset int) {
		m := envelopeMessage(streamID, eventstore.Metadata{CorrelationID: corr})
		if key != "" {
			m.Metadata.Headers = map[string]string{key: val}
		}
		m.StreamVersion, m.SchemaVersion = version, schema
		m.RecordedAt = time.Unix(unix, nanos).UTC() // the store's times; others take the slow path
		if offset != 0 {
			// Whole minutes: RFC 3339 (and so encoding/json) has no seconds in offsets.
			m.RecordedAt = m.RecordedAt.In(time.FixedZone("z", offset%(24*60)*60))
		}
		checkEnvelope(t, m)
	})
}
