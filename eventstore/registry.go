package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
)

// Codec encodes event payloads. [JSONCodec] is the default; a custom codec
// must still produce JSON, since stores keep payloads as JSON documents.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSONCodec encodes payloads with encoding/json.
type JSONCodec struct{}

// Marshal implements [Codec].
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements [Codec].
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// RegistryConfig configures a [Registry].
type RegistryConfig struct {
	// Codec encodes and decodes payloads. Defaults to [JSONCodec].
	Codec Codec
	// Cipher seals the personal fields of events on encode and opens them
	// on decode (see [FieldCipher] and package shred). Registering a type
	// with personal fields needs it to encode such events. Defaults to nil:
	// no encryption; sealed values read back are redacted.
	Cipher FieldCipher
}

// Registry maps event type names to Go types and back, encodes payloads,
// and upcasts old schema versions on decode. Register every event type at
// start-up with [Register]; a Registry is then safe for concurrent use.
type Registry struct {
	codec  Codec
	cipher FieldCipher

	mu     sync.RWMutex
	byName map[string]*eventType
	byType map[reflect.Type]*eventType
}

type eventType struct {
	name      string
	goType    reflect.Type
	version   int // current schema version: 1 + len(upcasters)
	upcasters []Upcaster
	personal  *personalSpec // chronicle struct tags; nil when none
	// decode decodes a payload of the current schema version (its sealed
	// fields opened, the redacted ones listed) into a value of goType,
	// boxed. [Register] builds it with generics, so that decoding needs no
	// reflection beyond the codec's own (and setting the redactions, when
	// there are some).
	decode func(c Codec, et *eventType, data []byte, redacted []string) (any, error)
	// typed is decode unboxed, a func(Codec, *eventType, []byte,
	// []string) (T, error), which [DecodeContext] calls directly when it
	// asks for this T.
	typed any
}

// typedDecoder returns the decoder of T that [Register] keeps in an
// eventType's typed field.
func typedDecoder[T any]() func(Codec, *eventType, []byte, []string) (T, error) {
	return func(c Codec, et *eventType, data []byte, redacted []string) (T, error) {
		var v T
		if err := c.Unmarshal(data, &v); err != nil {
			return v, err
		}
		if len(redacted) > 0 {
			setRedactions(et, reflect.ValueOf(&v), redacted)
		}
		return v, nil
	}
}

// NewRegistry returns an empty registry. A nil config means defaults.
func NewRegistry(cfg *RegistryConfig) *Registry {
	if cfg == nil {
		cfg = &RegistryConfig{}
	}
	codec, cipher := cfg.Codec, cfg.Cipher
	if codec == nil {
		codec = JSONCodec{}
	}
	// A nil pointer in a non-nil interface (a constructor's nil result
	// passed on unchecked) would panic at the first use: every use fails
	// with an error naming the field instead. A nil *Cipher must never
	// mean "no encryption": personal fields would be stored in the clear.
	if typedNil(codec) {
		codec = misconfigured{field: "RegistryConfig.Codec", typ: reflect.TypeOf(codec)}
	}
	if typedNil(cipher) {
		cipher = misconfigured{field: "RegistryConfig.Cipher", typ: reflect.TypeOf(cipher)}
	}
	return &Registry{codec: codec, cipher: cipher, byName: map[string]*eventType{}, byType: map[reflect.Type]*eventType{}}
}

