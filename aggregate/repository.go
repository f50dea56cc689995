package aggregate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/snapshot"
)

// Config configures a [Repository]. The zero value (or a nil *Config) means
// defaults.
type Config struct {
	// MaxRetries is how many times [Repository.Update] reloads and retries
	// after a concurrency conflict before giving up. A negative value
	// disables retries. Defaults to 3.
	MaxRetries int

	// PageSize is the number of events read per store round trip when
	// loading. Defaults to 1000, so a stream of up to 999 events loads in
	// one round trip.
	PageSize int

	// Snapshots stores snapshots of the aggregates, so that loading a long
	// stream starts from the latest snapshot instead of the first event
	// (see docs/snapshots.md). Unless the aggregate implements
	// [Snapshotter], its state is encoded as JSON, and [NewRepository]
	// refuses aggregate types with fields JSON would not keep. Defaults to
	// nil: no snapshots.
	Snapshots snapshot.Store

	// SnapshotPolicy decides when a successful save takes a snapshot.
	// Defaults to [snapshot.EveryN](100).
	SnapshotPolicy snapshot.Policy

	// SnapshotSchemaVersion is the version of the aggregate's snapshot
	// format. Increase it whenever a change to the aggregate type changes
	// what its encoded state means or how it is encoded: snapshots of any
	// other schema version are ignored (the state is rebuilt from the
	// events) and replaced. Defaults to 1.
	SnapshotSchemaVersion int

	// SnapshotType is the aggregate type name stored in snapshots; a
	// snapshot of another type is ignored. Defaults to the Go type name of
	// the aggregate (e.g. "Account").
	SnapshotType string

	// SnapshotTimeout bounds the time a save spends taking a snapshot after
	// it succeeded, and the time a load spends replacing a stale snapshot.
	// Such a snapshot is best effort: when it fails or times out the
	// failure is logged and the save still succeeds. Snapshots taken
	// inside a transaction ([Repository.With]) are not bounded by it.
	// Defaults to 500ms.
	SnapshotTimeout time.Duration

	// Logger receives the snapshot problems the repository works around:
	// snapshots that fail to be taken, and snapshots that are unreadable,
	// stale or ahead of their stream and therefore ignored. Defaults to
	// [slog.Default].
	Logger *slog.Logger
}

const (
	defaultMaxRetries      = 3
	defaultPageSize        = 1000
	defaultSnapshotEvery   = 100
	defaultSnapshotTimeout = 500 * time.Millisecond
)

// Repository loads and saves aggregates of type T (whose pointer type PT
// implements [Root]) in an [eventstore.Store], decoding and encoding events
// with an [eventstore.Registry]. It is safe for concurrent use; the
// aggregates it returns are not.
//
// The second type parameter is inferred: write
//
//	accounts, err := aggregate.NewRepository[Account](store, registry, nil)
//
// and name the type as *aggregate.Repository[Account, *Account].
type Repository[T any, PT interface {
	*T
	Root
}] struct {
	store      eventstore.Store
	reg        *eventstore.Registry
	maxRetries int
	pageSize   int
	logger     *slog.Logger

	// Snapshots; snapshots is nil when they are disabled.
	snapshots   snapshot.Store
	policy      snapshot.Policy
	snapSchema  int
	snapType    string
	snapTimeout time.Duration

	// inTx is set on the repositories [Repository.With] returns: store is
	// a view of the caller's unit of work (a transaction). unbound is set
	// when Config.Snapshots could not join it.
	inTx, unbound bool
	// err, when set, fails every load and save: With got an invalid store.
	err error
}

