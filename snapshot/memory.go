package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// MemoryConfig configures a [MemoryStore]. The zero value and a nil
// *MemoryConfig mean defaults.
type MemoryConfig struct {
	// MaxSize is the largest encoded state accepted, in bytes. Defaults to
	// [DefaultMaxSize].
	MaxSize int
	// Now returns the time set on snapshots saved without one. Defaults
	// to [time.Now].
	Now func() time.Time
}

// MemoryStore is an in-memory [Store], for tests and for programs on the
// in-memory event store. Create one with [NewMemoryStore]; it is safe for
// concurrent use.
type MemoryStore struct {
	maxSize int
	now     func() time.Time

	mu    sync.RWMutex
	snaps map[string]Snapshot
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store. A nil cfg means defaults.
func NewMemoryStore(cfg *MemoryConfig) *MemoryStore {
	if cfg == nil {
		cfg = &MemoryConfig{}
	}
	s := &MemoryStore{maxSize: cfg.MaxSize, now: cfg.Now, snaps: map[string]Snapshot{}}
	if s.maxSize <= 0 {
		s.maxSize = DefaultMaxSize
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Save implements [Store.Save].
func (s *MemoryStore) Save(ctx context.Context, snap Snapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := Validate(snap, s.maxSize); err != nil {
		return err
	}
	if snap.TakenAt.IsZero() {
		snap.TakenAt = s.now()
	}
	snap.TakenAt = snap.TakenAt.UTC()
	snap.Data = bytes.Clone(snap.Data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.snaps[snap.StreamID]; ok && old.Version > snap.Version {
		return nil
	}
	s.snaps[snap.StreamID] = snap
	return nil
}

// Load implements [Store.Load].
func (s *MemoryStore) Load(ctx context.Context, streamID string) (Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return Snapshot{}, err
	}
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return Snapshot{}, err
	}
	s.mu.RLock()
	snap, ok := s.snaps[streamID]
	s.mu.RUnlock()
	if !ok {
		return Snapshot{}, fmt.Errorf("stream %q: %w", streamID, ErrNotFound)
	}
	snap.Data = bytes.Clone(snap.Data)
	return snap, nil
}

// Delete implements [Store.Delete].
func (s *MemoryStore) Delete(ctx context.Context, streamID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.snaps, streamID)
	s.mu.Unlock()
	return nil
}
