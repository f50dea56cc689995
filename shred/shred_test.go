package shred

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// The key store of these tests is a minimal in-package one (package memory
// imports shred, so its store is exercised by the external tests).
type mapKeys struct {
	mu        sync.Mutex
	keys      map[string]Key
	forgotten map[string]bool
	reads     int
	fail      error
}

func newMapKeys() *mapKeys { return &mapKeys{keys: map[string]Key{}, forgotten: map[string]bool{}} }

func (m *mapKeys) CreateKey(_ context.Context, k Key) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.forgotten[k.Subject] {
		return Key{}, &SubjectError{Subject: k.Subject, Err: ErrSubjectForgotten}
	}
	for _, o := range m.keys {
		if o.Subject == k.Subject && o.Version == k.Version {
			return Key{}, ErrKeyExists
		}
	}
	k.CreatedAt = time.Now()
	m.keys[k.ID] = k
	return k, nil
}

func (m *mapKeys) CurrentKey(_ context.Context, subject string) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if m.fail != nil {
		return Key{}, m.fail
	}
	if m.forgotten[subject] {
		return Key{}, &SubjectError{Subject: subject, Err: ErrSubjectForgotten}
	}
	var cur Key
	for _, k := range m.keys {
		if k.Subject == subject && k.Version > cur.Version {
			cur = k
		}
	}
	if cur.ID == "" {
		return Key{}, &SubjectError{Subject: subject, Err: ErrUnknownSubject}
	}
	return cur, nil
}

func (m *mapKeys) Key(_ context.Context, id string) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if m.fail != nil {
		return Key{}, m.fail
	}
	k, ok := m.keys[id]
	if !ok {
		return Key{}, ErrKeyNotFound
	}
	return k, nil
}

func (m *mapKeys) Forget(_ context.Context, subject string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.forgotten[subject] {
		return nil
	}
	found := false
	for id, k := range m.keys {
		if k.Subject == subject {
			delete(m.keys, id)
			found = true
		}
	}
	if !found {
		return &SubjectError{Subject: subject, Err: ErrUnknownSubject}
	}
	m.forgotten[subject] = true
	return nil
}

func (m *mapKeys) readCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads
}

type customerRegistered struct {
	eventstore.Redactions
	CustomerID string   `json:"customer_id" chronicle:"subject"`
	Email      string   `json:"email" chronicle:"personal"`
	Address    *address `json:"address,omitempty" chronicle:"personal"`
	Age        int      `json:"age" chronicle:"personal"`
	Plan       string   `json:"plan"`
}

type address struct {
	Street string `json:"street"`
	City   string `json:"city"`
}

var testKEK = func() *AESKeyEncryptionKey {
	k, err := NewAESKeyEncryptionKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		panic(err)
	}
	return k
}()

type fixture struct {
	keys     *mapKeys
	shredder *Shredder
	reg      *eventstore.Registry
}

func setup(t *testing.T, cfg *Config) fixture {
	t.Helper()
	keys := newMapKeys()
	return setupWith(t, keys, cfg)
}

func setupWith(t *testing.T, keys KeyStore, cfg *Config) fixture {
	t.Helper()
	c := Config{KeyEncryptionKey: testKEK}
	if cfg != nil {
		c = *cfg
		c.KeyEncryptionKey = testKEK
	}
	s, err := New(keys, &c)
	if err != nil {
		t.Fatal(err)
	}
	reg := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: s})
	eventstore.MustRegister[customerRegistered](reg, "CustomerRegistered")
	mk, _ := keys.(*mapKeys)
	return fixture{keys: mk, shredder: s, reg: reg}
}

func (f fixture) encode(t *testing.T, e customerRegistered) eventstore.Record {
	t.Helper()
	ev, err := f.reg.EncodeContext(t.Context(), e)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return eventstore.Record{EventID: eventstore.NewEventID(), StreamID: "customer-" + e.CustomerID, StreamVersion: 1, Type: ev.Type, SchemaVersion: ev.SchemaVersion, Data: ev.Data}
}

func (f fixture) decode(t *testing.T, rec eventstore.Record) customerRegistered {
	t.Helper()
	e, err := eventstore.DecodeContext[customerRegistered](t.Context(), f.reg, rec)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return e
}

