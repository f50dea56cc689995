package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
)

type WithdrawalCompleted struct {
	Amount int64 `json:"amount"`
}

type DepositCompleted struct {
	Amount int64 `json:"amount"`
}

type Account struct {
	aggregate.Base
	Balance int64
}

func (a *Account) Apply(event any) error {
	switch e := event.(type) {
	case DepositCompleted:
		a.Balance += e.Amount
	case WithdrawalCompleted:
		a.Balance -= e.Amount
	default:
		return aggregate.Unhandled(event)
	}
	return nil
}

func (a *Account) Withdraw(amount int64) error {
	if amount > a.Balance {
		return errors.New("insufficient funds")
	}
	return aggregate.Record(a, WithdrawalCompleted{Amount: amount})
}

// Save an aggregate in the caller's transaction, together with a business
// row: both commit, or neither. The result's position is what a reader of
// a projection waits for (read-your-writes).
func ExampleStore_InTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	snapshots, err := postgres.NewSnapshotStore(pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	reg := eventstore.NewRegistry(nil)
	eventstore.MustRegister[DepositCompleted](reg, "DepositCompleted")
	eventstore.MustRegister[WithdrawalCompleted](reg, "WithdrawalCompleted")
	accounts, err := aggregate.NewRepository[Account](store, reg, &aggregate.Config{Snapshots: snapshots})
	if err != nil {
		log.Fatal(err)
	}

	var saved eventstore.AppendResult
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO payments (id, account, amount) VALUES ($1, $2, $3)`, "pay-7", "account-42", 30); err != nil {
			return err
		}
		// The repository bound to the transaction: loads see what tx sees,
		// the save (and a snapshot it takes) commits or rolls back with tx.
		inTx := accounts.With(store.InTx(tx))
		acc, err := inTx.Load(ctx, "account-42")
		if err != nil {
			return err
		}
		if err := acc.Withdraw(30); err != nil {
			return err // rolls back the payment row
		}
		saved, err = inTx.Save(ctx, acc)
		return err // a conflict rolls back the payment row too
	})
	if errors.Is(err, eventstore.ErrConcurrencyConflict) {
		log.Fatal("another writer came first: run the whole transaction again")
	}
	if err != nil {
		log.Fatal(err)
	}
	// Wait for a projection to pass saved.Position before reading it, e.g.
	// with projection.Runner.WaitFor.
	fmt.Println("account-42 at version", saved.Version, "position", saved.Position)
}
