package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
)

const projDeadLetterColumns = `id, projection, partition, event_id, stream_id, stream_version, transaction_id,
       global_position, event_type, error, attempts, status, parked_at, updated_at`

const projDeadLettersSQL = `
SELECT ` + projDeadLetterColumns + `
FROM chronicle.projection_dead_letters
WHERE ($1 = '' OR projection = $1) AND ($2 = '' OR status = $2) AND id > $3
ORDER BY id
LIMIT $4`

// projTransitionSQL changes a dead letter's status if it is in one of the
// states $3.
const projTransitionSQL = `
UPDATE chronicle.projection_dead_letters
SET status = $2, updated_at = now()
WHERE id = $1 AND status = ANY($3::text[])`

const projDeadLetterStatusSQL = `SELECT status FROM chronicle.projection_dead_letters WHERE id = $1`

func projScanDeadLetter(row pgx.CollectableRow) (projection.DeadLetter, error) {
	var (
		dl     projection.DeadLetter
		status string
	)
	err := row.Scan(&dl.ID, &dl.Projection, &dl.Partition, (*[16]byte)(&dl.EventID), &dl.StreamID, &dl.StreamVersion,
		&dl.Position.Transaction, &dl.Position.Global, &dl.Type, &dl.Error, &dl.Attempts, &status, &dl.ParkedAt, &dl.UpdatedAt)
	dl.Status = projection.DeadLetterStatus(status)
	dl.ParkedAt, dl.UpdatedAt = dl.ParkedAt.UTC(), dl.UpdatedAt.UTC()
	return dl, err
}

// DeadLetters implements [projection.DeadLetterStore]: the dead letters
// matching filter, in ID order.
func (s *ProjectionStore) DeadLetters(ctx context.Context, filter projection.DeadLetterFilter) ([]projection.DeadLetter, error) {
	if filter.Projection != "" {
		if err := projection.ValidateName(filter.Projection); err != nil {
			return nil, err
		}
	}
	if filter.Status != "" && !filter.Status.Valid() {
		return nil, &eventstore.ValidationError{Field: "dead letter status", Reason: fmt.Sprintf("%q is not a status", filter.Status)}
	}
	rows, err := s.pool.Query(ctx, projDeadLettersSQL, filter.Projection, string(filter.Status), filter.AfterID, filter.EffectiveLimit())
	if err != nil {
		return nil, wrapError("list dead letters", err)
	}
	dls, err := pgx.CollectRows(rows, projScanDeadLetter)
	if err != nil {
		return nil, wrapError("list dead letters", err)
	}
	return dls, nil
}

// RetryDeadLetter implements [projection.DeadLetterStore]: the dead letter
// becomes "retry", and the holder of its partition handles its event again
// at its next poll.
func (s *ProjectionStore) RetryDeadLetter(ctx context.Context, id int64) error {
	return s.projTransition(ctx, id, "retry", projection.DeadLetterRetry,
		projection.DeadLetterParked, projection.DeadLetterSkipped, projection.DeadLetterRetry)
}

// SkipDeadLetter implements [projection.DeadLetterStore].
func (s *ProjectionStore) SkipDeadLetter(ctx context.Context, id int64) error {
	return s.projTransition(ctx, id, "skip", projection.DeadLetterSkipped,
		projection.DeadLetterParked, projection.DeadLetterRetry, projection.DeadLetterSkipped)
}

func (s *ProjectionStore) projTransition(ctx context.Context, id int64, op string, to projection.DeadLetterStatus, from ...projection.DeadLetterStatus) error {
	states := make([]string, len(from))
	for i, f := range from {
		states[i] = string(f)
	}
	tag, err := s.pool.Exec(ctx, projTransitionSQL, id, string(to), states)
	if err != nil {
		return wrapError(op+" dead letter", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var status string
	err = s.pool.QueryRow(ctx, projDeadLetterStatusSQL, id).Scan(&status)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: %d", projection.ErrDeadLetterNotFound, id)
	case err != nil:
		return wrapError(op+" dead letter", err)
	}
	return &projection.DeadLetterStateError{ID: id, Status: projection.DeadLetterStatus(status), Op: op}
}
