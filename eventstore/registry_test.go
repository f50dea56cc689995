package eventstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
)

// The seed scenario: UserRegistered gained an email in schema version 2.
type (
	// UserRegisteredV1 is the shape stored before emails existed.
	UserRegisteredV1 struct {
		UserID string `json:"user_id"`
		Name   string `json:"name"`
	}
	// UserRegistered is the current shape (schema version 2).
	UserRegistered struct {
		UserID string `json:"user_id"`
		Name   string `json:"name"`
		Email  string `json:"email"`
	}
)

const unknownEmail = "unknown@invalid"

func upcastUserV1(v1 UserRegisteredV1) (UserRegistered, error) {
	return UserRegistered{UserID: v1.UserID, Name: v1.Name, Email: unknownEmail}, nil
}

// A three-version chain: v1 {"owner"} → v2 {"holder"} (raw JSON rewrite)
// → v3 {"first","last"} (typed).
type (
	AccountOpenedV2 struct {
		Holder string `json:"holder"`
	}
	AccountOpened struct {
		First string `json:"first"`
		Last  string `json:"last"`
	}
)

func renameOwner(data []byte) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	owner, ok := m["owner"].(string)
	if !ok {
		return nil, errors.New("v1 payload has no owner")
	}
	return json.Marshal(map[string]string{"holder": owner})
}

func splitHolder(v2 AccountOpenedV2) (AccountOpened, error) {
	first, last, _ := strings.Cut(v2.Holder, " ")
	return AccountOpened{First: first, Last: last}, nil
}

func setupRegistry(t testing.TB) *eventstore.Registry {
	t.Helper()
	r := eventstore.NewRegistry(nil)
	if err := eventstore.Register[UserRegistered](r, "UserRegistered", eventstore.Upcast(1, upcastUserV1)); err != nil {
		t.Fatal(err)
	}
	if err := eventstore.Register[AccountOpened](r, "AccountOpened",
		eventstore.UpcastData(1, renameOwner),
		eventstore.Upcast(2, splitHolder),
	); err != nil {
		t.Fatal(err)
	}
	return r
}

func record(typ string, version int, data string) eventstore.Record {
	return eventstore.Record{EventID: eventstore.NewEventID(), StreamID: "s", StreamVersion: 1, Type: typ, SchemaVersion: version, Data: []byte(data)}
}

func TestRegistryEncodeDecode(t *testing.T) {
	t.Parallel()
	r := setupRegistry(t)
	in := UserRegistered{UserID: "u1", Name: "Ada", Email: "ada@example.com"}
	for _, v := range []any{in, &in} {
		e, err := r.Encode(v)
		if err != nil {
			t.Fatalf("Encode(%T): %v", v, err)
		}
		if e.Type != "UserRegistered" || e.SchemaVersion != 2 || !e.ID.IsZero() {
			t.Fatalf("Encode(%T) = type %q, schema version %d, id %s; want UserRegistered, 2, zero", v, e.Type, e.SchemaVersion, e.ID)
		}
		out, err := r.Decode(eventstore.Record{Type: e.Type, SchemaVersion: e.SchemaVersion, Data: e.Data})
		if err != nil || out != in {
			t.Fatalf("Decode(Encode(%T)) = %#v, %v; want %#v", v, out, err, in)
		}
	}
	typed, err := eventstore.Decode[UserRegistered](r, record("UserRegistered", 2, `{"user_id":"u2","name":"Bo","email":"bo@x"}`))
	if err != nil || typed.UserID != "u2" || typed.Email != "bo@x" {
		t.Fatalf("Decode[UserRegistered] = %+v, %v", typed, err)
	}
	if name, err := r.Name(&in); err != nil || name != "UserRegistered" {
		t.Fatalf("Name(&in) = %q, %v", name, err)
	}
	if v, ok := r.SchemaVersion("AccountOpened"); !ok || v != 3 {
		t.Fatalf("SchemaVersion(AccountOpened) = %d, %v; want 3", v, ok)
	}
	if _, ok := r.SchemaVersion("Nope"); ok {
		t.Fatal("SchemaVersion of an unregistered name reports ok")
	}
	if got := r.Types(); !reflect.DeepEqual(got, []string{"AccountOpened", "UserRegistered"}) {
		t.Fatalf("Types() = %v", got)
	}
}

