// Package aggregate builds event-sourced aggregates on an
// [eventstore.Store]: an aggregate's state is the result of applying its
// stream's events in order, and a command changes it by recording new
// events, which a [Repository] appends with optimistic concurrency.
//
// # Defining an aggregate
//
// Embed [Base] and write an Apply method that mutates the state for each
// event type, plus command methods that validate and then call [Record]:
//
//	type Account struct {
//		aggregate.Base
//		Balance int64
//	}
//
//	func (a *Account) Apply(event any) error {
//		switch e := event.(type) {
//		case DepositCompleted:
//			a.Balance += e.Amount
//		default:
//			return aggregate.Unhandled(event)
//		}
//		return nil
//	}
//
//	func (a *Account) Deposit(amount int64) error {
//		if amount <= 0 {
//			return ErrInvalidAmount
//		}
//		return aggregate.Record(a, DepositCompleted{Amount: amount})
//	}
//
// Apply is the only place where state changes, for new events ([Record])
// and for stored ones (loading) alike. It returns an error only for an
// event it does not know: returning [Unhandled] from the default case
// turns a forgotten case into an error matching [ErrUnhandledEvent] instead
// of a silently wrong state.
//
// # Loading and saving
//
// [NewRepository] ties an aggregate type to a store and an
// [eventstore.Registry] holding its event types. [Repository.Load] replays
// a stream, [Repository.Save] appends the recorded events expecting the
// version the aggregate was loaded at, and fails with an error matching
// [eventstore.ErrConcurrencyConflict] when another writer got there first.
// [Repository.Update] wraps load, command and save, and reloads and retries
// on a conflict:
//
//	acc, err := accounts.Update(ctx, "account-42", func(a *Account) error {
//		return a.Deposit(100)
//	})
//
// Event IDs are fixed when an event is recorded, so calling Save again
// after an ambiguous failure (a lost connection) stores each event at most
// once.
//
// [Repository.Save] returns the store's [eventstore.AppendResult]: the
// stream's new version and the global position of the last event, which a
// caller can wait for a projection to pass before reading its read model.
//
// # Transactions
//
// [Repository.With] returns the repository working on another view of the
// store, typically one inside the caller's transaction (postgres.Store.InTx
// on PostgreSQL), so that an aggregate's events commit or roll back with
// the caller's own rows:
//
//	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
//		// ... the caller's own writes on tx ...
//		_, err := accounts.With(store.InTx(tx)).Update(ctx, "account-42", func(a *Account) error {
//			return a.Withdraw(30)
//		})
//		return err
//	})
//
// Snapshots follow the transaction or are not taken; Update retries only
// when the transaction can see the conflicting write. The package stays
// storage-agnostic: it never sees the transaction, only the view.
//
// # Time travel
//
// [Repository.LoadVersion] and [Repository.LoadAt] rebuild an aggregate as
// it was at a stream version or at a point in time, from the same events.
//
// # Snapshots
//
// With a snapshot store in [Config.Snapshots], a load starts from the
// stream's latest snapshot and applies only the events after it, and a
// save takes a new snapshot when [Config.SnapshotPolicy] says so (every 100
// events by default); [Repository.Snapshot] takes one on demand. The state
// is encoded as JSON unless the aggregate implements [Snapshotter]. A
// snapshot is only ever an optimisation: one that is unreadable, of another
// [Config.SnapshotSchemaVersion] or ahead of its stream is logged and
// ignored, the state is rebuilt from the events, and a failure to take a
// snapshot never fails a save. See package snapshot and docs/snapshots.md.
package aggregate
