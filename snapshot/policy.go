package snapshot

// Info describes a successful save, for a [Policy] to decide whether to
// take a snapshot.
type Info struct {
	// StreamID is the aggregate's stream.
	StreamID string
	// Version is the stream's version after the save.
	Version int64
	// PreviousVersion is the stream's version before the save (0 for a new
	// stream).
	PreviousVersion int64
	// SnapshotVersion is the version of the latest snapshot the repository
	// knows of for this aggregate: the one it was loaded from or last took.
	// It is 0 when there is none (or none usable).
	SnapshotVersion int64
}

// Policy decides when the aggregate repository takes a snapshot after a
// successful save. Use [EveryN], [Never], or a [PolicyFunc] of your own.
// A repository calls it from every goroutine that saves, so it must be
// safe for concurrent use (a pure function of its [Info] is).
type Policy interface {
	// ShouldSnapshot reports whether to snapshot the saved aggregate.
	ShouldSnapshot(info Info) bool
}

// PolicyFunc adapts a function to a [Policy].
type PolicyFunc func(info Info) bool

// ShouldSnapshot implements [Policy].
func (f PolicyFunc) ShouldSnapshot(info Info) bool { return f(info) }

// EveryN returns a policy that snapshots when at least n events have been
// stored since the last known snapshot: a stream saved one event at a time
// is snapshotted at versions n, 2n, 3n..., and a long stream that has no
// snapshot yet gets one at its next save. Values of n below 1 mean 1.
func EveryN(n int) Policy {
	every := int64(max(n, 1))
	return PolicyFunc(func(info Info) bool { return info.Version-info.SnapshotVersion >= every })
}

// Never returns a policy that takes no snapshot after saves, leaving
// snapshots to explicit calls (the repository's Snapshot method).
func Never() Policy { return PolicyFunc(func(Info) bool { return false }) }
