package health_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/health"
	"github.com/chronicle-go/chronicle/postgres"
)

// A service mounts the probes on its mux and the full report on an
// internal port; a job can run the checks and print them.
func Example() {
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
	projections, err := postgres.NewProjectionStore(pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	checker, err := health.New(store, projections, &health.Config{MaxLagAge: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}

	public := http.NewServeMux()
	public.Handle("GET /livez", health.LiveHandler())
	public.Handle("GET /readyz", checker.ReadyHandler())
	internal := http.NewServeMux()
	internal.Handle("GET /health", checker.ReportHandler())

	report := checker.Check(ctx)
	for _, c := range report.Checks {
		fmt.Printf("%-13s %-9s %s\n", c.Name, c.Status, c.Summary)
	}
}
