package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/eventstore"
)

// ScaleConfig configures [RunScale].
type ScaleConfig struct {
	// DatabaseURL is a postgres:// URL of the server to measure, as in
	// [Config]: the run creates a database chronicle_bench_<random> and
	// drops it at the end. Required.
	DatabaseURL string

	// Events is the size of the large table. Defaults to 10,000,000.
	Events int

	// Small is the size of the small table. Defaults to 100,000.
	Small int

	// Commands is the number of append-1 commands per measurement.
	// Defaults to 2,000.
	Commands int

	// Runs is how many times append-1 (at both sizes) and catch-up (at the
	// small size) are measured; the report shows medians. Catch-up over the
	// large table is measured once. Defaults to 3.
	Runs int

	// Progress, when set, receives one line per step as the run goes.
	// Defaults to no progress output.
	Progress io.Writer
}

// ScaleRow is one measurement of a [ScaleReport] at both sizes.
type ScaleRow struct {
	// Metric names what was measured, e.g. "catch-up".
	Metric string
	// Unit is the unit of Small and Large, e.g. "events/s".
	Unit string
	// Small and Large are the medians at the small and the large size.
	Small, Large float64
	// Ratio is Large/Small for rates (1 = flat, below 1 slower at the large
	// size), Small/Large for peak memory.
	Ratio float64
}

// ScaleReport is the result of [RunScale].
type ScaleReport struct {
	// Server is the PostgreSQL server version.
	Server string
	// Config is the configuration the run used, defaults filled.
	Config ScaleConfig
	// Fill is how long filling the table from the small to the large size
	// took, with COPY.
	Fill time.Duration
	// Rows holds the measurements.
	Rows []ScaleRow
}

// scaleStreamEvents is the number of events of each filled stream.
const scaleStreamEvents = 50

// scaleFillChunk is the number of events one COPY (and its transaction)
// writes when filling.
const scaleFillChunk = 50_000

