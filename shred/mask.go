package shred

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Texts that [Masker] puts in place of sealed values.
const (
	// MaskEncrypted replaces a sealed value whose key exists.
	MaskEncrypted = "[encrypted]"
	// MaskRedacted replaces a sealed value whose key is gone: its subject
	// was forgotten.
	MaskRedacted = "[redacted]"
	// MaskCorrupt replaces a value that looks sealed but is malformed.
	MaskCorrupt = "[corrupt]"
)

// Masker prepares stored payloads for display by tools that hold no
// key-encryption key (the chronicle CLI, the console): it replaces each
// sealed top-level value by [MaskEncrypted] or [MaskRedacted], depending on
// whether its key still exists. It never decrypts anything. It remembers
// the keys it looked up, so use one per command or page; it is not safe
// for concurrent use.
type Masker struct {
	keys  KeyStore
	known map[string]bool
}

// NewMasker returns a Masker looking keys up in keys. With a nil keys
// (no key table), every sealed value shows as [MaskEncrypted].
func NewMasker(keys KeyStore) *Masker {
	return &Masker{keys: keys, known: map[string]bool{}}
}

var sealedMark = []byte(`"` + eventstore.SealedPrefix)

// Mask returns data with its sealed top-level values replaced. A payload
// without sealed values, or that is not a JSON object, is returned as is.
func (m *Masker) Mask(ctx context.Context, data []byte) ([]byte, error) {
	if !bytes.Contains(data, sealedMark) {
		return data, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return data, nil
	}
	changed := false
	for k, v := range obj {
		if !bytes.HasPrefix(v, sealedMark) {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			continue
		}
		text := MaskEncrypted
		switch keyID, _, err := parseEnvelope(s); {
		case err != nil:
			text = MaskCorrupt
		case m.keys != nil:
			exists, ok := m.known[keyID]
			if !ok {
				_, err := m.keys.Key(ctx, keyID)
				switch {
				case errors.Is(err, ErrKeyNotFound):
				case err != nil:
					return nil, err
				default:
					exists = true
				}
				m.known[keyID] = exists
			}
			if !exists {
				text = MaskRedacted
			}
		}
		obj[k], _ = json.Marshal(text)
		changed = true
	}
	if !changed {
		return data, nil
	}
	return json.Marshal(obj)
}
