package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/chronicle-go/chronicle/health"
)

func doctorCommand() command {
	var (
		dbURL        string
		jsonOut      bool
		maxLagEvents int64
		maxLagAge    time.Duration
		maxTxAge     time.Duration
		transactions int
	)
	return command{
		name:     "doctor",
		synopsis: "[--max-lag-events N] [--max-lag-age D] [--max-transaction-age D] [--transactions N] [--json]  [--database-url URL]",
		summary:  "check the database: schema, projections, dead letters, long transactions, table sizes",
		help: `Checks the database and reports, with the numbers:

  database      the database answers
  schema        the applied schema version against the latest this build
                knows (behind or dirty: critical; ahead: warning)
  projections   every partition's lag in events and time; stopped partitions
                (critical) and partitions lagging beyond --max-lag-events or
                --max-lag-age (warning)
  dead letters  parked events per partition (warning)
  read horizon  the oldest open transactions that have written, in the whole
                cluster: pid, age, application name, state and the start of
                the statement; one older than --max-transaction-age holds
                back every tailing reader (warning)
  tables        the size of each table of the chronicle schema and of its
                indexes

Exits 0 when every check is ok, 1 when one is not. The role needs
pg_read_all_stats (or pg_monitor) to see other roles' transactions.
See docs/operations.md.`,
		flags: func(fs *flag.FlagSet) {
			databaseFlag(fs, &dbURL)
			fs.BoolVar(&jsonOut, "json", false, "print the report as JSON")
			fs.Int64Var(&maxLagEvents, "max-lag-events", 0, "a partition more than `n` events behind is lagging (default 1000)")
			fs.DurationVar(&maxLagAge, "max-lag-age", 0, "a partition whose oldest unhandled event is older than `duration` is lagging (default 1m)")
			fs.DurationVar(&maxTxAge, "max-transaction-age", 0, "warn about a writing transaction open longer than `duration` (default 1m)")
			fs.IntVar(&transactions, "transactions", 0, "list the `n` oldest open writing transactions (default 5)")
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usagef("doctor takes no arguments")
			}
			if maxLagEvents < 0 || maxLagAge < 0 || maxTxAge < 0 || transactions < 0 {
				return usagef("--max-lag-events, --max-lag-age, --max-transaction-age and --transactions must not be negative")
			}
			cfg := &health.Config{MaxLagEvents: maxLagEvents, MaxLagAge: maxLagAge, MaxTransactionAge: maxTxAge, Transactions: transactions}
			u, err := databaseURL(env, dbURL)
			if err != nil {
				return err
			}
			return redact(withProjections(ctx, u, func(ctx context.Context, pc *projContext) error {
				checker, err := health.New(pc.store, pc.ps, cfg)
				if err != nil {
					return err
				}
				r := checker.Check(ctx)
				if jsonOut {
					enc := json.NewEncoder(env.Stdout)
					enc.SetIndent("", "  ")
					if err := enc.Encode(r); err != nil {
						return err
					}
				} else {
					doctorPrint(env.Stdout, r)
				}
				if n := r.Problems(); n > 0 {
					return fmt.Errorf("%d check(s) not ok, status %s", n, r.Status)
				}
				return nil
			}), u)
		},
	}
}

// doctorPrint writes a report as aligned text: one line per check, its
// details indented below it.
func doctorPrint(w io.Writer, r health.Report) {
	var b strings.Builder
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "%-13s %-9s %s\n", c.Name, c.Status, c.Summary)
		for _, d := range c.Details {
			fmt.Fprintf(&b, "%24s- %s\n", "", d)
		}
	}
	fmt.Fprintf(&b, "\nstatus: %s", r.Status)
	if n := r.Problems(); n > 0 {
		fmt.Fprintf(&b, " (%d check(s) not ok)", n)
	}
	b.WriteString("\n")
	io.WriteString(w, b.String())
}
