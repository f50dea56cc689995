package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/snapshot"
)

// SnapshotStoreConfig configures a [SnapshotStore]. The zero value (or a
// nil *SnapshotStoreConfig) gives the defaults.
type SnapshotStoreConfig struct {
	// MaxSize is the largest encoded state accepted by [SnapshotStore.Save],
	// in bytes. Defaults to [snapshot.DefaultMaxSize] (16 MiB).
	MaxSize int
}

// SnapshotStore is the PostgreSQL [snapshot.Store]: the latest snapshot of
// each stream, in the chronicle.snapshots table created by package
// migrations (migration 3). It also implements [snapshot.StreamLoader]:
// given a [Store] on the same pool, it reads a snapshot and the events
// after it in one query.
//
// A SnapshotStore is safe for concurrent use. It does not own the pool.
type SnapshotStore struct {
	pool    *pgxpool.Pool
	maxSize int
}

var (
	_ snapshot.Store        = (*SnapshotStore)(nil)
	_ snapshot.StreamLoader = (*SnapshotStore)(nil)
)

// NewSnapshotStore returns a SnapshotStore that runs its queries on pool.
// A nil cfg means the defaults. The schema must exist: apply package
// migrations first.
func NewSnapshotStore(pool *pgxpool.Pool, cfg *SnapshotStoreConfig) (*SnapshotStore, error) {
	if pool == nil {
		return nil, &eventstore.ValidationError{Field: "pool", Reason: "must not be nil"}
	}
	var c SnapshotStoreConfig
	if cfg != nil {
		c = *cfg
	}
	if c.MaxSize < 0 {
		return nil, &eventstore.ValidationError{Field: "config MaxSize", Reason: fmt.Sprintf("%d is negative", c.MaxSize)}
	}
	if c.MaxSize == 0 {
		c.MaxSize = snapshot.DefaultMaxSize
	}
	return &SnapshotStore{pool: pool, maxSize: c.MaxSize}, nil
}

// snapshotSaveSQL keeps the snapshot with the highest stream version: the
// upsert replaces a stored snapshot only when it is not newer.
const snapshotSaveSQL = `
INSERT INTO chronicle.snapshots AS s (stream_id, aggregate_type, stream_version, schema_version, data, taken_at)
VALUES ($1, $2, $3, $4, $5, coalesce($6, now()))
ON CONFLICT (stream_id) DO UPDATE
SET aggregate_type = EXCLUDED.aggregate_type,
    stream_version = EXCLUDED.stream_version,
    schema_version = EXCLUDED.schema_version,
    data           = EXCLUDED.data,
    taken_at       = EXCLUDED.taken_at
WHERE s.stream_version <= EXCLUDED.stream_version`

const snapshotLoadSQL = `
SELECT aggregate_type, stream_version, schema_version, data, taken_at
FROM chronicle.snapshots
WHERE stream_id = $1`

const snapshotDeleteSQL = `DELETE FROM chronicle.snapshots WHERE stream_id = $1`

// snapshotLoadStreamSQL reads a stream's snapshot and up to $4 of its
// events in one statement: from the snapshot's version when the snapshot
// has type $2 and schema version $3, from version 1 otherwise. It always
// returns at least one row; the snapshot's data comes only on the first,
// and only when usable.
const snapshotLoadStreamSQL = `
WITH snap AS (
    SELECT aggregate_type, stream_version, schema_version, data, taken_at,
           (aggregate_type = $2 AND schema_version = $3) AS usable
    FROM chronicle.snapshots
    WHERE stream_id = $1
)
SELECT snap.aggregate_type, snap.stream_version, snap.schema_version, snap.taken_at,
       CASE WHEN snap.usable AND row_number() OVER (ORDER BY e.stream_version) = 1 THEN snap.data END,
       e.global_position, e.transaction_id, e.event_id, e.stream_version,
       e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at
FROM (SELECT) AS one
LEFT JOIN snap ON true
LEFT JOIN LATERAL (
    SELECT global_position, transaction_id, event_id, stream_version,
           event_type, schema_version, data, metadata, recorded_at
    FROM chronicle.events
    WHERE stream_id = $1
      AND stream_version >= CASE WHEN snap.usable THEN snap.stream_version ELSE 1 END
    ORDER BY stream_version
    LIMIT $4
) e ON true
ORDER BY e.stream_version`

// Save stores s as its stream's latest snapshot unless the stored one
// covers a higher version; see [snapshot.Store.Save].
func (s *SnapshotStore) Save(ctx context.Context, snap snapshot.Snapshot) error {
	if err := snapshot.Validate(snap, s.maxSize); err != nil {
		return err
	}
	var takenAt *time.Time
	if !snap.TakenAt.IsZero() {
		t := snap.TakenAt.UTC()
		takenAt = &t
	}
	if _, err := s.pool.Exec(ctx, snapshotSaveSQL, snap.StreamID, snap.Type, snap.Version, int32(snap.SchemaVersion), snap.Data, takenAt); err != nil {
		return wrapError(fmt.Sprintf("save snapshot of stream %q", snap.StreamID), err)
	}
	return nil
}

