package eventstore

import (
	"context"
	"iter"
)

// Store is an event store: append-only streams with optimistic concurrency,
// and one global order that readers tail. The in-memory store
// (package memory) and the PostgreSQL store (postgres) implement it, and
// both pass the conformance suite in eventstore/storetest.
//
// All methods are safe for concurrent use.
type Store interface {
	// Append appends events to one stream if its version satisfies expected,
	// atomically: all events are stored or none. Events with a zero ID get a
	// new one. It returns a [*ConcurrencyError] (matching
	// [ErrConcurrencyConflict]) when expected does not hold, validation
	// errors matching [ErrInvalidInput], and a [*StreamDeletedError] or
	// [*StreamArchivedError] for a stream that is deleted or archived (see
	// [Lifecycle]), whatever expected says.
	//
	// Retrying an append whose event IDs are already stored at the same
	// stream and versions with the same type and payload (equal as JSON
	// values: key order and white space do not matter) is a no-op that
	// returns the original result; reusing an ID otherwise fails with a
	// [*DuplicateEventError].
	Append(ctx context.Context, streamID string, expected ExpectedVersion, events ...Event) (AppendResult, error)

	// AppendStreams appends to several streams atomically: either every
	// [StreamAppend] holds and all are stored, or none is. A stream may
	// appear only once.
	AppendStreams(ctx context.Context, appends ...StreamAppend) ([]AppendResult, error)

	// ReadStream reads one page of a stream's events in version order, as
	// opts says. A stream with no events yields an empty page, not an error;
	// so does a soft-deleted one, while an archived or hard-deleted stream
	// (see [Lifecycle]) gives a [*StreamArchivedError] or a
	// [*StreamDeletedError].
	ReadStream(ctx context.Context, streamID string, opts ReadStreamOptions) ([]Record, error)

	// ReadAll reads up to limit events strictly after the position after,
	// in global order. It never returns an event while an event that sorts
	// before it may still commit, so a reader that keeps calling it with
	// the last returned position sees every event exactly once.
	ReadAll(ctx context.Context, after Position, limit int) ([]Record, error)

	// StreamVersion returns the stream's current version, or an error
	// matching [ErrStreamNotFound] when it has no events. A deleted stream
	// gives a [*StreamDeletedError] (which matches ErrStreamNotFound too),
	// an archived one a [*StreamArchivedError] (see [Lifecycle]).
	StreamVersion(ctx context.Context, streamID string) (int64, error)

	// Head returns the position of the last event that ReadAll can return
	// now, or the zero Position if there is none.
	Head(ctx context.Context) (Position, error)

	// Watch returns a channel that receives a value (coalesced: at most one
	// pending) when new events may be readable. It is a wake-up hint only:
	// tailers must also poll, since a hint can be lost. The channel is
	// closed when ctx is done.
	Watch(ctx context.Context) <-chan struct{}
}

// StreamAppend is one stream's part of [Store.AppendStreams].
type StreamAppend struct {
	// StreamID is the target stream.
	StreamID string
	// Expected is the stream's expected version.
	Expected ExpectedVersion
	// Events are the events to append, in order.
	Events []Event
}

// AppendResult describes a successful append.
type AppendResult struct {
	// StreamID is the stream appended to.
	StreamID string
	// Version is the stream's version after the append (the last event's).
	Version int64
	// Position is the last appended event's global position. Waiting until
	// a reader has passed it gives read-your-writes.
	Position Position
}

// Direction is the order in which [Store.ReadStream] reads.
type Direction int

const (
	// Forward reads from old to new.
	Forward Direction = iota
	// Backward reads from new to old.
	Backward
)

// ReadStreamOptions says which page of a stream to read.
type ReadStreamOptions struct {
	// Direction is Forward or Backward. Defaults to Forward.
	Direction Direction
	// From is the first version returned. Reading forward, values below 1
	// mean 1. Reading backward, it is the highest version returned and 0
	// means the stream's end. Defaults to the start (forward) or the end
	// (backward).
	From int64
	// Limit is the maximum number of events returned. Defaults to no limit.
	Limit int
}

// PayloadReader is an optional interface of a [Store] that reads a
// stream's payloads without the rest of its records: what rehydrating an
// aggregate needs, read faster. The aggregate repository uses it when the
// store has it (see [ReadStreamPayloadsSeq]).
type PayloadReader interface {
	// ReadStreamPayloads reads one page of a stream as [Store.ReadStream]
	// does, with the same options, errors and order, but sets only these
	// fields of each record: StreamID, StreamVersion, Type, SchemaVersion
	// and Data. The others (EventID, Position, Metadata, RecordedAt) are
	// zero.
	ReadStreamPayloads(ctx context.Context, streamID string, opts ReadStreamOptions) ([]Record, error)
}

// ReadStreamSeq iterates over a whole stream (or from opts.From), paging
// through s with pages of pageSize events (1000 when pageSize <= 0). An
// error ends the sequence after being yielded.
func ReadStreamSeq(ctx context.Context, s Store, streamID string, opts ReadStreamOptions, pageSize int) iter.Seq2[Record, error] {
	return streamPages(ctx, s.ReadStream, streamID, opts, pageSize)
}

