package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/examples/bank/account"
	chmemory "github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
	"github.com/chronicle-go/chronicle/telemetry"
)

// balancesProjectionName names the projection and its checkpoint.
const balancesProjectionName = "bank-balances"

// balanceModel is where the balances projection writes: a PostgreSQL
// table, or a map for the in-memory run. The projection code is the same.
type balanceModel interface {
	open(ctx context.Context, accountID, owner string, version int64) error
	add(ctx context.Context, accountID string, amount, version int64) error
	reset(ctx context.Context) error
	get(ctx context.Context, accountID string) (owner string, balance, version int64, err error)
}

// balancesProjection keeps model up to date from the account events.
func balancesProjection(reg *eventstore.Registry, model balanceModel) projection.Projection {
	h := projection.NewHandlers(reg)
	projection.On(h, func(ctx context.Context, ev projection.Event, e account.AccountOpened) error {
		return model.open(ctx, ev.StreamID, e.Owner, ev.StreamVersion)
	})
	projection.On(h, func(ctx context.Context, ev projection.Event, e account.DepositCompleted) error {
		return model.add(ctx, ev.StreamID, e.Amount, ev.StreamVersion)
	})
	projection.On(h, func(ctx context.Context, ev projection.Event, e account.WithdrawalCompleted) error {
		return model.add(ctx, ev.StreamID, -e.Amount, ev.StreamVersion)
	})
	return projection.Projection{
		Name:    balancesProjectionName,
		Handler: h,
		Reset:   func(ctx context.Context, _ int) error { return model.reset(ctx) },
	}
}

// pgBalances is the bank_balances table. The projection is
// Transactional: every write goes through the batch's transaction, which
// commits with the checkpoint, so each event counts exactly once.
type pgBalances struct {
	pool *pgxpool.Pool
}

const pgBalancesSchema = `
CREATE TABLE IF NOT EXISTS bank_balances (
    account_id text   PRIMARY KEY,
    owner      text   NOT NULL,
    balance    bigint NOT NULL,
    version    bigint NOT NULL
)`

func (m pgBalances) tx(ctx context.Context) (pgx.Tx, error) {
	tx, ok := postgres.ProjectionTx(ctx)
	if !ok {
		return nil, postgres.ErrNoProjectionTx
	}
	return tx, nil
}

func (m pgBalances) open(ctx context.Context, accountID, owner string, version int64) error {
	tx, err := m.tx(ctx)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO bank_balances (account_id, owner, balance, version) VALUES ($1, $2, 0, $3)`, accountID, owner, version)
	return err
}

func (m pgBalances) add(ctx context.Context, accountID string, amount, version int64) error {
	tx, err := m.tx(ctx)
	if err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE bank_balances SET balance = balance + $2, version = $3 WHERE account_id = $1`, accountID, amount, version)
	if err == nil && tag.RowsAffected() != 1 {
		err = fmt.Errorf("account %s has no balance row", accountID)
	}
	return err
}

func (m pgBalances) reset(ctx context.Context) error {
	tx, err := m.tx(ctx)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `DELETE FROM bank_balances`)
	return err
}

func (m pgBalances) get(ctx context.Context, accountID string) (owner string, balance, version int64, err error) {
	err = m.pool.QueryRow(ctx, `SELECT owner, balance, version FROM bank_balances WHERE account_id = $1`, accountID).Scan(&owner, &balance, &version)
	return owner, balance, version, err
}

// memBalances is the in-memory read model of the in-memory run.
type memBalances struct {
	mu   sync.Mutex
	rows map[string]*memBalance
}

type memBalance struct {
	owner            string
	balance, version int64
}

func (m *memBalances) open(_ context.Context, accountID, owner string, version int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows[accountID] = &memBalance{owner: owner, version: version}
	return nil
}

func (m *memBalances) add(_ context.Context, accountID string, amount, version int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	row := m.rows[accountID]
	if row == nil {
		return fmt.Errorf("account %s has no balance row", accountID)
	}
	row.balance, row.version = row.balance+amount, version
	return nil
}

func (m *memBalances) reset(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.rows)
	return nil
}

func (m *memBalances) get(_ context.Context, accountID string) (string, int64, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	row := m.rows[accountID]
	if row == nil {
		return "", 0, 0, fmt.Errorf("account %s is not in the read model", accountID)
	}
	return row.owner, row.balance, row.version, nil
}

// withBalancesProjection runs the balances projection while fn (the story)
// runs, then shows the read model it keeps for this run's accounts (whose
// IDs end in suffix). On PostgreSQL (dsn set) the read model is the
// bank_balances table and the checkpoint survives the run; otherwise both
// live in memory.
func withBalancesProjection(ctx context.Context, w io.Writer, store eventstore.Store, dsn, suffix string, fn func() error) error {
	reg, err := account.NewRegistry()
	if err != nil {
		return err
	}
	var (
		model   balanceModel
		storage projectionstore.Storage
		where   string
	)
	if dsn == "" {
		model = &memBalances{rows: map[string]*memBalance{}}
		if storage, err = chmemory.NewProjectionStore(nil); err != nil {
			return err
		}
		where = "in memory"
	} else {
		// The runner could live in another process; here it has its own pool.
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		defer pool.Close()
		if _, err := pool.Exec(ctx, pgBalancesSchema); err != nil {
			return fmt.Errorf("create bank_balances: %w", err)
		}
		ps, err := postgres.NewProjectionStore(pool, nil)
		if err != nil {
			return err
		}
		model, storage, where = pgBalances{pool: pool}, ps, "in the PostgreSQL table bank_balances"
	}
	runner, err := projection.New(store, storage, &projection.Config{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	p := balancesProjection(reg, model)
	if p.Handler, err = telemetry.NewHandler(p.Handler, nil); err != nil { // spans per event, in the trace of the append
		return err
	}
	if err := runner.Add(p); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()

	if err := fn(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\n5. The balances projection, kept %s by a projection runner\n", where)
	alice, bob := "account-alice"+suffix, "account-bob"+suffix
	var last eventstore.Position
	for _, id := range []string{alice, bob} {
		recs, err := store.ReadStream(ctx, id, eventstore.ReadStreamOptions{Direction: eventstore.Backward, Limit: 1})
		if err != nil {
			return err
		}
		if len(recs) == 1 && recs[0].Position.Compare(last) > 0 {
			last = recs[0].Position
		}
	}
	// Read-your-writes: wait until the projection has handled the last
	// event of this run.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := runner.WaitFor(wctx, balancesProjectionName, last); err != nil {
		return fmt.Errorf("balances projection: %w", err)
	}
	for _, id := range []string{alice, bob} {
		owner, balance, version, err := model.get(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "   %-*s %-6s balance %d (v%d)\n", len(alice), id, owner, balance, version)
	}
	sts, err := runner.Status(ctx)
	if err != nil {
		return err
	}
	for _, st := range sts {
		holder := "held"
		if st.Holder == "" {
			holder = "not held"
		}
		fmt.Fprintf(w, "   projection %q: checkpoint %s, %s, %d parked\n", st.Projection, st.Position, holder, st.Parked)
		if st.Error != "" {
			return errors.New(st.Error)
		}
	}
	return nil
}
