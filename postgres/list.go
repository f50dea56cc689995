package postgres

import (
	"context"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
)

// listStreamsSQL lists head rows newest-created first, through
// streams_created_seq_idx (read backward, filtered by prefix).
//
// $1 prefix (” for all), $2 created_seq bound (exclusive), $3 limit.
const listStreamsSQL = `
SELECT stream_id, version, created_seq, created_at, updated_at
FROM chronicle.streams
WHERE created_seq < $2 AND starts_with(stream_id, $1)
ORDER BY created_seq DESC
LIMIT $3`

// ListStreams lists streams newest-created first, from their head rows in
// chronicle.streams; see [eventstore.StreamLister].
func (s *Store) ListStreams(ctx context.Context, opts eventstore.ListStreamsOptions) ([]eventstore.StreamInfo, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	before := opts.Before
	if before == 0 {
		before = math.MaxInt64
	}
	var out []eventstore.StreamInfo
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		rows, err := conn.Query(ctx, listStreamsSQL, opts.Prefix, before, int64(opts.EffectiveLimit()))
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (eventstore.StreamInfo, error) {
			var info eventstore.StreamInfo
			err := row.Scan(&info.StreamID, &info.Version, &info.Seq, &info.CreatedAt, &info.UpdatedAt)
			info.CreatedAt, info.UpdatedAt = info.CreatedAt.UTC(), info.UpdatedAt.UTC()
			return info, err
		})
		return err
	})
	if err != nil {
		return nil, wrapError("list streams", err)
	}
	return out, nil
}
