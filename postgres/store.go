package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/notify"
)

// The defaults of [Config].
const (
	defaultPollInterval   = time.Second
	defaultNotifyDebounce = 10 * time.Millisecond
)

// listenerAppName is the application_name of the LISTEN connection,
// unless ListenConfig sets one.
const listenerAppName = "chronicle-listener"

// Config configures a [Store]. The zero value (or a nil *Config) gives the
// defaults.
type Config struct {
	// Logger receives the store's operational messages: the LISTEN
	// connection being lost and re-established. Appends and reads never
	// log; they return errors. Defaults to [slog.Default].
	Logger *slog.Logger

	// MaxEventSize is the largest event accepted by an append, in bytes of
	// payload plus metadata. Larger events fail with an
	// [*eventstore.EventTooLargeError]. Defaults to
	// [eventstore.DefaultMaxEventSize] (1 MiB).
	MaxEventSize int

	// PollOnly disables LISTEN/NOTIFY: [Store.Watch] then wakes watchers
	// only on the PollInterval tick and after this store's own appends.
	// Set it when the pool goes through PgBouncer in transaction pooling
	// mode, where LISTEN does not work, and no direct connection is
	// available for ListenConfig. Defaults to false.
	PollOnly bool

	// PollInterval is how often [Store.Watch] wakes watchers even when no
	// notification arrived, so that a lost notification (or PollOnly mode)
	// delays a tailing reader by at most one interval. Defaults to 1s.
	PollInterval time.Duration

	// NotifyDebounce is the shortest time between two wake-ups caused by
	// notifications. The first notification after a quiet period wakes
	// watchers at once; further ones within the window are coalesced into
	// one wake-up at its end, so a burst of commits costs the tailers one
	// read instead of one per commit. Defaults to 10ms.
	NotifyDebounce time.Duration

	// ListenConfig is the connection configuration of the dedicated
	// connection that runs LISTEN. Set it when the pool goes through a
	// transaction-pooling proxy but the server itself is reachable
	// directly. Defaults to a copy of the pool's connection configuration.
	ListenConfig *pgx.ConnConfig

	// Group commit, see group.go.

	// GroupCommit turns group commit on. Off, every [Store.Append] runs its
	// own statement and commit. With group commit on, appends
	// that arrive while another append of this Store is in flight queue up
	// and are sent together, when it ends, as one statement and one
	// commit, which shares the round trip and the WAL flush among them. A
	// lone append is sent at once (nothing waits for a timer); under
	// concurrency an append may wait for the flush before it. Each append
	// keeps its own outcome and errors. Appends inside a caller's
	// transaction ([Store.AppendTx]) and [Store.AppendStreams] never join
	// a group. Defaults to false (off): it is new, and it does not yet reach
	// its throughput targets at 8 writers (see docs/postgres.md, "Group
	// commit").
	GroupCommit bool

	// MaxGroupEvents bounds the number of events of one group commit; an
	// append larger than it is sent alone. Defaults to 1000.
	MaxGroupEvents int

	// MaxGroupBytes bounds the bytes of payload and metadata of one group
	// commit; an append larger than it is sent alone. Defaults to 4 MiB.
	MaxGroupBytes int

	// GroupObserver, when set with GroupCommit, is called after each flush
	// of group commit with the number of appends and of events it sent
	// together (a lone append is a flush of one), for a histogram of group
	// sizes (package telemetry has one). It runs on the flushing
	// goroutine, between flushes: it must be quick and must not block.
	// Defaults to nil (not called).
	GroupObserver func(appends, events int)
}

// withDefaults checks cfg and returns it with the defaults filled in.
func (cfg Config) withDefaults() (Config, error) {
	invalid := func(field, reason string) error {
		return &eventstore.ValidationError{Field: "config " + field, Reason: reason}
	}
	switch {
	case cfg.MaxEventSize < 0:
		return cfg, invalid("MaxEventSize", fmt.Sprintf("%d is negative", cfg.MaxEventSize))
	case cfg.PollInterval < 0:
		return cfg, invalid("PollInterval", fmt.Sprintf("%s is negative", cfg.PollInterval))
	case cfg.PollInterval > 0 && cfg.PollInterval < time.Millisecond:
		return cfg, invalid("PollInterval", fmt.Sprintf("%s is shorter than 1ms", cfg.PollInterval))
	case cfg.NotifyDebounce < 0:
		return cfg, invalid("NotifyDebounce", fmt.Sprintf("%s is negative", cfg.NotifyDebounce))
	case cfg.PollOnly && cfg.ListenConfig != nil:
		return cfg, invalid("ListenConfig", "is set but PollOnly disables LISTEN")
	case cfg.MaxGroupEvents < 0:
		return cfg, invalid("MaxGroupEvents", fmt.Sprintf("%d is negative", cfg.MaxGroupEvents))
	case cfg.MaxGroupBytes < 0:
		return cfg, invalid("MaxGroupBytes", fmt.Sprintf("%d is negative", cfg.MaxGroupBytes))
	}
	cfg.MaxGroupEvents = cmp.Or(cfg.MaxGroupEvents, defaultMaxGroupEvents)
	cfg.MaxGroupBytes = cmp.Or(cfg.MaxGroupBytes, defaultMaxGroupBytes)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.MaxEventSize = cmp.Or(cfg.MaxEventSize, eventstore.DefaultMaxEventSize)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, defaultPollInterval)
	cfg.NotifyDebounce = cmp.Or(cfg.NotifyDebounce, defaultNotifyDebounce)
	return cfg, nil
}

