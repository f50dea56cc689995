package memory

import (
	"context"
	"fmt"

	"github.com/chronicle-go/chronicle/eventstore"
)

// The stream lifecycle (see [eventstore.Lifecycle]). Events leave the log
// without moving: their log indexes go into s.gone, which ReadAll and Head
// skip, so global positions never change, and their IDs leave the index.
// Archived and soft-deleted events stay where they are (the archive is the
// same log, hidden); truncated and hard-deleted events also lose their
// payload and metadata. s.mu serialises each operation with the
// appends, as the head row lock does in PostgreSQL.

// state returns st's lifecycle state, with s.mu held.
func (s *Store) state(st *stream) eventstore.StreamState {
	return eventstore.StreamState{StreamID: st.id, Status: st.status, Version: int64(len(st.events)), FirstVersion: st.first}
}

// present returns the log indexes of up to limit events from start on
// that are in the log, with s.mu held.
func (s *Store) present(start, limit int) []int {
	var idx []int
	for i := start; i < s.n && len(idx) < limit; i++ {
		if _, gone := s.gone[i]; !gone {
			idx = append(idx, i)
		}
	}
	return idx
}

// lifecycle runs op on the stream with s.mu held, after validating the
// stream ID and finding the stream.
func (s *Store) lifecycle(ctx context.Context, streamID string, op func(st *stream) error) (eventstore.StreamState, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.StreamState{}, err
	}
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return eventstore.StreamState{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[streamID]
	if st == nil {
		return eventstore.StreamState{}, fmt.Errorf("stream %q: %w", streamID, eventstore.ErrStreamNotFound)
	}
	if err := op(st); err != nil {
		return eventstore.StreamState{}, err
	}
	return s.state(st), nil
}

// checkExpected applies a lifecycle operation's expected version.
func checkExpected(st *stream, expected eventstore.ExpectedVersion) error {
	if v := int64(len(st.events)); !expected.Check(v) {
		return &eventstore.ConcurrencyError{StreamID: st.id, Expected: expected, Actual: v}
	}
	return nil
}

// hide takes the events at these log indexes out of the log, and their
// IDs out of the index (as in PostgreSQL, where the unique key is on the
// log only); purge also drops their payloads for good.
func (s *Store) hide(events []int, purge bool) {
	if s.gone == nil {
		s.gone = map[int]struct{}{}
	}
	for _, i := range events {
		s.gone[i] = struct{}{}
		rec := s.at(i)
		if j, ok := s.ids[rec.EventID]; ok && j == i {
			delete(s.ids, rec.EventID)
		}
		if purge {
			rec.Data, rec.Metadata = nil, eventstore.Metadata{}
		}
	}
}

// DeleteStream soft-deletes a stream; see [eventstore.Lifecycle].
func (s *Store) DeleteStream(ctx context.Context, streamID string, expected eventstore.ExpectedVersion) (eventstore.StreamState, error) {
	if err := eventstore.ValidateLifecycleExpected(expected); err != nil {
		return eventstore.StreamState{}, err
	}
	return s.lifecycle(ctx, streamID, func(st *stream) error {
		switch st.status {
		case eventstore.StreamHardDeleted:
			return s.state(st).ClosedError()
		case eventstore.StreamLive:
			if err := checkExpected(st, expected); err != nil {
				return err
			}
			s.hide(st.events[st.first-1:], false)
		default:
			if err := checkExpected(st, expected); err != nil {
				return err
			}
		}
		st.status = eventstore.StreamDeleted
		return nil
	})
}

// HardDeleteStream removes a stream's events for good and leaves a
// tombstone; see [eventstore.Lifecycle]. Snapshots are kept in a separate
// store: delete the stream's snapshot there too.
func (s *Store) HardDeleteStream(ctx context.Context, streamID string, expected eventstore.ExpectedVersion) (eventstore.StreamState, error) {
	if err := eventstore.ValidateLifecycleExpected(expected); err != nil {
		return eventstore.StreamState{}, err
	}
	return s.lifecycle(ctx, streamID, func(st *stream) error {
		if st.status == eventstore.StreamHardDeleted {
			return nil
		}
		if err := checkExpected(st, expected); err != nil {
			return err
		}
		s.hide(st.events[st.first-1:], true)
		st.status, st.first = eventstore.StreamHardDeleted, int64(len(st.events))+1
		return nil
	})
}

// TruncateStream removes a stream's events before version before; see
// [eventstore.Lifecycle].
func (s *Store) TruncateStream(ctx context.Context, streamID string, before int64) (eventstore.StreamState, error) {
	return s.lifecycle(ctx, streamID, func(st *stream) error {
		if err := s.state(st).ClosedError(); err != nil {
			return err
		}
		if err := eventstore.ValidateTruncate(st.id, before, int64(len(st.events))); err != nil {
			return err
		}
		if before <= st.first {
			return nil
		}
		s.hide(st.events[st.first-1:before-1], true)
		st.first = before
		return nil
	})
}