// NewRepository returns a repository of T aggregates backed by store, with
// event types registered in reg. A nil cfg means defaults. It fails with an
// error matching [eventstore.ErrInvalidInput] when store or reg is nil or a
// Config field is out of range.
func NewRepository[T any, PT interface {
	*T
	Root
}](store eventstore.Store, reg *eventstore.Registry, cfg *Config) (*Repository[T, PT], error) {
	if cfg == nil {
		cfg = &Config{}
	}
	invalid := func(field, reason string) error { return &eventstore.ValidationError{Field: field, Reason: reason} }
	switch {
	case isNil(store):
		return nil, invalid("store", "must not be nil")
	case reg == nil:
		return nil, invalid("registry", "must not be nil")
	case cfg.PageSize < 0:
		return nil, invalid("Config.PageSize", "must not be negative")
	case cfg.SnapshotSchemaVersion < 0:
		return nil, invalid("Config.SnapshotSchemaVersion", "must not be negative")
	case cfg.SnapshotTimeout < 0:
		return nil, invalid("Config.SnapshotTimeout", "must not be negative")
	case cfg.Snapshots != nil && isNil(cfg.Snapshots):
		return nil, invalid("Config.Snapshots", "is a nil pointer: leave the field unset to disable snapshots")
	case PT(new(T)).aggregateBase() == nil:
		return nil, invalid("aggregate type "+reflect.TypeFor[T]().String(), "embeds *aggregate.Base: embed aggregate.Base by value")
	}
	r := &Repository[T, PT]{
		store:       store,
		reg:         reg,
		maxRetries:  cfg.MaxRetries,
		pageSize:    cmp.Or(cfg.PageSize, defaultPageSize),
		logger:      cmp.Or(cfg.Logger, slog.Default()),
		snapshots:   cfg.Snapshots,
		policy:      cfg.SnapshotPolicy,
		snapSchema:  cmp.Or(cfg.SnapshotSchemaVersion, 1),
		snapType:    cmp.Or(cfg.SnapshotType, reflect.TypeFor[T]().Name()),
		snapTimeout: cmp.Or(cfg.SnapshotTimeout, defaultSnapshotTimeout),
	}
	if r.maxRetries == 0 {
		r.maxRetries = defaultMaxRetries
	} else if r.maxRetries < 0 {
		r.maxRetries = 0
	}
	if r.policy == nil {
		r.policy = snapshot.EveryN(defaultSnapshotEvery)
	}
	if r.snapshots != nil {
		if err := snapshot.Validate(snapshot.Snapshot{StreamID: "x", Type: r.snapType, Version: 1, SchemaVersion: r.snapSchema, Data: []byte{0}}, 0); err != nil {
			return nil, invalid("Config.SnapshotType", err.Error())
		}
		if err := checkSnapshotEncoding[T, PT](); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// isNil reports whether v is nil or an interface holding a nil pointer (or
// another nil reference), such as a (*postgres.Store)(nil): calling a
// method on it would panic.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface, reflect.UnsafePointer:
		return rv.IsNil()
	}
	return false
}

