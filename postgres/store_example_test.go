package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/postgres"
)

// These examples need a PostgreSQL server, so they have no Output comment:
// they are compiled, not run. The package's tests run the same calls
// against a real database.

// Open a store, append with optimistic concurrency, and tail the global
// order.
func Example() {
	ctx := context.Background()
	databaseURL := os.Getenv("DATABASE_URL")
	if err := migrations.Up(ctx, databaseURL); err != nil {
		log.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close() // runs before pool.Close

	opened := eventstore.Event{ID: eventstore.NewEventID(), Type: "AccountOpened", Data: []byte(`{"owner":"Ada"}`)}
	res, err := store.Append(ctx, "account-42", eventstore.NoStream, opened)
	switch {
	case errors.Is(err, eventstore.ErrConcurrencyConflict):
		log.Fatal("account-42 already exists")
	case err != nil:
		log.Fatal(err) // retrying with the same event ID is safe
	}
	fmt.Println("account-42 at version", res.Version)

	for rec, err := range eventstore.ReadAllSeq(ctx, store, eventstore.Position{}, 1000) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(rec.Position, rec.StreamID, rec.StreamVersion, rec.Type)
	}
}

// Append events in the same transaction as business rows.
func ExampleStore_AppendTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	deposited := eventstore.Event{ID: eventstore.NewEventID(), Type: "Deposited", Data: []byte(`{"amount":100}`)}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance + 100 WHERE id = 42`); err != nil {
			return err
		}
		_, err := store.AppendTx(ctx, tx, "account-42", eventstore.Exact(1), deposited)
		return err // a conflict rolls back the update too
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Tail the store: read after the checkpoint until caught up, then wait for
// a wake-up.
func ExampleStore_Watch() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Config{PollInterval: 500 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	wake := store.Watch(ctx)
	var checkpoint eventstore.Position // load it from where you keep it
	for {
		recs, err := store.ReadAll(ctx, checkpoint, 500)
		if err != nil {
			log.Fatal(err)
		}
		for _, rec := range recs {
			fmt.Println(rec.StreamID, rec.StreamVersion, rec.Type) // handle it
			checkpoint = rec.Position
		}
		if len(recs) == 500 {
			continue // more to read
		}
		if _, ok := <-wake; !ok {
			return // ctx done or store closed
		}
	}
}

// Configuration errors name the field.
func ExampleNew_config() {
	pool, err := pgxpool.New(context.Background(), "postgres://localhost/app") // connects lazily
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	_, err = postgres.New(pool, &postgres.Config{PollInterval: -time.Second})
	fmt.Println(err)
	fmt.Println(errors.Is(err, eventstore.ErrInvalidInput))
	// Output:
	// invalid config PollInterval: -1s is negative
	// true
}