// ReadStreamPayloadsSeq is [ReadStreamSeq] for rehydration: when s is a
// [PayloadReader] it pages with ReadStreamPayloads, so records carry only
// the fields that interface lists; otherwise it reads whole records.
func ReadStreamPayloadsSeq(ctx context.Context, s Store, streamID string, opts ReadStreamOptions, pageSize int) iter.Seq2[Record, error] {
	if pr, ok := s.(PayloadReader); ok {
		return streamPages(ctx, pr.ReadStreamPayloads, streamID, opts, pageSize)
	}
	return streamPages(ctx, s.ReadStream, streamID, opts, pageSize)
}

// streamPages pages through a stream with read (a ReadStream method).
func streamPages(ctx context.Context, read func(context.Context, string, ReadStreamOptions) ([]Record, error),
	streamID string, opts ReadStreamOptions, pageSize int) iter.Seq2[Record, error] {
	if pageSize <= 0 {
		pageSize = 1000
	}
	return func(yield func(Record, error) bool) {
		remaining := opts.Limit
		for {
			page := opts
			page.Limit = pageSize
			if remaining > 0 && remaining < pageSize {
				page.Limit = remaining
			}
			recs, err := read(ctx, streamID, page)
			if err != nil {
				yield(Record{}, err)
				return
			}
			for _, r := range recs {
				if !yield(r, nil) {
					return
				}
			}
			if remaining > 0 {
				remaining -= len(recs)
				if remaining <= 0 {
					return
				}
			}
			if len(recs) < page.Limit {
				return
			}
			last := recs[len(recs)-1].StreamVersion
			if opts.Direction == Backward {
				if last <= 1 {
					return
				}
				opts.From = last - 1
			} else {
				opts.From = last + 1
			}
		}
	}
}

// RecordReader is an optional interface of a [Store] that reads a page of
// the global order into records the caller provides, instead of a slice
// of its own: the projection runner reads its batches straight into its
// events this way, without copying each record out of a page.
//
// A type that wraps a store implementing it (by embedding it, say) and
// changes what ReadAll returns must implement ReadAllInto the same way,
// or hide it: the runner reads through ReadAllInto when it is there.
type RecordReader interface {
	// ReadAllInto reads as [Store.ReadAll](ctx, after, limit) does, with
	// the same validation, errors and order, but writes the i-th record
	// (0-based) into *next(i) and returns the number of records read, n:
	// when it returns, *next(0) to *next(n-1) hold exactly the records
	// ReadAll would have returned. A nil next is an invalid argument
	// ([ErrInvalidInput]).
	//
	// next is called from the calling goroutine only, never after
	// ReadAllInto returns, with consecutive indexes from 0, below limit. A
	// read retried after a connection loss starts again from 0, so next
	// must return the same record for an index it was given before. Each
	// record is overwritten whole, and written before next is called
	// again; the store keeps no pointer to it after that, so next may
	// move the records it returned before (grow its slice). After an
	// error the records written are incomplete.
	ReadAllInto(ctx context.Context, after Position, limit int, next func(i int) *Record) (int, error)
}

// PageReader is an optional interface of a [Store] that reads the global
// order ahead: [ReadAllSeq] uses it when the store has it, so that the
// next page is on its way while the caller handles the current one.
type PageReader interface {
	// ReadAllPages yields the pages that successive [Store.ReadAll] calls
	// from after with limit pageSize return, each resuming after the last
	// event of the page before, until a page shorter than pageSize (the
	// current end, yielded too unless empty) or an error (yielded, then
	// the sequence ends). It may read the next page while the caller
	// handles the current one, and reads at most a few pages ahead. No
	// goroutine of it outlives the loop. pageSize must be positive.
	ReadAllPages(ctx context.Context, after Position, pageSize int) iter.Seq2[[]Record, error]
}

// ReadAllSeq iterates over every event after the position after, in global
// order, paging with pages of pageSize events (1000 when pageSize <= 0). It
// stops at the current end; it does not wait for new events. An error ends
// the sequence after being yielded. When s is a [PageReader], its pages
// are read ahead.
func ReadAllSeq(ctx context.Context, s Store, after Position, pageSize int) iter.Seq2[Record, error] {
	if pageSize <= 0 {
		pageSize = 1000
	}
	if pr, ok := s.(PageReader); ok {
		return func(yield func(Record, error) bool) {
			for recs, err := range pr.ReadAllPages(ctx, after, pageSize) {
				if err != nil {
					yield(Record{}, err)
					return
				}
				for _, r := range recs {
					if !yield(r, nil) {
						return
					}
				}
			}
		}
	}
	return func(yield func(Record, error) bool) {
		for {
			recs, err := s.ReadAll(ctx, after, pageSize)
			if err != nil {
				yield(Record{}, err)
				return
			}
			for _, r := range recs {
				if !yield(r, nil) {
					return
				}
			}
			if len(recs) < pageSize {
				return
			}
			after = recs[len(recs)-1].Position
		}
	}
}
