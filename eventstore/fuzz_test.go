package eventstore_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/chronicle-go/chronicle/eventstore"
)

type Counter int

type Tags []string

func fuzzRegistry(t testing.TB) (*eventstore.Registry, map[string]reflect.Type) {
	r := setupRegistry(t)
	eventstore.MustRegister[Counter](r, "Counter")
	eventstore.MustRegister[Tags](r, "Tags", eventstore.UpcastData(1, func(d []byte) ([]byte, error) {
		var s string // v1 was one comma-separated string
		if err := json.Unmarshal(d, &s); err != nil {
			return nil, err
		}
		return json.Marshal(strings.Split(s, ","))
	}))
	eventstore.MustRegister[map[string]any](r, "Raw")
	return r, map[string]reflect.Type{
		"UserRegistered": reflect.TypeFor[UserRegistered](),
		"AccountOpened":  reflect.TypeFor[AccountOpened](),
		"Counter":        reflect.TypeFor[Counter](),
		"Tags":           reflect.TypeFor[Tags](),
		"Raw":            reflect.TypeFor[map[string]any](),
	}
}

// FuzzDecode feeds arbitrary type names, schema versions and payloads to
// Registry.Decode: it never panics, and returns either a value of the
// registered type or an error matching ErrDecode or ErrUnknownEventType.
func FuzzDecode(f *testing.F) {
	seeds := []struct {
		typ     string
		version int
		data    string
	}{
		{"UserRegistered", 1, `{"user_id":"u1","name":"Ada"}`},
		{"UserRegistered", 2, `{"user_id":"u1","name":"Ada","email":"a@b"}`},
		{"UserRegistered", 3, `{}`},
		{"UserRegistered", 0, `null`},
		{"UserRegistered", -7, `{"name":5}`},
		{"AccountOpened", 1, `{"owner":"Ada Lovelace"}`},
		{"AccountOpened", 2, `{"holder":"Ada"}`},
		{"AccountOpened", 3, `{"first":"A","last":"L"}`},
		{"AccountOpened", 1, `{"owner":7}`},
		{"Counter", 1, `42`},
		{"Counter", 1, `4.2`},
		{"Counter", 1, `99999999999999999999999`},
		{"Tags", 1, `"a,b,c"`},
		{"Tags", 2, `["a"]`},
		{"Tags", 1, `["a"]`},
		{"Raw", 1, `{"deep":[[[[{}]]]]}`},
		{"Raw", 1, strings.Repeat("[", 20000)},
		{"Nope", 1, `{}`},
		{"", 0, ``},
		{"UserRegistered", 1, "\xff\xfe"},
	}
	for _, s := range seeds {
		f.Add(s.typ, s.version, []byte(s.data))
	}
	r, types := fuzzRegistry(f)
	f.Fuzz(func(t *testing.T, typ string, version int, data []byte) {
		rec := eventstore.Record{EventID: eventstore.NewEventID(), Type: typ, SchemaVersion: version, Data: data}
		v, err := r.Decode(rec)
		want, registered := types[typ]
		switch {
		case !registered:
			if !errors.Is(err, eventstore.ErrUnknownEventType) {
				t.Fatalf("Decode of unregistered %q: %#v, %v; want ErrUnknownEventType", typ, v, err)
			}
		case err != nil:
			if !errors.Is(err, eventstore.ErrDecode) {
				t.Fatalf("Decode(%q v%d, %q): error %v matches neither ErrDecode nor ErrUnknownEventType", typ, version, data, err)
			}
			var de *eventstore.DecodeError
			if !errors.As(err, &de) || de.EventID != rec.EventID {
				t.Fatalf("Decode error %v does not identify the event", err)
			}
		default:
			if reflect.TypeOf(v) != want {
				t.Fatalf("Decode(%q) returned a %T, want %s", typ, v, want)
			}
			if current, _ := r.SchemaVersion(typ); version > current {
				t.Fatalf("Decode accepted schema version %d of %q, newer than %d", version, typ, current)
			}
		}
	})
}

func FuzzParseEventID(f *testing.F) {
	for _, s := range []string{
		"0190a5c4-8f3e-7b12-9c4d-1e2f3a4b5c6d",
		"0190A5C4-8F3E-7B12-9C4D-1E2F3A4B5C6D",
		"00000000-0000-0000-0000-000000000000",
		"0190a5c4-8f3e-7b12-9c4d-1e2f3a4b5c6",
		"0190a5c4+8f3e-7b12-9c4d-1e2f3a4b5c6d",
		"",
		"zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := eventstore.ParseEventID(s)
		if err != nil {
			if !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Fatalf("ParseEventID(%q): error %v, want ErrInvalidInput", s, err)
			}
			return
		}
		if got := id.String(); got != strings.ToLower(s) {
			t.Fatalf("ParseEventID(%q).String() = %q", s, got)
		}
		back, err := eventstore.ParseEventID(id.String())
		if err != nil || back != id {
			t.Fatalf("round trip of %s: %s, %v", id, back, err)
		}
	})
}