// With returns a repository of the same aggregate type, registry and
// [Config] that works on store instead of the repository's own store:
// typically a view of the store inside the caller's transaction, such as
// the one postgres.Store.InTx returns, so that [Repository.Save] and
// [Repository.Update] commit or roll back together with the caller's
// other writes, and loads see what the transaction sees:
//
//	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
//		if _, err := tx.Exec(ctx, insertPayment, paymentID, 100); err != nil {
//			return err
//		}
//		_, err := accounts.With(store.InTx(tx)).Update(ctx, "account-42", func(a *Account) error {
//			return a.Withdraw(100)
//		})
//		return err // an error rolls back the payment and the events
//	})
//
// The repository it returns is meant for one transaction and is as safe
// for concurrent use as store (a transaction is not); making one is cheap.
// It differs from the repository's own in these ways:
//
//   - Snapshots follow the transaction. When [Config.Snapshots] implements
//     [snapshot.TxBinder] and accepts store, snapshots are read and written
//     through it, so a snapshot taken after a save commits or rolls back
//     with the events: a snapshot of events that were rolled back never
//     survives. Its write is not bounded by [Config.SnapshotTimeout]
//     (with pgx, cancelling a statement closes the connection and so ends
//     the transaction); its failure is logged, not returned (the
//     PostgreSQL snapshot store writes it under a savepoint, so the
//     transaction stays usable); and an unusable snapshot met by a load is
//     not replaced. A snapshot that cannot be
//     read fails the load (outside a transaction it is logged and
//     skipped): the failed statement may have aborted the transaction.
//     With any other snapshot store, the returned repository reads and
//     takes no snapshots, and [Repository.Snapshot] fails.
//   - [Repository.Update] retries after a concurrency conflict only when
//     the reload shows that another writer moved the stream on (under READ
//     COMMITTED a transaction sees commits made after it began). When the
//     reload sees the version the save expected (REPEATABLE READ or
//     SERIALIZABLE, or a conflict only a new transaction can get past),
//     it returns the conflict at once: roll back and run the whole
//     transaction again. So it does for an error matching
//     [eventstore.ErrTransactionConflict] (a deadlock, say), without
//     reloading.
//   - When the save fails for another reason, Update returns no
//     aggregate: inside a transaction nothing is committed before the
//     caller's commit, so there is no ambiguous outcome to retry with
//     [Repository.Save]; roll the transaction back, or retry it whole.
//   - A nil store (or a nil pointer in it) makes every load and save of
//     the returned repository fail with an error matching
//     [eventstore.ErrInvalidInput], so that With can be chained.
func (r *Repository[T, PT]) With(store eventstore.Store) *Repository[T, PT] {
	bound := *r
	bound.store, bound.inTx = store, true
	if isNil(store) {
		bound.err = &eventstore.ValidationError{Field: "store", Reason: "must not be nil"}
		return &bound
	}
	if r.snapshots == nil {
		return &bound
	}
	bound.snapshots, bound.unbound = nil, true
	if b, ok := r.snapshots.(snapshot.TxBinder); ok {
		if s, ok := b.BindTx(store); ok && !isNil(s) {
			bound.snapshots, bound.unbound = s, false
		}
	}
	return &bound
}

// New returns a new, empty aggregate for the stream id, at version 0. Its
// first [Repository.Save] expects the stream not to exist. The ID is
// validated when the aggregate is saved.
func (r *Repository[T, PT]) New(id string) PT {
	agg := PT(new(T))
	agg.aggregateBase().id = id
	return agg
}

// Load returns the aggregate stored in the stream id, with every stored
// event applied. It fails with an error matching
// [eventstore.ErrStreamNotFound] when the stream has no events, and with
// [eventstore.ErrInvalidInput] for an invalid id. An event that cannot be
// decoded fails the load with an error matching
// [eventstore.ErrUnknownEventType] or [eventstore.ErrDecode], one that Apply
// refuses with an [*ApplyError]; a partly loaded aggregate is never
// returned.
func (r *Repository[T, PT]) Load(ctx context.Context, id string) (PT, error) {
	return r.load(ctx, id, 0, time.Time{})
}

// LoadVersion returns the aggregate as it was at stream version version:
// with events 1 to version applied. It fails with a [*VersionNotFoundError]
// when the stream is not that long yet, with
// [eventstore.ErrStreamNotFound] when it has no events, and with
// [eventstore.ErrInvalidInput] when version < 1.
//
// The returned aggregate's [Base.StoredVersion] is version, so saving
// changes made to it fails with a concurrency conflict unless the stream is
// still at that version: a past state cannot overwrite the present.
func (r *Repository[T, PT]) LoadVersion(ctx context.Context, id string, version int64) (PT, error) {
	if version < 1 {
		return nil, &eventstore.ValidationError{Field: "version", Reason: fmt.Sprintf("%d is not a stream version (versions start at 1)", version)}
	}
	agg, err := r.load(ctx, id, version, time.Time{})
	if err != nil {
		return nil, err
	}
	if v := agg.Version(); v < version {
		return nil, &VersionNotFoundError{StreamID: id, Version: version, Current: v}
	}
	return agg, nil
}