// The seed scenario: events stored before emails existed load as the
// current UserRegistered, through a real store.
func TestSeedScenarioUpcastUserRegistered(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memory.New(nil)

	// Stored by the old version of the application: schema version 1, no email.
	old := eventstore.Event{Type: "UserRegistered", SchemaVersion: 1, Data: []byte(`{"user_id":"u1","name":"Ada"}`)}
	if _, err := store.Append(ctx, "user-u1", eventstore.NoStream, old); err != nil {
		t.Fatal(err)
	}

	// The new application registers v2 with an upcaster and appends a v2 event.
	r := setupRegistry(t)
	e, err := r.Encode(UserRegistered{UserID: "u2", Name: "Grace", Email: "grace@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "user-u2", eventstore.NoStream, e); err != nil {
		t.Fatal(err)
	}

	recs, err := store.ReadAll(ctx, eventstore.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []UserRegistered{
		{UserID: "u1", Name: "Ada", Email: unknownEmail},
		{UserID: "u2", Name: "Grace", Email: "grace@example.com"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d events stored, want %d", len(recs), len(want))
	}
	for i, rec := range recs {
		got, err := eventstore.Decode[UserRegistered](r, rec)
		if err != nil || got != want[i] {
			t.Fatalf("event %d (schema version %d) decoded to %+v, %v; want %+v", i, rec.SchemaVersion, got, err, want[i])
		}
	}
	if recs[0].SchemaVersion != 1 || string(recs[0].Data) != `{"user_id":"u1","name":"Ada"}` {
		t.Fatalf("decoding changed the stored record: %+v", recs[0])
	}
}

func TestUpcastChain(t *testing.T) {
	t.Parallel()
	r := setupRegistry(t)
	want := AccountOpened{First: "Ada", Last: "Lovelace"}
	for _, rec := range []eventstore.Record{
		record("AccountOpened", 1, `{"owner":"Ada Lovelace"}`),
		record("AccountOpened", 0, `{"owner":"Ada Lovelace"}`), // rows from before schema versions: 1
		record("AccountOpened", 2, `{"holder":"Ada Lovelace"}`),
		record("AccountOpened", 3, `{"first":"Ada","last":"Lovelace"}`),
	} {
		got, err := eventstore.Decode[AccountOpened](r, rec)
		if err != nil || got != want {
			t.Errorf("schema version %d: %+v, %v; want %+v", rec.SchemaVersion, got, err, want)
		}
	}
}

type (
	A     struct{ N int }
	B     struct{ S string }
	Other struct{ X bool }
)

func TestRegisterErrors(t *testing.T) {
	t.Parallel()
	noop := func(a A) (A, error) { return a, nil }
	toB := func(a A) (B, error) { return B{S: fmt.Sprint(a.N)}, nil }
	fromOther := func(o Other) (A, error) { return A{}, nil }
	raw := func(d []byte) ([]byte, error) { return d, nil }
	tests := []struct {
		name     string
		register func(r *eventstore.Registry) error
	}{
		{"duplicate name", func(r *eventstore.Registry) error { return eventstore.Register[B](r, "A") }},
		{"duplicate go type", func(r *eventstore.Registry) error { return eventstore.Register[A](r, "A2") }},
		{"pointer type", func(r *eventstore.Registry) error { return eventstore.Register[*B](r, "PB") }},
		{"interface type", func(r *eventstore.Registry) error { return eventstore.Register[fmt.Stringer](r, "S") }},
		{"any", func(r *eventstore.Registry) error { return eventstore.Register[any](r, "Any") }},
		{"empty name", func(r *eventstore.Registry) error { return eventstore.Register[B](r, "") }},
		{"name with newline", func(r *eventstore.Registry) error { return eventstore.Register[B](r, "B\n") }},
		{"name too long", func(r *eventstore.Registry) error { return eventstore.Register[B](r, strings.Repeat("B", 256)) }},
		{"empty upcaster", func(r *eventstore.Registry) error { return eventstore.Register[B](r, "B", eventstore.Upcaster{}) }},
		{"chain starts at 2", func(r *eventstore.Registry) error {
			return eventstore.Register[B](r, "B", eventstore.Upcast(2, toB))
		}},
		{"chain out of order", func(r *eventstore.Registry) error {
			return eventstore.Register[B](r, "B", eventstore.UpcastData(2, raw), eventstore.UpcastData(1, raw))
		}},
		{"chain repeats a version", func(r *eventstore.Registry) error {
			return eventstore.Register[B](r, "B", eventstore.UpcastData(1, raw), eventstore.UpcastData(1, raw))
		}},
		{"chain type mismatch", func(r *eventstore.Registry) error {
			// v1→v2 returns A, but v2→v3 takes Other.
			return eventstore.Register[B](r, "B", eventstore.Upcast(1, noop), eventstore.Upcast(2, fromOther), eventstore.Upcast(3, toB))
		}},
		{"last upcaster does not return the registered type", func(r *eventstore.Registry) error {
			return eventstore.Register[B](r, "B", eventstore.Upcast(1, noop))
		}},
		{"last typed upcaster after a raw one does not return the registered type", func(r *eventstore.Registry) error {
			return eventstore.Register[B](r, "B", eventstore.UpcastData(1, raw), eventstore.Upcast(2, noop))
		}},
	}
	for _, tt := range tests {
		r := eventstore.NewRegistry(nil)
		if err := eventstore.Register[A](r, "A"); err != nil {
			t.Fatal(err)
		}
		err := tt.register(r)
		var ve *eventstore.ValidationError
		if !errors.Is(err, eventstore.ErrInvalidInput) || !errors.As(err, &ve) {
			t.Errorf("%s: error %v, want a ValidationError", tt.name, err)
			continue
		}
		// A refused registration changes nothing.
		if got := r.Types(); !reflect.DeepEqual(got, []string{"A"}) {
			t.Errorf("%s: registry has %v after the refusal, want [A]", tt.name, got)
		}
		if _, err := r.Encode(B{}); !errors.Is(err, eventstore.ErrUnknownEventType) {
			t.Errorf("%s: B was registered after all: %v", tt.name, err)
		}
	}
}

func TestMustRegister(t *testing.T) {
	t.Parallel()
	r := eventstore.NewRegistry(nil)
	eventstore.MustRegister[A](r, "A")
	defer func() {
		p := recover()
		if p == nil || !strings.Contains(fmt.Sprint(p), "already registered") {
			t.Fatalf("MustRegister of a duplicate name panicked with %v, want an 'already registered' message", p)
		}
	}()
	eventstore.MustRegister[B](r, "A")
}

type Unregistered struct{}

func TestEncodeErrors(t *testing.T) {
	t.Parallel()
	r := setupRegistry(t)
	for _, v := range []any{Unregistered{}, &Unregistered{}, nil, (*UserRegistered)(nil), 42, UserRegisteredV1{}} {
		_, err := r.Encode(v)
		var ue *eventstore.UnknownEventTypeError
		if !errors.Is(err, eventstore.ErrUnknownEventType) || !errors.As(err, &ue) || ue.Type == "" {
			t.Errorf("Encode(%#v): error %v, want an UnknownEventTypeError naming the type", v, err)
		}
	}
	_, err := r.Encode(Unregistered{})
	if got, want := err.Error(), `unknown event type "eventstore_test.Unregistered"`; got != want {
		t.Errorf("Encode error %q, want %q", got, want)
	}
	if _, err := r.Name(Unregistered{}); !errors.Is(err, eventstore.ErrUnknownEventType) {
		t.Errorf("Name(Unregistered{}): %v, want ErrUnknownEventType", err)
	}

	// A value the codec cannot encode.
	type Chan struct{ C chan int }
	eventstore.MustRegister[Chan](r, "Chan")
	if _, err := r.Encode(Chan{}); err == nil || !strings.Contains(err.Error(), `encode event "Chan"`) {
		t.Errorf("Encode(Chan{}): error %v, want an encode error", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	r := setupRegistry(t)
	failing := errors.New("upcaster refused")
	eventstore.MustRegister[B](r, "Failing", eventstore.UpcastData(1, func([]byte) ([]byte, error) { return nil, failing }))
	eventstore.MustRegister[Other](r, "Garbling", eventstore.UpcastData(1, func([]byte) ([]byte, error) { return []byte(`{`), nil }))

	_, err := r.Decode(record("Nope", 1, `{}`))
	var ue *eventstore.UnknownEventTypeError
	if !errors.Is(err, eventstore.ErrUnknownEventType) || !errors.As(err, &ue) || ue.Type != "Nope" {
		t.Errorf("unknown name: error %v, want an UnknownEventTypeError for Nope", err)
	}

	tests := []struct {
		name  string
		rec   eventstore.Record
		cause error // when set, the error must wrap it
	}{
		{"truncated json", record("UserRegistered", 2, `{"user_id":`), nil},
		{"not json", record("UserRegistered", 2, `hello`), nil},
		{"empty payload", record("UserRegistered", 2, ``), nil},
		{"wrong field type", record("UserRegistered", 2, `{"user_id":5}`), nil},
		{"wrong shape", record("UserRegistered", 2, `[1,2]`), nil},
		{"corrupt v1 payload", record("UserRegistered", 1, `{"name":[]}`), nil},
		{"schema version from the future", record("UserRegistered", 3, `{}`), nil},
		{"far future schema version", record("AccountOpened", 1<<30, `{}`), nil},
		{"raw upcaster fails", record("AccountOpened", 1, `{"no_owner":1}`), nil},
		{"upcaster returns an error", record("Failing", 1, `{}`), failing},
		{"upcaster produces invalid json", record("Garbling", 1, `{}`), nil},
	}
	for _, tt := range tests {
		v, err := r.Decode(tt.rec)
		var de *eventstore.DecodeError
		if !errors.Is(err, eventstore.ErrDecode) || !errors.As(err, &de) {
			t.Errorf("%s: Decode = %#v, %v; want a DecodeError", tt.name, v, err)
			continue
		}
		if de.EventID != tt.rec.EventID || de.StreamID != tt.rec.StreamID || de.StreamVersion != tt.rec.StreamVersion ||
			de.Type != tt.rec.Type || de.SchemaVersion != tt.rec.SchemaVersion || de.Err == nil {
			t.Errorf("%s: DecodeError %+v does not identify the record", tt.name, de)
		}
		if tt.cause != nil && !errors.Is(err, tt.cause) {
			t.Errorf("%s: error %v does not wrap %v", tt.name, err, tt.cause)
		}
	}

	var syntax *json.SyntaxError
	if _, err := r.Decode(record("UserRegistered", 2, `{`)); !errors.As(err, &syntax) {
		t.Errorf("corrupt payload: error %v does not unwrap to the codec's *json.SyntaxError", err)
	}
	if _, err := eventstore.Decode[AccountOpened](r, record("UserRegistered", 2, `{}`)); !errors.Is(err, eventstore.ErrDecode) {
		t.Errorf("Decode[AccountOpened] of a UserRegistered: error %v, want ErrDecode", err)
	}
}

// countingCodec is JSON with a marker, to show the registry uses its codec.
type countingCodec struct {
	mu                sync.Mutex
	marshal, unmarsha int
}

func (c *countingCodec) Marshal(v any) ([]byte, error) {
	c.mu.Lock()
	c.marshal++
	c.mu.Unlock()
	return json.Marshal(v)
}

func (c *countingCodec) Unmarshal(data []byte, v any) error {
	c.mu.Lock()
	c.unmarsha++
	c.mu.Unlock()
	return json.Unmarshal(data, v)
}

func TestRegistryCustomCodec(t *testing.T) {
	t.Parallel()
	codec := &countingCodec{}
	r := eventstore.NewRegistry(&eventstore.RegistryConfig{Codec: codec})
	eventstore.MustRegister[UserRegistered](r, "UserRegistered", eventstore.Upcast(1, upcastUserV1))
	if _, err := r.Encode(UserRegistered{}); err != nil {
		t.Fatal(err)
	}
	// v1 → v2 unmarshals the v1 value, marshals the v2 value, then unmarshals it.
	if _, err := r.Decode(record("UserRegistered", 1, `{"user_id":"u"}`)); err != nil {
		t.Fatal(err)
	}
	if codec.marshal != 2 || codec.unmarsha != 2 {
		t.Fatalf("codec used for %d marshals and %d unmarshals, want 2 and 2", codec.marshal, codec.unmarsha)
	}
}

func TestRegistryConcurrentUse(t *testing.T) {
	t.Parallel()
	r := setupRegistry(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for k := range 200 {
				e, err := r.Encode(UserRegistered{UserID: fmt.Sprint(i, k)})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := r.Decode(eventstore.Record{Type: e.Type, SchemaVersion: 1, Data: e.Data}); err != nil {
					t.Error(err)
					return
				}
				_ = r.Types()
			}
		})
	}
	wg.Go(func() {
		type dyn struct{ N int }
		for k := range 50 {
			// Registering while others encode and decode: only the first succeeds.
			err := eventstore.Register[dyn](r, "Dyn")
			if (k == 0) != (err == nil) {
				t.Errorf("registration %d: %v", k, err)
			}
		}
	})
	wg.Wait()
}
