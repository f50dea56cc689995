// Package projectionstore is the seam between the projection runner and
// the storages that keep its state: what a storage implementation writes
// against, not what applications call.
//
// Applications use package projection ([github.com/chronicle-go/chronicle/projection]):
// a Runner, Handlers, Projection, the policies and the errors. They pick a
// [Storage] implementation and hand it to projection.New:
//
//   - memory.ProjectionStore keeps the state in memory, for the in-memory
//     event store, tests and single-process programs;
//   - postgres.ProjectionStore keeps it in PostgreSQL, next to the events.
//
// # Writing a storage
//
// A [Storage] keeps, per partition of each projection, a [Checkpoint], a
// holder (through a [Lease]), a rebuild request, and the projection's dead
// letters ([DeadLetterStore]); it also tracks the live instances running
// each projection ([Storage.Heartbeat]), so that runners share the
// partitions evenly. Every write a runner makes goes through
// [Lease.Commit]: a compare-and-set of the checkpoint, together with
// the batch's work, a parked dead letter, a settled retry or a rebuild
// reset. A storage whose leases are [Lease.Transactional] runs the work in
// the same transaction as the rest, so a read model written through it
// changes exactly once per event.
//
// The errors a storage returns are those of package projection
// (projection.ErrLeaseLost, *projection.CheckpointConflictError,
// *projection.PartitionsMismatchError, projection.ErrUnknownProjection,
// projection.ErrDeadLetterNotFound, *projection.DeadLetterStateError), so
// that callers branch with [errors.Is] whatever the storage.
//
// Package storagetest is the conformance suite: run it against a new
// storage (see storagetest.Run); the memory and PostgreSQL storages pass
// it.
package projectionstore
