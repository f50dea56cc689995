package shred

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Sentinel errors; the typed errors below match them with [errors.Is].
var (
	// ErrUnknownSubject: no key was ever created for the subject. The
	// error is a [*SubjectError].
	ErrUnknownSubject = errors.New("unknown subject")
	// ErrSubjectForgotten: the subject was forgotten; its keys are gone
	// and no new key is created for it. The error is a [*SubjectError].
	ErrSubjectForgotten = errors.New("subject forgotten")
	// ErrKeyNotFound: no key has the ID (it never existed, or its subject
	// was forgotten).
	ErrKeyNotFound = errors.New("key not found")
	// ErrKeyExists: the subject already has a key of that version (another
	// process created or rotated it first).
	ErrKeyExists = errors.New("key version exists")
)

// SubjectError reports a subject that is unknown or forgotten.
type SubjectError struct {
	// Subject is the data subject.
	Subject string
	// Err is [ErrUnknownSubject] or [ErrSubjectForgotten].
	Err error
}

func (e *SubjectError) Error() string {
	if e.Err == ErrSubjectForgotten {
		return "subject " + strconv.Quote(e.Subject) + " is forgotten"
	}
	return e.Err.Error() + " " + strconv.Quote(e.Subject)
}

// Unwrap returns Err.
func (e *SubjectError) Unwrap() error { return e.Err }

// MaxSubjectLength is the longest subject ID accepted, in bytes.
const MaxSubjectLength = 256

// ValidateSubject checks a subject ID: non-empty, at most
// [MaxSubjectLength] bytes of valid UTF-8 without NUL. It fails with an
// error matching [eventstore.ErrInvalidInput].
func ValidateSubject(subject string) error {
	invalid := func(reason string) error { return &eventstore.ValidationError{Field: "subject", Reason: reason} }
	switch {
	case subject == "":
		return invalid("must not be empty")
	case len(subject) > MaxSubjectLength:
		return invalid(fmt.Sprintf("is %d bytes long, limit is %d", len(subject), MaxSubjectLength))
	case !utf8.ValidString(subject):
		return invalid("is not valid UTF-8")
	}
	for i := range len(subject) {
		if subject[i] == 0 {
			return invalid("contains a NUL byte")
		}
	}
	return nil
}

// Key is a subject's data key as a [KeyStore] keeps it: wrapped (encrypted)
// by the application's [KeyEncryptionKey], never in the clear.
type Key struct {
	// ID identifies the key; sealed values name it. It is 32 lowercase
	// hexadecimal digits (128 random bits), so it reveals nothing of the
	// subject.
	ID string
	// Subject is the data subject the key belongs to.
	Subject string
	// Version is 1 for the subject's first key, +1 for each rotation. New
	// values are sealed with the highest version.
	Version int
	// Wrapped is the data key encrypted by the key-encryption key.
	Wrapped []byte
	// CreatedAt is when the key was stored; the key store sets it.
	CreatedAt time.Time
}

// KeyStore keeps the wrapped data keys of subjects. Package memory and
// package postgres implement it; shredtest is the conformance suite both
// pass. Implementations are safe for concurrent use.
//
// Forgetting a subject is final: its keys are deleted and the subject is
// remembered as forgotten (its ID alone stays, as a tombstone), so that no
// new key is created for it afterwards, even by a process that raced the
// forget.
type KeyStore interface {
	// CreateKey stores key and returns it with CreatedAt set. It fails
	// with an error matching [ErrKeyExists] when the subject already has a
	// key of that version, and with a [*SubjectError] matching
	// [ErrSubjectForgotten] when the subject was forgotten.
	CreateKey(ctx context.Context, key Key) (Key, error)
	// CurrentKey returns the subject's key of the highest version. It
	// fails with a [*SubjectError] matching [ErrUnknownSubject] or
	// [ErrSubjectForgotten].
	CurrentKey(ctx context.Context, subject string) (Key, error)
	// Key returns the key with the given ID, of any version. It fails with
	// an error matching [ErrKeyNotFound] when there is none.
	Key(ctx context.Context, id string) (Key, error)
	// Forget deletes every key of subject and marks it forgotten.
	// Forgetting a forgotten subject again succeeds (a retried erasure is
	// safe); a subject that never had a key fails with a [*SubjectError]
	// matching [ErrUnknownSubject].
	Forget(ctx context.Context, subject string) error
}

// KeyEncryptionKey wraps data keys before they reach a [KeyStore] and
// unwraps them when they are read back. [NewAESKeyEncryptionKey] is the
// local implementation; a KMS (AWS KMS, GCP KMS, Vault transit) plugs in
// by implementing these two calls. associated binds a wrapped key to its
// ID, subject and version: unwrapping with other associated data fails.
type KeyEncryptionKey interface {
	WrapKey(ctx context.Context, key, associated []byte) ([]byte, error)
	UnwrapKey(ctx context.Context, wrapped, associated []byte) ([]byte, error)
}

// AESKeyEncryptionKey is a [KeyEncryptionKey] holding a 256-bit master key
// in memory: it wraps with AES-256-GCM (a random 96-bit nonce, stored in
// front of the ciphertext).
type AESKeyEncryptionKey struct {
	aead cipher.AEAD
}

var _ KeyEncryptionKey = (*AESKeyEncryptionKey)(nil)

// NewAESKeyEncryptionKey returns a key-encryption key for the 32-byte
// master key. Keep the master key out of the database (a secret manager,
// an environment variable): whoever holds both can read every subject's
// data. A master key of another length fails with an error matching
// [eventstore.ErrInvalidInput].
func NewAESKeyEncryptionKey(master []byte) (*AESKeyEncryptionKey, error) {
	if len(master) != 32 {
		return nil, &eventstore.ValidationError{Field: "master key", Reason: fmt.Sprintf("is %d bytes, want 32 (AES-256)", len(master))}
	}
	aead, err := newAEAD(master)
	if err != nil {
		return nil, err
	}
	return &AESKeyEncryptionKey{aead: aead}, nil
}

// WrapKey implements [KeyEncryptionKey].
func (k *AESKeyEncryptionKey) WrapKey(_ context.Context, key, associated []byte) ([]byte, error) {
	return seal(k.aead, key, associated), nil
}

// UnwrapKey implements [KeyEncryptionKey].
func (k *AESKeyEncryptionKey) UnwrapKey(_ context.Context, wrapped, associated []byte) ([]byte, error) {
	plain, err := open(k.aead, wrapped, associated)
	if err != nil {
		return nil, errors.New("unwrap key: authentication failed (another master key, or an altered row)")
	}
	return plain, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal returns nonce || AES-GCM(plain).
func seal(aead cipher.AEAD, plain, associated []byte) []byte {
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic("shred: crypto/rand failed: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	return aead.Seal(out, out, plain, associated)
}

func open(aead cipher.AEAD, sealed, associated []byte) ([]byte, error) {
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("too short")
	}
	n := aead.NonceSize()
	return aead.Open(nil, sealed[:n], sealed[n:], associated)
}
