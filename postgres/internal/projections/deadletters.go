package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// scanDeadLetter scans the columns of deadLettersSQL.
func scanDeadLetter(row pgx.CollectableRow) (projectionstore.DeadLetter, error) {
	var (
		dl     projectionstore.DeadLetter
		status string
	)
	err := row.Scan(&dl.ID, &dl.Projection, &dl.Partition, (*[16]byte)(&dl.EventID), &dl.StreamID, &dl.StreamVersion,
		&dl.Position.Transaction, &dl.Position.Global, &dl.Type, &dl.Error, &dl.Attempts, &status, &dl.ParkedAt, &dl.UpdatedAt)
	dl.Status = projectionstore.DeadLetterStatus(status)
	dl.ParkedAt, dl.UpdatedAt = dl.ParkedAt.UTC(), dl.UpdatedAt.UTC()
	return dl, err
}

// DeadLetters implements [projectionstore.DeadLetterStore]: the dead
// letters matching filter, in ID order.
func (s *Store) DeadLetters(ctx context.Context, filter projectionstore.DeadLetterFilter) ([]projectionstore.DeadLetter, error) {
	if filter.Projection != "" {
		if err := projection.ValidateName(filter.Projection); err != nil {
			return nil, err
		}
	}
	if filter.Status != "" && !filter.Status.Valid() {
		return nil, &eventstore.ValidationError{Field: "dead letter status", Reason: fmt.Sprintf("%q is not a status", filter.Status)}
	}
	rows, err := s.pool.Query(ctx, deadLettersSQL, filter.Projection, string(filter.Status), filter.AfterID, filter.EffectiveLimit())
	if err != nil {
		return nil, s.wrap("list dead letters", err)
	}
	dls, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return nil, s.wrap("list dead letters", err)
	}
	return dls, nil
}

// RetryDeadLetter implements [projectionstore.DeadLetterStore]: the dead
// letter becomes "retry", and the holder of its partition handles its
// event again at its next poll.
func (s *Store) RetryDeadLetter(ctx context.Context, id int64) error {
	return s.transition(ctx, id, "retry", projectionstore.DeadLetterRetry,
		projectionstore.DeadLetterParked, projectionstore.DeadLetterRetry)
}

// SkipDeadLetter implements [projectionstore.DeadLetterStore].
func (s *Store) SkipDeadLetter(ctx context.Context, id int64) error {
	return s.transition(ctx, id, "skip", projectionstore.DeadLetterSkipped,
		projectionstore.DeadLetterParked, projectionstore.DeadLetterRetry, projectionstore.DeadLetterSkipped)
}

func (s *Store) transition(ctx context.Context, id int64, op string, to projectionstore.DeadLetterStatus, from ...projectionstore.DeadLetterStatus) error {
	states := make([]string, len(from))
	for i, f := range from {
		states[i] = string(f)
	}
	tag, err := s.pool.Exec(ctx, transitionSQL, id, string(to), states)
	if err != nil {
		return s.wrap(op+" dead letter", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var status string
	err = s.pool.QueryRow(ctx, deadLetterStatusSQL, id).Scan(&status)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: %d", projection.ErrDeadLetterNotFound, id)
	case err != nil:
		return s.wrap(op+" dead letter", err)
	}
	return &projection.DeadLetterStateError{ID: id, Status: projectionstore.DeadLetterStatus(status), Op: op}
}
