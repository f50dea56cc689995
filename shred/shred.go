package shred

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Config configures a [Shredder].
type Config struct {
	// KeyEncryptionKey wraps the data keys before they are stored and
	// unwraps them when read. Required.
	KeyEncryptionKey KeyEncryptionKey
	// CacheSize bounds the number of unwrapped keys held in memory (each
	// entry takes about 1 KiB: the key, its AES-GCM state and bookkeeping);
	// the least recently used entry is evicted first. A negative value
	// disables the cache. Defaults to 4096.
	CacheSize int
	// CacheTTL is how long a cached key is used before it is read from the
	// key store again. It bounds how long another process that forgot or
	// rotated a subject can go unnoticed here: a key forgotten through
	// this Shredder leaves its cache at once, but one forgotten by another
	// process may still open (and seal) values here for up to CacheTTL.
	// Defaults to 1 minute.
	CacheTTL time.Duration
}

const (
	defaultCacheSize = 4096
	defaultCacheTTL  = time.Minute
)

// Shredder seals and opens personal fields with per-subject data keys kept
// in a [KeyStore]; it is the [eventstore.FieldCipher] to set in
// [eventstore.RegistryConfig.Cipher]. Forget a subject with
// [Shredder.Forget]: its sealed values then decode as redacted. A Shredder
// is safe for concurrent use.
type Shredder struct {
	keys  KeyStore
	kek   KeyEncryptionKey
	cache *cache
	now   func() time.Time
}

var _ eventstore.FieldCipher = (*Shredder)(nil)

// New returns a Shredder keeping its keys in keys. cfg is required for its
// KeyEncryptionKey; a missing one, a nil keys or a negative CacheTTL fail
// with an error matching [eventstore.ErrInvalidInput].
func New(keys KeyStore, cfg *Config) (*Shredder, error) {
	invalid := func(field, reason string) error { return &eventstore.ValidationError{Field: field, Reason: reason} }
	switch {
	case keys == nil:
		return nil, invalid("key store", "must not be nil")
	case cfg == nil || cfg.KeyEncryptionKey == nil:
		return nil, invalid("Config.KeyEncryptionKey", "is required (see NewAESKeyEncryptionKey)")
	case cfg.CacheTTL < 0:
		return nil, invalid("Config.CacheTTL", "must not be negative")
	}
	size := cmp.Or(cfg.CacheSize, defaultCacheSize)
	return &Shredder{
		keys:  keys,
		kek:   cfg.KeyEncryptionKey,
		cache: newCache(size, cmp.Or(cfg.CacheTTL, defaultCacheTTL)),
		now:   time.Now,
	}, nil
}

// envelopeVersion is the format written after [eventstore.SealedPrefix]:
// "enc:v1:<key id>:<base64url(nonce || AES-256-GCM ciphertext)>".
const envelopeVersion = "v1"

// fieldAD is the associated data sealing a field: a sealed value cannot be
// moved to another field or presented under another key ID.
func fieldAD(keyID, field string) []byte {
	return []byte("chronicle/shred/field/v1\x00" + keyID + "\x00" + field)
}

func keyAD(k Key) []byte {
	return []byte("chronicle/shred/key/v1\x00" + k.ID + "\x00" + k.Subject + "\x00" + strconv.Itoa(k.Version))
}

// Seal implements [eventstore.FieldCipher]: it seals each field with the
// current key of subject, creating the subject's first key if it has none.
// A forgotten subject fails with a [*SubjectError] matching
// [ErrSubjectForgotten]: nothing personal is written for it again.
func (s *Shredder) Seal(ctx context.Context, subject string, fields []eventstore.PersonalField) error {
	if err := ValidateSubject(subject); err != nil {
		return err
	}
	e, err := s.currentKey(ctx, subject)
	if err != nil {
		return err
	}
	for i := range fields {
		f := &fields[i]
		sealed := sealField(e, f.Value, fieldAD(e.key.ID, f.Name))
		v, err := json.Marshal(eventstore.SealedPrefix + envelopeVersion + ":" + e.key.ID + ":" + base64.RawURLEncoding.EncodeToString(sealed))
		if err != nil {
			return err
		}
		f.Value = v
	}
	return nil
}

