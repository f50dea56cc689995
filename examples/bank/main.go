package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/telemetry"
)

func main() {
	var dsn string
	var otelStdout bool
	flag.StringVar(&dsn, "dsn", os.Getenv("DATABASE_URL"), "PostgreSQL URL; the in-memory store is used when empty (default $DATABASE_URL)")
	flag.BoolVar(&otelStdout, "otel-stdout", false, "export OpenTelemetry spans and metrics to stderr as JSON")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := func() error {
		if otelStdout {
			shutdown, err := exportToStdout(os.Stderr)
			if err != nil {
				return err
			}
			defer shutdown(context.Background())
		}
		return run(ctx, os.Stdout, dsn)
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bank:", err)
		os.Exit(1)
	}
}

// run opens the store that dsn names (memory when empty) and tells the
// story on it.
func run(ctx context.Context, w io.Writer, dsn string) error {
	if dsn == "" {
		store, err := telemetry.NewStore(memory.New(nil), nil)
		if err != nil {
			return err
		}
		return withBalancesProjection(ctx, w, store, "", "", func() error {
			return story(ctx, w, store, "in-memory store", "")
		})
	}
	pgStore, closeStore, err := openPostgres(ctx, dsn)
	if err != nil {
		return err
	}
	defer closeStore()
	store, err := telemetry.NewStore(pgStore, nil)
	if err != nil {
		return err
	}
	// A database keeps earlier runs' accounts: give this run its own.
	suffix := "-" + runSuffix()
	return withBalancesProjection(ctx, w, store, dsn, suffix, func() error {
		return story(ctx, w, store, "PostgreSQL store", suffix)
	})
}