// Store is the PostgreSQL event store. It implements [eventstore.Store] on
// the chronicle.events table created by package migrations, and adds
// appends inside the caller's transaction ([Store.AppendTx],
// [Store.AppendStreamsTx]) and a tailing-lag metric ([Store.TailLag]).
//
// A Store is safe for concurrent use. It does not own the pool: close the
// Store with [Store.Close] before closing the pool.
type Store struct {
	pool *pgxpool.Pool
	cfg  Config

	// watch wakes watchers (see Store.Watch); its goroutines start lazily
	// and stop on Close.
	watch *notify.Hub

	// Group commit, see group.go: nil unless Config.GroupCommit.
	group *groupCommit
}

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.PayloadReader = (*Store)(nil)
	_ eventstore.RecordReader  = (*Store)(nil)
	_ eventstore.StreamLister  = (*Store)(nil)
)

// New returns a Store that runs its queries on pool. A nil cfg means the
// defaults. The schema must exist: apply package migrations first. New does
// not connect; the LISTEN connection is opened by the first [Store.Watch].
func New(pool *pgxpool.Pool, cfg *Config) (*Store, error) {
	if pool == nil {
		return nil, &eventstore.ValidationError{Field: "pool", Reason: "must not be nil"}
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	if !c.PollOnly {
		if c.ListenConfig == nil {
			c.ListenConfig = pool.Config().ConnConfig
		}
		c.ListenConfig = c.ListenConfig.Copy()
		if c.ListenConfig.RuntimeParams == nil {
			c.ListenConfig.RuntimeParams = map[string]string{}
		}
		if c.ListenConfig.RuntimeParams["application_name"] == "" {
			// Operators can tell the listener apart in pg_stat_activity.
			c.ListenConfig.RuntimeParams["application_name"] = listenerAppName
		}
	}
	s := &Store{pool: pool, cfg: c}
	var listen *pgx.ConnConfig
	if !c.PollOnly {
		listen = c.ListenConfig
	}
	s.watch = notify.New(notify.Config{
		Logger:       c.Logger,
		Listen:       listen,
		PollInterval: c.PollInterval,
		Debounce:     c.NotifyDebounce,
		Notify: func(ctx context.Context) error {
			_, err := pool.Exec(ctx, notify.SQL)
			return err
		},
	})
	if c.GroupCommit {
		s.group = newGroupCommit(s)
	}
	return s, nil
}

// Close stops the LISTEN connection, the poll ticker and the notifier
// (sending a last pending notification first), and closes every channel
// returned by [Store.Watch]. It does not close the pool: call it before
// closing the pool. Appends and reads keep working after Close, without
// notifying other processes; Watch returns closed channels.
func (s *Store) Close() {
	s.watch.Close()
}

// dbtx is what the store's statements run on: a *pgxpool.Pool, a
// *pgx.Conn or a pgx.Tx all satisfy it. Other files of this package may use
// it for their own queries.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

var (
	_ dbtx = (*pgxpool.Pool)(nil)
	_ dbtx = (*pgx.Conn)(nil)
	_ dbtx = (pgx.Tx)(nil)
)

// SQLSTATE codes the store handles.
const (
	codeUndefinedTable    = "42P01"
	codeInvalidSchemaName = "3F000"

	// Data the server refuses to store as jsonb.
	codeNumericOutOfRange         = "22003"
	codeInvalidTextRepresentation = "22P02"
	codeCharacterNotInRepertoire  = "22021"
	codeUntranslatableCharacter   = "22P05"
)

// pgError returns the *pgconn.PgError in err's chain, or nil.
func pgError(err error) *pgconn.PgError {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr
	}
	return nil
}

// ErrSchemaMissing reports that the chronicle schema or one of its tables
// does not exist in the database: the migrations have not been applied
// (see package migrations, or run `chronicle migrate up`).
var ErrSchemaMissing = errors.New("chronicle schema missing: apply the migrations first (chronicle migrate up)")

// wrapError translates a driver error at the package boundary: a
// missing schema becomes [ErrSchemaMissing] (with the driver error kept in
// the chain), context errors stay matchable with errors.Is, and every other
// error is wrapped with op for context. Other files of this package may use
// it.
func wrapError(op string, err error) error {
	if err == nil {
		return nil
	}
	if pgErr := pgError(err); pgErr != nil {
		switch pgErr.Code {
		case codeUndefinedTable, codeInvalidSchemaName:
			return fmt.Errorf("%s: %w: %w", op, ErrSchemaMissing, err)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}