var ada = customerRegistered{CustomerID: "c-1", Email: "ada@example.com", Address: &address{Street: "12 Crescent Rd", City: "London"}, Age: 36, Plan: "gold"}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rec := f.encode(t, ada)
	for _, clear := range []string{"ada@example.com", "Crescent", "London", `"age":36`} {
		if bytes.Contains(rec.Data, []byte(clear)) {
			t.Errorf("stored payload %s holds %q in the clear", rec.Data, clear)
		}
	}
	var stored map[string]any
	if err := json.Unmarshal(rec.Data, &stored); err != nil {
		t.Fatal(err)
	}
	if stored["plan"] != "gold" || stored["customer_id"] != "c-1" {
		t.Errorf("fields that are not personal changed: %s", rec.Data)
	}
	if s, _ := stored["email"].(string); !strings.HasPrefix(s, "enc:v1:") {
		t.Errorf("email is stored as %v, want a sealed value", stored["email"])
	}
	got := f.decode(t, rec)
	if got.Email != ada.Email || *got.Address != *ada.Address || got.Age != 36 || got.Plan != "gold" || got.IsRedacted() {
		t.Errorf("decoded %+v, want %+v", got, ada)
	}
	// Zero and absent personal values need no key.
	rec = f.encode(t, customerRegistered{CustomerID: "c-1", Plan: "free"})
	if got := f.decode(t, rec); got.Plan != "free" || got.Address != nil {
		t.Errorf("decoded %+v", got)
	}
}

func TestForgetRedacts(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rec := f.encode(t, ada)
	other := f.encode(t, customerRegistered{CustomerID: "c-2", Email: "bob@example.com"})
	f.decode(t, rec) // caches the key
	if err := f.shredder.Forget(t.Context(), "c-1"); err != nil {
		t.Fatal(err)
	}
	got := f.decode(t, rec)
	want := customerRegistered{CustomerID: "c-1", Plan: "gold"}
	got.Redactions = eventstore.Redactions{}
	if got != want {
		t.Errorf("after forget decoded %+v, want %+v", got, want)
	}
	if r := f.decode(t, rec).Redacted(); !slices.Equal(r, []string{"address", "age", "email"}) {
		t.Errorf("Redacted() = %v, want [address age email]", r)
	}
	if r := eventstore.RedactedFields(f.decode(t, rec)); len(r) != 3 {
		t.Errorf("RedactedFields = %v", r)
	}
	if got := f.decode(t, other); got.Email != "bob@example.com" || got.IsRedacted() {
		t.Errorf("another subject's event: %+v", got)
	}
	// Nothing personal is written for a forgotten subject again.
	if _, err := f.reg.EncodeContext(t.Context(), ada); !errors.Is(err, ErrSubjectForgotten) {
		t.Errorf("encode for a forgotten subject = %v, want ErrSubjectForgotten", err)
	}
	if err := f.shredder.Forget(t.Context(), "c-1"); err != nil {
		t.Errorf("second forget = %v, want nil", err)
	}
	var se *SubjectError
	if err := f.shredder.Forget(t.Context(), "nobody"); !errors.Is(err, ErrUnknownSubject) || !errors.As(err, &se) || se.Subject != "nobody" {
		t.Errorf("forget unknown = %v, want a *SubjectError matching ErrUnknownSubject", err)
	}
	if err := f.shredder.Forget(t.Context(), ""); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("forget empty = %v, want ErrInvalidInput", err)
	}
}

