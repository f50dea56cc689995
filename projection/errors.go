package projection

import (
	"errors"
	"fmt"
	"github.com/chronicle-go/chronicle/projection/projectionstore"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Sentinel errors. Typed errors below match them with [errors.Is].
var (
	// ErrCheckpointConflict: a checkpoint was not where its writer expected;
	// the error is a [*CheckpointConflictError].
	ErrCheckpointConflict = errors.New("checkpoint conflict")
	// ErrLeaseLost: a lease was released or its connection died; nothing
	// more can be committed through it.
	ErrLeaseLost = errors.New("projection lease lost")
	// ErrUnknownProjection: no projection of that name is registered (or
	// stored).
	ErrUnknownProjection = errors.New("unknown projection")
	// ErrPartitionsMismatch: the stored partition count of a projection
	// differs from its configuration; the error is a
	// [*PartitionsMismatchError].
	ErrPartitionsMismatch = errors.New("partition count mismatch")
	// ErrStopped: a projection partition stopped after a failure (see
	// [StopOnFailure]); the error is a [*StoppedError].
	ErrStopped = errors.New("projection stopped")
	// ErrDeadLetterNotFound: no dead letter has that ID.
	ErrDeadLetterNotFound = errors.New("dead letter not found")
	// ErrDeadLetterState: the dead letter is in a state that does not allow
	// the operation; the error is a [*DeadLetterStateError].
	ErrDeadLetterState = errors.New("dead letter state")
	// ErrNoProjections: [Runner.Run] was called with no projection
	// registered.
	ErrNoProjections = errors.New("no projection registered")
	// ErrRunnerStarted: [Runner.Run] was called twice, or [Runner.Add]
	// after Run.
	ErrRunnerStarted = errors.New("projection runner already started")
)

// CheckpointConflictError reports a compare-and-set of a checkpoint that
// found another position stored. It matches [ErrCheckpointConflict].
type CheckpointConflictError struct {
	// Key is the partition.
	Key projectionstore.Key
	// Expected is the position the writer expected; Actual is the stored
	// one (the zero Position when the checkpoint does not exist).
	Expected, Actual eventstore.Position
}

func (e *CheckpointConflictError) Error() string {
	return fmt.Sprintf("checkpoint conflict on projection %q partition %d: expected %s, stored %s", e.Key.Projection, e.Key.Partition, e.Expected, e.Actual)
}

// Is matches [ErrCheckpointConflict].
func (e *CheckpointConflictError) Is(target error) bool { return target == ErrCheckpointConflict }

// PartitionsMismatchError reports a projection configured with a number of
// partitions different from the one its checkpoints were made with. The
// partition of an event depends on the count, so the checkpoints cannot be
// reused: give the projection a new name (and a new read model) to change
// its partitioning. It matches [ErrPartitionsMismatch].
type PartitionsMismatchError struct {
	// Projection is the projection's name.
	Projection string
	// Stored and Configured are the two counts.
	Stored, Configured int
}

func (e *PartitionsMismatchError) Error() string {
	return fmt.Sprintf("projection %q has %d partitions stored but %d configured: the partitioning of a projection cannot change; give it a new name", e.Projection, e.Stored, e.Configured)
}

// Is matches [ErrPartitionsMismatch].
func (e *PartitionsMismatchError) Is(target error) bool { return target == ErrPartitionsMismatch }

// StoppedError reports a projection partition that stopped on an event it
// could not handle (see [StopOnFailure]). It matches [ErrStopped] and
// unwraps to the handler's error.
type StoppedError struct {
	// Key is the stopped partition.
	Key projectionstore.Key
	// EventID identifies the event that failed (zero when the partition
	// stopped for another reason, such as a partition count mismatch).
	EventID eventstore.EventID
	// Position is the failed event's position, or the partition's
	// checkpoint.
	Position eventstore.Position
	// Attempts counts the attempts made.
	Attempts int
	// Err is the last failure.
	Err error
}

func (e *StoppedError) Error() string {
	return fmt.Sprintf("projection %q partition %d stopped at event %s (position %s) after %d attempts: %v", e.Key.Projection, e.Key.Partition, e.EventID, e.Position, e.Attempts, e.Err)
}

// Unwrap returns the last failure.
func (e *StoppedError) Unwrap() error { return e.Err }

// Is matches [ErrStopped].
func (e *StoppedError) Is(target error) bool { return target == ErrStopped }

// DeadLetterStateError reports an operation on a dead letter whose state
// does not allow it, such as retrying a resolved one. It matches
// [ErrDeadLetterState].
type DeadLetterStateError struct {
	// ID is the dead letter.
	ID int64
	// Status is its state.
	Status projectionstore.DeadLetterStatus
	// Op is the refused operation ("retry" or "skip").
	Op string
}

func (e *DeadLetterStateError) Error() string {
	if e.Op == "retry" && e.Status == projectionstore.DeadLetterSkipped {
		return fmt.Sprintf("cannot retry dead letter %d: it was skipped, and a skipped dead letter stays skipped", e.ID)
	}
	return fmt.Sprintf("cannot %s dead letter %d: it is %s", e.Op, e.ID, e.Status)
}

// Is matches [ErrDeadLetterState].
func (e *DeadLetterStateError) Is(target error) bool { return target == ErrDeadLetterState }

// storedError is the error of a partition stopped in another process (or
// before a restart), known only by its stored message.
type storedError string

func (e storedError) Error() string { return string(e) }
