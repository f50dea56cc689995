package eventstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

type inner struct {
	Secret string `json:"secret" chronicle:"personal"`
}

type embedded struct {
	Email string `json:"email" chronicle:"personal"`
}

type (
	noSubject struct {
		Email string `chronicle:"personal"`
	}
	intSubject struct {
		ID    int    `chronicle:"subject"`
		Email string `chronicle:"personal"`
	}
	twoSubjects struct {
		A string `chronicle:"subject"`
		B string `chronicle:"subject"`
	}
	badOption struct {
		ID string `chronicle:"subject,secret"`
	}
	nested struct {
		ID    string `chronicle:"subject"`
		Inner inner
	}
	nestedSlice struct {
		ID    string `chronicle:"subject"`
		Inner []inner
	}
	skipped struct {
		ID    string `chronicle:"subject"`
		Email string `json:"-" chronicle:"personal"`
	}
	unexported struct {
		ID    string `chronicle:"subject"`
		email string `chronicle:"personal"`
	}
	namedEmbedding struct {
		ID       string `chronicle:"subject"`
		embedded `json:"contact"`
	}
	promoted struct {
		ID string `json:"id" chronicle:"subject"`
		embedded
	}
	subjectIsPersonal struct {
		ID string `json:"id" chronicle:"subject,personal"`
	}
)

var _ = unexported{email: ""}

func TestRegisterPersonalTags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		reg     func(r *eventstore.Registry) error
		wantErr string // "" means success
	}{
		{"personal without subject", func(r *eventstore.Registry) error { return eventstore.Register[noSubject](r, "x") }, "no subject"},
		{"subject not a string", func(r *eventstore.Registry) error { return eventstore.Register[intSubject](r, "x") }, "must be a string"},
		{"two subjects", func(r *eventstore.Registry) error { return eventstore.Register[twoSubjects](r, "x") }, "second subject"},
		{"unknown option", func(r *eventstore.Registry) error { return eventstore.Register[badOption](r, "x") }, `unknown chronicle tag option "secret"`},
		{"tag in a nested struct", func(r *eventstore.Registry) error { return eventstore.Register[nested](r, "x") }, "only the event's own fields"},
		{"tag in a nested slice", func(r *eventstore.Registry) error { return eventstore.Register[nestedSlice](r, "x") }, "only the event's own fields"},
		{"json dash", func(r *eventstore.Registry) error { return eventstore.Register[skipped](r, "x") }, "never encoded"},
		{"unexported", func(r *eventstore.Registry) error { return eventstore.Register[unexported](r, "x") }, "unexported"},
		{"embedding with a json name", func(r *eventstore.Registry) error { return eventstore.Register[namedEmbedding](r, "x") }, "does not flatten"},
		{"promoted field", func(r *eventstore.Registry) error { return eventstore.Register[promoted](r, "x") }, ""},
		{"subject and personal", func(r *eventstore.Registry) error { return eventstore.Register[subjectIsPersonal](r, "x") }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := c.reg(eventstore.NewRegistry(nil))
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("Register = %v, want success", err)
			case c.wantErr != "" && (!errors.Is(err, eventstore.ErrInvalidInput) || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("Register = %v, want ErrInvalidInput containing %q", err, c.wantErr)
			}
		})
	}
}

type signedUp struct {
	eventstore.Redactions
	ID    string `json:"id" chronicle:"subject"`
	Email string `json:"email" chronicle:"personal"`
	Note  string `json:"note"`
}

// upperCipher is a reversible stand-in for package shred: it tests the
// registry's side of the contract, not cryptography.
type upperCipher struct{ gone map[string]bool }

func (upperCipher) Seal(_ context.Context, subject string, fields []eventstore.PersonalField) error {
	for i := range fields {
		fields[i].Value = []byte(`"enc:` + subject + `:` + strings.Trim(string(fields[i].Value), `"`) + `"`)
	}
	return nil
}

func (c upperCipher) Open(_ context.Context, fields []eventstore.PersonalField) error {
	for i := range fields {
		s := strings.Trim(string(fields[i].Value), `"`)
		parts := strings.SplitN(s, ":", 3)
		if len(parts) != 3 {
			return eventstore.ErrCorruptSealedValue
		}
		if c.gone[parts[1]] {
			fields[i].Redacted = true
			continue
		}
		fields[i].Value = []byte(`"` + parts[2] + `"`)
	}
	return nil
}

