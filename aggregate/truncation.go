package aggregate

import (
	"errors"
	"fmt"
)

// ErrStreamTruncated is matched by a [*StreamTruncatedError].
var ErrStreamTruncated = errors.New("stream truncated")

// StreamTruncatedError reports a load that cannot rebuild the aggregate:
// the stream was truncated (see [eventstore.Lifecycle.TruncateStream]), so
// its first events are gone, and no usable snapshot covers the versions
// before its first remaining event. Loading a truncated stream needs a
// snapshot at version FirstVersion-1 or later, of the repository's
// aggregate type and snapshot schema version: take one
// ([Repository.Snapshot]) before truncating, and truncate before a
// version no later than the snapshot's plus one.
type StreamTruncatedError struct {
	// StreamID is the aggregate's stream.
	StreamID string
	// FirstVersion is the first version the stream still has.
	FirstVersion int64
	// Version is the version the load had reached (from a snapshot, or 0).
	Version int64
}

func (e *StreamTruncatedError) Error() string {
	if e.Version == 0 {
		return fmt.Sprintf("load %q: the stream is truncated (it starts at version %d) and no usable snapshot covers version %d", e.StreamID, e.FirstVersion, e.FirstVersion-1)
	}
	return fmt.Sprintf("load %q: the stream is truncated (it starts at version %d) past its snapshot at version %d", e.StreamID, e.FirstVersion, e.Version)
}

// Is matches [ErrStreamTruncated].
func (e *StreamTruncatedError) Is(target error) bool { return target == ErrStreamTruncated }
