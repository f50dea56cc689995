package memory

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/snapshot"
)

// SnapshotStoreConfig configures a [SnapshotStore]. The zero value and a nil
// *SnapshotStoreConfig mean defaults.
type SnapshotStoreConfig struct {
	// MaxSize is the largest encoded state accepted, in bytes. Defaults to
	// [snapshot.DefaultMaxSize].
	MaxSize int
	// Now returns the time set on snapshots saved without one. Defaults
	// to [time.Now].
	Now func() time.Time
}

// SnapshotStore is an in-memory [snapshot.Store], for tests and for programs on the
// in-memory event store. Create one with [NewSnapshotStore]; it is safe for
// concurrent use.
type SnapshotStore struct {
	maxSize int
	now     func() time.Time

	mu    sync.RWMutex
	snaps map[string]snapshot.Snapshot
}

var _ snapshot.Store = (*SnapshotStore)(nil)

// NewSnapshotStore returns an empty store. A nil cfg means defaults.
func NewSnapshotStore(cfg *SnapshotStoreConfig) *SnapshotStore {
	if cfg == nil {
		cfg = &SnapshotStoreConfig{}
	}
	s := &SnapshotStore{maxSize: cfg.MaxSize, now: cfg.Now, snaps: map[string]snapshot.Snapshot{}}
	if s.maxSize <= 0 {
		s.maxSize = snapshot.DefaultMaxSize
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Save implements [snapshot.Store.Save].
func (s *SnapshotStore) Save(ctx context.Context, snap snapshot.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := snapshot.Validate(snap, s.maxSize); err != nil {
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

// Load implements [snapshot.Store.Load].
func (s *SnapshotStore) Load(ctx context.Context, streamID string) (snapshot.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return snapshot.Snapshot{}, err
	}
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return snapshot.Snapshot{}, err
	}
	s.mu.RLock()
	snap, ok := s.snaps[streamID]
	s.mu.RUnlock()
	if !ok {
		return snapshot.Snapshot{}, fmt.Errorf("stream %q: %w", streamID, snapshot.ErrNotFound)
	}
	snap.Data = bytes.Clone(snap.Data)
	return snap, nil
}

// Delete implements [snapshot.Store.Delete].
func (s *SnapshotStore) Delete(ctx context.Context, streamID string) error {
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