// RunScale measures how Chronicle's append-1 (one writer) and catch-up
// rates hold as the events table grows: it fills a fresh database with
// cfg.Small events, measures, fills it up to cfg.Events with COPY,
// vacuums and analyzes it, and measures again. Catch-up reads the whole
// table from the start, decoding every event; the report gives the peak
// resident memory of the process while it does, sampled every 50 ms.
//
// The filled events are Deposited events of accounts of 50 events each,
// written stream after stream (so each stream index insertion lands at the
// index's right edge, the fill's fast path); appends then go to 50 of the
// filled accounts, whose index pages are spread over the whole index.
func RunScale(ctx context.Context, cfg *ScaleConfig) (*ScaleReport, error) {
	if cfg == nil {
		cfg = &ScaleConfig{}
	}
	c := *cfg
	c.Events = cmp.Or(c.Events, 10_000_000)
	c.Small = cmp.Or(c.Small, 100_000)
	c.Commands = cmp.Or(c.Commands, 2000)
	c.Runs = cmp.Or(c.Runs, 3)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	switch {
	case c.DatabaseURL == "":
		return nil, errors.New("no database url: the benchmark needs a PostgreSQL server whose role may create databases")
	case c.Events < 0 || c.Small < 0 || c.Commands < 0 || c.Runs < 0:
		return nil, errors.New("events, small, commands and runs must not be negative")
	case c.Small < 50*scaleStreamEvents:
		return nil, fmt.Errorf("the small table (%d events) must hold at least the 50 appended accounts (%d events)", c.Small, 50*scaleStreamEvents)
	case c.Events <= c.Small:
		return nil, fmt.Errorf("the large table (%d events) must be larger than the small one (%d)", c.Events, c.Small)
	}
	report := &ScaleReport{Config: c}
	err := withRunEnv(ctx, &Config{DatabaseURL: c.DatabaseURL, Progress: c.Progress}, func(e *env) error {
		report.Server = e.server
		progress := func(format string, args ...any) {
			fmt.Fprintf(c.Progress, "scale  "+format+"\n", args...)
		}
		if err := fillScale(ctx, e, 0, c.Small); err != nil {
			return err
		}
		if err := vacuumAnalyze(ctx, e); err != nil {
			return err
		}
		progress("filled %d events", c.Small)
		small, err := measureScale(ctx, e, &c, c.Small, c.Runs, progress)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := fillScale(ctx, e, c.Small, c.Events-c.Small, progress); err != nil {
			return err
		}
		if err := vacuumAnalyze(ctx, e); err != nil {
			return err
		}
		report.Fill = time.Since(t0)
		progress("filled %d events in %s (%.0f events/s, vacuum and analyze included)", c.Events, report.Fill.Round(time.Second), float64(c.Events-c.Small)/report.Fill.Seconds())
		large, err := measureScale(ctx, e, &c, c.Events, 1, progress)
		if err != nil {
			return err
		}
		for i := range small {
			s, l := small[i], large[i]
			row := ScaleRow{Metric: s.metric, Unit: s.unit, Small: s.value, Large: l.value}
			switch {
			case s.lowerIsBetter && l.value > 0:
				row.Ratio = s.value / l.value
			case !s.lowerIsBetter && s.value > 0:
				row.Ratio = l.value / s.value
			}
			report.Rows = append(report.Rows, row)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return report, nil
}

// Print writes the report as a table.
func (r *ScaleReport) Print(w io.Writer) error {
	c := r.Config
	fmt.Fprintf(w, "PostgreSQL %s; scale: %d vs %d events in the table; append-1 (1 writer, %d commands) median of %d runs at both sizes; catch-up median of %d at the small size, 1 at the large\n",
		r.Server, c.Small, c.Events, c.Commands, c.Runs, c.Runs)
	fmt.Fprintf(w, "fill from %d to %d events with COPY (vacuum and analyze included): %s\n", c.Small, c.Events, r.Fill.Round(time.Second))
	fmt.Fprintln(w, "ratio = large relative to small (1.00 = flat; higher is better)")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "metric\tunit\t%s\t%s\tratio\t\n", humanCount(c.Small), humanCount(c.Events))
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t\n", row.Metric, row.Unit, formatValue(row.Small), formatValue(row.Large), row.Ratio)
	}
	return tw.Flush()
}

// humanCount writes 100000 as 100k and 10000000 as 10M.
func humanCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// scaleValue is one measurement at one size.
type scaleValue struct {
	metric, unit  string
	value         float64
	lowerIsBetter bool
}

// measureScale measures append-1 on 50 streams and on random streams
// (runs times each, the latter with its WAL per append), and catch-up over
// the whole table of total events (catchUpRuns times), and the peak RSS
// during catch-up.
func measureScale(ctx context.Context, e *env, c *ScaleConfig, total, catchUpRuns int, progress func(string, ...any)) ([]scaleValue, error) {
	var appends, randoms, wals, catchUps, peaks []float64
	for run := range c.Runs {
		rate, err := scaleAppend(ctx, e, c.Commands)
		if err != nil {
			return nil, fmt.Errorf("append-1 at %d events: %w", total, err)
		}
		appends = append(appends, rate)
		progress("%s events: append-1 run %d/%d %12.1f events/s", humanCount(total), run+1, c.Runs, rate)
	}
	for run := range c.Runs {
		rate, wal, err := scaleAppendRandom(ctx, e, total, c.Commands)
		if err != nil {
			return nil, fmt.Errorf("append-1 to random streams at %d events: %w", total, err)
		}
		randoms, wals = append(randoms, rate), append(wals, wal)
		progress("%s events: append-1 random streams run %d/%d %12.1f events/s, %.2f kB of WAL per append", humanCount(total), run+1, c.Runs, rate, wal)
	}
	var raws []float64
	for run := range catchUpRuns {
		// The raw scan first: the table is read once before Chronicle reads
		// it, so that neither side is the one paying for a cold cache.
		raw, err := scaleRawCatchUp(ctx, e, total)
		if err != nil {
			return nil, fmt.Errorf("raw catch-up at %d events: %w", total, err)
		}
		raws = append(raws, raw)
		progress("%s events: raw pgx scan run %d/%d %12.1f events/s", humanCount(total), run+1, catchUpRuns, raw)
		rate, peak, err := scaleCatchUp(ctx, e, total)
		if err != nil {
			return nil, fmt.Errorf("catch-up at %d events: %w", total, err)
		}
		catchUps, peaks = append(catchUps, rate), append(peaks, float64(peak)/(1<<20))
		progress("%s events: catch-up run %d/%d %12.1f events/s, peak RSS %.0f MiB", humanCount(total), run+1, catchUpRuns, rate, float64(peak)/(1<<20))
	}
	return []scaleValue{
		{metric: "append-1 x1", unit: "events/s", value: median(appends)},
		{metric: "append-1 x1, random streams", unit: "events/s", value: median(randoms)},
		{metric: "WAL per append, random streams", unit: "kB", value: median(wals), lowerIsBetter: true},
		{metric: "catch-up", unit: "events/s", value: median(catchUps)},
		{metric: "raw pgx scan, same table", unit: "events/s", value: median(raws)},
		{metric: "catch-up peak RSS", unit: "MiB", value: slices.Max(peaks), lowerIsBetter: true},
	}, nil
}

// scaleAccount is the i-th filled account.
func scaleAccount(i int) string { return fmt.Sprintf("scale-acc-%08d", i) }

// scaleAppend runs commands append-1 commands from one writer, on the
// first 50 filled accounts, and returns the rate.
func scaleAppend(ctx context.Context, e *env, commands int) (float64, error) {
	accs := make([]*account, 50)
	for i := range accs {
		a, err := e.accounts.Load(ctx, scaleAccount(i))
		if err != nil {
			return 0, err
		}
		accs[i] = a
	}
	t0 := time.Now()
	for c := range commands {
		a := accs[c%len(accs)]
		if err := a.Deposit(deposit(a.ID())); err != nil {
			return 0, err
		}
		if _, err := e.accounts.Save(ctx, a); err != nil {
			return 0, err
		}
	}
	return rate(commands, time.Since(t0)), nil
}

// scaleAppendRandom appends commands single events, each to a stream
// picked at random among the total/scaleStreamEvents filled accounts (with
// Any, through the store), after a checkpoint, and returns the rate and
// the WAL written per append (the advance of the WAL position). Spread
// over the table, appends touch pages not written since the checkpoint,
// whose first change writes the whole page to the WAL: that is what grows
// with the table. The checkpoint needs a superuser or pg_checkpoint;
// without it the run starts wherever the server's checkpoint cycle is.
func scaleAppendRandom(ctx context.Context, e *env, total, commands int) (perSecond, walKB float64, err error) {
	_, _ = e.pool.Exec(ctx, "CHECKPOINT") // best effort, see above
	var wal0, wal1 int64
	if err := e.pool.QueryRow(ctx, walBytesSQL).Scan(&wal0); err != nil {
		return 0, 0, err
	}
	accounts := total / scaleStreamEvents
	t0 := time.Now()
	for range commands {
		acc := scaleAccount(rand.N(accounts))
		ev, err := e.registry.Encode(deposit(acc))
		if err != nil {
			return 0, 0, err
		}
		if _, err := e.store.Append(ctx, acc, eventstore.Any, ev); err != nil {
			return 0, 0, err
		}
	}
	perSecond = rate(commands, time.Since(t0))
	if err := e.pool.QueryRow(ctx, walBytesSQL).Scan(&wal1); err != nil {
		return 0, 0, err
	}
	return perSecond, float64(wal1-wal0) / float64(commands) / 1024, nil
}

// walBytesSQL reads the server's current WAL insert position, in bytes:
// the difference of two readings is the WAL inserted in between (exact at
// once, where pg_stat_wal counts other sessions' WAL only once they report
// it). The insert position, not pg_current_wal_lsn's write position: with
// synchronous_commit off a commit leaves its WAL in the buffers until the
// WAL writer's next round, so the write position may not move at all
// during a short run.
const walBytesSQL = `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint`

// scaleCatchUp reads every event from the start, decoding each, and
// returns the rate and the peak resident memory meanwhile. It expects at
// least total events.
func scaleCatchUp(ctx context.Context, e *env, total int) (float64, int64, error) {
	if err := e.waitReadable(ctx); err != nil {
		return 0, 0, err
	}
	stop := sampleRSS()
	var (
		n   int
		sum float64
	)
	t0 := time.Now()
	for rec, err := range eventstore.ReadAllSeq(ctx, e.store, eventstore.Position{}, catchUpPage) {
		if err != nil {
			stop()
			return 0, 0, err
		}
		v, err := eventstore.Decode[Deposited](e.registry, rec)
		if err != nil {
			stop()
			return 0, 0, err
		}
		sum += v.Amount
		n++
	}
	elapsed := time.Since(t0)
	peak := stop()
	if n < total || sum <= 0 {
		return 0, 0, fmt.Errorf("read %d events, want at least %d", n, total)
	}
	return rate(n, elapsed), peak, nil
}

// scaleRawQuery is the raw pgx side of the scale catch-up: a keyset scan
// of Chronicle's own events table in its primary key's order (the order
// ReadAll reads in), without the gap-safe horizon or any of the store's
// bookkeeping. Its limit is catchUpPage, written out: a limit sent as a
// parameter lets a generic plan sort the whole table for every page.
const scaleRawQuery = `SELECT transaction_id, global_position, stream_id, stream_version, event_type, data, metadata, recorded_at
FROM chronicle.events WHERE (transaction_id, global_position) > ($1::xid8, $2)
ORDER BY transaction_id, global_position LIMIT 1000`

// scaleRawCatchUp reads every event as scaleCatchUp does, decoding each
// payload, with raw pgx: what PostgreSQL itself costs at the table's size.
func scaleRawCatchUp(ctx context.Context, e *env, total int) (float64, error) {
	if catchUpPage != 1000 {
		return 0, fmt.Errorf("scaleRawQuery reads pages of 1000, catchUpPage is %d", catchUpPage)
	}
	var (
		tx  uint64
		pos int64
		n   int
		sum float64
	)
	t0 := time.Now()
	for {
		rows, err := e.pool.Query(ctx, scaleRawQuery, tx, pos)
		if err != nil {
			return 0, err
		}
		var (
			got         int
			stream, typ string
			version     int64
			data, md    []byte
			at          time.Time
		)
		for rows.Next() {
			if err := rows.Scan(&tx, &pos, &stream, &version, &typ, &data, &md, &at); err != nil {
				rows.Close()
				return 0, err
			}
			var d Deposited
			if err := json.Unmarshal(data, &d); err != nil {
				rows.Close()
				return 0, err
			}
			sum += d.Amount
			got++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, err
		}
		n += got
		if got < catchUpPage {
			break
		}
	}
	elapsed := time.Since(t0)
	if n < total || sum <= 0 {
		return 0, fmt.Errorf("read %d events, want at least %d", n, total)
	}
	return rate(n, elapsed), nil
}

// sampleRSS samples the process's resident memory every 50 ms until the
// returned func is called, which returns the largest sample in bytes (0
// where /proc is not available).
func sampleRSS() (stop func() int64) {
	var (
		peak atomic.Int64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	sample := func() {
		if rss := currentRSS(); rss > peak.Load() {
			peak.Store(rss)
		}
	}
	sample()
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sample()
			}
		}
	})
	return func() int64 {
		close(done)
		wg.Wait()
		sample()
		return peak.Load()
	}
}

