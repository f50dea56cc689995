package aggregate

import (
	"errors"
	"fmt"
)

// ErrVersionNotFound is matched by a [*VersionNotFoundError].
var ErrVersionNotFound = errors.New("version not found")

// VersionNotFoundError reports a [Repository.LoadVersion] of a version the
// stream has not reached. It matches [ErrVersionNotFound].
type VersionNotFoundError struct {
	// StreamID is the aggregate's stream.
	StreamID string
	// Version is the requested version.
	Version int64
	// Current is the stream's current version.
	Current int64
}

func (e *VersionNotFoundError) Error() string {
	return fmt.Sprintf("load %q at version %d: the stream is at version %d", e.StreamID, e.Version, e.Current)
}

// Is matches [ErrVersionNotFound].
func (e *VersionNotFoundError) Is(target error) bool { return target == ErrVersionNotFound }

// ApplyError reports a stored event that the aggregate's Apply refused
// while loading. It unwraps to Apply's error, so an event Apply does not
// handle matches [ErrUnhandledEvent].
type ApplyError struct {
	// StreamID is the aggregate's stream.
	StreamID string
	// Version is the refused event's stream version.
	Version int64
	// Type is the refused event's type name.
	Type string
	// Err is Apply's error.
	Err error
}

func (e *ApplyError) Error() string {
	return fmt.Sprintf("load %q: apply event %q at version %d: %v", e.StreamID, e.Type, e.Version, e.Err)
}

// Unwrap returns Apply's error.
func (e *ApplyError) Unwrap() error { return e.Err }