// LoadAt returns the aggregate as it was at time t: with the stream's
// events applied in order up to, not including, the first one recorded
// after t. (Events are recorded in version order, so this is every event
// recorded at or before t; should a store's clock ever step back, the state
// stays a prefix of the stream.) It fails with an error matching
// [eventstore.ErrStreamNotFound] when no event was recorded at or before t.
func (r *Repository[T, PT]) LoadAt(ctx context.Context, id string, t time.Time) (PT, error) {
	if t.IsZero() {
		return nil, &eventstore.ValidationError{Field: "time", Reason: "must not be zero"}
	}
	return r.load(ctx, id, 0, t)
}

// load rebuilds the aggregate in stream id, up to version upTo (0: no
// bound) and stopping before the first event recorded after until (zero:
// no bound). It starts from a snapshot when one is usable.
func (r *Repository[T, PT]) load(ctx context.Context, id string, upTo int64, until time.Time) (PT, error) {
	if r.err != nil {
		return nil, r.err
	}
	if err := eventstore.ValidateStreamID(id); err != nil {
		return nil, err
	}
	var (
		agg         PT
		done, stale bool
	)
	if r.snapshots != nil && until.IsZero() {
		var err error
		if agg, done, stale, err = r.loadSnapshot(ctx, id, upTo); err != nil {
			return nil, err
		}
	}
	if agg == nil {
		agg, done = r.New(id), false
	}
	if done {
		agg.aggregateBase().stored = agg.Version()
	} else if err := r.replay(ctx, agg, upTo, until); err != nil {
		return nil, err
	}
	if stale && upTo == 0 && agg.Version() > 0 && !r.inTx {
		r.trySnapshot(ctx, agg, "replace an unusable snapshot")
	}
	if agg.Version() == 0 {
		if !until.IsZero() {
			return nil, fmt.Errorf("load %q at %s: no event recorded by then: %w", id, until.Format(time.RFC3339Nano), eventstore.ErrStreamNotFound)
		}
		return nil, fmt.Errorf("load %q: %w", id, eventstore.ErrStreamNotFound)
	}
	return agg, nil
}

// replay applies the stream's events after agg's current version, up to
// version upTo (0: no bound) and stopping before the first event recorded
// after until (zero: no bound), then marks agg as stored at its version.
func (r *Repository[T, PT]) replay(ctx context.Context, agg PT, upTo int64, until time.Time) error {
	b := agg.aggregateBase()
	opts := eventstore.ReadStreamOptions{From: b.version + 1}
	if upTo > 0 {
		if upTo <= b.version {
			b.stored = b.version
			return nil
		}
		opts.Limit = int(upTo - b.version)
	}
	// Without a time bound, only payloads are needed: a store that can
	// read just those (eventstore.PayloadReader) sends less.
	read := eventstore.ReadStreamPayloadsSeq
	if !until.IsZero() {
		read = eventstore.ReadStreamSeq
	}
	for rec, err := range read(ctx, r.store, b.id, opts, r.pageSize) {
		if err != nil {
			return fmt.Errorf("load %q: %w", b.id, err)
		}
		if !until.IsZero() && rec.RecordedAt.After(until) {
			break
		}
		if err := r.apply(ctx, agg, rec); err != nil {
			return err
		}
	}
	b.stored = b.version
	return nil
}

