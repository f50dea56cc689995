package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Config configures a [Run]. Sizes of zero take the defaults, or the quick
// defaults when Quick is set.
type Config struct {
	// DatabaseURL is a postgres:// URL of the server to measure. Its role
	// must be allowed to create databases: every run creates a fresh
	// database named chronicle_bench_<random> and drops it afterwards; the
	// database named in the URL is not touched. Required.
	DatabaseURL string

	// Runs is how many times every workload is measured (alternating which
	// side goes first); the report shows medians. Defaults to 3 (1 quick).
	Runs int

	// Events is the number of events read by the catch-up workload.
	// Defaults to 200,000 (2,000 quick).
	Events int

	// Commands is the number of commands each writer of the append
	// workloads runs. Defaults to 500 (20 quick).
	Commands int

	// Loads is the number of accounts loaded by load-100. Defaults to 1,000
	// (20 quick).
	Loads int

	// Workloads selects workloads by name (see [Names]). Defaults to all.
	Workloads []string

	// NATSURL is the URL of a NATS server with JetStream for the event bus
	// workloads (bus-relay, bus-latency), which are skipped without it.
	// Defaults to none.
	NATSURL string

	// Quick makes every size small, for tests and a smoke run. Explicit
	// sizes still win.
	Quick bool

	// Progress, when set, receives one line per measurement as the
	// benchmark goes. Defaults to no progress output.
	Progress io.Writer
}

// withDefaults fills in the defaults and validates cfg.
func (cfg Config) withDefaults() (Config, error) {
	runs, events, commands, loads := 3, 200_000, 500, 1000
	if cfg.Quick {
		runs, events, commands, loads = 1, 2000, 20, 20
	}
	cfg.Runs = cmp.Or(cfg.Runs, runs)
	cfg.Events = cmp.Or(cfg.Events, events)
	cfg.Commands = cmp.Or(cfg.Commands, commands)
	cfg.Loads = cmp.Or(cfg.Loads, loads)
	switch {
	case cfg.DatabaseURL == "":
		return cfg, errors.New("no database url: the benchmark needs a PostgreSQL server whose role may create databases")
	case cfg.Runs < 0 || cfg.Events < 0 || cfg.Commands < 0 || cfg.Loads < 0:
		return cfg, errors.New("runs, events, commands and loads must not be negative")
	}
	known := Names()
	for _, name := range cfg.Workloads {
		if !slices.Contains(known, name) {
			return cfg, fmt.Errorf("unknown workload %q (known: %s)", name, strings.Join(known, ", "))
		}
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	return cfg, nil
}

// Names returns the names of the workloads, in the order they run.
func Names() []string {
	var names []string
	for _, w := range workloads() {
		if !slices.Contains(names, w.name) {
			names = append(names, w.name)
		}
	}
	return names
}

// Row is one line of a [Report]: the medians of one metric of one workload.
type Row struct {
	// Workload is the workload's name and variant, e.g. "append-1 x8".
	Workload string
	// Unit is the metric's unit, e.g. "events/s".
	Unit string
	// Baseline and Chronicle are the medians over the runs.
	Baseline, Chronicle float64
	// Ratio is Chronicle's performance relative to the baseline: 1 means
	// as fast, below 1 slower. For rates it is Chronicle/Baseline, for
	// latencies Baseline/Chronicle.
	Ratio float64
	// Runs are the individual measurements, baseline and chronicle.
	BaselineRuns, ChronicleRuns []float64
}

// Report is the result of a [Run].
type Report struct {
	// Server is the PostgreSQL server version.
	Server string
	// Config is the configuration the benchmark ran with, defaults filled.
	Config Config
	// Rows holds one row per workload metric, in run order.
	Rows []Row
}

// Run measures the selected workloads for the raw pgx baseline and for
// Chronicle, interleaved, Config.Runs times, and returns the medians.
func Run(ctx context.Context, cfg *Config) (*Report, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var selected []workload
	for _, w := range workloads() {
		if len(c.Workloads) == 0 || slices.Contains(c.Workloads, w.name) {
			if w.nats && c.NATSURL == "" {
				fmt.Fprintf(c.Progress, "%s skipped: no NATS server (--nats)\n", w.label())
				continue
			}
			selected = append(selected, w)
		}
	}
	type samples struct{ baseline, chronicle [][]float64 } // [metric][run]
	results := make([]samples, len(selected))
	for i, w := range selected {
		results[i] = samples{baseline: make([][]float64, len(w.metrics)), chronicle: make([][]float64, len(w.metrics))}
	}
	report := &Report{Config: c}

	for run := range c.Runs {
		err := withRunEnv(ctx, &c, func(e *env) error {
			report.Server = e.server
			for i, w := range selected {
				if w.setup != nil {
					var err error
					pprof.Do(ctx, pprof.Labels("workload", w.name, "side", "setup"), func(ctx context.Context) { err = w.setup(ctx, e) })
					if err != nil {
						return fmt.Errorf("%s: setup: %w", w.label(), err)
					}
				}
				sides := []struct {
					name string
					fn   func(context.Context, *env) ([]float64, error)
					dst  [][]float64
				}{
					{"baseline", w.baseline, results[i].baseline},
					{"chronicle", w.chronicle, results[i].chronicle},
				}
				if run%2 == 1 {
					sides[0], sides[1] = sides[1], sides[0]
				}
				for _, side := range sides {
					// Labelled, so that a CPU profile (--cpuprofile) can be
					// split by side: go tool pprof -tagfocus side=chronicle.
					var (
						vals []float64
						err  error
					)
					pprof.Do(ctx, pprof.Labels("workload", w.name, "side", side.name), func(ctx context.Context) { vals, err = side.fn(ctx, e) })
					if err != nil {
						return fmt.Errorf("%s: %s: %w", w.label(), side.name, err)
					}
					if len(vals) != len(w.metrics) {
						return fmt.Errorf("%s: %s returned %d values for %d metrics", w.label(), side.name, len(vals), len(w.metrics))
					}
					for m, v := range vals {
						side.dst[m] = append(side.dst[m], v)
						fmt.Fprintf(c.Progress, "run %d/%d  %-24s %-9s %12.1f %s\n", run+1, c.Runs, w.metricLabel(m), side.name, v, w.metrics[m].unit)
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}

	for i, w := range selected {
		for m, metric := range w.metrics {
			b, ch := median(results[i].baseline[m]), median(results[i].chronicle[m])
			ratio := 0.0
			switch {
			case metric.lowerIsBetter && ch > 0:
				ratio = b / ch
			case !metric.lowerIsBetter && b > 0:
				ratio = ch / b
			}
			report.Rows = append(report.Rows, Row{
				Workload: w.metricLabel(m), Unit: metric.unit,
				Baseline: b, Chronicle: ch, Ratio: ratio,
				BaselineRuns: results[i].baseline[m], ChronicleRuns: results[i].chronicle[m],
			})
		}
	}
	return report, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) error {
	c := r.Config
	fmt.Fprintf(w, "PostgreSQL %s; %d run(s), medians; catch-up %d events, %d commands per writer, %d loads\n",
		r.Server, c.Runs, c.Events, c.Commands, c.Loads)
	fmt.Fprintln(w, "ratio = Chronicle relative to the raw pgx baseline (1.00 = as fast; higher is better)")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tunit\tbaseline\tchronicle\tratio\t")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t\n", row.Workload, row.Unit, formatValue(row.Baseline), formatValue(row.Chronicle), row.Ratio)
	}
	return tw.Flush()
}

func formatValue(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// rate returns n operations over elapsed as a per-second rate.
func rate(n int, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(n) / elapsed.Seconds()
}
