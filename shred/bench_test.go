package shred

import (
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

type plainRegistered struct {
	CustomerID string `json:"customer_id"`
	Email      string `json:"email"`
	Age        int    `json:"age"`
	Plan       string `json:"plan"`
}

// BenchmarkCodec measures what sealing costs at encode and decode, with a
// warm key cache (no key store round trip), against the same payload
// without personal fields, with and without a cipher in the registry.
func BenchmarkCodec(b *testing.B) {
	s, err := New(newMapKeys(), &Config{KeyEncryptionKey: testKEK})
	if err != nil {
		b.Fatal(err)
	}
	withCipher := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: s})
	eventstore.MustRegister[customerRegistered](withCipher, "CustomerRegistered")
	eventstore.MustRegister[plainRegistered](withCipher, "PlainRegistered")
	without := eventstore.NewRegistry(nil)
	eventstore.MustRegister[plainRegistered](without, "PlainRegistered")

	personal := customerRegistered{CustomerID: "c-1", Email: "ada@example.com", Age: 36, Plan: "gold"}
	plain := plainRegistered{CustomerID: "c-1", Email: "ada@example.com", Age: 36, Plan: "gold"}
	cases := []struct {
		name string
		reg  *eventstore.Registry
		v    any
	}{
		{"plain/no-cipher", without, plain},
		{"plain/cipher", withCipher, plain},
		{"personal/cipher", withCipher, personal},
	}
	for _, c := range cases {
		ev, err := c.reg.Encode(c.v)
		if err != nil {
			b.Fatal(err)
		}
		rec := eventstore.Record{StreamID: "s", StreamVersion: 1, Type: ev.Type, SchemaVersion: 1, Data: ev.Data}
		b.Run("encode/"+c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.reg.Encode(c.v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decode/"+c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.reg.Decode(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
