package memory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/snapshot"
	"github.com/chronicle-go/chronicle/snapshot/snapshottest"
)

var _ snapshot.Store = (*memory.SnapshotStore)(nil)

func TestSnapshotStoreConformance(t *testing.T) {
	t.Parallel()
	snapshottest.Run(t, func(*testing.T) snapshot.Store { return memory.NewSnapshotStore(nil) })
}

func TestSnapshotStoreConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	s := memory.NewSnapshotStore(&memory.SnapshotStoreConfig{MaxSize: 4, Now: func() time.Time { return now }})
	sn := snapshot.Snapshot{StreamID: "a", Type: "T", Version: 1, SchemaVersion: 1, Data: []byte("12345")}
	if err := s.Save(ctx, sn); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Save of 5 bytes with MaxSize 4 = %v, want ErrInvalidInput", err)
	}
	sn.Data = []byte("1234")
	if err := s.Save(ctx, sn); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !got.TakenAt.Equal(now) || got.TakenAt.Location() != time.UTC {
		t.Fatalf("TakenAt = %v, want %v in UTC", got.TakenAt, now)
	}
}
