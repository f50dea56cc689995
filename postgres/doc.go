// Package postgres is Chronicle's PostgreSQL backend, on pgx v5. All of
// Chronicle's SQL lives here: the event store ([Store], an
// [eventstore.Store]), the projection checkpoints, dead letters and leases
// ([ProjectionStore]), the snapshot store ([SnapshotStore]) and the data
// keys of crypto-shredding ([SubjectKeyStore], a shred.KeyStore). The tables
// are created by package migrations; apply them first.
//
// docs/postgres.md explains the schema, the ordering guarantee, the lag to
// expect, the grants an application needs and what a dump and restore
// requires.
//
// # The event store
//
// [New] wraps a *pgxpool.Pool. Every append is one statement, one round
// trip: events are passed as arrays and inserted with INSERT … SELECT FROM
// unnest(…), and the stream's expected version is checked in the same
// statement:
//
//	pool, err := pgxpool.New(ctx, databaseURL)
//	// handle err
//	store, err := postgres.New(pool, nil)
//	// handle err
//	defer store.Close() // before pool.Close
//
//	res, err := store.Append(ctx, "account-42", eventstore.Exact(7), ev)
//	switch {
//	case errors.Is(err, eventstore.ErrConcurrencyConflict):
//		// reload the account and retry the command
//	case err != nil:
//		// the outcome may be unknown (connection lost): retrying the
//		// append with the same event IDs is safe
//	}
//
// Concurrency conflicts and duplicate event IDs come back as the typed
// errors of package eventstore, never as driver errors. An append whose
// event IDs are already stored at the places it would put them is a retry
// and returns the original result, so giving events IDs up front makes
// appends safe to retry. [Store.AppendStreams] appends to several streams
// atomically.
//
// # Ending streams
//
// [Store] implements [eventstore.Lifecycle]: [Store.DeleteStream],
// [Store.TruncateStream], [Store.HardDeleteStream], [Store.ArchiveStream]
// and [Store.RestoreStream] each run in one transaction under the stream's
// head row lock, which appends also take; archived and soft-deleted events
// move to chronicle.events_archive. A closed stream refuses appends through
// its head row, at no cost to the append statements (docs/postgres.md,
// "Stream lifecycle").
//
// # Appends in your transaction
//
// [Store.AppendTx] and [Store.AppendStreamsTx] append inside a pgx.Tx of
// yours, so that business rows and events commit or roll back together:
//
//	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
//		if _, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance + $1 WHERE id = $2`, amount, id); err != nil {
//			return err
//		}
//		_, err := store.AppendTx(ctx, tx, "account-"+id, eventstore.Exact(version), ev)
//		return err
//	})
//
// The append runs under a savepoint, so a conflict leaves the transaction
// usable.
//
// [Store.InTx] and [SnapshotStore.InTx] are views of the stores inside such
// a transaction ([TxStore], [TxSnapshotStore]): code written against
// eventstore.Store and snapshot.Store runs in it unchanged. The aggregate
// repository binds to one with its With method, so an aggregate's events
// (and a snapshot of it) commit with the caller's rows:
//
//	_, err := accounts.With(store.InTx(tx)).Update(ctx, "account-42", func(a *Account) error {
//		return a.Withdraw(30)
//	})
//
// # Global order
//
// [Store.ReadAll] returns events in one global order: by the id of the
// transaction that wrote them, then by insertion. It only returns events of
// transactions older than the oldest transaction still running, so an event
// that commits late is never skipped and a reader resuming from its last
// position sees every event exactly once. The price is lag: while a
// transaction that holds a transaction id stays open anywhere in the
// cluster, newer events wait. [Store.TailLag] measures it; set
// idle_in_transaction_session_timeout so that a forgotten transaction
// cannot hold readers back for long.
//
// # Live tailing
//
// [Store.Watch] wakes tailing readers when new events may be readable. Each
// store sends a NOTIFY after its appends commit (rate-limited by
// [Config.NotifyDebounce]) and listens on one dedicated connection; a poll
// tick ([Config.PollInterval]) covers lost notifications and reconnects.
// Behind PgBouncer in transaction pooling mode, where LISTEN does not work,
// set [Config.PollOnly], or point [Config.ListenConfig] at the server
// directly.
package postgres