// typedNil reports whether v is a nil pointer, map, slice, func or
// channel held in a non-nil interface.
func typedNil(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

// misconfigured stands for a typed-nil Codec or FieldCipher of a
// RegistryConfig: each call fails with a [*ValidationError] naming it.
type misconfigured struct {
	field string
	typ   reflect.Type
}

func (m misconfigured) err() error {
	return &ValidationError{Field: m.field, Reason: fmt.Sprintf("is a nil %s (was its constructor's error checked?)", m.typ)}
}

func (m misconfigured) Marshal(any) ([]byte, error)                         { return nil, m.err() }
func (m misconfigured) Unmarshal([]byte, any) error                         { return m.err() }
func (m misconfigured) Seal(context.Context, string, []PersonalField) error { return m.err() }
func (m misconfigured) Open(context.Context, []PersonalField) error         { return m.err() }

// Upcaster lifts a payload from one schema version to the next. Build one
// with [Upcast] (typed) or [UpcastData] (raw payload bytes) and pass it to
// [Register].
type Upcaster struct {
	from    int
	in, out reflect.Type // nil for raw upcasters
	fn      func(c Codec, data []byte) ([]byte, error)
}

// Upcast returns an upcaster from schema version fromVersion (decoded as
// From) to fromVersion+1 (To). Old Go types can stay in the code under new
// names (UserRegisteredV1) while the current type keeps the plain name.
func Upcast[From, To any](fromVersion int, fn func(From) (To, error)) Upcaster {
	return Upcaster{
		from: fromVersion,
		in:   reflect.TypeFor[From](),
		out:  reflect.TypeFor[To](),
		fn: func(c Codec, data []byte) ([]byte, error) {
			var old From
			if err := c.Unmarshal(data, &old); err != nil {
				return nil, err
			}
			next, err := fn(old)
			if err != nil {
				return nil, err
			}
			return c.Marshal(next)
		},
	}
}

// UpcastData returns an upcaster from schema version fromVersion to
// fromVersion+1 that rewrites the encoded payload directly.
func UpcastData(fromVersion int, fn func(data []byte) ([]byte, error)) Upcaster {
	return Upcaster{from: fromVersion, fn: func(_ Codec, data []byte) ([]byte, error) { return fn(data) }}
}

// Register registers the Go type T under name. The upcasters, if any, must
// form the chain 1→2, 2→3, ... in order; the current schema version is then
// len(upcasters)+1 and the last typed upcaster must produce T. Registering
// a name or a Go type twice, an interface or pointer type, or a broken
// chain fails with an error matching [ErrInvalidInput].
func Register[T any](r *Registry, name string, upcasters ...Upcaster) error {
	t := reflect.TypeFor[T]()
	if err := validateName("event type name", name, MaxTypeNameLength); err != nil {
		return err
	}
	if t.Kind() == reflect.Interface || t.Kind() == reflect.Pointer {
		return &ValidationError{Field: "event type " + name, Reason: fmt.Sprintf("register the value type, not %s", t)}
	}
	for i, u := range upcasters {
		if u.fn == nil {
			return &ValidationError{Field: fmt.Sprintf("event type %s upcaster[%d]", name, i), Reason: "is empty; build it with Upcast or UpcastData"}
		}
		if u.from != i+1 {
			return &ValidationError{Field: fmt.Sprintf("event type %s upcaster[%d]", name, i), Reason: fmt.Sprintf("upcasts from version %d, want %d (chain 1→2→3 in order)", u.from, i+1)}
		}
		if i > 0 && u.in != nil && upcasters[i-1].out != nil && u.in != upcasters[i-1].out {
			return &ValidationError{Field: fmt.Sprintf("event type %s upcaster[%d]", name, i), Reason: fmt.Sprintf("takes %s but the previous upcaster returns %s", u.in, upcasters[i-1].out)}
		}
	}
	if n := len(upcasters); n > 0 && upcasters[n-1].out != nil && upcasters[n-1].out != t {
		return &ValidationError{Field: fmt.Sprintf("event type %s upcaster[%d]", name, n-1), Reason: fmt.Sprintf("returns %s, want the registered type %s", upcasters[n-1].out, t)}
	}
	personal, err := parsePersonal(name, t)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.byName[name]; ok {
		return &ValidationError{Field: "event type " + name, Reason: fmt.Sprintf("already registered for %s", prev.goType)}
	}
	if prev, ok := r.byType[t]; ok {
		return &ValidationError{Field: "event type " + name, Reason: fmt.Sprintf("go type %s already registered as %q", t, prev.name)}
	}
	decode := typedDecoder[T]()
	et := &eventType{name: name, goType: t, version: len(upcasters) + 1, upcasters: slices.Clone(upcasters), personal: personal, typed: decode,
		decode: func(c Codec, et *eventType, data []byte, redacted []string) (any, error) {
			v, err := decode(c, et, data, redacted)
			if err != nil {
				return nil, err
			}
			return v, nil
		}}
	r.byName[name] = et
	r.byType[t] = et
	return nil
}

// MustRegister is like [Register] but panics on error. Use it in start-up
// code where a registration mistake is a programming error.
func MustRegister[T any](r *Registry, name string, upcasters ...Upcaster) {
	if err := Register[T](r, name, upcasters...); err != nil {
		panic("eventstore: " + err.Error())
	}
}

func (r *Registry) lookupValue(v any) (*eventType, reflect.Value, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		return nil, rv, &UnknownEventTypeError{Type: "<nil>"}
	}
	r.mu.RLock()
	et, ok := r.byType[rv.Type()]
	r.mu.RUnlock()
	if !ok {
		return nil, rv, &UnknownEventTypeError{Type: rv.Type().String()}
	}
	return et, rv, nil
}

// Name returns the registered name of v's type (v may be a pointer).
func (r *Registry) Name(v any) (string, error) {
	et, _, err := r.lookupValue(v)
	if err != nil {
		return "", err
	}
	return et.name, nil
}

// SchemaVersion returns the current schema version of the named type.
func (r *Registry) SchemaVersion(name string) (int, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	et, ok := r.byName[name]
	if !ok {
		return 0, false
	}
	return et.version, true
}

// Types returns the registered type names, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Encode turns a registered event value (or a pointer to one) into an
// [Event] with its type name, current schema version and encoded payload.
// The ID is left zero (the store or the repository fills it). An
// unregistered type fails with an [*UnknownEventTypeError]. It is
// [Registry.EncodeContext] without a context.
func (r *Registry) Encode(v any) (Event, error) {
	return r.EncodeContext(context.Background(), v)
}

