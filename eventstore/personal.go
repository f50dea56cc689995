package eventstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// SealedPrefix starts every sealed (encrypted) personal value: in a stored
// payload, a sealed field holds a JSON string beginning with it, such as
// "enc:v1:<key id>:<ciphertext>". When a [Registry] has a [FieldCipher]
// (or the event type has personal fields), a top-level string field that
// is not personal must not begin with it: [Registry.Encode] refuses such an
// event, since readers would take the value for a sealed one.
const SealedPrefix = "enc:"

// ErrCorruptSealedValue: a sealed personal value is malformed or fails
// authentication (it was altered, or sealed for another key or field).
// [Registry.Decode] reports it inside a [*DecodeError]. A value whose key
// is gone is not corrupt: it is redacted.
var ErrCorruptSealedValue = errors.New("corrupt sealed value")

// PersonalField is one top-level field of an event payload that a
// [FieldCipher] seals or opens.
type PersonalField struct {
	// Name is the field's JSON name, as stored.
	Name string
	// Value is the field's JSON value. Seal receives the plain value and
	// replaces it with the sealed one (a JSON string starting with
	// [SealedPrefix]); Open receives the sealed value and replaces it with
	// the plain one.
	Value json.RawMessage
	// Redacted is set by Open when the value's key is gone: the subject was
	// forgotten. The registry then decodes the field as its zero value.
	Redacted bool
}

// FieldCipher encrypts the personal fields of events on encode and decrypts
// them on decode; package shred implements it with per-subject keys.
// Set it in [RegistryConfig.Cipher].
type FieldCipher interface {
	// Seal encrypts each field's value with the current key of subject,
	// replacing it in place.
	Seal(ctx context.Context, subject string, fields []PersonalField) error
	// Open decrypts each field's sealed value in place, or marks the field
	// Redacted when its key no longer exists. A malformed or altered value
	// fails with an error matching [ErrCorruptSealedValue]; any other error
	// (a key store that cannot be reached) is returned as is and is worth a
	// retry.
	Open(ctx context.Context, fields []PersonalField) error
}

// Redactions, embedded in an event type, tells the application which of the
// event's personal fields were redacted when it was decoded: their keys
// were deleted because their subject was forgotten. Those fields hold their
// zero values; the rest of the event is intact. It adds nothing to the
// encoded payload and keeps the event type comparable.
//
//	type CustomerRegistered struct {
//		eventstore.Redactions
//		CustomerID string `json:"customer_id" chronicle:"subject"`
//		Email      string `json:"email" chronicle:"personal"`
//	}
type Redactions struct {
	fields string // JSON names joined by "\x00"
}

// Redacted returns the JSON names of the redacted fields, or nil when
// nothing was redacted.
func (r Redactions) Redacted() []string {
	if r.fields == "" {
		return nil
	}
	return strings.Split(r.fields, "\x00")
}

// IsRedacted reports whether any field was redacted.
func (r Redactions) IsRedacted() bool { return r.fields != "" }

var (
	redactionsType = reflect.TypeFor[Redactions]()
)

// personalSpec is what registration learnt from an event type's chronicle
// struct tags.
type personalSpec struct {
	personal   map[string]bool // JSON names of the personal fields
	subject    []int           // index of the subject field; nil if none
	redactions []int           // index of the embedded Redactions; nil if none
}