func TestRotate(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	old := f.encode(t, ada)
	k, err := f.shredder.Rotate(t.Context(), "c-1")
	if err != nil {
		t.Fatal(err)
	}
	if k.Version != 2 || k.Wrapped != nil {
		t.Errorf("Rotate returned %+v, want version 2 without wrapped bytes", k)
	}
	newer := f.encode(t, ada)
	keyOf := func(rec eventstore.Record) string {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(rec.Data, &raw); err != nil {
			t.Fatal(err)
		}
		id, _, err := parseSealed(raw["email"])
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	if keyOf(newer) != k.ID || keyOf(old) == k.ID {
		t.Errorf("after rotation new events use key %s, old %s; want new = %s", keyOf(newer), keyOf(old), k.ID)
	}
	if f.decode(t, old).Email != ada.Email || f.decode(t, newer).Email != ada.Email {
		t.Error("old or new version does not decode after rotation")
	}
	if err := f.shredder.Forget(t.Context(), "c-1"); err != nil {
		t.Fatal(err)
	}
	if !f.decode(t, old).IsRedacted() || !f.decode(t, newer).IsRedacted() {
		t.Error("a version survived the forget")
	}
	if _, err := f.shredder.Rotate(t.Context(), "c-1"); !errors.Is(err, ErrSubjectForgotten) {
		t.Errorf("rotate forgotten = %v", err)
	}
	if _, err := f.shredder.Rotate(t.Context(), "nobody"); !errors.Is(err, ErrUnknownSubject) {
		t.Errorf("rotate unknown = %v", err)
	}
}

// A forgotten key is never served from the cache of the Shredder that
// forgot it, and another Shredder drops it within its TTL.
func TestCacheForget(t *testing.T) {
	t.Parallel()
	keys := newMapKeys()
	a := setupWith(t, keys, nil)
	b := setupWith(t, keys, &Config{CacheTTL: time.Minute})
	now := time.Now()
	var clockMu sync.Mutex
	b.shredder.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	advance := func(d time.Duration) { clockMu.Lock(); now = now.Add(d); clockMu.Unlock() }

	rec := a.encode(t, ada)
	a.decode(t, rec)
	b.decode(t, rec)
	readsA, readsB := keys.readCount(), keys.readCount()
	a.decode(t, rec)
	b.decode(t, rec)
	if keys.readCount() != readsA {
		t.Fatalf("cached keys were read again (%d reads, then %d)", readsB, keys.readCount())
	}
	if err := a.shredder.Forget(t.Context(), "c-1"); err != nil {
		t.Fatal(err)
	}
	if !a.decode(t, rec).IsRedacted() {
		t.Fatal("the forgetting shredder served the forgotten key from its cache")
	}
	// Within its TTL, b still holds the key: the documented bound.
	if b.decode(t, rec).IsRedacted() {
		t.Fatal("b dropped the key before its TTL: this test's clock is wrong")
	}
	advance(time.Minute)
	if got := b.decode(t, rec); !got.IsRedacted() || got.Email != "" {
		t.Fatalf("b served a forgotten key after its TTL: %+v", got)
	}
}

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	f := setup(t, &Config{CacheSize: 5})
	var recs []eventstore.Record
	for i := range 20 {
		e := ada
		e.CustomerID = "c-" + string(rune('a'+i))
		recs = append(recs, f.encode(t, e))
	}
	for _, rec := range recs {
		if got := f.decode(t, rec); got.Email != ada.Email {
			t.Fatalf("decoded %+v", got)
		}
		if n := f.shredder.cachedKeys(); n > 5 {
			t.Fatalf("cache holds %d entries, limit 5", n)
		}
	}
	// Disabled cache: every open reads the store.
	g := setup(t, &Config{CacheSize: -1})
	rec := g.encode(t, ada)
	before := g.keys.readCount()
	g.decode(t, rec)
	g.decode(t, rec)
	if g.keys.readCount() != before+2 || g.shredder.cachedKeys() != 0 {
		t.Errorf("disabled cache: %d reads for 2 decodes, %d cached", g.keys.readCount()-before, g.shredder.cachedKeys())
	}
}

func TestCorruptSealedValues(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rec := f.encode(t, ada)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec.Data, &raw); err != nil {
		t.Fatal(err)
	}
	var email string
	_ = json.Unmarshal(raw["email"], &email)
	flip := []byte(email)
	flip[len(flip)-3] ^= 'A' ^ 'B'
	if flip[len(flip)-3] == email[len(email)-3] {
		flip[len(flip)-3] = 'Q'
	}
	cases := map[string]map[string]json.RawMessage{
		"flipped byte":      {"email": mustJSON(string(flip))},
		"moved to a field":  {"email": raw["age"]},
		"unknown envelope":  {"email": mustJSON("enc:v9:whatever")},
		"bad key id":        {"email": mustJSON("enc:v1:XYZ:AAAA")},
		"bad base64":        {"email": mustJSON("enc:v1:" + strings.Repeat("a", 32) + ":!!!")},
		"truncated":         {"email": mustJSON(email[:len(email)-30])},
		"too short to open": {"email": mustJSON(email[:len("enc:v1:")+32+1+4])},
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := map[string]json.RawMessage{}
			for k, v := range raw {
				m[k] = v
			}
			for k, v := range change {
				m[k] = v
			}
			bad := rec
			bad.Data, _ = json.Marshal(m)
			_, err := f.reg.DecodeContext(t.Context(), bad)
			var de *eventstore.DecodeError
			if !errors.Is(err, eventstore.ErrCorruptSealedValue) || !errors.As(err, &de) {
				t.Errorf("decode = %v, want a *DecodeError matching ErrCorruptSealedValue", err)
			}
		})
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// A key store out of reach is an error worth a retry, not a corrupt event.
func TestKeyStoreFailure(t *testing.T) {
	t.Parallel()
	f := setup(t, &Config{CacheSize: -1})
	rec := f.encode(t, ada)
	f.keys.mu.Lock()
	f.keys.fail = errors.New("connection refused")
	f.keys.mu.Unlock()
	_, err := f.reg.DecodeContext(t.Context(), rec)
	if err == nil || errors.Is(err, eventstore.ErrDecode) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("decode with the key store down = %v, want its error, not ErrDecode", err)
	}
	if _, err := f.reg.EncodeContext(t.Context(), customerRegistered{CustomerID: "new", Email: "x@y"}); err == nil {
		t.Error("encode with the key store down succeeded")
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := New(nil, &Config{KeyEncryptionKey: testKEK}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("nil key store: %v", err)
	}
	if _, err := New(newMapKeys(), nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("nil config: %v", err)
	}
	if _, err := New(newMapKeys(), &Config{KeyEncryptionKey: testKEK, CacheTTL: -1}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("negative TTL: %v", err)
	}
	if _, err := NewAESKeyEncryptionKey(make([]byte, 16)); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("16-byte master key: %v", err)
	}
}

