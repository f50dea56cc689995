package postgres

import (
	"context"
	"iter"

	"github.com/chronicle-go/chronicle/eventstore"
)

var _ eventstore.PageReader = (*Store)(nil)

// readAhead is how many pages [Store.ReadAllPages] keeps ready beyond the
// one being read: with one, the next page's query runs (on the server, and
// its rows are decoded from the wire) while the caller handles the
// current page.
const readAhead = 1

// ReadAllPages reads the global order page after page, like successive
// [Store.ReadAll] calls, with the next page read while the caller handles
// the current one; see [eventstore.PageReader]. [eventstore.ReadAllSeq]
// uses it.
//
// A goroutine reads the pages, each on a pooled connection as ReadAll
// does, and sends the next query as soon as a page's rows have arrived
// (the page's last position is then known), unless readAhead pages are
// already waiting for the caller: memory stays bounded by the caller's
// page, readAhead ready pages and the one being read. The goroutine stops
// when the caller stops iterating, once its current read is done (a read
// is not cancelled: cancelling a query closes its connection). Each page
// is a consistent read below the horizon of its own statement, so the
// pages join without a gap, exactly as ReadAll pages do.
func (s *Store) ReadAllPages(ctx context.Context, after eventstore.Position, pageSize int) iter.Seq2[[]eventstore.Record, error] {
	return func(yield func([]eventstore.Record, error) bool) {
		if err := validateReadAll(after, pageSize); err != nil {
			yield(nil, err)
			return
		}
		type page struct {
			recs []eventstore.Record
			err  error
		}
		pages := make(chan page, readAhead)
		stop := make(chan struct{})
		go func() {
			defer close(pages)
			for {
				// The caller may have stopped while the last page was
				// sent (its drain below takes pages): read no more.
				select {
				case <-stop:
					return
				default:
				}
				recs, err := s.ReadAll(ctx, after, pageSize)
				select {
				case pages <- page{recs, err}:
				case <-stop:
					return
				}
				if err != nil || len(recs) < pageSize {
					return
				}
				after = recs[len(recs)-1].Position
			}
		}()
		defer func() {
			close(stop)
			for range pages { // wait for the reader to end
			}
		}()
		for p := range pages {
			if p.err != nil {
				yield(nil, p.err)
				return
			}
			if len(p.recs) == 0 {
				return
			}
			if !yield(p.recs, nil) {
				return
			}
		}
	}
}