// apply decodes a stored event and applies it to agg, which must be at the
// version before it.
func (r *Repository[T, PT]) apply(ctx context.Context, agg PT, rec eventstore.Record) error {
	b := agg.aggregateBase()
	if rec.StreamVersion > b.version+1 && (b.version == 0 || b.snapshot == b.version) {
		// The events in between are gone: the stream is truncated.
		return &StreamTruncatedError{StreamID: b.id, FirstVersion: rec.StreamVersion, Version: b.version}
	}
	if rec.StreamVersion != b.version+1 {
		return fmt.Errorf("load %q: store returned version %d after version %d", b.id, rec.StreamVersion, b.version)
	}
	ev, err := r.reg.DecodeContext(ctx, rec)
	if err != nil {
		var decodeErr *eventstore.DecodeError
		if errors.As(err, &decodeErr) {
			if decodeErr.StreamID == "" { // a store that does not fill it
				decodeErr.StreamID, decodeErr.StreamVersion = b.id, rec.StreamVersion
			}
			return fmt.Errorf("load %q: %w", b.id, err) // names the stream and version
		}
		return fmt.Errorf("load %q: event at version %d: %w", b.id, rec.StreamVersion, err)
	}
	if err := agg.Apply(ev); err != nil {
		return &ApplyError{StreamID: b.id, Version: rec.StreamVersion, Type: rec.Type, Err: err}
	}
	b.version = rec.StreamVersion
	return nil
}

// Save appends agg's uncommitted events to its stream, expecting the stream
// to be at [Base.StoredVersion] (no stream for a new aggregate). On success
// the uncommitted events are cleared, the stored version advances, and Save
// returns the store's [eventstore.AppendResult]: the stream's new version
// and the global position of the last event, which a caller can wait for
// a projection to pass (read-your-writes). Saving an aggregate without
// uncommitted events is a no-op that returns its stored version and a zero
// position: there is nothing to wait for.
//
// Events carry the metadata set on ctx with [eventstore.WithMetadata].
//
// When another writer appended first, Save fails with an error matching
// [eventstore.ErrConcurrencyConflict] and agg is unchanged: reload it and
// run the command again, or use [Repository.Update], which does so.
//
// When the repository has a snapshot store and its policy asks for it, a
// successful Save then takes a snapshot, spending at most
// [Config.SnapshotTimeout]; a snapshot failure is logged, never returned.
//
// When Save fails for another reason, such as a lost connection, the events
// may or may not have been stored. Calling Save again with the same
// aggregate and the same context metadata is safe: the event IDs were fixed
// by [Record], so a store that already has them treats the retry as a
// no-op success.
//
// To save inside the caller's transaction, together with other writes,
// call Save on the repository [Repository.With] returns.
func (r *Repository[T, PT]) Save(ctx context.Context, agg PT) (eventstore.AppendResult, error) {
	if r.err != nil {
		return eventstore.AppendResult{}, r.err
	}
	if agg == nil {
		return eventstore.AppendResult{}, &eventstore.ValidationError{Field: "aggregate", Reason: "must not be nil"}
	}
	b := agg.aggregateBase()
	if len(b.pending) == 0 {
		return eventstore.AppendResult{StreamID: b.id, Version: b.stored}, nil
	}
	if err := eventstore.ValidateStreamID(b.id); err != nil {
		return eventstore.AppendResult{}, err
	}
	md, _ := eventstore.MetadataFromContext(ctx)
	md.Headers = maps.Clone(md.Headers)
	events := make([]eventstore.Event, len(b.pending))
	for i, p := range b.pending {
		e, err := r.reg.EncodeContext(ctx, p.event)
		if err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("save %q: %w", b.id, err)
		}
		e.ID = p.id
		e.Metadata = md
		events[i] = e
	}
	previous := b.stored
	res, err := r.store.Append(ctx, b.id, eventstore.Exact(previous), events...)
	if err != nil {
		var conflict *eventstore.ConcurrencyError
		if errors.As(err, &conflict) {
			return eventstore.AppendResult{}, err // already names the stream and both versions
		}
		return eventstore.AppendResult{}, fmt.Errorf("save %q: %w", b.id, err)
	}
	if want := b.stored + int64(len(events)); res.Version != want {
		return eventstore.AppendResult{}, fmt.Errorf("save %q: store reported version %d after the append, want %d", b.id, res.Version, want)
	}
	b.stored = res.Version
	b.version = res.Version
	b.pending = nil
	b.saved = res.Position
	if r.snapshots != nil && r.policy.ShouldSnapshot(snapshot.Info{StreamID: b.id, Version: b.version, PreviousVersion: previous, SnapshotVersion: b.snapshot}) {
		r.trySnapshot(ctx, agg, "after a save")
	}
	return res, nil
}

