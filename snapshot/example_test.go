package snapshot_test

import (
	"context"
	"fmt"

	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/snapshot"
)

func Example() {
	ctx := context.Background()
	store := memory.NewSnapshotStore(nil)
	for _, v := range []int64{100, 300, 200} { // the last one arrives late
		_ = store.Save(ctx, snapshot.Snapshot{
			StreamID: "account-42", Type: "Account", Version: v, SchemaVersion: 1,
			Data: fmt.Appendf(nil, `{"balance":%d}`, v),
		})
	}
	s, _ := store.Load(ctx, "account-42")
	fmt.Println(s.Version, string(s.Data))
	// Output:
	// 300 {"balance":300}
}

func ExampleEveryN() {
	policy := snapshot.EveryN(100)
	for _, info := range []snapshot.Info{
		{StreamID: "account-42", Version: 99, PreviousVersion: 98},
		{StreamID: "account-42", Version: 100, PreviousVersion: 99},
		{StreamID: "account-42", Version: 150, PreviousVersion: 149, SnapshotVersion: 100},
		{StreamID: "account-42", Version: 200, PreviousVersion: 199, SnapshotVersion: 100},
	} {
		fmt.Println(info.Version, policy.ShouldSnapshot(info))
	}
	// Output:
	// 99 false
	// 100 true
	// 150 false
	// 200 true
}