// ArchiveStream moves a stream's events to the archive; see
// [eventstore.Lifecycle].
func (s *Store) ArchiveStream(ctx context.Context, streamID string, expected eventstore.ExpectedVersion) (eventstore.StreamState, error) {
	if err := eventstore.ValidateLifecycleExpected(expected); err != nil {
		return eventstore.StreamState{}, err
	}
	return s.lifecycle(ctx, streamID, func(st *stream) error {
		if st.status == eventstore.StreamHardDeleted {
			return s.state(st).ClosedError()
		}
		if err := checkExpected(st, expected); err != nil {
			return err
		}
		if st.status == eventstore.StreamLive {
			s.hide(st.events[st.first-1:], false)
		}
		st.status = eventstore.StreamArchived
		return nil
	})
}

// RestoreStream brings back an archived or soft-deleted stream; see
// [eventstore.Lifecycle].
func (s *Store) RestoreStream(ctx context.Context, streamID string) (eventstore.StreamState, error) {
	res, restored, err := s.restore(ctx, streamID)
	if restored {
		s.notify()
	}
	return res, err
}

func (s *Store) restore(ctx context.Context, streamID string) (res eventstore.StreamState, restored bool, err error) {
	res, err = s.lifecycle(ctx, streamID, func(st *stream) error {
		switch st.status {
		case eventstore.StreamLive:
			return nil
		case eventstore.StreamHardDeleted:
			return s.state(st).ClosedError()
		}
		events := st.events[st.first-1:]
		for _, i := range events {
			rec := s.at(i)
			if _, taken := s.ids[rec.EventID]; taken {
				return fmt.Errorf("restore stream %q: another stream took one of its event ids while it was out of the log: %w", st.id, &eventstore.DuplicateEventError{EventID: rec.EventID, StreamID: st.id})
			}
		}
		for _, i := range events {
			delete(s.gone, i)
			s.ids[s.at(i).EventID] = i
		}
		st.status, restored = eventstore.StreamLive, true
		return nil
	})
	return res, restored, err
}

// ReadArchivedStream reads a page of an archived or soft-deleted stream's
// events; see [eventstore.Lifecycle].
func (s *Store) ReadArchivedStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	var recs []eventstore.Record
	_, err := s.readOnly(ctx, streamID, &opts, func(st *stream) error {
		switch st.status {
		case eventstore.StreamHardDeleted:
			return s.state(st).ClosedError()
		case eventstore.StreamDeleted, eventstore.StreamArchived:
			recs = s.readStream(st, opts)
		}
		return nil
	})
	if err != nil && isNotFound(err) {
		return nil, nil
	}
	return recs, err
}

// StreamState describes a stream's lifecycle; see [eventstore.Lifecycle].
func (s *Store) StreamState(ctx context.Context, streamID string) (eventstore.StreamState, error) {
	return s.readOnly(ctx, streamID, nil, func(*stream) error { return nil })
}

// readOnly is lifecycle for reads: it validates opts too (when not nil)
// and holds s.mu for reading.
func (s *Store) readOnly(ctx context.Context, streamID string, opts *eventstore.ReadStreamOptions, op func(st *stream) error) (eventstore.StreamState, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.StreamState{}, err
	}
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return eventstore.StreamState{}, err
	}
	if opts != nil {
		if opts.Direction != eventstore.Forward && opts.Direction != eventstore.Backward {
			return eventstore.StreamState{}, &eventstore.ValidationError{Field: "direction", Reason: fmt.Sprintf("%d is neither forward nor backward", opts.Direction)}
		}
		if opts.Limit < 0 {
			return eventstore.StreamState{}, &eventstore.ValidationError{Field: "limit", Reason: "must not be negative"}
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.streams[streamID]
	if st == nil {
		return eventstore.StreamState{}, &notFoundError{streamID: streamID}
	}
	if err := op(st); err != nil {
		return eventstore.StreamState{}, err
	}
	return s.state(st), nil
}

// notFoundError is readOnly's error for a stream that does not exist.
type notFoundError struct{ streamID string }

func (e *notFoundError) Error() string {
	return fmt.Sprintf("stream %q: %v", e.streamID, eventstore.ErrStreamNotFound)
}

func (e *notFoundError) Is(target error) bool { return target == eventstore.ErrStreamNotFound }

func isNotFound(err error) bool {
	_, ok := err.(*notFoundError)
	return ok
}
