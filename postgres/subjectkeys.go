package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
	"github.com/chronicle-go/chronicle/shred"
)

// SubjectKeyStore is the PostgreSQL [shred.KeyStore]: the wrapped data keys
// of crypto-shredding in the chronicle.subjects and chronicle.subject_keys
// tables created by package migrations (migration 8). It is safe for
// concurrent use and does not own the pool.
//
// A key created concurrently with a forget of its subject is either
// deleted by the forget or refused: both lock the subject's row.
type SubjectKeyStore struct {
	pool *pgxpool.Pool
}

var _ shred.KeyStore = (*SubjectKeyStore)(nil)

// NewSubjectKeyStore returns a key store running its statements on pool.
// The schema must exist: apply package migrations first. A nil pool fails
// with an error matching [eventstore.ErrInvalidInput].
func NewSubjectKeyStore(pool *pgxpool.Pool) (*SubjectKeyStore, error) {
	if pool == nil {
		return nil, &eventstore.ValidationError{Field: "pool", Reason: "must not be nil"}
	}
	return &SubjectKeyStore{pool: pool}, nil
}

// subjectKeyCreateSQL inserts a key if its subject is not forgotten. The
// upsert of the subject's row takes its lock (a forget waits for it, or
// this statement waits for the forget and then sees forgotten_at): the
// DO UPDATE ... WHERE returns no row for a forgotten subject, and then
// nothing is inserted.
const subjectKeyCreateSQL = `
WITH subject AS (
    INSERT INTO chronicle.subjects AS s (subject_id) VALUES ($2)
    ON CONFLICT (subject_id) DO UPDATE SET subject_id = EXCLUDED.subject_id
    WHERE s.forgotten_at IS NULL
    RETURNING subject_id
)
INSERT INTO chronicle.subject_keys (key_id, subject_id, version, wrapped_key)
SELECT $1, subject_id, $3, $4 FROM subject
RETURNING created_at`

const subjectKeyCurrentSQL = `
SELECT s.forgotten_at IS NOT NULL, k.key_id, k.version, k.wrapped_key, k.created_at
FROM chronicle.subjects s
LEFT JOIN LATERAL (
    SELECT key_id, version, wrapped_key, created_at
    FROM chronicle.subject_keys
    WHERE subject_id = s.subject_id
    ORDER BY version DESC
    LIMIT 1
) k ON true
WHERE s.subject_id = $1`

const subjectKeyByIDSQL = `
SELECT subject_id, version, wrapped_key, created_at
FROM chronicle.subject_keys
WHERE key_id = $1`

// subjectForgetSQL marks the subject forgotten, holding its row's lock
// until the transaction ends, so that no key can be created meanwhile.
const subjectForgetSQL = `
UPDATE chronicle.subjects SET forgotten_at = now()
WHERE subject_id = $1 AND forgotten_at IS NULL`

// subjectKeysDeleteSQL runs after subjectForgetSQL, in the same
// transaction but as its own statement: its snapshot then includes a key
// whose creation committed while the forget waited for the row lock.
const subjectKeysDeleteSQL = `
DELETE FROM chronicle.subject_keys WHERE subject_id = $1`

const subjectForgottenSQL = `
SELECT forgotten_at IS NOT NULL FROM chronicle.subjects WHERE subject_id = $1`

// CreateKey implements [shred.KeyStore].
func (s *SubjectKeyStore) CreateKey(ctx context.Context, key shred.Key) (shred.Key, error) {
	if err := shred.ValidateSubject(key.Subject); err != nil {
		return shred.Key{}, err
	}
	err := s.pool.QueryRow(ctx, subjectKeyCreateSQL, key.ID, key.Subject, key.Version, key.Wrapped).Scan(&key.CreatedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return shred.Key{}, &shred.SubjectError{Subject: key.Subject, Err: shred.ErrSubjectForgotten}
	case err != nil:
		if pgErr := pgError(err); pgErr != nil && pgErr.Code == eventsql.CodeUniqueViolation {
			return shred.Key{}, fmt.Errorf("key %s (version %d of subject %q): %w", key.ID, key.Version, key.Subject, shred.ErrKeyExists)
		}
		return shred.Key{}, wrapError("create subject key", err)
	}
	key.CreatedAt = key.CreatedAt.UTC()
	return key, nil
}

// CurrentKey implements [shred.KeyStore].
func (s *SubjectKeyStore) CurrentKey(ctx context.Context, subject string) (shred.Key, error) {
	var (
		forgotten bool
		id        *string
		version   *int32
		wrapped   []byte
		created   *time.Time
	)
	err := s.pool.QueryRow(ctx, subjectKeyCurrentSQL, subject).Scan(&forgotten, &id, &version, &wrapped, &created)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return shred.Key{}, &shred.SubjectError{Subject: subject, Err: shred.ErrUnknownSubject}
	case err != nil:
		return shred.Key{}, wrapError("read current subject key", err)
	case forgotten:
		return shred.Key{}, &shred.SubjectError{Subject: subject, Err: shred.ErrSubjectForgotten}
	case id == nil: // a subject row whose key creation failed: no key yet
		return shred.Key{}, &shred.SubjectError{Subject: subject, Err: shred.ErrUnknownSubject}
	}
	return shred.Key{ID: *id, Subject: subject, Version: int(*version), Wrapped: wrapped, CreatedAt: created.UTC()}, nil
}

// Key implements [shred.KeyStore].
func (s *SubjectKeyStore) Key(ctx context.Context, id string) (shred.Key, error) {
	k := shred.Key{ID: id}
	var version int32
	err := s.pool.QueryRow(ctx, subjectKeyByIDSQL, id).Scan(&k.Subject, &version, &k.Wrapped, &k.CreatedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return shred.Key{}, fmt.Errorf("key %s: %w", id, shred.ErrKeyNotFound)
	case err != nil:
		return shred.Key{}, wrapError("read subject key", err)
	}
	k.Version, k.CreatedAt = int(version), k.CreatedAt.UTC()
	return k, nil
}

// Forget implements [shred.KeyStore]: in one transaction, it marks the
// subject forgotten and deletes its keys.
func (s *SubjectKeyStore) Forget(ctx context.Context, subject string) error {
	var unknown bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, subjectForgetSQL, subject)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var forgotten bool
			err := tx.QueryRow(ctx, subjectForgottenSQL, subject).Scan(&forgotten)
			if errors.Is(err, pgx.ErrNoRows) {
				unknown = true
				return nil
			}
			return err // forgotten before: nothing more to do
		}
		_, err = tx.Exec(ctx, subjectKeysDeleteSQL, subject)
		return err
	})
	if err != nil {
		return wrapError("forget subject", err)
	}
	if unknown {
		return &shred.SubjectError{Subject: subject, Err: shred.ErrUnknownSubject}
	}
	return nil
}