// parsePersonal reads the chronicle struct tags of t: `chronicle:"personal"`
// marks a field whose value is sealed with the subject's key;
// `chronicle:"subject"` marks the string field naming the data subject
// (both may be combined: `chronicle:"subject,personal"`). It returns nil
// when t has neither tags nor an embedded [Redactions].
func parsePersonal(name string, t reflect.Type) (*personalSpec, error) {
	if t.Kind() != reflect.Struct {
		return nil, nil
	}
	invalid := func(field, reason string) error {
		return &ValidationError{Field: "event type " + name + " field " + field, Reason: reason}
	}
	spec := &personalSpec{personal: map[string]bool{}}
	for _, f := range reflect.VisibleFields(t) {
		if f.Anonymous && f.Type == redactionsType && len(f.Index) == 1 {
			spec.redactions = f.Index
			continue
		}
		tag, ok := f.Tag.Lookup("chronicle")
		if !ok {
			if f.Anonymous {
				continue // its fields are visited (and checked) as promoted ones
			}
			if err := checkNestedTags(f.Type, map[reflect.Type]bool{}); err != nil {
				return nil, invalid(f.Name, err.Error())
			}
			continue
		}
		if !f.IsExported() {
			return nil, invalid(f.Name, "is unexported: encoding/json does not encode it")
		}
		jsonName, err := promotedJSONName(t, f)
		if err != nil {
			return nil, invalid(f.Name, err.Error())
		}
		for opt := range strings.SplitSeq(tag, ",") {
			switch opt {
			case "personal":
				if spec.personal[jsonName] {
					return nil, invalid(f.Name, fmt.Sprintf("json name %q is marked personal twice", jsonName))
				}
				spec.personal[jsonName] = true
			case "subject":
				if spec.subject != nil {
					return nil, invalid(f.Name, "a second subject field: an event has one data subject")
				}
				if f.Type.Kind() != reflect.String {
					return nil, invalid(f.Name, fmt.Sprintf("the subject field must be a string, not %s", f.Type))
				}
				spec.subject = f.Index
			default:
				return nil, invalid(f.Name, fmt.Sprintf("unknown chronicle tag option %q (want personal or subject)", opt))
			}
		}
	}
	if len(spec.personal) > 0 && spec.subject == nil {
		return nil, &ValidationError{Field: "event type " + name, Reason: `has personal fields but no subject: tag the string field naming the data subject chronicle:"subject"`}
	}
	if len(spec.personal) == 0 && spec.subject == nil && spec.redactions == nil {
		return nil, nil
	}
	return spec, nil
}

// promotedJSONName returns the JSON name of field f of t, refusing fields
// that encoding/json would not place at the top level of the object.
func promotedJSONName(t reflect.Type, f reflect.StructField) (string, error) {
	cur := t
	for i, idx := range f.Index {
		sf := cur.Field(idx)
		jsonTag := sf.Tag.Get("json")
		jsonName, _, _ := strings.Cut(jsonTag, ",")
		if i < len(f.Index)-1 { // an embedded struct on the way
			if jsonName != "" || sf.Type.Kind() == reflect.Pointer {
				return "", fmt.Errorf("is inside %s, which encoding/json does not flatten into the event: tag fields of the event itself", sf.Name)
			}
			cur = sf.Type
			continue
		}
		if jsonName == "-" && jsonTag == "-" {
			return "", errors.New(`has json:"-": it is never encoded`)
		}
		if jsonName == "" {
			jsonName = sf.Name
		}
		return jsonName, nil
	}
	return "", errors.New("has an empty index")
}

// checkNestedTags refuses chronicle tags inside nested types: only the top
// level of a payload is sealed, so such a tag would silently do nothing.
func checkNestedTags(t reflect.Type, seen map[reflect.Type]bool) error {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return nil
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		if _, ok := f.Tag.Lookup("chronicle"); ok && !f.Anonymous {
			return fmt.Errorf("holds %s, whose field %s has a chronicle tag: only the event's own fields can be personal; mark the whole field personal instead", t, f.Name)
		}
		if err := checkNestedTags(f.Type, seen); err != nil {
			return err
		}
	}
	return nil
}

var sealedMark = []byte(`"` + SealedPrefix)