// Update runs a command against the aggregate in stream id and saves the
// result, retrying on concurrency conflicts: it loads the aggregate, calls
// fn, and saves. When the save conflicts with another writer, it reloads
// and calls fn again, up to [Config.MaxRetries] times, then fails with an
// error matching [eventstore.ErrConcurrencyConflict]. fn must therefore be
// safe to run more than once and decide only from the aggregate it is given.
// (Inside a transaction, see [Repository.With] for when it retries.)
//
// When the stream does not exist, fn gets a new aggregate from
// [Repository.New], so Update also creates aggregates (create-or-update);
// fn can check agg.Version() == 0 to tell. If fn records nothing, nothing
// is saved and Update returns the aggregate as loaded; but when the stream
// does not exist either, there is no aggregate to return, and Update fails
// with an error matching [eventstore.ErrStreamNotFound], as
// [Repository.Load] would.
//
// The saved aggregate's [Base.SavedPosition] is the position of its last
// event, which a reader of a projection can wait for (read-your-writes).
//
// An error from fn aborts the update without saving and is returned as is,
// so domain errors can be matched with [errors.Is]. On success Update
// returns the saved aggregate. On a save error other than a conflict (the
// events may or may not be stored), it returns, outside a transaction (see
// [Repository.With]), the unsaved aggregate with
// the error: retry with [Repository.Save], which is idempotent, rather than
// with Update, which would run fn again with new event IDs. Otherwise the
// returned aggregate is nil on error.
func (r *Repository[T, PT]) Update(ctx context.Context, id string, fn func(agg PT) error) (PT, error) {
	if fn == nil {
		return nil, &eventstore.ValidationError{Field: "update function", Reason: "must not be nil"}
	}
	var (
		conflict   error // the last save's concurrency conflict
		conflictAt int64 // the version that save expected
	)
	for attempt := 0; ; attempt++ {
		agg, err := r.Load(ctx, id)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			agg, err = r.New(id), nil
		}
		if err != nil {
			return nil, err
		}
		if r.inTx && conflict != nil && agg.Version() == conflictAt {
			// The transaction still sees the version the save expected, so
			// saving again would conflict again: only a new transaction
			// can get past this conflict.
			return nil, fmt.Errorf("update %q: the transaction cannot see the conflicting write; retry the whole transaction: %w", id, conflict)
		}
		if err := fn(agg); err != nil {
			return nil, err
		}
		if agg.Version() == 0 {
			return nil, fmt.Errorf("update %q: the stream does not exist and the update recorded no event: %w", id, eventstore.ErrStreamNotFound)
		}
		_, err = r.Save(ctx, agg)
		switch {
		case err == nil:
			return agg, nil
		case errors.Is(err, eventstore.ErrTransactionConflict):
			// Only a new transaction can succeed.
			return nil, err
		case !errors.Is(err, eventstore.ErrConcurrencyConflict) && r.inTx:
			// Nothing commits before the caller's commit: there is no
			// ambiguous outcome to retry with Save, only a transaction to
			// roll back (or retry whole).
			return nil, err
		case !errors.Is(err, eventstore.ErrConcurrencyConflict):
			return agg, err
		case attempt >= r.maxRetries:
			return nil, fmt.Errorf("update %q: gave up after %d attempts: %w", id, attempt+1, err)
		}
		conflict, conflictAt = err, agg.aggregateBase().stored
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("update %q: %w", id, err)
		}
	}
}
