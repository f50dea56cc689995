package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// workload is one benchmark of BENCH.md, measured for both sides.
type workload struct {
	// name selects the workload (--workloads), e.g. "append-1".
	name string
	// variant tells rows of the same name apart, e.g. "x8"; may be empty.
	variant string
	// metrics are the values each side returns, one report row each.
	metrics []metric
	// setup prepares the data of both sides before they are measured, in
	// every run; it is not timed. May be nil.
	setup func(ctx context.Context, e *env) error
	// baseline and chronicle run the workload and return one value per
	// metric.
	baseline, chronicle func(ctx context.Context, e *env) ([]float64, error)
	// nats marks workloads that need Config.NATSURL.
	nats bool
}

// metric is one measured quantity of a workload.
type metric struct {
	// label is appended to the workload's label when a workload has
	// several metrics (e.g. "p99"); may be empty.
	label string
	// unit is printed in the report, e.g. "events/s" or "ms".
	unit string
	// lowerIsBetter marks latencies: the ratio is then inverted so that a
	// ratio below 1 always means Chronicle is slower.
	lowerIsBetter bool
}

func (w workload) label() string {
	if w.variant == "" {
		return w.name
	}
	return w.name + " " + w.variant
}

func (w workload) metricLabel(i int) string {
	if l := w.metrics[i].label; l != "" {
		return w.label() + " " + l
	}
	return w.label()
}

// workloads lists every workload, in run order. To add one, write a
// function returning a workload in your own file and add one line here.
func workloads() []workload {
	return []workload{
		appendWorkload("append-1", 1, 1, true),
		appendWorkload("append-1", 8, 1, true),
		appendWorkload("append-1", 32, 1, true),
		appendWorkload("append-10", 1, 10, true),
		appendWorkload("append-10", 8, 10, true),
		appendWorkload("append-10", 32, 10, true),
		appendWorkload("append-1-no-group", 1, 1, false),
		appendWorkload("append-1-no-group", 8, 1, false),
		appendWorkload("append-1-no-group", 32, 1, false),
		appendWorkload("append-10-no-group", 1, 10, false),
		appendWorkload("append-10-no-group", 8, 10, false),
		appendWorkload("append-10-no-group", 32, 10, false),
		load100Workload(),
		catchUpWorkload(),
		catchUpRunnerWorkload(),
		tailLatencyWorkload(false),
		tailLatencyWorkload(true),
		load10kSnapshotWorkload(),
		busRelayWorkload(),
		busLatencyWorkload(),
	}
}

// throughput is the metric list of a workload measuring one rate.
func throughput(unit string) []metric { return []metric{{unit: unit}} }