// sealPersonal seals the personal fields of the encoded payload data of
// the value rv, and refuses plain top-level strings that look sealed.
func (r *Registry) sealPersonal(ctx context.Context, et *eventType, rv reflect.Value, data []byte) ([]byte, error) {
	hasPersonal := et.personal != nil && len(et.personal.personal) > 0
	if !hasPersonal && (r.cipher == nil || !bytes.Contains(data, sealedMark)) {
		return data, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		if !hasPersonal {
			return data, nil // not an object: nothing at the top level to mistake
		}
		return nil, fmt.Errorf("event type %q has personal fields but its payload is not a JSON object", et.name)
	}
	var fields []PersonalField
	for k, v := range obj {
		if hasPersonal && et.personal.personal[k] {
			if !bytes.Equal(v, []byte("null")) && !bytes.Equal(v, []byte(`""`)) { // emptiness is not personal
				fields = append(fields, PersonalField{Name: k, Value: v})
			}
			continue
		}
		if isSealed(v) {
			return nil, &ValidationError{Field: "event type " + et.name + " field " + k, Reason: fmt.Sprintf("a value that is not personal starts with the reserved prefix %q", SealedPrefix)}
		}
	}
	if len(fields) == 0 {
		return data, nil
	}
	subject := rv.FieldByIndex(et.personal.subject).String()
	if subject == "" {
		return nil, &ValidationError{Field: "event type " + et.name + " subject", Reason: "is empty but the event has personal data"}
	}
	if r.cipher == nil {
		return nil, &ValidationError{Field: "event type " + et.name, Reason: "has personal data but the registry has no FieldCipher: set RegistryConfig.Cipher (see package shred)"}
	}
	slices.SortFunc(fields, func(a, b PersonalField) int { return strings.Compare(a.Name, b.Name) })
	if err := r.cipher.Seal(ctx, subject, fields); err != nil {
		return nil, fmt.Errorf("seal personal fields: %w", err)
	}
	for _, f := range fields {
		if !isSealed(f.Value) { // never store a personal value in the clear
			return nil, fmt.Errorf("seal personal fields: cipher returned field %q unsealed", f.Name)
		}
		obj[f.Name] = f.Value
	}
	return json.Marshal(obj)
}

// isSealed reports whether the JSON value v is a string starting with
// [SealedPrefix].
func isSealed(v json.RawMessage) bool {
	if !bytes.HasPrefix(v, sealedMark) {
		return false
	}
	var s string
	return json.Unmarshal(v, &s) == nil && strings.HasPrefix(s, SealedPrefix)
}

// openPersonal opens the sealed top-level fields of a stored payload. It
// returns the payload with plain values, the redacted fields removed (so
// that they decode as zero values), and the names of the redacted fields.
func (r *Registry) openPersonal(ctx context.Context, et *eventType, data []byte) ([]byte, []string, error) {
	if r.cipher == nil && (et.personal == nil || len(et.personal.personal) == 0) {
		return data, nil, nil
	}
	if !bytes.Contains(data, sealedMark) {
		return data, nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return data, nil, nil // not an object: the codec reports what is wrong
	}
	var fields []PersonalField
	for k, v := range obj {
		if isSealed(v) {
			fields = append(fields, PersonalField{Name: k, Value: v})
		}
	}
	if len(fields) == 0 {
		return data, nil, nil
	}
	slices.SortFunc(fields, func(a, b PersonalField) int { return strings.Compare(a.Name, b.Name) })
	if r.cipher == nil {
		for i := range fields {
			fields[i].Redacted = true // no keys here: nothing can be read
		}
	} else if err := r.cipher.Open(ctx, fields); err != nil {
		return nil, nil, err
	}
	var redacted []string
	for _, f := range fields {
		if f.Redacted {
			delete(obj, f.Name)
			redacted = append(redacted, f.Name)
			continue
		}
		if !json.Valid(f.Value) {
			return nil, nil, fmt.Errorf("field %q: opened value is not JSON: %w", f.Name, ErrCorruptSealedValue)
		}
		obj[f.Name] = f.Value
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, nil, err
	}
	return out, redacted, nil
}

// setRedactions records the redacted fields in the embedded [Redactions]
// of the decoded value ptr points to, if its type embeds one.
func setRedactions(et *eventType, ptr reflect.Value, redacted []string) {
	if len(redacted) == 0 || et.personal == nil || et.personal.redactions == nil {
		return
	}
	ptr.Elem().FieldByIndex(et.personal.redactions).Set(reflect.ValueOf(Redactions{fields: strings.Join(redacted, "\x00")}))
}

// RedactedFields returns the JSON names of the fields of a decoded event
// that were redacted, when its type embeds [Redactions] (v may be a
// pointer); nil otherwise.
func RedactedFields(v any) []string {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return nil
	}
	f, ok := rv.Type().FieldByName("Redactions")
	if !ok || f.Type != redactionsType || !f.Anonymous || len(f.Index) != 1 {
		return nil
	}
	return rv.Field(f.Index[0]).Interface().(Redactions).Redacted()
}
