package shred

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

// FuzzDecodeSealed decodes corrupt payloads and corrupt sealed values: the
// result is a decoded event (possibly redacted) or a *DecodeError, never a
// panic and never another error.
func FuzzDecodeSealed(f *testing.F) {
	fx := setupFuzz(f)
	rec := fx.encodeF(f, ada)
	f.Add(rec.Data, "")
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(rec.Data, &raw)
	var email string
	_ = json.Unmarshal(raw["email"], &email)
	f.Add([]byte(nil), email)
	f.Add([]byte(nil), email[:40])
	f.Add([]byte(nil), "enc:v1:"+email[7:39]+":")
	f.Add([]byte(`{"email":"enc:","age":"enc:v1"}`), "")
	f.Add([]byte(`{"email":"enc:v1:0123456789abcdef0123456789abcdef:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`), "")
	f.Fuzz(func(t *testing.T, data []byte, sealed string) {
		r := rec
		if data != nil {
			r.Data = data
		} else {
			m := map[string]json.RawMessage{}
			for k, v := range raw {
				m[k] = v
			}
			m["email"], _ = json.Marshal(sealed)
			r.Data, _ = json.Marshal(m)
		}
		v, err := fx.reg.DecodeContext(t.Context(), r)
		if err != nil {
			if !errors.Is(err, eventstore.ErrDecode) {
				t.Fatalf("decode = %v, want nil or ErrDecode", err)
			}
			return
		}
		if _, ok := v.(customerRegistered); !ok {
			t.Fatalf("decoded %T", v)
		}
	})
}

func setupFuzz(f *testing.F) fixture {
	s, err := New(newMapKeys(), &Config{KeyEncryptionKey: testKEK})
	if err != nil {
		f.Fatal(err)
	}
	reg := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: s})
	eventstore.MustRegister[customerRegistered](reg, "CustomerRegistered")
	return fixture{shredder: s, reg: reg}
}

func (fx fixture) encodeF(f *testing.F, e customerRegistered) eventstore.Record {
	ev, err := fx.reg.Encode(e)
	if err != nil {
		f.Fatal(err)
	}
	return eventstore.Record{StreamID: "customer-1", StreamVersion: 1, Type: ev.Type, SchemaVersion: ev.SchemaVersion, Data: ev.Data}
}
