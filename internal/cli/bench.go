package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"os"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/chronicle-go/chronicle/internal/bench"
)

func benchCommand() command {
	var (
		dsn, dbURL string
		cfg        bench.Config
		workloads  string
		quiet      bool
		scale      int
		cpuProfile string
	)
	return command{
		name:     "bench",
		synopsis: "--dsn URL [--runs N] [--events N] [--commands N] [--loads N] [--workloads a,b] [--quick]",
		summary:  "measure Chronicle against a raw pgx baseline",
		help: `Runs the benchmark workloads for a raw pgx baseline and for Chronicle on
the same server, interleaved, several times, and prints the medians and the
ratio Chronicle/baseline (1.00 = as fast). Workloads:

  ` + strings.Join(bench.Names(), ", ") + `

The role of the URL must be allowed to create databases: each run creates a
fresh database chronicle_bench_<random> and drops it at the end; the
database named in the URL is not touched. The URL comes from --dsn, or
--database-url, or DATABASE_URL.

--scale N measures instead how append-1 (on 50 streams, and on random
streams with its WAL per append) and catch-up hold as the events table
grows: at 100,000 events and at N (docs/postgres.md, "Performance").`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dsn, "dsn", "", "PostgreSQL `url` of the server to measure (default $DATABASE_URL)")
			databaseFlag(fs, &dbURL)
			fs.IntVar(&cfg.Runs, "runs", 0, "measure every workload `n` times and report medians (default 3)")
			fs.IntVar(&cfg.Events, "events", 0, "events read by catch-up (default 200000)")
			fs.IntVar(&cfg.Commands, "commands", 0, "commands per writer in the append workloads (default 500)")
			fs.IntVar(&cfg.Loads, "loads", 0, "accounts loaded by load-100 (default 1000)")
			fs.StringVar(&workloads, "workloads", "", "comma-separated `names` of the workloads to run (default all)")
			fs.BoolVar(&cfg.Quick, "quick", false, "small sizes and one run: a smoke test, not a measurement")
			fs.BoolVar(&quiet, "quiet", false, "do not print each measurement on stderr as it is taken")
			fs.IntVar(&scale, "scale", 0, "scale mode instead of the workloads: append-1 and catch-up with 100k and with `n` events in the table (e.g. 10000000; fills with COPY)")
			fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the client side: Chronicle, pgx, nats.go) to `file`, for go tool pprof")
			fs.StringVar(&cfg.NATSURL, "nats", "", "NATS server `url` for the event bus workloads, skipped without it (default $NATS_URL)")
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usagef("bench takes no arguments, got %q", args[0])
			}
			if dsn != "" && dbURL != "" && dsn != dbURL {
				return usagef("--dsn and --database-url disagree: pass one")
			}
			if cfg.Runs < 0 || cfg.Events < 0 || cfg.Commands < 0 || cfg.Loads < 0 || scale < 0 {
				return usagef("--runs, --events, --commands and --loads must not be negative")
			}
			if workloads != "" {
				for _, w := range strings.Split(workloads, ",") {
					if w = strings.TrimSpace(w); w == "" {
						continue
					}
					if !slices.Contains(bench.Names(), w) {
						return usagef("unknown workload %q (known: %s)", w, strings.Join(bench.Names(), ", "))
					}
					cfg.Workloads = append(cfg.Workloads, w)
				}
			}
			if cmp.Or(dsn, dbURL, env.Getenv("DATABASE_URL")) == "" {
				return errors.New("no database url: pass --dsn or set DATABASE_URL; the benchmark needs a PostgreSQL server whose role may create databases " +
					"(a throwaway one: docker run -d -p 5432:5432 -e POSTGRES_PASSWORD=postgres postgres:15-alpine, then --dsn postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable)")
			}
			u, err := databaseURL(env, cmp.Or(dsn, dbURL))
			if err != nil {
				return err
			}
			cfg.DatabaseURL = u
			cfg.NATSURL = cmp.Or(cfg.NATSURL, env.Getenv("NATS_URL"))
			if !quiet {
				cfg.Progress = env.Stderr
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if scale > 0 {
				report, err := bench.RunScale(ctx, &bench.ScaleConfig{DatabaseURL: u, Events: scale, Runs: cfg.Runs, Progress: cfg.Progress})
				if err != nil {
					return redact(err, u)
				}
				return report.Print(env.Stdout)
			}
			report, err := bench.Run(ctx, &cfg)
			if err != nil {
				return redact(err, u)
			}
			return report.Print(env.Stdout)
		},
	}
}
