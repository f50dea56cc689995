// Command chronicle manages a Chronicle event store in PostgreSQL: it
// applies the schema migrations, reads streams and runs the benchmark.
// Run "chronicle help" for the commands; docs/operations.md is the
// reference.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/chronicle-go/chronicle/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], &cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