// Open implements [eventstore.FieldCipher].
func (s *Shredder) Open(ctx context.Context, fields []eventstore.PersonalField) error {
	var last *cacheEntry // the fields of an event usually share one key
	for i := range fields {
		f := &fields[i]
		keyID, sealed, err := parseSealed(f.Value)
		if err != nil {
			return fmt.Errorf("field %q: %w", f.Name, err)
		}
		e := last
		if e == nil || e.key.ID != keyID {
			if e, err = s.keyByID(ctx, keyID); err != nil {
				return err
			}
			last = e
		}
		if e.aead == nil {
			f.Value, f.Redacted = nil, true
			continue
		}
		plain, err := open(e.aead, sealed, fieldAD(keyID, f.Name))
		if err != nil {
			return fmt.Errorf("field %q: authentication failed: %w", f.Name, eventstore.ErrCorruptSealedValue)
		}
		f.Value = plain
	}
	return nil
}

// parseSealed splits a sealed JSON value into its key ID and sealed bytes.
func parseSealed(v json.RawMessage) (keyID string, sealed []byte, err error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", nil, fmt.Errorf("not a JSON string: %w", eventstore.ErrCorruptSealedValue)
	}
	return parseEnvelope(s)
}

func parseEnvelope(s string) (keyID string, sealed []byte, err error) {
	rest, ok := strings.CutPrefix(s, eventstore.SealedPrefix+envelopeVersion+":")
	if !ok {
		return "", nil, fmt.Errorf("unknown envelope (want %s%s:): %w", eventstore.SealedPrefix, envelopeVersion, eventstore.ErrCorruptSealedValue)
	}
	keyID, b64, ok := strings.Cut(rest, ":")
	if !ok || !validKeyID(keyID) {
		return "", nil, fmt.Errorf("malformed key id: %w", eventstore.ErrCorruptSealedValue)
	}
	sealed, err = base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return "", nil, fmt.Errorf("malformed ciphertext: %w", eventstore.ErrCorruptSealedValue)
	}
	return keyID, sealed, nil
}

func validKeyID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := range len(id) {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func newKeyID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// currentKey returns the key that seals new values of subject.
func (s *Shredder) currentKey(ctx context.Context, subject string) (*cacheEntry, error) {
	ck := "s\x00" + subject
	e, gen, ok := s.cache.get(ck, s.now())
	if ok {
		return e, nil
	}
	for attempt := 0; ; attempt++ {
		k, err := s.keys.CurrentKey(ctx, subject)
		if errors.Is(err, ErrUnknownSubject) {
			k, err = s.createKey(ctx, subject, 1)
			if errors.Is(err, ErrKeyExists) && attempt < 3 {
				continue // another process created it first: use theirs
			}
		}
		if err != nil {
			return nil, err
		}
		e, err := s.unwrap(ctx, k)
		if err != nil {
			return nil, err
		}
		e.k = ck
		s.cache.put(e, gen, s.now())
		s.cache.put(&cacheEntry{k: "k\x00" + k.ID, key: e.key, aead: e.aead, nonceKey: e.nonceKey}, gen, s.now())
		return e, nil
	}
}

// keyByID returns the entry of the key with the given ID; its aead is nil
// when the key does not exist.
func (s *Shredder) keyByID(ctx context.Context, id string) (*cacheEntry, error) {
	ck := "k\x00" + id
	e, gen, ok := s.cache.get(ck, s.now())
	if ok {
		return e, nil
	}
	k, err := s.keys.Key(ctx, id)
	switch {
	case errors.Is(err, ErrKeyNotFound):
		e = &cacheEntry{k: ck, key: Key{ID: id}}
	case err != nil:
		return nil, fmt.Errorf("read key %s: %w", id, err)
	default:
		if e, err = s.unwrap(ctx, k); err != nil {
			return nil, err
		}
		e.k = ck
	}
	s.cache.put(e, gen, s.now())
	return e, nil
}

func (s *Shredder) unwrap(ctx context.Context, k Key) (*cacheEntry, error) {
	dek, err := s.kek.UnwrapKey(ctx, k.Wrapped, keyAD(k))
	if err != nil {
		return nil, fmt.Errorf("key %s of subject %q: %w", k.ID, k.Subject, err)
	}
	if len(dek) != 32 {
		return nil, fmt.Errorf("key %s of subject %q: unwrapped key is %d bytes, want 32", k.ID, k.Subject, len(dek))
	}
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, dek)
	mac.Write([]byte("chronicle/shred/nonce/v1"))
	return &cacheEntry{key: k, aead: aead, nonceKey: mac.Sum(nil)}, nil
}

