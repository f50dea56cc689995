package postgres

import (
	"context"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
)

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
		// An unnamed statement, planned for the table as it is at each call:
		// a listing is rare, and its generic plan, made while the table is
		// tiny, would be a sequential scan and a sort that a prepared
		// statement keeps as the table grows.
		rows, err := conn.Query(ctx, eventsql.ListStreamsSQL, pgx.QueryExecModeExec, opts.Prefix, before, int64(opts.EffectiveLimit()))
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (eventstore.StreamInfo, error) {
			var (
				info   eventstore.StreamInfo
				status string
			)
			if err := row.Scan(&info.StreamID, &info.Version, &info.Seq, &info.CreatedAt, &info.UpdatedAt, &status); err != nil {
				return info, err
			}
			info.CreatedAt, info.UpdatedAt = info.CreatedAt.UTC(), info.UpdatedAt.UTC()
			var err error
			info.Status, err = eventstore.ParseStreamStatus(status)
			return info, err
		})
		return err
	})
	if err != nil {
		return nil, wrapError("list streams", err)
	}
	return out, nil
}
