package aggregate_test

import (
	"context"
	"errors"
	"testing"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/snapshot"
)

// A truncated stream loads from a snapshot that covers the versions before
// its first event; without one the load fails with a typed error.
func TestLoadTruncatedStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name     string
		snapshot int64 // the snapshot's version (0: none)
		before   int64 // truncate before this version
		wantErr  bool
	}{
		{"snapshot at the truncation point", 6, 7, false},
		{"snapshot after the truncation point", 8, 7, false},
		{"snapshot at the head", 10, 10, false},
		{"snapshot before the truncation point", 4, 7, true},
		{"no snapshot", 0, 7, true},
		{"truncated before 1 is no truncation", 0, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.Never()}, nil)
			f.deposit(t, 10) // versions 1..10, balance 10
			if tt.snapshot > 0 {
				w, err := f.repo.LoadVersion(ctx, "wallet-1", tt.snapshot)
				if err != nil {
					t.Fatal(err)
				}
				if err := f.repo.Snapshot(ctx, w); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.mem.TruncateStream(ctx, "wallet-1", tt.before); err != nil {
				t.Fatal(err)
			}
			w, err := f.repo.Load(ctx, "wallet-1")
			if tt.wantErr {
				var te *aggregate.StreamTruncatedError
				if !errors.Is(err, aggregate.ErrStreamTruncated) || !errors.As(err, &te) {
					t.Fatalf("Load = %v, want a *StreamTruncatedError", err)
				}
				if te.StreamID != "wallet-1" || te.FirstVersion != tt.before {
					t.Fatalf("StreamTruncatedError = %+v, want stream wallet-1, first version %d", te, tt.before)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if w.Balance != 10 || w.Version() != 10 || w.StoredVersion() != 10 {
				t.Fatalf("loaded balance %d at version %d (stored %d), want 10 at 10", w.Balance, w.Version(), w.StoredVersion())
			}
			// The aggregate saves after the truncation, and loads again.
			if _, err := f.repo.Update(ctx, "wallet-1", func(w *wallet) error { return w.Deposit(5) }); err != nil {
				t.Fatal(err)
			}
			if w, err := f.repo.Load(ctx, "wallet-1"); err != nil || w.Balance != 15 || w.Version() != 11 {
				t.Fatalf("after a save: %+v, %v; want balance 15 at version 11", w, err)
			}
		})
	}
}

// LoadVersion of a truncated stream stops at the version asked for, also
// when the snapshot is right before the truncation point.
func TestLoadVersionTruncatedStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.Never()}, nil)
	f.deposit(t, 10)
	w, err := f.repo.LoadVersion(ctx, "wallet-1", 6)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.repo.Snapshot(ctx, w); err != nil {
		t.Fatal(err)
	}
	if _, err := f.mem.TruncateStream(ctx, "wallet-1", 7); err != nil {
		t.Fatal(err)
	}
	for _, v := range []int64{6, 7, 9} {
		w, err := f.repo.LoadVersion(ctx, "wallet-1", v)
		if err != nil || w.Version() != v || w.Balance != v {
			t.Fatalf("LoadVersion(%d) = %+v, %v; want balance %d at version %d", v, w, err, v, v)
		}
	}
	if _, err := f.repo.LoadVersion(ctx, "wallet-1", 3); !errors.Is(err, aggregate.ErrStreamTruncated) {
		t.Fatalf("LoadVersion(3) before the snapshot and the truncation point = %v, want ErrStreamTruncated", err)
	}
}

// A deleted or archived stream gives the store's typed errors.
func TestLoadClosedStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t, nil, nil)
	f.appendRaw(t, "gone", Deposited{Amount: 1})
	f.appendRaw(t, "cold", Deposited{Amount: 1})
	if _, err := f.mem.DeleteStream(ctx, "gone", eventstore.Any); err != nil {
		t.Fatal(err)
	}
	if _, err := f.mem.ArchiveStream(ctx, "cold", eventstore.Any); err != nil {
		t.Fatal(err)
	}
	if _, err := f.repo.Load(ctx, "gone"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("Load of a deleted stream = %v, want ErrStreamNotFound", err)
	}
	if _, err := f.repo.Update(ctx, "gone", func(w *wallet) error { return w.Deposit(1) }); !errors.Is(err, eventstore.ErrStreamDeleted) {
		t.Fatalf("Update of a deleted stream = %v, want ErrStreamDeleted (no silent recreation)", err)
	}
	if _, err := f.repo.Load(ctx, "cold"); !errors.Is(err, eventstore.ErrStreamArchived) {
		t.Fatalf("Load of an archived stream = %v, want ErrStreamArchived", err)
	}
}