// currentRSS returns the process's resident memory in bytes, from
// /proc/self/status (VmRSS), or 0 when it cannot be read.
func currentRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := bytes.CutPrefix(s.Bytes(), []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// fillScale appends count events (rounded up to whole accounts of
// scaleStreamEvents) to the table behind the store's back with COPY,
// accounts numbered from first/scaleStreamEvents on, each account's events
// together, in transactions of scaleFillChunk events, with the head rows
// the store's appends keep.
func fillScale(ctx context.Context, e *env, first, count int, progress ...func(string, ...any)) error {
	firstAcc := first / scaleStreamEvents
	accounts := (count + scaleStreamEvents - 1) / scaleStreamEvents
	perChunk := scaleFillChunk / scaleStreamEvents
	lastReport := time.Now()
	for start := 0; start < accounts; start += perChunk {
		n := min(perChunk, accounts-start)
		streams := make([]string, n)
		for i := range streams {
			streams[i] = scaleAccount(firstAcc + start + i)
		}
		src := &scaleRows{streams: streams}
		tx, err := e.pool.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"chronicle", "events"},
			[]string{"event_id", "stream_id", "stream_version", "event_type", "schema_version", "data"}, src); err != nil {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("fill: %w", err)
		}
		if _, err := tx.Exec(ctx, seedHeadRowsSQL, streams); err != nil {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("fill head rows: %w", err)
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
		if len(progress) > 0 && time.Since(lastReport) > 10*time.Second {
			progress[0]("filling: %d events", first+(start+n)*scaleStreamEvents)
			lastReport = time.Now()
		}
	}
	return nil
}