// appendWorkload measures writers each running cfg.Commands commands that
// append perCommand events to one of its 50 existing account streams, each
// command its own save: the rate in events/s and each command's latency
// (p50, p99). Chronicle's side runs with group commit on
// (Config.GroupCommit, which is off by default) when group is set, and
// off otherwise.
func appendWorkload(name string, writers, perCommand int, group bool) workload {
	const streamsPerWriter = 50
	prefix := fmt.Sprintf("%s-x%d", name, writers)
	streams := func(writer int) []string {
		s := make([]string, streamsPerWriter)
		for i := range s {
			s[i] = fmt.Sprintf("%s-w%d-acc-%06d", prefix, writer, i)
		}
		return s
	}
	// Both sides start from streams holding one event (setup).
	setup := func(ctx context.Context, e *env) error {
		var all []string
		for w := range writers {
			all = append(all, streams(w)...)
		}
		return e.seed(ctx, all, 1)
	}
	events := func(e *env) int { return writers * e.cfg.Commands * perCommand }

	baseline := func(ctx context.Context, e *env) ([]float64, error) {
		const insert = `INSERT INTO bench_baseline.events (stream_id, version, type, data)
SELECT $1, u.version, $3, u.data FROM unnest($2::bigint[], $4::jsonb[]) AS u(version, data)`
		lat := newLatencies(writers, e.cfg.Commands)
		elapsed, err := concurrently(writers, func(w int) error {
			ss := streams(w)
			versions := make([]int64, len(ss))
			for i := range versions {
				versions[i] = 1
			}
			vs := make([]int64, perCommand)
			data := make([][]byte, perCommand)
			for c := range e.cfg.Commands {
				i := c % len(ss)
				for j := range perCommand {
					b, err := json.Marshal(deposit(ss[i]))
					if err != nil {
						return err
					}
					vs[j], data[j] = versions[i]+int64(j)+1, b
				}
				t0 := time.Now()
				if _, err := e.pool.Exec(ctx, insert, ss[i], vs, depositedType, data); err != nil {
					return err
				}
				lat.add(w, time.Since(t0))
				versions[i] += int64(perCommand)
			}
			return nil
		})
		return lat.metrics(rate(events(e), elapsed)), err
	}

	chronicle := func(ctx context.Context, e *env) ([]float64, error) {
		// Load the writers' aggregates first (not timed), as a service
		// that keeps them in memory would have them.
		repo := e.accounts
		if !group {
			repo = e.accountsNoGroup
		}
		accs := make([][]*account, writers)
		for w := range writers {
			for _, id := range streams(w) {
				a, err := repo.Load(ctx, id)
				if err != nil {
					return nil, err
				}
				accs[w] = append(accs[w], a)
			}
		}
		lat := newLatencies(writers, e.cfg.Commands)
		elapsed, err := concurrently(writers, func(w int) error {
			for c := range e.cfg.Commands {
				a := accs[w][c%len(accs[w])]
				t0 := time.Now()
				for range perCommand {
					if err := a.Deposit(deposit(a.ID())); err != nil {
						return err
					}
				}
				if _, err := repo.Save(ctx, a); err != nil {
					return err
				}
				lat.add(w, time.Since(t0))
			}
			return nil
		})
		return lat.metrics(rate(events(e), elapsed)), err
	}

	return workload{
		name:    name,
		variant: fmt.Sprintf("x%d", writers),
		metrics: []metric{
			{unit: "events/s"},
			{label: "p50", unit: "ms", lowerIsBetter: true},
			{label: "p99", unit: "ms", lowerIsBetter: true},
		},
		setup:     setup,
		baseline:  baseline,
		chronicle: chronicle,
	}
}

// latencies collects the latency of each command of concurrent writers.
type latencies struct {
	perWriter [][]time.Duration // each written by its writer only
}

func newLatencies(writers, commands int) *latencies {
	l := &latencies{perWriter: make([][]time.Duration, writers)}
	for w := range l.perWriter {
		l.perWriter[w] = make([]time.Duration, 0, commands)
	}
	return l
}

func (l *latencies) add(writer int, d time.Duration) {
	l.perWriter[writer] = append(l.perWriter[writer], d)
}

// metrics returns rate followed by the p50 and p99 latencies in
// milliseconds, the metrics of an append workload.
func (l *latencies) metrics(rate float64) []float64 {
	var all []time.Duration
	for _, ds := range l.perWriter {
		all = append(all, ds...)
	}
	if len(all) == 0 {
		return []float64{rate, 0, 0}
	}
	slices.Sort(all)
	q := func(p float64) float64 {
		return all[int(math.Ceil(p*float64(len(all))))-1].Seconds() * 1000
	}
	return []float64{rate, q(0.50), q(0.99)}
}

