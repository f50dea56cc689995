package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/chronicle-go/chronicle/memory"
)

func main() {
	var dsn string
	flag.StringVar(&dsn, "dsn", os.Getenv("DATABASE_URL"), "PostgreSQL URL; the in-memory store is used when empty (default $DATABASE_URL)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, dsn); err != nil {
		fmt.Fprintln(os.Stderr, "bank:", err)
		os.Exit(1)
	}
}

// run opens the store that dsn names (memory when empty) and tells the
// story on it.
func run(ctx context.Context, w io.Writer, dsn string) error {
	if dsn == "" {
		store := memory.New(nil)
		return withBalancesProjection(ctx, w, store, "", "", func() error {
			return story(ctx, w, store, "in-memory store", "")
		})
	}
	store, closeStore, err := openPostgres(ctx, dsn)
	if err != nil {
		return err
	}
	defer closeStore()
	// A database keeps earlier runs' accounts: give this run its own.
	suffix := "-" + runSuffix()
	return withBalancesProjection(ctx, w, store, dsn, suffix, func() error {
		return story(ctx, w, store, "PostgreSQL store", suffix)
	})
}