// vacuumAnalyze vacuums and analyzes Chronicle's tables, as autovacuum
// would after a fill: the first reader of a freshly copied table would
// otherwise set every row's hint bits, writing the table once more.
func vacuumAnalyze(ctx context.Context, e *env) error {
	for _, stmt := range []string{"VACUUM ANALYZE chronicle.events", "VACUUM ANALYZE chronicle.streams"} {
		if _, err := e.pool.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// scaleRows is the pgx.CopyFromSource of fillScale: the events of streams,
// each stream's versions 1 to scaleStreamEvents in a row.
type scaleRows struct {
	streams []string
	i       int // index of the current row
	data    []byte
	row     []any
}

func (r *scaleRows) Next() bool {
	if r.i >= len(r.streams)*scaleStreamEvents {
		return false
	}
	stream := r.streams[r.i/scaleStreamEvents]
	version := int64(r.i%scaleStreamEvents + 1)
	// deposit(stream) as JSON, built without reflection (the fill writes
	// millions of rows): {"account_id":"…","amount":125.5,…}.
	r.data = append(append(append(r.data[:0:0], `{"account_id":"`...), stream...), `","amount":125.5,"currency":"EUR","note":"deposit via ATM 42"}`...)
	r.row = []any{[16]byte(eventstore.NewEventID()), stream, version, depositedType, 1, r.data}
	r.i++
	return true
}

func (r *scaleRows) Values() ([]any, error) { return r.row, nil }

func (r *scaleRows) Err() error { return nil }