// Load returns the stream's latest snapshot, or an error matching
// [snapshot.ErrNotFound]; see [snapshot.Store.Load].
func (s *SnapshotStore) Load(ctx context.Context, streamID string) (snapshot.Snapshot, error) {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return snapshot.Snapshot{}, err
	}
	snap := snapshot.Snapshot{StreamID: streamID}
	var schema int32
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, snapshotLoadSQL, streamID).Scan(&snap.Type, &snap.Version, &schema, &snap.Data, &snap.TakenAt)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return snapshot.Snapshot{}, fmt.Errorf("stream %q: %w", streamID, snapshot.ErrNotFound)
	}
	if err != nil {
		return snapshot.Snapshot{}, wrapError(fmt.Sprintf("load snapshot of stream %q", streamID), err)
	}
	snap.SchemaVersion = int(schema)
	snap.TakenAt = snap.TakenAt.UTC()
	return snap, nil
}

// Delete removes the stream's snapshot; see [snapshot.Store.Delete].
func (s *SnapshotStore) Delete(ctx context.Context, streamID string) error {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, snapshotDeleteSQL, streamID); err != nil {
		return wrapError(fmt.Sprintf("delete snapshot of stream %q", streamID), err)
	}
	return nil
}

// LoadStream reads streamID's snapshot and up to limit of its events in
// one query; see [snapshot.StreamLoader]. events must be a [*Store] on the
// same pool as s; any other store gets an error matching
// [errors.ErrUnsupported].
func (s *SnapshotStore) LoadStream(ctx context.Context, events eventstore.Store, streamID, typ string, schemaVersion int, limit int) (snapshot.StreamLoad, error) {
	if es, ok := events.(*Store); !ok || es.pool != s.pool {
		return snapshot.StreamLoad{}, fmt.Errorf("postgres snapshot store: events are not in a postgres.Store on the same pool: %w", errors.ErrUnsupported)
	}
	return loadStream(ctx, s.pool, fmt.Sprintf("load snapshot and events of stream %q", streamID), streamID, typ, schemaVersion, limit)
}

// loadStream validates and runs snapshotLoadStreamSQL on db; op names it
// in errors.
func loadStream(ctx context.Context, db dbtx, op, streamID, typ string, schemaVersion int, limit int) (snapshot.StreamLoad, error) {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return snapshot.StreamLoad{}, err
	}
	if limit <= 0 {
		return snapshot.StreamLoad{}, &eventstore.ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is not positive", limit)}
	}
	rows, err := db.Query(ctx, snapshotLoadStreamSQL, streamID, typ, int32(schemaVersion), int64(limit))
	if err != nil {
		return snapshot.StreamLoad{}, wrapError(op, err)
	}
	res, err := scanStreamLoad(rows, streamID, limit)
	if err != nil {
		return snapshot.StreamLoad{}, wrapError(op, err)
	}
	return res, nil
}

func scanStreamLoad(rows pgx.Rows, streamID string, limit int) (snapshot.StreamLoad, error) {
	defer rows.Close()
	res := snapshot.StreamLoad{Records: make([]eventstore.Record, 0, min(limit, 64))}
	var (
		snapType       pgtype.Text
		snapVersion    pgtype.Int8
		snapSchema     pgtype.Int4
		snapTakenAt    pgtype.Timestamptz
		snapData       []byte
		position       pgtype.Int8
		transaction    pgtype.Uint64
		eventID        pgtype.UUID
		version        pgtype.Int8
		eventType      pgtype.Text
		eventSchema    pgtype.Int4
		data, metadata []byte
		recordedAt     pgtype.Timestamptz
	)
	first := true
	for rows.Next() {
		snapData, data, metadata = nil, nil, nil
		if err := rows.Scan(&snapType, &snapVersion, &snapSchema, &snapTakenAt, &snapData,
			&position, &transaction, &eventID, &version, &eventType, &eventSchema, &data, &metadata, &recordedAt); err != nil {
			return snapshot.StreamLoad{}, err
		}
		if first && snapType.Valid {
			res.Found = true
			res.Snapshot = snapshot.Snapshot{
				StreamID:      streamID,
				Type:          snapType.String,
				Version:       snapVersion.Int64,
				SchemaVersion: int(snapSchema.Int32),
				Data:          snapData,
				TakenAt:       snapTakenAt.Time.UTC(),
			}
		}
		first = false
		if !position.Valid {
			continue // no events: the one row carries the snapshot only
		}
		r := eventstore.Record{
			EventID:       eventstore.EventID(eventID.Bytes),
			StreamID:      streamID,
			StreamVersion: version.Int64,
			Position:      eventstore.Position{Transaction: transaction.Uint64, Global: position.Int64},
			Type:          eventType.String,
			SchemaVersion: int(eventSchema.Int32),
			Data:          data,
			RecordedAt:    recordedAt.Time.UTC(),
		}
		if len(metadata) > 0 {
			if err := json.Unmarshal(metadata, &r.Metadata); err != nil {
				return snapshot.StreamLoad{}, &eventstore.DecodeError{Type: r.Type, SchemaVersion: r.SchemaVersion, EventID: r.EventID, Err: fmt.Errorf("metadata: %w", err)}
			}
		}
		res.Records = append(res.Records, r)
	}
	if err := rows.Err(); err != nil {
		return snapshot.StreamLoad{}, err
	}
	return res, nil
}