// sealField seals plain with a synthetic nonce: the first 96 bits of
// HMAC-SHA-256, under a key derived from the data key, of the associated
// data and the plaintext (the SIV construction). Sealing the same value of
// the same field with the same key therefore gives the same bytes, so that
// a retried append, which encodes its events again, stores exactly what
// the first attempt did and stays an idempotent no-op. The price: equal
// values of one field of one subject, under one key version, have equal
// ciphertexts. Distinct values get distinct nonces (a collision needs
// about 2^48 values under one key).
func sealField(e *cacheEntry, plain, associated []byte) []byte {
	mac := hmac.New(sha256.New, e.nonceKey)
	mac.Write(associated)
	mac.Write([]byte{0})
	mac.Write(plain)
	nonce := mac.Sum(nil)[:e.aead.NonceSize()]
	out := make([]byte, len(nonce), len(nonce)+len(plain)+e.aead.Overhead())
	copy(out, nonce)
	return e.aead.Seal(out, nonce, plain, associated)
}

func (s *Shredder) createKey(ctx context.Context, subject string, version int) (Key, error) {
	dek := make([]byte, 32)
	_, _ = rand.Read(dek)
	k := Key{ID: newKeyID(), Subject: subject, Version: version}
	wrapped, err := s.kek.WrapKey(ctx, dek, keyAD(k))
	if err != nil {
		return Key{}, fmt.Errorf("wrap key of subject %q: %w", subject, err)
	}
	k.Wrapped = wrapped
	return s.keys.CreateKey(ctx, k)
}

// Forget deletes every key of subject, so that its sealed values decode
// as redacted from then on, everywhere, and marks the subject forgotten:
// sealing new values for it fails. Keys cached by this Shredder are
// dropped at once; other processes drop theirs within their CacheTTL.
// Forgetting a forgotten subject again succeeds; a subject that never had
// a key fails with a [*SubjectError] matching [ErrUnknownSubject].
func (s *Shredder) Forget(ctx context.Context, subject string) error {
	if err := ValidateSubject(subject); err != nil {
		return err
	}
	err := s.keys.Forget(ctx, subject)
	s.cache.forget(subject) // also after a failure: the outcome may be unknown
	return err
}

// Rotate creates a new key version for subject and returns it (without its
// wrapped bytes). Values sealed from then on use it; values sealed before
// still open with their own version, until the subject is forgotten.
// Stored events are never rewritten. Other processes switch to the new
// version within their CacheTTL. An unknown or forgotten subject fails
// with a [*SubjectError].
func (s *Shredder) Rotate(ctx context.Context, subject string) (Key, error) {
	if err := ValidateSubject(subject); err != nil {
		return Key{}, err
	}
	cur, err := s.keys.CurrentKey(ctx, subject)
	if err != nil {
		return Key{}, err
	}
	k, err := s.createKey(ctx, subject, cur.Version+1)
	if errors.Is(err, ErrKeyExists) { // a concurrent rotation did it
		k, err = s.keys.CurrentKey(ctx, subject)
	}
	s.cache.drop("s\x00" + subject)
	if err != nil {
		return Key{}, err
	}
	k.Wrapped = nil
	return k, nil
}

// cachedKeys returns the number of cache entries (for tests).
func (s *Shredder) cachedKeys() int { return s.cache.len() }
