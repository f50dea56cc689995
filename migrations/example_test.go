package migrations_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/migrations"
)

// Apply the schema at start-up from the URL of the database.
func ExampleUp() {
	ctx := context.Background()
	if err := migrations.Up(ctx, os.Getenv("DATABASE_URL")); err != nil {
		log.Fatal(err)
	}
}

// Apply the schema through the application's pool, and log what was
// applied.
func ExampleNewFromPool() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	m, err := migrations.NewFromPool(pool)
	if err != nil {
		log.Fatal(err)
	}
	applied, err := m.Up(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, mg := range applied {
		log.Printf("applied %s", mg)
	}
}

// List the migrations this binary embeds.
func ExampleList() {
	for _, m := range migrations.List()[:3] {
		fmt.Println(m.Version, m)
	}
	// Output:
	// 1 000001_events
	// 2 000002_projections
	// 3 000003_snapshots
}
