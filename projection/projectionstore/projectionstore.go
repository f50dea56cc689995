package projectionstore

import (
	"context"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Storage keeps the runner's state: checkpoints, leadership, instances
// and dead letters. memory.ProjectionStore keeps it in memory, for the
// in-memory event store; postgres.ProjectionStore keeps it in PostgreSQL,
// next to the events, so that a read model, its checkpoint and its dead
// letters commit in one transaction.
//
// Every write a runner makes goes through a [Lease], so leadership,
// checkpoints and the unit of work share one seam: an implementation can
// tie them together (the PostgreSQL lease is a session advisory lock held
// by the very connection that runs the batch transactions, so a holder
// that loses its lock cannot commit anything).
type Storage interface {
	// Acquire tries to become the holder of one partition of a
	// projection. It returns a nil Lease and a nil error when another
	// holder has it. It creates the partition's checkpoint (at the zero
	// Position) if it does not exist yet, and fails with a
	// [*projection.PartitionsMismatchError] when the stored partition count differs
	// from partitions.
	Acquire(ctx context.Context, key Key, partitions int, holder string) (Lease, error)

	// Checkpoints returns the checkpoints of one projection, or of every
	// projection when projection is "", ordered by projection and
	// partition.
	Checkpoints(ctx context.Context, projection string) ([]Checkpoint, error)

	// RequestRebuild marks every partition of a projection for rebuild;
	// each partition's holder then resets it (see [projection.Runner.Rebuild]). When
	// partitions > 0, partitions 0..partitions-1 that have no checkpoint
	// yet are created, marked; when it is 0 and the projection has no
	// checkpoint at all, it fails with an error matching
	// [projection.ErrUnknownProjection].
	RequestRebuild(ctx context.Context, projection string, partitions int) error

	// Heartbeat records holder as a live instance running projection
	// until ttl from now, and returns the live instances of projection
	// (holder included), sorted. Runners call it about every acquire
	// interval, to share the partitions evenly between the instances; an
	// instance that stops calling it drops out of the list after ttl.
	Heartbeat(ctx context.Context, projection, holder string, ttl time.Duration) ([]string, error)

	// Leave removes holder from the live instances of projection, so that
	// the others take its share of the partitions at once.
	Leave(ctx context.Context, projection, holder string) error

	DeadLetterStore
}

// DeadLetterStore lists and settles parked events. Parking happens through
// [Lease.Commit] (atomically with the checkpoint moving past the event);
// these methods are the operator's side, also exposed by the CLI
// (`chronicle projections dead-letters`).
type DeadLetterStore interface {
	// DeadLetters lists dead letters matching filter, oldest first.
	DeadLetters(ctx context.Context, filter DeadLetterFilter) ([]DeadLetter, error)

	// RetryDeadLetter asks the holder of the dead letter's partition to
	// handle its event again. The dead letter must be parked (or already
	// retrying); it becomes [DeadLetterRetry] until the holder settles it,
	// as resolved or parked again. It fails with an error matching
	// [projection.ErrDeadLetterNotFound] for an unknown id and with a
	// [*projection.DeadLetterStateError] for a resolved or skipped one: skipping is
	// final.
	RetryDeadLetter(ctx context.Context, id int64) error

	// SkipDeadLetter gives up on a parked (or retrying) dead letter: it
	// becomes [DeadLetterSkipped] and is no longer counted as parked. Errors
	// are as for RetryDeadLetter.
	SkipDeadLetter(ctx context.Context, id int64) error
}

// Lease is a held partition: the holder's only way to write its
// checkpoint. A Lease is used by one goroutine at a time.
type Lease interface {
	// Checkpoint reads the partition's checkpoint.
	Checkpoint(ctx context.Context) (Checkpoint, error)

	// Commit runs c.Work (if any) in one unit of work with the rest of c,
	// and moves the checkpoint from c.From to c.To only if it is still at
	// c.From (compare-and-set). On success it returns the checkpoint as
	// committed. If c.Work fails, nothing is committed and its error is
	// returned. If the checkpoint is not at c.From, nothing is committed and
	// the error is a [*projection.CheckpointConflictError]. With a storage that is not
	// [Lease.Transactional], c.Work's own effects are not rolled back.
	//
	// ctx's deadline (see [projection.Config.BatchTimeout]) bounds the unit of work: a
	// transactional storage must not keep its transaction open past it,
	// nor past ctx's cancellation, even while c.Work ignores ctx; losing
	// the lease is an acceptable way to end it.
	Commit(ctx context.Context, c Commit) (Checkpoint, error)

	// RetryRequests returns the partition's dead letters in state
	// [DeadLetterRetry], oldest first.
	RetryRequests(ctx context.Context) ([]DeadLetter, error)

	// Transactional reports whether Commit runs c.Work in a transaction
	// that commits or rolls back with the checkpoint.
	Transactional() bool

	// Done is closed when the lease is lost (its connection died) or
	// released. Work done after that cannot commit.
	Done() <-chan struct{}

	// Release gives the partition up so that another runner can acquire
	// it. It is safe to call more than once.
	Release(ctx context.Context) error
}

// Key names one partition of a projection: the unit that has a checkpoint
// and a holder.
type Key struct {
	// Projection is the projection's name.
	Projection string
	// Partition is the partition index, from 0.
	Partition int
}

// Commit is one atomic update of a partition, made through [Lease.Commit].
type Commit struct {
	// From is the checkpoint the holder last saw; the commit fails with a
	// [*projection.CheckpointConflictError] when the stored checkpoint differs.
	From eventstore.Position
	// To is the new checkpoint. It may equal From.
	To eventstore.Position
	// Work runs inside the unit of work (on PostgreSQL, inside the
	// transaction, which it finds in its ctx). Nil means no work.
	Work func(ctx context.Context) error
	// Park, when not nil, records this dead letter (its ID, Status and
	// times are assigned by the storage). Parking an event that already has
	// a dead letter in this projection replaces it.
	Park *DeadLetter
	// Settle, when not nil, records the outcome of a retried dead letter.
	Settle *Settlement
	// Rebuilt clears the partition's rebuild request and deletes its parked
	// and retrying dead letters: the holder has reset it.
	Rebuilt bool
	// Error is the partition's error after the commit: the reason it
	// stopped, or "" (the usual case) for a partition that runs.
	Error string
}

// Settlement is the outcome of handling a retried dead letter again.
type Settlement struct {
	// ID is the dead letter's ID.
	ID int64
	// Status is [DeadLetterResolved] on success, [DeadLetterParked] when
	// the event failed again.
	Status DeadLetterStatus
	// Error is the last failure, for a dead letter parked again.
	Error string
	// Attempts is the dead letter's new total of attempts.
	Attempts int
}

// Checkpoint is the stored state of one partition of a projection.
type Checkpoint struct {
	// Projection is the projection's name.
	Projection string
	// Partition is the partition index, from 0.
	Partition int
	// Partitions is the projection's number of partitions.
	Partitions int
	// Position is the last event the partition has handled (or skipped as
	// another partition's): it resumes after it.
	Position eventstore.Position
	// UpdatedAt is when Position was last committed.
	UpdatedAt time.Time
	// Holder names the runner holding the partition now, or is "" when no
	// runner holds it.
	Holder string
	// RebuildRequested reports a rebuild requested but not yet started by
	// the holder.
	RebuildRequested bool
	// Error is why the partition stopped, or "" when it runs.
	Error string
	// Parked counts the partition's dead letters in state
	// [DeadLetterParked] or [DeadLetterRetry].
	Parked int
}

// DeadLetterStatus is the state of a [DeadLetter].
type DeadLetterStatus string

// The states of a dead letter. A parked dead letter can be retried (it
// becomes DeadLetterRetry, then resolved or parked again) or skipped.
const (
	// DeadLetterParked: the event failed and waits for an operator.
	DeadLetterParked DeadLetterStatus = "parked"
	// DeadLetterRetry: an operator asked for the event to be handled again;
	// the partition's holder will.
	DeadLetterRetry DeadLetterStatus = "retry"
	// DeadLetterResolved: a retry succeeded.
	DeadLetterResolved DeadLetterStatus = "resolved"
	// DeadLetterSkipped: an operator gave up on the event.
	DeadLetterSkipped DeadLetterStatus = "skipped"
)

// Valid reports whether s is one of the defined states.
func (s DeadLetterStatus) Valid() bool {
	switch s {
	case DeadLetterParked, DeadLetterRetry, DeadLetterResolved, DeadLetterSkipped:
		return true
	}
	return false
}

// DeadLetter is an event a projection failed to handle and set aside, so
// that the projection could continue past it (see [projection.ParkOnFailure]).
type DeadLetter struct {
	// ID identifies the dead letter.
	ID int64
	// Projection is the projection that failed.
	Projection string
	// Partition is the partition that failed.
	Partition int
	// EventID identifies the event.
	EventID eventstore.EventID
	// StreamID is the event's stream.
	StreamID string
	// StreamVersion is the event's version in its stream.
	StreamVersion int64
	// Position is the event's global position.
	Position eventstore.Position
	// Type is the event's type name.
	Type string
	// Error is the last failure's message.
	Error string
	// Attempts counts the attempts made to handle the event.
	Attempts int
	// Status is the dead letter's state.
	Status DeadLetterStatus
	// ParkedAt is when the event was (last) parked.
	ParkedAt time.Time
	// UpdatedAt is when the dead letter last changed.
	UpdatedAt time.Time
}

// DeadLetterFilter selects dead letters in [DeadLetterStore.DeadLetters].
type DeadLetterFilter struct {
	// Projection selects one projection. Defaults to every projection.
	Projection string
	// Status selects one state. Defaults to every state.
	Status DeadLetterStatus
	// AfterID lists dead letters with an ID above it, for paging. Defaults
	// to 0, the start.
	AfterID int64
	// Limit caps the number returned. Defaults to 100.
	Limit int
}

// defaultDeadLetterLimit is the default [DeadLetterFilter.Limit].
const defaultDeadLetterLimit = 100

// MaxPartitions bounds the partition count of a projection. Storages
// refuse larger counts (PostgreSQL by a check constraint).
const MaxPartitions = 1024

// EffectiveLimit returns f.Limit, or its default when it is not positive.
// Storage implementations call it.
func (f DeadLetterFilter) EffectiveLimit() int {
	if f.Limit <= 0 {
		return defaultDeadLetterLimit
	}
	return f.Limit
}

// EventCounter is implemented by storages that can count the events
// between two positions without reading them (package postgres counts in
// SQL, in the same database as the events). Status reports use it for the
// lag; without it they page through the event store.
type EventCounter interface {
	// CountEvents counts the events after after, up to and including upTo,
	// of partition partition out of partitions: those whose stream
	// [projection.PartitionOf] maps to it (every event when partitions is 1).
	CountEvents(ctx context.Context, after, upTo eventstore.Position, partition, partitions int) (int64, error)
}