func TestPersonalRegistry(t *testing.T) {
	t.Parallel()
	cipher := upperCipher{gone: map[string]bool{}}
	reg := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: cipher})
	eventstore.MustRegister[signedUp](reg, "SignedUp")
	ev, err := reg.Encode(signedUp{ID: "u1", Email: "ada@example.com", Note: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"email":"enc:u1:ada@example.com","id":"u1","note":"hi"}`; string(ev.Data) != want {
		t.Errorf("encoded %s, want %s", ev.Data, want)
	}
	rec := eventstore.Record{StreamID: "user-u1", StreamVersion: 1, Type: ev.Type, SchemaVersion: 1, Data: ev.Data}
	got, err := eventstore.Decode[signedUp](reg, rec)
	if err != nil || got.Email != "ada@example.com" || got.IsRedacted() {
		t.Errorf("decode = %+v, %v", got, err)
	}
	cipher.gone["u1"] = true
	got, err = eventstore.Decode[signedUp](reg, rec)
	if err != nil || got.Email != "" || got.Note != "hi" || strings.Join(got.Redacted(), ",") != "email" {
		t.Errorf("decode after the key is gone = %+v (redacted %v), %v", got, got.Redacted(), err)
	}

	// Bad input.
	if _, err := reg.Encode(signedUp{Email: "x@y"}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("empty subject: %v", err)
	}
	if _, err := reg.Encode(signedUp{ID: "u2", Note: "enc:looks sealed"}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("plain value with the sealed prefix: %v", err)
	}
	bad := rec
	bad.Data = []byte(`{"email":"enc:nocolon","id":"u1"}`)
	if _, err := reg.Decode(bad); !errors.Is(err, eventstore.ErrCorruptSealedValue) || !errors.Is(err, eventstore.ErrDecode) {
		t.Errorf("corrupt sealed value: %v", err)
	}
}

// A registry without a cipher refuses to write personal data, and reads
// sealed values as redacted: it holds no keys.
func TestPersonalWithoutCipher(t *testing.T) {
	t.Parallel()
	reg := eventstore.NewRegistry(nil)
	eventstore.MustRegister[signedUp](reg, "SignedUp")
	if _, err := reg.Encode(signedUp{ID: "u1", Email: "ada@example.com"}); !errors.Is(err, eventstore.ErrInvalidInput) || !strings.Contains(err.Error(), "no FieldCipher") {
		t.Errorf("encode without a cipher = %v", err)
	}
	if _, err := reg.Encode(signedUp{ID: "u1", Note: "no personal data"}); err != nil {
		t.Errorf("encode without personal values = %v", err)
	}
	rec := eventstore.Record{Type: "SignedUp", SchemaVersion: 1, Data: []byte(`{"email":"enc:v1:00:AAAA","id":"u1","note":"hi"}`)}
	got, err := eventstore.Decode[signedUp](reg, rec)
	if err != nil || got.Email != "" || got.Note != "hi" || !got.IsRedacted() {
		t.Errorf("decode = %+v, %v", got, err)
	}
}

// nilCipher is a FieldCipher type whose nil pointer stands for a
// constructor's unchecked nil result.
type nilCipher struct{ upperCipher }

type nilCodec struct{ eventstore.JSONCodec }

// A nil *T passed as the Cipher or Codec fails every use with an error
// naming the field, never a nil-pointer panic, and never stores personal
// fields in the clear.
func TestRegistryTypedNilCipherAndCodec(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: (*nilCipher)(nil)})
	eventstore.MustRegister[signedUp](reg, "SignedUp")
	ev, err := reg.EncodeContext(ctx, signedUp{ID: "u1", Email: "a@example.com"})
	if !errors.Is(err, eventstore.ErrInvalidInput) || !strings.Contains(err.Error(), "RegistryConfig.Cipher") {
		t.Fatalf("EncodeContext with a nil cipher = %s, %v; want ErrInvalidInput naming RegistryConfig.Cipher", ev.Data, err)
	}

	reg = eventstore.NewRegistry(&eventstore.RegistryConfig{Codec: (*nilCodec)(nil)})
	eventstore.MustRegister[signedUp](reg, "SignedUp")
	if _, err := reg.Encode(signedUp{ID: "u1"}); !errors.Is(err, eventstore.ErrInvalidInput) || !strings.Contains(err.Error(), "RegistryConfig.Codec") {
		t.Fatalf("Encode with a nil codec = %v, want ErrInvalidInput naming RegistryConfig.Codec", err)
	}
}
