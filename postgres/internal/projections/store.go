package projections

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// Config configures a [Store].
type Config struct {
	// LeaseConnConfig, when not nil, is the configuration of the
	// connections dialled for leases; otherwise they come from the pool.
	LeaseConnConfig *pgx.ConnConfig
	// WrapError turns a driver error into the caller's error for op.
	// Defaults to fmt.Errorf("%s: %w", op, err).
	WrapError func(op string, err error) error
}

// Store is the PostgreSQL [projectionstore.Storage].
type Store struct {
	pool     *pgxpool.Pool
	leaseCfg *pgx.ConnConfig
	wrap     func(op string, err error) error
}

var (
	_ projectionstore.Storage      = (*Store)(nil)
	_ projectionstore.EventCounter = (*Store)(nil)
)

// New returns a Store running its queries on pool.
func New(pool *pgxpool.Pool, cfg Config) *Store {
	s := &Store{pool: pool, wrap: cfg.WrapError}
	if cfg.LeaseConnConfig != nil {
		s.leaseCfg = cfg.LeaseConnConfig.Copy()
	}
	if s.wrap == nil {
		s.wrap = func(op string, err error) error { return fmt.Errorf("%s: %w", op, err) }
	}
	return s
}

// releaseTimeout bounds the statements run while giving a lease up.
const releaseTimeout = 5 * time.Second

// lockKey is the session advisory lock key of a projection partition:
// FNV-1a (64 bits) of a prefix, the name and the partition. Other
// applications' advisory locks on the same database are unlikely to
// collide with it.
func lockKey(key projectionstore.Key) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("chronicle.projection\x00" + key.Projection + "\x00" + strconv.Itoa(key.Partition)))
	return int64(h.Sum64())
}

// nameLockKey is the second key of nameLockSQL for a projection. Two
// names with one key only wait for each other.
func nameLockKey(name string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return int32(h.Sum32())
}

// maxErrorLen bounds the stored error messages, in bytes.
const maxErrorLen = 4000

// errorText makes a message storable as text: valid UTF-8, no NUL,
// bounded.
func errorText(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	msg = strings.ReplaceAll(msg, "\x00", "")
	if len(msg) > maxErrorLen {
		cut := maxErrorLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return msg
}

// scanCheckpoint scans the columns of checkpointsSQL.
func scanCheckpoint(row pgx.Row) (projectionstore.Checkpoint, error) {
	var cp projectionstore.Checkpoint
	var parked int64
	err := row.Scan(&cp.Projection, &cp.Partition, &cp.Partitions, &cp.Position.Transaction, &cp.Position.Global,
		&cp.UpdatedAt, &cp.Holder, &cp.RebuildRequested, &cp.Error, &parked)
	cp.Parked = int(parked)
	cp.UpdatedAt = cp.UpdatedAt.UTC()
	return cp, err
}

// Checkpoints implements [projectionstore.Storage]. A checkpoint's Holder
// is set only while its holder's advisory lock is held.
func (s *Store) Checkpoints(ctx context.Context, name string) ([]projectionstore.Checkpoint, error) {
	if name != "" {
		if err := projection.ValidateName(name); err != nil {
			return nil, err
		}
	}
	rows, err := s.pool.Query(ctx, checkpointsSQL, name)
	if err != nil {
		return nil, s.wrap("read projection checkpoints", err)
	}
	cps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (projectionstore.Checkpoint, error) { return scanCheckpoint(row) })
	if err != nil {
		return nil, s.wrap("read projection checkpoints", err)
	}
	if len(cps) == 0 {
		return nil, nil
	}
	rows, err = s.pool.Query(ctx, heldLocksSQL)
	if err != nil {
		return nil, s.wrap("read projection locks", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, s.wrap("read projection locks", err)
	}
	held := make(map[int64]bool, len(keys))
	for _, k := range keys {
		held[k] = true
	}
	for i := range cps {
		if !held[lockKey(projectionstore.Key{Projection: cps[i].Projection, Partition: cps[i].Partition})] {
			cps[i].Holder = ""
		}
	}
	return cps, nil
}

// validatePartitions checks a partition count; 0 is allowed when zeroOK.
func validatePartitions(partitions int, zeroOK bool) error {
	low := 1
	if zeroOK {
		low = 0
	}
	if partitions < low || partitions > projectionstore.MaxPartitions {
		return &eventstore.ValidationError{Field: "partitions", Reason: fmt.Sprintf("%d is not between %d and %d", partitions, low, projectionstore.MaxPartitions)}
	}
	return nil
}

// RequestRebuild implements [projectionstore.Storage].
func (s *Store) RequestRebuild(ctx context.Context, name string, partitions int) error {
	if err := projection.ValidateName(name); err != nil {
		return err
	}
	if err := validatePartitions(partitions, true); err != nil {
		return err
	}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if partitions == 0 {
			tag, err := tx.Exec(ctx, requestRebuildSQL, name)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("%w: %q has no checkpoints", projection.ErrUnknownProjection, name)
			}
			return nil
		}
		// The same per-name lock as a first claim, so that the check and
		// the insert cannot race a runner claiming another count.
		if err := checkPartitions(ctx, tx, name, partitions); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, createRebuildSQL, name, partitions)
		return err
	})
	return s.wrapUnlessTyped("request rebuild", err)
}

