package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

// testListStreams checks a [eventstore.StreamLister]: streams newest-created
// first, appends to an old stream do not move it, prefixes filter, pages
// continue from the cursor, and bad options are validation errors.
func testListStreams(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	lister, ok := store.(eventstore.StreamLister)
	if !ok {
		t.Skip("the store does not implement eventstore.StreamLister")
	}
	if page, err := lister.ListStreams(ctx, eventstore.ListStreamsOptions{}); err != nil || len(page) != 0 {
		t.Fatalf("ListStreams on an empty store = %v, %v; want nothing", page, err)
	}
	var created []string
	for i := range 7 {
		prefix := "account-"
		if i%3 == 2 {
			prefix = "order-"
		}
		id := fmt.Sprintf("%s%d", prefix, i)
		created = append(created, id)
		if _, err := store.Append(ctx, id, eventstore.NoStream, newEvent("Opened", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	// A later append to the oldest stream does not change its place.
	if _, err := store.Append(ctx, created[0], eventstore.Exact(1), newEvent("Deposited", `{}`)); err != nil {
		t.Fatal(err)
	}
	newestFirst := slices.Clone(created)
	slices.Reverse(newestFirst)

	all, err := lister.ListStreams(ctx, eventstore.ListStreamsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := streamIDsOf(all); !slices.Equal(got, newestFirst) {
		t.Fatalf("ListStreams = %v, want %v", got, newestFirst)
	}
	for i, info := range all {
		want := int64(1)
		if info.StreamID == created[0] {
			want = 2
		}
		if info.Version != want || info.CreatedAt.IsZero() || info.UpdatedAt.Before(info.CreatedAt) || info.Status != eventstore.StreamLive {
			t.Fatalf("stream %q: %+v, want version %d, its times and status live", info.StreamID, info, want)
		}
		if i > 0 && info.Seq >= all[i-1].Seq {
			t.Fatalf("Seq not descending: %d after %d", info.Seq, all[i-1].Seq)
		}
	}

	// Pages of 2 through the accounts only.
	var paged []string
	opts := eventstore.ListStreamsOptions{Prefix: "account-", Limit: 2}
	for range 10 {
		page, err := lister.ListStreams(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, streamIDsOf(page)...)
		if len(page) < opts.Limit {
			break
		}
		opts.Before = page[len(page)-1].Seq
	}
	want := slices.DeleteFunc(slices.Clone(newestFirst), func(id string) bool { return id[0] != 'a' })
	if !slices.Equal(paged, want) {
		t.Fatalf("paged accounts = %v, want %v", paged, want)
	}

	for _, bad := range []eventstore.ListStreamsOptions{{Limit: -1}, {Before: -1}} {
		if _, err := lister.ListStreams(ctx, bad); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("ListStreams(%+v) = %v, want an invalid-input error", bad, err)
		}
	}
}

func streamIDsOf(infos []eventstore.StreamInfo) []string {
	ids := make([]string, len(infos))
	for i, info := range infos {
		ids[i] = info.StreamID
	}
	return ids
}
