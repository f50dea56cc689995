package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/postgres"
)

// openPostgres applies Chronicle's migrations to the database at dsn and
// returns a PostgreSQL event store on it, with a function that releases it.
func openPostgres(ctx context.Context, dsn string) (eventstore.Store, func(), error) {
	if err := migrations.Up(ctx, dsn); err != nil {
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	store, err := postgres.New(pool, nil)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return store, func() { store.Close(); pool.Close() }, nil
}

// runSuffix returns a short random suffix for this run's account IDs.
func runSuffix() string { return eventstore.NewEventID().String()[24:] }
