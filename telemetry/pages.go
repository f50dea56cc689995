package telemetry

import (
	"context"
	"iter"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/chronicle-go/chronicle/eventstore"
)

// ReadAllPages implements [eventstore.PageReader], so that
// [eventstore.ReadAllSeq] (and a projection runner's catch-up) over a
// wrapped store keeps the wrapped store's read-ahead. When the wrapped
// store is a PageReader its pages are passed on, each recorded as a
// ReadAll: a span named [SpanReadAll] from the moment the page was asked
// for to its arrival, and the read metrics. Otherwise the pages are read
// with [Store.ReadAll].
func (s *Store) ReadAllPages(ctx context.Context, after eventstore.Position, pageSize int) iter.Seq2[[]eventstore.Record, error] {
	pr, ok := s.next.(eventstore.PageReader)
	if !ok {
		return s.readAllPages(ctx, after, pageSize)
	}
	return func(yield func([]eventstore.Record, error) bool) {
		next, stop := iter.Pull2(pr.ReadAllPages(ctx, after, pageSize))
		defer stop()
		for {
			asked := time.Now()
			recs, err, more := next()
			if !more {
				return
			}
			pctx, span := s.tracer.Start(ctx, SpanReadAll, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(asked),
				trace.WithAttributes(AttrPosition.String(after.String())))
			s.read(pctx, op{name: "read_all", span: span, start: asked}, err, len(recs))
			if !yield(recs, err) || err != nil {
				return
			}
			if len(recs) > 0 {
				after = recs[len(recs)-1].Position
			}
		}
	}
}

// readAllPages pages with [Store.ReadAll], for a wrapped store that reads
// no pages ahead.
func (s *Store) readAllPages(ctx context.Context, after eventstore.Position, pageSize int) iter.Seq2[[]eventstore.Record, error] {
	return func(yield func([]eventstore.Record, error) bool) {
		for {
			recs, err := s.ReadAll(ctx, after, pageSize)
			if err != nil {
				yield(nil, err)
				return
			}
			if len(recs) > 0 {
				if !yield(recs, nil) {
					return
				}
				after = recs[len(recs)-1].Position
			}
			if len(recs) < pageSize {
				return
			}
		}
	}
}
