// Package snapshot stores snapshots of event-sourced aggregates: an
// aggregate's state encoded as of a version of its stream, so that loading
// a long stream starts from the latest snapshot and applies only the events
// after it. The aggregate repository (package aggregate) takes and uses
// them; this package holds the storage contract, the in-memory store and
// the policies, and does not depend on package aggregate.
//
// # Stores
//
// A [Store] keeps the latest [Snapshot] of each stream: [Store.Save] never
// replaces a snapshot with an older one, so racing writers cannot move a
// stream's snapshot backwards. memory.SnapshotStore keeps snapshots in memory;
// the PostgreSQL store is postgres.SnapshotStore, in the chronicle.snapshots
// table. Both pass the conformance suite in snapshot/snapshottest, and both
// validate input with [Validate].
//
// A store may also implement [StreamLoader], reading a snapshot and the
// events after it in one round trip; the PostgreSQL store does when its
// event store shares its connection pool. A store that implements
// [TxBinder] can join the transaction of an event store view, so that a
// repository saving inside the caller's transaction writes its snapshots
// in that transaction too; a repository in a transaction never writes
// snapshots to a store that cannot join it.
//
// # Policies
//
// A [Policy] decides after each successful save whether the repository
// takes a snapshot: [EveryN] snapshots every n events, [Never] leaves
// snapshots to explicit calls, and a [PolicyFunc] can decide from the
// [Info] of the save.
//
// # Versioning
//
// A snapshot records the aggregate type it holds and the schema version of
// its encoding. A loader uses a snapshot only when both match its own;
// otherwise it rebuilds the state from the events and replaces the
// snapshot. Snapshots are a cache: deleting them loses no information.
package snapshot