func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"0/0", "1/2", "18446744073709551615/9223372036854775807", "1/-2", "-1/2", "+1/+2", "1//2", "/", "", "1/2/3", "0/-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := eventstore.ParsePosition(s)
		if err != nil {
			if !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Fatalf("ParsePosition(%q): error %v, want ErrInvalidInput", s, err)
			}
			return
		}
		if p.Global < 0 {
			t.Fatalf("ParsePosition(%q) = %v with a negative global", s, p)
		}
		back, err := eventstore.ParsePosition(p.String())
		if err != nil || back != p {
			t.Fatalf("ParsePosition(%q) = %v, but %q parses to %v, %v", s, p, p.String(), back, err)
		}
	})
}

// FuzzValidateAppend: never panics; accepted payloads are JSON that
// PostgreSQL's jsonb stores (valid UTF-8, no \u0000, surrogate escapes in
// pairs), as an independent scanner (jsonbSafe) judges; and a payload is
// refused only for being such a value.
func FuzzValidateAppend(f *testing.F) {
	f.Add("s", int64(-1), "E", 1, []byte(`{"a":1}`), "corr", "k", "v")
	f.Add("", int64(0), "", 0, []byte(``), "", "", "")
	f.Add("s\x00", int64(-2), "E\n", -1, []byte(`{"a":"\u0000"}`), "\xff", "k\x00", "v")
	f.Add("s", int64(3), "E", 2, []byte(`"\\u0000"`), "", "", "")
	f.Add("s", int64(-3), "E", 1, []byte(`"\ud83d\ude00 \ud800"`), "", "", "")
	f.Add("s", int64(0), "E", 1, []byte("\"\xff\""), "", "", "")
	f.Add("s", int64(0), "E", 1, []byte(`["\udc00", "\\\ud800\udc00"]`), "", "", "")
	f.Fuzz(func(t *testing.T, stream string, expected int64, typ string, schema int, data []byte, corr, hk, hv string) {
		e := eventstore.Event{Type: typ, SchemaVersion: schema, Data: data, Metadata: eventstore.Metadata{CorrelationID: corr}}
		if hk != "" || hv != "" {
			e.Metadata.Headers = map[string]string{hk: hv}
		}
		err := eventstore.ValidateAppend(stream, eventstore.ExpectedVersion(expected), []eventstore.Event{e}, 4096)
		if err != nil {
			if !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Fatalf("error %v does not match ErrInvalidInput", err)
			}
		} else {
			if !json.Valid(data) || !utf8.Valid(data) {
				t.Fatalf("accepted payload %q that is not valid UTF-8 JSON", data)
			}
			if reason := jsonbSafe(data); reason != "" {
				t.Fatalf("accepted payload %q: %s", data, reason)
			}
			if eventstore.ValidateStreamID(stream) != nil || !eventstore.ExpectedVersion(expected).Valid() || schema < 0 {
				t.Fatalf("accepted stream %q, expected version %d, schema version %d", stream, expected, schema)
			}
		}
		// The payload rules alone: refused exactly when the oracle refuses.
		err = eventstore.ValidateAppend("s", eventstore.Any, []eventstore.Event{{Type: "E", Data: data}}, 0)
		ok := json.Valid(data) && utf8.Valid(data) && jsonbSafe(data) == ""
		if ok != (err == nil) {
			t.Fatalf("payload %q: ValidateAppend error %v, but the oracle says ok=%v", data, err, ok)
		}
	})
}

// jsonbSafe is an independent check of the JSON strings in valid JSON data:
// it walks the document tracking whether it is inside a string, decodes
// every \u escape, and reports a NUL or a surrogate that is not part of a
// high-low pair.
func jsonbSafe(data []byte) string {
	inString := false
	pendingHigh := false // the previous escape was a high surrogate
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !inString {
			if c == '"' {
				inString = true
			}
			continue
		}
		if c != '\\' {
			if pendingHigh {
				return "high surrogate not followed by a low one"
			}
			if c == '"' {
				inString = false
			}
			continue
		}
		i++
		if i >= len(data) {
			return ""
		}
		if data[i] != 'u' {
			if pendingHigh {
				return "high surrogate not followed by a low one"
			}
			continue
		}
		if i+4 >= len(data) {
			return ""
		}
		var r rune
		for _, h := range data[i+1 : i+5] {
			r <<= 4
			switch {
			case h >= '0' && h <= '9':
				r |= rune(h - '0')
			case h >= 'a' && h <= 'f':
				r |= rune(h-'a') + 10
			case h >= 'A' && h <= 'F':
				r |= rune(h-'A') + 10
			}
		}
		i += 4
		switch {
		case r == 0:
			return "NUL escape"
		case utf16IsHigh(r):
			if pendingHigh {
				return "two high surrogates"
			}
			pendingHigh = true
		case utf16IsLow(r):
			if !pendingHigh {
				return "low surrogate without a high one"
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return "high surrogate not followed by a low one"
			}
		}
	}
	return ""
}

func utf16IsHigh(r rune) bool { return r >= 0xd800 && r < 0xdc00 }
func utf16IsLow(r rune) bool  { return r >= 0xdc00 && r < 0xe000 }