// concurrently runs fn for writers 0..n-1 at once and returns the time until
// all are done, or the first error.
func concurrently(n int, fn func(writer int) error) (time.Duration, error) {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for w := range n {
		wg.Go(func() {
			<-start
			errs[w] = fn(w)
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	return time.Since(t0), errors.Join(errs...)
}

// load100Workload measures rehydrating cfg.Loads accounts of 100 events
// each, one after the other.
func load100Workload() workload {
	const perAccount = 100
	ids := func(e *env) []string {
		s := make([]string, e.cfg.Loads)
		for i := range s {
			s[i] = fmt.Sprintf("load-100-acc-%06d", i)
		}
		return s
	}
	check := func(id string, version int64, deposits int) error {
		if version != perAccount || deposits != perAccount {
			return fmt.Errorf("account %s loaded at version %d with %d deposits, want %d", id, version, deposits, perAccount)
		}
		return nil
	}
	return workload{
		name:    "load-100",
		metrics: throughput("loads/s"),
		setup: func(ctx context.Context, e *env) error {
			return e.seed(ctx, ids(e), perAccount)
		},
		baseline: func(ctx context.Context, e *env) ([]float64, error) {
			const query = `SELECT version, type, data FROM bench_baseline.events WHERE stream_id = $1 ORDER BY version`
			accounts := ids(e)
			t0 := time.Now()
			for _, id := range accounts {
				var a plainAccount
				rows, err := e.pool.Query(ctx, query, id)
				if err != nil {
					return nil, err
				}
				var (
					typ  string
					data []byte
				)
				for rows.Next() {
					if err := rows.Scan(&a.version, &typ, &data); err != nil {
						rows.Close()
						return nil, err
					}
					if typ != depositedType {
						rows.Close()
						return nil, fmt.Errorf("unknown event type %q", typ)
					}
					var d Deposited
					if err := json.Unmarshal(data, &d); err != nil {
						rows.Close()
						return nil, err
					}
					a.apply(d)
				}
				if err := rows.Err(); err != nil {
					return nil, err
				}
				if err := check(id, a.version, a.deposits); err != nil {
					return nil, err
				}
			}
			return []float64{rate(len(accounts), time.Since(t0))}, nil
		},
		chronicle: func(ctx context.Context, e *env) ([]float64, error) {
			accounts := ids(e)
			t0 := time.Now()
			for _, id := range accounts {
				a, err := e.accounts.Load(ctx, id)
				if err != nil {
					return nil, err
				}
				if err := check(id, a.Version(), a.deposits); err != nil {
					return nil, err
				}
			}
			return []float64{rate(len(accounts), time.Since(t0))}, nil
		},
	}
}

// catchUpPage is the page size of both catch-up readers.
const catchUpPage = 1000

// catchUpWorkload measures reading every event from the start, decoding
// each into its Go type: cfg.Events seeded events plus what earlier
// workloads of the run appended (the same on both sides).
func catchUpWorkload() workload {
	const perStream = 50
	return workload{
		name:    "catch-up",
		metrics: throughput("events/s"),
		setup: func(ctx context.Context, e *env) error {
			streams := make([]string, (e.cfg.Events+perStream-1)/perStream)
			for i := range streams {
				streams[i] = fmt.Sprintf("catch-up-acc-%07d", i)
			}
			if err := e.seed(ctx, streams, perStream); err != nil {
				return err
			}
			return e.waitReadable(ctx)
		},
		baseline: func(ctx context.Context, e *env) ([]float64, error) {
			const query = `SELECT position, stream_id, version, type, data, metadata, recorded_at
FROM bench_baseline.events WHERE position > $1 ORDER BY position LIMIT $2`
			var (
				after, n int64
				total    float64
			)
			t0 := time.Now()
			for {
				rows, err := e.pool.Query(ctx, query, after, catchUpPage)
				if err != nil {
					return nil, err
				}
				var (
					got      int
					stream   string
					version  int64
					typ      string
					data, md []byte
					at       time.Time
				)
				for rows.Next() {
					if err := rows.Scan(&after, &stream, &version, &typ, &data, &md, &at); err != nil {
						rows.Close()
						return nil, err
					}
					var d Deposited
					if err := json.Unmarshal(data, &d); err != nil {
						rows.Close()
						return nil, err
					}
					total += d.Amount
					got++
				}
				if err := rows.Err(); err != nil {
					return nil, err
				}
				n += int64(got)
				if got < catchUpPage {
					break
				}
			}
			elapsed := time.Since(t0)
			if n < int64(e.cfg.Events) || total <= 0 {
				return nil, fmt.Errorf("read %d events, want at least %d", n, e.cfg.Events)
			}
			return []float64{rate(int(n), elapsed)}, nil
		},
		chronicle: func(ctx context.Context, e *env) ([]float64, error) {
			var (
				n     int
				total float64
			)
			t0 := time.Now()
			for rec, err := range eventstore.ReadAllSeq(ctx, e.store, eventstore.Position{}, catchUpPage) {
				if err != nil {
					return nil, err
				}
				v, err := e.registry.Decode(rec)
				if err != nil {
					return nil, err
				}
				d, ok := v.(Deposited)
				if !ok {
					return nil, fmt.Errorf("decoded %T, want Deposited", v)
				}
				total += d.Amount
				n++
			}
			elapsed := time.Since(t0)
			if n < e.cfg.Events || total <= 0 {
				return nil, fmt.Errorf("read %d events, want at least %d", n, e.cfg.Events)
			}
			return []float64{rate(n, elapsed)}, nil
		},
	}
}
