package postgres

import (
	"fmt"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

// A page is returned in a slice sized for it: a large page (a catch-up
// page, which outgrows the pooled scratch slice) in the slice it was read
// into, sized for the limit, without a copy; a page much shorter than its
// slice (or a short one) in a copy of its own length. Either way the slice
// holds at most twice the page.
func TestReadSlicesSizedForTheirPage(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, nil)
	ctx := t.Context()
	const total = 700
	for i := range total / 100 {
		evs := make([]eventstore.Event, 100)
		for j := range evs {
			evs[j] = eventstore.Event{Type: "T", Data: []byte(`{}`)}
		}
		if _, err := s.Append(ctx, fmt.Sprintf("slices-%d", i), eventstore.NoStream, evs...); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until every event is readable: other tests' transactions on the
	// shared server may hold the horizon back for a while.
	readAllUntil(t, s, eventstore.Position{}, total)
	// A copy's capacity is its length rounded up to the allocator's size
	// class: less than twice the length.
	for _, tc := range []struct {
		limit   int
		wantLen int
		copied  bool
	}{
		{limit: 1000, wantLen: total},               // grown to the limit, more than half full: not copied
		{limit: 2000, wantLen: total, copied: true}, // less than half full: copied
		{limit: 50, wantLen: 50, copied: true},      // within the scratch: copied
	} {
		recs, err := s.ReadAll(ctx, eventstore.Position{}, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(recs) != tc.wantLen:
			t.Errorf("ReadAll limit %d: %d records, want %d", tc.limit, len(recs), tc.wantLen)
		case !tc.copied && cap(recs) != tc.limit:
			t.Errorf("ReadAll limit %d: capacity %d, want the limit: the slice read into", tc.limit, cap(recs))
		case tc.copied && cap(recs) >= 2*len(recs):
			t.Errorf("ReadAll limit %d: capacity %d for %d records, want a copy of about their length", tc.limit, cap(recs), len(recs))
		}
		for i := 1; i < len(recs); i++ {
			if recs[i-1].Position.Compare(recs[i].Position) >= 0 || recs[i].StreamID == "" || recs[i].Type != "T" {
				t.Fatalf("ReadAll limit %d: record %d is %+v after %+v", tc.limit, i, recs[i], recs[i-1])
			}
		}
	}
	recs, err := s.ReadStream(ctx, "slices-3", eventstore.ReadStreamOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 100 || cap(recs) >= 200 {
		t.Errorf("ReadStream of 100 events, limit 1000: len %d cap %d, want 100 records in a copy of about their length", len(recs), cap(recs))
	}
}
