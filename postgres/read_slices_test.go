package postgres

import (
	"fmt"
	"math"
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
	// The first page read must keep its records while later pages are read
	// into the scratch it came from.
	first, err := s.ReadAll(ctx, eventstore.Position{}, 50)
	if err != nil {
		t.Fatal(err)
	}
	firstIDs := make([]eventstore.EventID, len(first))
	for i, r := range first {
		firstIDs[i] = r.EventID
	}
	// A copy's capacity is its length rounded up to the allocator's size
	// class; a slice grown for the page is returned when at least half
	// full: either way, less than twice the page.
	for _, tc := range []struct {
		limit   int
		wantLen int
		exact   bool // the capacity is the limit: the slice read into
	}{
		{limit: 1000, wantLen: total, exact: true}, // grown to the limit once, more than half full: not copied
		{limit: 2000, wantLen: total},              // grown to 1,024, more than half full: not copied
		{limit: 50, wantLen: 50},                   // within the scratch: copied
		{limit: 1 << 40, wantLen: total},           // a limit far above the page: no huge slice
	} {
		recs, err := s.ReadAll(ctx, eventstore.Position{}, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(recs) != tc.wantLen:
			t.Errorf("ReadAll limit %d: %d records, want %d", tc.limit, len(recs), tc.wantLen)
		case tc.exact && cap(recs) != tc.limit:
			t.Errorf("ReadAll limit %d: capacity %d, want the limit: the slice read into", tc.limit, cap(recs))
		case cap(recs) >= 2*len(recs):
			t.Errorf("ReadAll limit %d: capacity %d for %d records, want less than twice their number", tc.limit, cap(recs), len(recs))
		}
		for i := 1; i < len(recs); i++ {
			if recs[i-1].Position.Compare(recs[i].Position) >= 0 || recs[i].StreamID == "" || recs[i].Type != "T" {
				t.Fatalf("ReadAll limit %d: record %d is %+v after %+v", tc.limit, i, recs[i], recs[i-1])
			}
		}
	}
	// ReadAllBackward passes the caller's limit through: any limit works.
	back, err := s.ReadAllBackward(ctx, eventstore.Position{}, math.MaxInt)
	if err != nil || len(back) != total || cap(back) >= 2*total {
		t.Errorf("ReadAllBackward limit MaxInt: %d records, capacity %d, %v; want %d in less than twice that", len(back), cap(back), err, total)
	}
	recs, err := s.ReadStream(ctx, "slices-3", eventstore.ReadStreamOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 100 || cap(recs) >= 200 {
		t.Errorf("ReadStream of 100 events, limit 1000: len %d cap %d, want 100 records in a copy of about their length", len(recs), cap(recs))
	}
	for i, r := range first {
		if r.EventID != firstIDs[i] {
			t.Fatalf("the first page's record %d changed to %v after later reads, was %v", i, r.EventID, firstIDs[i])
		}
	}
}
