package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/postgres"
)

// env is what a workload gets: a fresh database per run holding Chronicle's
// schema and the baseline's table side by side.
type env struct {
	cfg    *Config
	server string // server version

	// pool is connected to the run's database, with room for 32 writers
	// and a reader.
	pool *pgxpool.Pool
	// store is Chronicle's PostgreSQL store on pool, with the defaults
	// (group commit on).
	store *postgres.Store
	// registry knows Deposited.
	registry *eventstore.Registry
	// accounts is the aggregate repository of the account aggregate.
	accounts *aggregate.Repository[account, *account]
	// accountsNoGroup is accounts on a store with group commit off.
	accountsNoGroup *aggregate.Repository[account, *account]
}

// baselineSchema is the minimal events table of BENCH.md, what the raw pgx
// baseline reads and writes.
const baselineSchema = `
CREATE SCHEMA bench_baseline;
CREATE TABLE bench_baseline.events (
    position    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);`

// withRunEnv creates a fresh database on the server, prepares both schemas,
// runs fn and drops the database.
func withRunEnv(ctx context.Context, cfg *Config, fn func(*env) error) (err error) {
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return errors.New("invalid database url: want postgres://user:password@host:port/database")
	}
	admin, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("connect to database: %w", err)
	}
	defer admin.Close(context.Background())

	var server string
	if err := admin.QueryRow(ctx, "SHOW server_version").Scan(&server); err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "chronicle_bench_" + hex.EncodeToString(b)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return fmt.Errorf("create benchmark database (the role needs CREATEDB): %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, derr := admin.Exec(dctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); derr != nil && err == nil {
			err = fmt.Errorf("drop benchmark database %s: %w", name, derr)
		}
	}()

	u.Path = "/" + name
	dbURL := u.String()
	if err := migrations.Up(ctx, dbURL); err != nil {
		return fmt.Errorf("migrate benchmark database: %w", err)
	}
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	pcfg.MaxConns = 36
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("connect to benchmark database: %w", err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, baselineSchema); err != nil {
		return fmt.Errorf("create baseline schema: %w", err)
	}
	// The append workloads measure group commit (Config.GroupCommit) on
	// and, as the -no-group variants, off (the default).
	store, err := postgres.New(pool, &postgres.Config{GroupCommit: true})
	if err != nil {
		return err
	}
	defer store.Close()
	noGroup, err := postgres.New(pool, nil)
	if err != nil {
		return err
	}
	defer noGroup.Close()
	reg := newRegistry()
	accounts, err := aggregate.NewRepository[account](store, reg, nil)
	if err != nil {
		return err
	}
	accountsNoGroup, err := aggregate.NewRepository[account](noGroup, reg, nil)
	if err != nil {
		return err
	}
	return fn(&env{cfg: cfg, server: server, pool: pool, store: store, registry: reg, accounts: accounts, accountsNoGroup: accountsNoGroup})
}

// seed writes perStream events to each of the streams on both sides, with
// COPY in transactions of up to 5,000 events (setup is not measured).
// Each stream must be new.
// Every event is a Deposited for the stream's account.
func (e *env) seed(ctx context.Context, streams []string, perStream int) error {
	const chunk = 5000
	type row struct {
		stream  string
		version int64
	}
	var rows []row
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		base := make([][]any, len(rows))
		chron := make([][]any, len(rows))
		for i, r := range rows {
			data, err := json.Marshal(deposit(r.stream))
			if err != nil {
				return err
			}
			base[i] = []any{r.stream, r.version, depositedType, data}
			id := eventstore.NewEventID()
			chron[i] = []any{[16]byte(id), r.stream, r.version, depositedType, 1, data}
		}
		if _, err := e.pool.CopyFrom(ctx, pgx.Identifier{"bench_baseline", "events"},
			[]string{"stream_id", "version", "type", "data"}, pgx.CopyFromRows(base)); err != nil {
			return fmt.Errorf("seed baseline: %w", err)
		}
		if _, err := e.pool.CopyFrom(ctx, pgx.Identifier{"chronicle", "events"},
			[]string{"event_id", "stream_id", "stream_version", "event_type", "schema_version", "data"}, pgx.CopyFromRows(chron)); err != nil {
			return fmt.Errorf("seed chronicle: %w", err)
		}
		rows = rows[:0]
		return nil
	}
	// Version-major order scatters each stream over the table, as events
	// of long-lived accounts are in a real store.
	for v := 1; v <= perStream; v++ {
		for _, s := range streams {
			rows = append(rows, row{s, int64(v)})
			if len(rows) == chunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	// The events were copied behind the store's back: give their streams
	// the head rows the store's appends keep (see postgres/internal/eventsql).
	if _, err := e.pool.Exec(ctx, seedHeadRowsSQL, streams); err != nil {
		return fmt.Errorf("seed chronicle head rows: %w", err)
	}
	_, err := e.pool.Exec(ctx, "ANALYZE bench_baseline.events; ANALYZE chronicle.events; ANALYZE chronicle.streams")
	return err
}

// seedHeadRowsSQL creates the head rows of seeded streams ($1) from their
// events, as migration 000004_streams does for existing events.
const seedHeadRowsSQL = `
INSERT INTO chronicle.streams (stream_id, version, last_transaction_id)
SELECT e.stream_id, max(e.stream_version), max(e.transaction_id)
FROM chronicle.events e
WHERE e.stream_id = ANY($1::text[])
GROUP BY e.stream_id
ORDER BY min(e.global_position)`

// horizonWait bounds how long waitReadable waits for other sessions'
// transactions to end.
const horizonWait = 30 * time.Second

// waitReadable waits until Chronicle's read-all can see every event in the
// table. ReadAll stops at the oldest transaction still running anywhere in
// the cluster, so a session left idle in a transaction on the server holds
// the catch-up back; that is reported rather than measured.
func (e *env) waitReadable(ctx context.Context) error {
	var last int64
	if err := e.pool.QueryRow(ctx, "SELECT coalesce(max(global_position), 0) FROM chronicle.events").Scan(&last); err != nil {
		return err
	}
	deadline := time.Now().Add(horizonWait)
	for {
		head, err := e.store.Head(ctx)
		if err != nil {
			return err
		}
		if head.Global >= last {
			return nil
		}
		if time.Now().After(deadline) {
			lag, _ := e.store.TailLag(ctx)
			return fmt.Errorf("chronicle's read horizon is held back by a transaction open for %s on the server (see pg_stat_activity, idle in transaction): read-all cannot see the seeded events", lag.Round(time.Second))
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
