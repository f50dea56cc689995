// Package projection keeps read models up to date from an event store: a
// [Runner] tails the store's global order and hands every event to the
// handler of each registered [Projection], checkpointing its progress.
//
// It is storage-agnostic. The runner reads events from any
// [eventstore.Store] and keeps its own state (checkpoints, leadership,
// instances, dead letters) in a [projectionstore.Storage]:
// memory.ProjectionStore for the in-memory store, and
// postgres.ProjectionStore for PostgreSQL, where a read model, its
// checkpoint and its dead letters commit in one transaction. Package
// [projectionstore] is the seam storage implementations write against;
// this package holds what applications call.
//
// # Handlers
//
// A projection is a name plus a [Handler]. [Handlers] dispatches by event
// type with typed functions, decoding payloads with an
// [eventstore.Registry]; [HandlerFunc] receives every event:
//
//	h := projection.NewHandlers(registry)
//	projection.On(h, func(ctx context.Context, ev projection.Event, e DepositCompleted) error {
//		return balances.Add(ctx, e.AccountID, e.Amount)
//	})
//	runner, err := projection.New(store, storage, nil)
//	...
//	err = runner.Add(projection.Projection{Name: "balances", Handler: h})
//	...
//	go runner.Run(ctx)
//
// Each [Event] carries the stored record: the event ID (for idempotency),
// stream, stream version, global position, type, payload and metadata.
//
// # Guarantees
//
// A [Transactional] projection (the default) on a storage with
// transactions runs each batch (the handler calls and the compare-and-set
// of the checkpoint) in one transaction: on PostgreSQL the handler finds it
// in its context (postgres.ProjectionTx, postgres.OnProjectionTx) and its
// writes take effect exactly once, whenever the process dies. An
// [AtLeastOnce] projection runs its handler outside any transaction, for
// outside effects: after a crash, events whose batch was not checkpointed
// are delivered again, so deduplicate on the event ID.
//
// # Failures
//
// A failing event is retried with exponential backoff and jitter
// ([RetryPolicy]), then, per the projection's [FailurePolicy], parked in
// the dead-letter store while the projection continues ([ParkOnFailure]),
// or the partition stops ([StopOnFailure], the default). Other projections
// and partitions keep running: a poison event never blocks them. Parked
// events are listed, retried and skipped through the [projectionstore.DeadLetterStore]
// (and `chronicle projections dead-letters`). A handler error wrapped with
// [Permanent], or a payload that does not decode, skips the retries.
//
// # Leadership and partitions
//
// Every partition of every projection has one holder at a time across all
// processes: a runner acquires a [projectionstore.Lease] from the storage before
// processing, and a standby runner takes over when the holder dies. With
// [Projection.Partitions] set, a projection is split by [PartitionOf] the
// stream ID; each partition has its own checkpoint and holder and keeps
// the order of each stream, and the runners running a projection share
// its partitions evenly (each of k runners holds about n/k of n), moving
// them when a runner joins, leaves or dies.
//
// # Rebuilds, status and waiting
//
// [Runner.Rebuild] (and `chronicle projections rebuild NAME`) stores a
// rebuild request; the holder of each partition calls the reset hook
// ([Projection.Reset], [Resetter]), moves the checkpoint back to the start
// and replays. [Runner.Status] and [Statuses] report checkpoints, holders,
// lag and parked events. [Runner.WaitFor] and [Runner.WaitForHead] block
// until a projection has caught up, for tests and read-your-writes.
//
// See docs/projections.md in the repository for the operational guide.
package projection
