package memory_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
)

// Truncate, archive, restore and delete streams through
// eventstore.Lifecycle.
func ExampleStore_ArchiveStream() {
	ctx := context.Background()
	store := memory.New(nil)
	var lc eventstore.Lifecycle = store // the PostgreSQL store implements it too

	for i := range 4 {
		if _, err := store.Append(ctx, "order-1", eventstore.Any, deposit(i+1)); err != nil {
			panic(err)
		}
	}
	if _, err := store.Append(ctx, "session-9", eventstore.NoStream, deposit(1)); err != nil {
		panic(err)
	}

	// Truncate: events before version 3 are gone, the version stays.
	st, err := lc.TruncateStream(ctx, "order-1", 3)
	if err != nil {
		panic(err)
	}
	fmt.Println("truncated:", st.Status, "version", st.Version, "first version", st.FirstVersion)

	// Archive: the stream reads as archived until it is restored.
	if _, err := lc.ArchiveStream(ctx, "order-1", eventstore.Any); err != nil {
		panic(err)
	}
	_, err = store.ReadStream(ctx, "order-1", eventstore.ReadStreamOptions{})
	fmt.Println("archived read:", errors.Is(err, eventstore.ErrStreamArchived))
	archived, _ := lc.ReadArchivedStream(ctx, "order-1", eventstore.ReadStreamOptions{})
	fmt.Println("archived events:", len(archived))
	if _, err := lc.RestoreStream(ctx, "order-1"); err != nil {
		panic(err)
	}

	// Hard delete: a tombstone that refuses every append.
	if _, err := lc.HardDeleteStream(ctx, "session-9", eventstore.Any); err != nil {
		panic(err)
	}
	_, err = store.Append(ctx, "session-9", eventstore.NoStream, deposit(1))
	fmt.Println(err)

	// Read-all no longer returns what left the log; positions did not move.
	for rec, err := range eventstore.ReadAllSeq(ctx, store, eventstore.Position{}, 0) {
		if err != nil {
			panic(err)
		}
		fmt.Println(rec.StreamID, rec.StreamVersion, rec.Position)
	}
	// Output:
	// truncated: live version 4 first version 3
	// archived read: true
	// archived events: 2
	// stream "session-9" is hard-deleted at version 1: it cannot be read, appended to or recreated
	// order-1 3 3/3
	// order-1 4 4/4
}
