package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/snapshot"
)

// The load-10k-snapshot workload: loading one account of 10,000 events,
// without and with a snapshot. The snapshot covers version 9,950, as an
// every-100 policy can leave up to 99 events after the latest snapshot, so
// a load with it applies the last 50 events.
const (
	snapEvents  = 10_000
	snapVersion = 9_950
	snapStream  = "load-10k-snapshot-acc-000001"
)

// snapAccount is the account aggregate with exported state, so that the
// repository's default JSON snapshots can encode it.
type snapAccount struct {
	aggregate.Base
	Balance  float64 `json:"balance"`
	Deposits int     `json:"deposits"`
}

// Apply implements aggregate.Root.
func (a *snapAccount) Apply(event any) error {
	switch e := event.(type) {
	case Deposited:
		a.Balance += e.Amount
		a.Deposits++
	default:
		return aggregate.Unhandled(event)
	}
	return nil
}

// baselineSnapshot is the baseline's snapshot state, JSON-encoded in
// bench_baseline.snapshots.
type baselineSnapshot struct {
	Balance  float64 `json:"balance"`
	Deposits int     `json:"deposits"`
}

const baselineSnapshotsSchema = `
CREATE TABLE IF NOT EXISTS bench_baseline.snapshots (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL,
    data      bytea  NOT NULL
)`

// load10kSnapshotWorkload measures loads of a 10,000-event account without
// a snapshot (max(3, Loads/50) loads) and with one (Loads loads), and the
// speedup the snapshot gives each side.
func load10kSnapshotWorkload() workload {
	// The repositories, made by setup for the run's database.
	var plain, snapped *aggregate.Repository[snapAccount, *snapAccount]
	fullLoads := func(e *env) int { return max(3, e.cfg.Loads/50) }
	check := func(version int64, deposits int) error {
		if version != snapEvents || deposits != snapEvents {
			return fmt.Errorf("account loaded at version %d with %d deposits, want %d", version, deposits, snapEvents)
		}
		return nil
	}

	setup := func(ctx context.Context, e *env) error {
		if err := e.seed(ctx, []string{snapStream}, snapEvents); err != nil {
			return err
		}
		// Baseline: a snapshot row of the state at snapVersion.
		data, err := json.Marshal(baselineSnapshot{Balance: float64(snapVersion) * deposit("").Amount, Deposits: snapVersion})
		if err != nil {
			return err
		}
		if _, err := e.pool.Exec(ctx, baselineSnapshotsSchema); err != nil {
			return err
		}
		if _, err := e.pool.Exec(ctx, `INSERT INTO bench_baseline.snapshots (stream_id, version, data) VALUES ($1, $2, $3)`, snapStream, snapVersion, data); err != nil {
			return err
		}
		// Chronicle: repositories without and with the snapshot store, and
		// a snapshot taken by the repository at snapVersion.
		snaps, err := postgres.NewSnapshotStore(e.pool, nil)
		if err != nil {
			return err
		}
		if plain, err = aggregate.NewRepository[snapAccount](e.store, e.registry, nil); err != nil {
			return err
		}
		snapped, err = aggregate.NewRepository[snapAccount](e.store, e.registry, &aggregate.Config{
			Snapshots:      snaps,
			SnapshotPolicy: snapshot.Never(),
			Logger:         slog.New(slog.DiscardHandler),
		})
		if err != nil {
			return err
		}
		a, err := snapped.LoadVersion(ctx, snapStream, snapVersion)
		if err != nil {
			return err
		}
		return snapped.Snapshot(ctx, a)
	}

	baseline := func(ctx context.Context, e *env) ([]float64, error) {
		const full = `SELECT version, type, data FROM bench_baseline.events WHERE stream_id = $1 ORDER BY version`
		const snap = `SELECT version, data FROM bench_baseline.snapshots WHERE stream_id = $1`
		const after = `SELECT version, type, data FROM bench_baseline.events
WHERE stream_id = $1 AND version > coalesce((SELECT version FROM bench_baseline.snapshots WHERE stream_id = $1), 0)
ORDER BY version`

		n := fullLoads(e)
		t0 := time.Now()
		for range n {
			var a plainAccount
			if err := applyBaselineRows(e.pool.Query(ctx, full, snapStream))(&a); err != nil {
				return nil, err
			}
			if err := check(a.version, a.deposits); err != nil {
				return nil, err
			}
		}
		withoutRate := rate(n, time.Since(t0))

		// With a snapshot: the snapshot row and the events after it, in one
		// round trip (a pipelined batch).
		t0 = time.Now()
		for range e.cfg.Loads {
			var b pgx.Batch
			b.Queue(snap, snapStream)
			b.Queue(after, snapStream)
			res := e.pool.SendBatch(ctx, &b)
			var (
				a    plainAccount
				data []byte
				s    baselineSnapshot
			)
			if err := res.QueryRow().Scan(&a.version, &data); err != nil {
				res.Close()
				return nil, err
			}
			if err := json.Unmarshal(data, &s); err != nil {
				res.Close()
				return nil, err
			}
			a.balance, a.deposits = s.Balance, s.Deposits
			if err := applyBaselineRows(res.Query())(&a); err != nil {
				res.Close()
				return nil, err
			}
			if err := res.Close(); err != nil {
				return nil, err
			}
			if err := check(a.version, a.deposits); err != nil {
				return nil, err
			}
		}
		withRate := rate(e.cfg.Loads, time.Since(t0))
		return []float64{withoutRate, withRate, withRate / withoutRate}, nil
	}

	chronicle := func(ctx context.Context, e *env) ([]float64, error) {
		load := func(repo *aggregate.Repository[snapAccount, *snapAccount], n int) (float64, error) {
			t0 := time.Now()
			for range n {
				a, err := repo.Load(ctx, snapStream)
				if err != nil {
					return 0, err
				}
				if err := check(a.Version(), a.Deposits); err != nil {
					return 0, err
				}
			}
			return rate(n, time.Since(t0)), nil
		}
		withoutRate, err := load(plain, fullLoads(e))
		if err != nil {
			return nil, err
		}
		withRate, err := load(snapped, e.cfg.Loads)
		if err != nil {
			return nil, err
		}
		return []float64{withoutRate, withRate, withRate / withoutRate}, nil
	}

	return workload{
		name: "load-10k-snapshot",
		metrics: []metric{
			{label: "no snapshot", unit: "loads/s"},
			{label: "snapshot", unit: "loads/s"},
			{label: "speedup", unit: "x"},
		},
		setup:     setup,
		baseline:  baseline,
		chronicle: chronicle,
	}
}

// applyBaselineRows returns a function that applies rows of (version,
// type, data) to an account and closes them.
func applyBaselineRows(rows pgx.Rows, err error) func(*plainAccount) error {
	return func(a *plainAccount) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			typ  string
			data []byte
		)
		for rows.Next() {
			if err := rows.Scan(&a.version, &typ, &data); err != nil {
				return err
			}
			if typ != depositedType {
				return fmt.Errorf("unknown event type %q", typ)
			}
			var d Deposited
			if err := json.Unmarshal(data, &d); err != nil {
				return err
			}
			a.apply(d)
		}
		return rows.Err()
	}
}
