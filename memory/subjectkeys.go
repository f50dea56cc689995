package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/shred"
)

// SubjectKeyStore is an in-memory [shred.KeyStore]: the data keys of
// crypto-shredding for tests and single-process applications. Its keys
// live as long as the process, so events sealed with them cannot be read
// after a restart: use the PostgreSQL key store for anything durable. It
// is safe for concurrent use.
type SubjectKeyStore struct {
	mu        sync.Mutex
	byID      map[string]shred.Key
	bySubject map[string][]string // key IDs, by version
	forgotten map[string]bool
}

var _ shred.KeyStore = (*SubjectKeyStore)(nil)

// NewSubjectKeyStore returns an empty key store.
func NewSubjectKeyStore() *SubjectKeyStore {
	return &SubjectKeyStore{byID: map[string]shred.Key{}, bySubject: map[string][]string{}, forgotten: map[string]bool{}}
}

// CreateKey implements [shred.KeyStore].
func (s *SubjectKeyStore) CreateKey(ctx context.Context, key shred.Key) (shred.Key, error) {
	if err := ctx.Err(); err != nil {
		return shred.Key{}, err
	}
	if err := shred.ValidateSubject(key.Subject); err != nil {
		return shred.Key{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forgotten[key.Subject] {
		return shred.Key{}, &shred.SubjectError{Subject: key.Subject, Err: shred.ErrSubjectForgotten}
	}
	if _, ok := s.byID[key.ID]; ok {
		return shred.Key{}, fmt.Errorf("key id %s: %w", key.ID, shred.ErrKeyExists)
	}
	for _, id := range s.bySubject[key.Subject] {
		if s.byID[id].Version == key.Version {
			return shred.Key{}, fmt.Errorf("version %d of subject %q: %w", key.Version, key.Subject, shred.ErrKeyExists)
		}
	}
	key.Wrapped = slices.Clone(key.Wrapped)
	key.CreatedAt = time.Now().UTC()
	s.byID[key.ID] = key
	s.bySubject[key.Subject] = append(s.bySubject[key.Subject], key.ID)
	return key, nil
}

// CurrentKey implements [shred.KeyStore].
func (s *SubjectKeyStore) CurrentKey(ctx context.Context, subject string) (shred.Key, error) {
	if err := ctx.Err(); err != nil {
		return shred.Key{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forgotten[subject] {
		return shred.Key{}, &shred.SubjectError{Subject: subject, Err: shred.ErrSubjectForgotten}
	}
	var cur shred.Key
	for _, id := range s.bySubject[subject] {
		if k := s.byID[id]; k.Version > cur.Version {
			cur = k
		}
	}
	if cur.ID == "" {
		return shred.Key{}, &shred.SubjectError{Subject: subject, Err: shred.ErrUnknownSubject}
	}
	cur.Wrapped = slices.Clone(cur.Wrapped)
	return cur, nil
}

// Key implements [shred.KeyStore].
func (s *SubjectKeyStore) Key(ctx context.Context, id string) (shred.Key, error) {
	if err := ctx.Err(); err != nil {
		return shred.Key{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.byID[id]
	if !ok {
		return shred.Key{}, fmt.Errorf("key %s: %w", id, shred.ErrKeyNotFound)
	}
	k.Wrapped = slices.Clone(k.Wrapped)
	return k, nil
}

// Forget implements [shred.KeyStore].
func (s *SubjectKeyStore) Forget(ctx context.Context, subject string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forgotten[subject] {
		return nil
	}
	ids, ok := s.bySubject[subject]
	if !ok {
		return &shred.SubjectError{Subject: subject, Err: shred.ErrUnknownSubject}
	}
	for _, id := range ids {
		delete(s.byID, id)
	}
	delete(s.bySubject, subject)
	s.forgotten[subject] = true
	return nil
}