// Keys wrapped by one master key do not open with another.
func TestWrongMasterKey(t *testing.T) {
	t.Parallel()
	keys := newMapKeys()
	f := setupWith(t, keys, nil)
	rec := f.encode(t, ada)
	other, _ := NewAESKeyEncryptionKey(bytes.Repeat([]byte{8}, 32))
	s, err := New(keys, &Config{KeyEncryptionKey: other})
	if err != nil {
		t.Fatal(err)
	}
	reg := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: s})
	eventstore.MustRegister[customerRegistered](reg, "CustomerRegistered")
	if _, err := reg.DecodeContext(t.Context(), rec); err == nil || !strings.Contains(err.Error(), "unwrap") {
		t.Errorf("decode with another master key = %v, want an unwrap error", err)
	}
}

type userV1 struct {
	ID   string `json:"id" chronicle:"subject"`
	Mail string `json:"mail" chronicle:"personal"`
}

type userV2 struct {
	eventstore.Redactions
	ID    string `json:"id" chronicle:"subject"`
	Email string `json:"email" chronicle:"personal"`
}

// Sealed fields are opened before upcasting: upcasters see plain values,
// under the names they were stored with.
func TestUpcastSealed(t *testing.T) {
	t.Parallel()
	keys := newMapKeys()
	f := setupWith(t, keys, nil)
	old := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: f.shredder})
	eventstore.MustRegister[userV1](old, "User")
	ev, err := old.EncodeContext(t.Context(), userV1{ID: "u1", Mail: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	cur := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: f.shredder})
	eventstore.MustRegister[userV2](cur, "User", eventstore.Upcast(1, func(u userV1) (userV2, error) {
		return userV2{ID: u.ID, Email: u.Mail}, nil
	}))
	rec := eventstore.Record{StreamID: "user-u1", StreamVersion: 1, Type: "User", SchemaVersion: 1, Data: ev.Data}
	got, err := eventstore.DecodeContext[userV2](t.Context(), cur, rec)
	if err != nil || got.Email != "ada@example.com" {
		t.Fatalf("upcast sealed: %+v, %v", got, err)
	}
	if err := f.shredder.Forget(t.Context(), "u1"); err != nil {
		t.Fatal(err)
	}
	got, err = eventstore.DecodeContext[userV2](t.Context(), cur, rec)
	if err != nil || got.Email != "" || got.ID != "u1" || !slices.Equal(got.Redacted(), []string{"mail"}) {
		t.Fatalf("upcast after forget: %+v (redacted %v), %v", got, got.Redacted(), err)
	}
}

// Encoding an event again gives the same bytes, so that a retried append
// (which encodes again) is an idempotent no-op, not a duplicate event.
func TestSealDeterministic(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	a, b := f.encode(t, ada), f.encode(t, ada)
	if !bytes.Equal(a.Data, b.Data) {
		t.Errorf("two encodings differ:\n%s\n%s", a.Data, b.Data)
	}
	other := ada
	other.Email = "ada@example.org"
	if c := f.encode(t, other); bytes.Equal(a.Data, c.Data) {
		t.Error("different values sealed alike")
	}
}