// EncodeContext is [Registry.Encode] with a context: with a
// [RegistryConfig.Cipher], sealing personal fields may read or create the
// subject's key in a key store.
func (r *Registry) EncodeContext(ctx context.Context, v any) (Event, error) {
	et, rv, err := r.lookupValue(v)
	if err != nil {
		return Event{}, err
	}
	data, err := r.codec.Marshal(rv.Interface())
	if err != nil {
		return Event{}, fmt.Errorf("encode event %q: %w", et.name, err)
	}
	if data, err = r.sealPersonal(ctx, et, rv, data); err != nil {
		return Event{}, fmt.Errorf("encode event %q: %w", et.name, err)
	}
	return Event{Type: et.name, SchemaVersion: et.version, Data: data}, nil
}

// Decode decodes a stored record into a value of its registered Go type
// (not a pointer), upcasting older schema versions first. It fails with an
// [*UnknownEventTypeError] for an unregistered name and a [*DecodeError]
// for a corrupt payload or a schema version newer than the registered one.
//
// Sealed personal fields are opened first (see [FieldCipher]); a field
// whose key is gone decodes as its zero value and is listed in the
// event's embedded [Redactions]. Decode is [Registry.DecodeContext]
// without a context.
func (r *Registry) Decode(rec Record) (any, error) {
	return r.DecodeContext(context.Background(), rec)
}

// DecodeContext is [Registry.Decode] with a context: with a
// [RegistryConfig.Cipher], opening sealed fields may read keys from a key
// store. An error of the key store is returned as is (not as a
// [*DecodeError]): it is worth a retry.
//
// The payload is decoded by a decoder built for the Go type when it was
// registered: no reflection per event beyond the codec's own.
// [DecodeContext] (the generic function) also saves boxing the value.
func (r *Registry) DecodeContext(ctx context.Context, rec Record) (any, error) {
	et, data, redacted, err := r.current(ctx, rec)
	if err != nil {
		return nil, err
	}
	v, err := et.decode(r.codec, et, data, redacted)
	if err != nil {
		return nil, decodeError(rec, err)
	}
	return v, nil
}

// current looks up rec's event type and returns its payload with its
// sealed fields opened (and the redacted ones), upcast to the type's
// current schema version.
func (r *Registry) current(ctx context.Context, rec Record) (*eventType, []byte, []string, error) {
	r.mu.RLock()
	et, ok := r.byName[rec.Type]
	r.mu.RUnlock()
	if !ok {
		return nil, nil, nil, &UnknownEventTypeError{Type: rec.Type}
	}
	data := rec.Data
	version := max(rec.SchemaVersion, 1)
	if version > et.version {
		return nil, nil, nil, decodeError(rec, fmt.Errorf("schema version %d is newer than the registered version %d", version, et.version))
	}
	data, redacted, err := r.openPersonal(ctx, et, data)
	if err != nil {
		if errors.Is(err, ErrCorruptSealedValue) {
			return nil, nil, nil, decodeError(rec, err)
		}
		return nil, nil, nil, fmt.Errorf("decode event at version %d of stream %q: open personal fields: %w", rec.StreamVersion, rec.StreamID, err)
	}
	for ; version < et.version; version++ {
		up, err := et.upcasters[version-1].fn(r.codec, data)
		if err != nil {
			return nil, nil, nil, decodeError(rec, fmt.Errorf("upcast from version %d: %w", version, err))
		}
		data = up
	}
	return et, data, redacted, nil
}

// decodeError is the [*DecodeError] of rec for err.
func decodeError(rec Record, err error) error {
	return &DecodeError{StreamID: rec.StreamID, StreamVersion: rec.StreamVersion, Type: rec.Type, SchemaVersion: rec.SchemaVersion, EventID: rec.EventID, Err: err}
}

// Decode decodes rec with r and asserts the result is a T. It fails with an
// error matching [ErrDecode] when the record holds another type.
func Decode[T any](r *Registry, rec Record) (T, error) {
	return DecodeContext[T](context.Background(), r, rec)
}

// DecodeContext is [Decode] with a context, for registries with a
// [RegistryConfig.Cipher] (see [Registry.DecodeContext]).
//
// When T is the registered type of rec's event type, the payload is
// decoded straight into a T, without the boxing and type assertion of
// [Registry.DecodeContext].
func DecodeContext[T any](ctx context.Context, r *Registry, rec Record) (T, error) {
	var zero T
	et, data, redacted, err := r.current(ctx, rec)
	if err != nil {
		return zero, err
	}
	if decode, ok := et.typed.(func(Codec, *eventType, []byte, []string) (T, error)); ok {
		v, err := decode(r.codec, et, data, redacted)
		if err != nil {
			return zero, decodeError(rec, err)
		}
		return v, nil
	}
	// Another type (or an interface T): decode as registered, then assert.
	v, err := et.decode(r.codec, et, data, redacted)
	if err != nil {
		return zero, decodeError(rec, err)
	}
	t, ok := v.(T)
	if !ok {
		return zero, decodeError(rec, fmt.Errorf("holds %T, not %s", v, reflect.TypeFor[T]()))
	}
	return t, nil
}