// checkPartitions takes the projection's name lock (for the rest of tx)
// and fails with a [*projection.PartitionsMismatchError] when another
// partition count is stored.
func checkPartitions(ctx context.Context, tx pgx.Tx, name string, partitions int) error {
	if _, err := tx.Exec(ctx, nameLockSQL, nameLockKey(name)); err != nil {
		return err
	}
	var stored int
	err := tx.QueryRow(ctx, mismatchSQL, name, partitions).Scan(&stored)
	switch {
	case err == nil:
		return &projection.PartitionsMismatchError{Projection: name, Stored: stored, Configured: partitions}
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	}
	return err
}

// wrapUnlessTyped wraps a driver error, and returns the package's own
// typed errors as they are.
func (s *Store) wrapUnlessTyped(op string, err error) error {
	if err == nil || errors.Is(err, projection.ErrPartitionsMismatch) || errors.Is(err, projection.ErrUnknownProjection) {
		return err
	}
	return s.wrap(op, err)
}

// CountEvents implements [projectionstore.EventCounter]: it counts the
// events of a partition in (after, upTo] in SQL, for status reports.
func (s *Store) CountEvents(ctx context.Context, after, upTo eventstore.Position, partition, partitions int) (int64, error) {
	if partitions <= 1 {
		var n int64
		if err := s.pool.QueryRow(ctx, countEventsSQL, after.Transaction, after.Global, upTo.Transaction, upTo.Global).Scan(&n); err != nil {
			return 0, s.wrap("count events", err)
		}
		return n, nil
	}
	rows, err := s.pool.Query(ctx, countStreamEventsSQL, after.Transaction, after.Global, upTo.Transaction, upTo.Global)
	if err != nil {
		return 0, s.wrap("count events", err)
	}
	var (
		n      int64
		stream string
		count  int64
	)
	_, err = pgx.ForEachRow(rows, []any{&stream, &count}, func() error {
		if projection.PartitionOf(stream, partitions) == partition {
			n += count
		}
		return nil
	})
	if err != nil {
		return 0, s.wrap("count events", err)
	}
	return n, nil
}

// Heartbeat implements [projectionstore.Storage], with the database's
// clock.
func (s *Store) Heartbeat(ctx context.Context, name, holder string, ttl time.Duration) ([]string, error) {
	if err := projection.ValidateName(name); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, heartbeatSQL, name, errorText(holder), max(ttl.Milliseconds(), 1))
	if err != nil {
		return nil, s.wrap("record projection instance", err)
	}
	holders, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.wrap("record projection instance", err)
	}
	return holders, nil
}

// Leave implements [projectionstore.Storage].
func (s *Store) Leave(ctx context.Context, name, holder string) error {
	if _, err := s.pool.Exec(ctx, leaveSQL, name, errorText(holder)); err != nil {
		return s.wrap("remove projection instance", err)
	}
	return nil
}
