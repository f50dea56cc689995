package postgres_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
)

// Many goroutines appending at once share statements and commits (group
// commit, on by default); each append still gets its own result or error.
// The bounds of a group, or turning it off, are configured on the store.
func ExampleConfig_groupCommit() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Config{
		MaxGroupEvents: 500,     // events per shared statement
		MaxGroupBytes:  1 << 20, // payload and metadata per shared statement
		GroupCommit:    true,    // concurrent appends share statements and commits
	})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			ev := eventstore.Event{ID: eventstore.NewEventID(), Type: "Deposited", Data: []byte(`{"amount":10}`)}
			res, err := store.Append(ctx, fmt.Sprintf("account-%d", i), eventstore.Any, ev)
			if err != nil {
				log.Print(err) // this append's own error; the others are unaffected
				return
			}
			fmt.Println(res.StreamID, "at version", res.Version)
		})
	}
	wg.Wait()
}
