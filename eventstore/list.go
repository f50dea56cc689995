package eventstore

import (
	"context"
	"fmt"
	"time"
)

// StreamLister is an optional interface of a [Store] that lists its
// streams, newest-created first. Both stores in this module implement it;
// the CLI's `streams list` and the console use it.
type StreamLister interface {
	// ListStreams returns one page of streams as opts says, newest-created
	// first. Pass the last returned stream's Seq as opts.Before to read the
	// next page; a page shorter than the limit is the last.
	ListStreams(ctx context.Context, opts ListStreamsOptions) ([]StreamInfo, error)
}

// DefaultListLimit is the page size of [StreamLister.ListStreams] when
// [ListStreamsOptions.Limit] is zero.
const DefaultListLimit = 100

// ListStreamsOptions says which page of streams to list.
type ListStreamsOptions struct {
	// Prefix keeps only streams whose ID starts with it (byte-wise, so
	// "account-" finds "account-42"). Defaults to every stream.
	Prefix string
	// Before keeps only streams created before the one with this Seq: the
	// cursor of the next page. Defaults to 0, the newest stream.
	Before int64
	// Limit is the page size. Defaults to [DefaultListLimit].
	Limit int
}

// Validate checks the options.
func (o ListStreamsOptions) Validate() error {
	switch {
	case o.Before < 0:
		return &ValidationError{Field: "before", Reason: fmt.Sprintf("%d is negative", o.Before)}
	case o.Limit < 0:
		return &ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is negative", o.Limit)}
	}
	return nil
}

// EffectiveLimit returns Limit, or [DefaultListLimit] when it is zero.
func (o ListStreamsOptions) EffectiveLimit() int {
	if o.Limit == 0 {
		return DefaultListLimit
	}
	return o.Limit
}

// StreamInfo describes a stream in a [StreamLister] listing.
type StreamInfo struct {
	// StreamID is the stream's ID.
	StreamID string
	// Version is the stream's current version (its last event's).
	Version int64
	// Seq orders streams by creation: a stream created later has a larger
	// Seq. It is the cursor of [ListStreamsOptions.Before].
	Seq int64
	// CreatedAt is when the stream's first event was appended, in UTC.
	CreatedAt time.Time
	// UpdatedAt is when its last event was appended, in UTC.
	UpdatedAt time.Time
	// Status is where the stream is in its lifecycle (see [Lifecycle]):
	// [StreamLive] unless it was deleted, archived or hard-deleted. A
	// listing shows streams in every status; a store without a lifecycle
	// reports StreamLive.
	Status StreamStatus
}
