package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/examples/bank/account"
)

// teller tells the story: it runs commands against the accounts and writes
// what happens to w.
type teller struct {
	w        io.Writer
	store    eventstore.Store
	reg      *eventstore.Registry
	accounts *account.Repository
}

// story runs the bank example's story on store. Account IDs end in suffix,
// so that the story can run again on a database that keeps earlier runs.
func story(ctx context.Context, w io.Writer, store eventstore.Store, storeName, suffix string) error {
	reg, err := account.NewRegistry()
	if err != nil {
		return err
	}
	accounts, err := account.NewRepository(store, reg, nil)
	if err != nil {
		return err
	}
	t := &teller{w: w, store: store, reg: reg, accounts: accounts}
	alice, bob := "account-alice"+suffix, "account-bob"+suffix

	// The read model starts at the current head: on a database that holds
	// earlier runs, it reads only this run's events.
	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	balances := account.NewBalances(reg, head)

	t.printf("Chronicle bank example, on the %s.\n", storeName)

	t.printf("\n1. Commands and the events they record\n")
	cmds := []struct {
		label string
		id    string
		fn    func(*account.Account) error
	}{
		{"open " + alice + " for Alice", alice, func(a *account.Account) error { return a.Open("Alice") }},
		{"deposit 100 into " + alice, alice, func(a *account.Account) error { return a.Deposit(100) }},
		{"open " + bob + " for Bob", bob, func(a *account.Account) error { return a.Open("Bob") }},
		{"deposit 50 into " + bob, bob, func(a *account.Account) error { return a.Deposit(50) }},
	}
	for _, c := range cmds {
		if err := t.command(ctx, c.label, c.id, c.fn); err != nil {
			return err
		}
	}
	// Remember a moment before the withdrawal, for time travel. The pauses
	// keep it apart from the timestamps of the events around it.
	time.Sleep(5 * time.Millisecond)
	beforeWithdrawal := time.Now()
	time.Sleep(5 * time.Millisecond)
	if err := t.command(ctx, "withdraw 30 from "+alice, alice, func(a *account.Account) error { return a.Withdraw(30) }); err != nil {
		return err
	}
	err = t.command(ctx, "withdraw 500 from "+alice, alice, func(a *account.Account) error { return a.Withdraw(500) })
	if !errors.Is(err, account.ErrInsufficientFunds) {
		return fmt.Errorf("withdrawing 500 from %s: want insufficient funds, got %v", alice, err)
	}

	t.printf("\n2. Two tellers update %s at the same time\n", alice)
	if err := t.tellers(ctx, alice); err != nil {
		return err
	}

	t.printf("\n3. The balances read model, fed by reading all events in global order\n")
	n, err := catchUp(ctx, store, balances, map[string]int64{alice: 5, bob: 2})
	if err != nil {
		return err
	}
	for _, id := range []string{alice, bob} {
		owner, _ := balances.Owner(id)
		balance, ok := balances.Balance(id)
		if !ok {
			return fmt.Errorf("read model: %s is missing", id)
		}
		t.printf("   %-*s %-6s balance %d\n", len(alice), id, owner, balance)
	}
	t.printf("   (read %d events from the checkpoint)\n", n)

	t.printf("\n4. Time travel on %s\n", alice)
	now, err := accounts.Load(ctx, alice)
	if err != nil {
		return err
	}
	t.printf("   now:           v%d, balance %d\n", now.Version(), now.Balance)
	for _, v := range []int64{2, 3} {
		then, err := accounts.LoadVersion(ctx, alice, v)
		if err != nil {
			return err
		}
		t.printf("   as of v%d:      v%d, balance %d\n", v, then.Version(), then.Balance)
	}
	then, err := accounts.LoadAt(ctx, alice, beforeWithdrawal)
	if err != nil {
		return err
	}
	t.printf("   as of the moment before the withdrawal of 30: v%d, balance %d\n", then.Version(), then.Balance)
	return nil
}

// catchUp feeds the read model until it has applied each account's events
// up to the version in want, and returns the number of events it read. On
// PostgreSQL, events become readable in global order once every older
// transaction on the server has ended, so this can take a moment; it gives
// up after 10 seconds.
func catchUp(ctx context.Context, store eventstore.Store, balances *account.Balances, want map[string]int64) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	total := 0
	for {
		n, err := balances.CatchUp(ctx, store)
		total += n
		if err != nil {
			return total, err
		}
		done := true
		for id, v := range want {
			done = done && balances.Version(id) >= v
		}
		if done {
			return total, nil
		}
		select {
		case <-ctx.Done():
			return total, fmt.Errorf("the read model did not see this run's events within 10s: a transaction left open on the server holds back the global order (see docs/postgres.md): %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (t *teller) printf(format string, args ...any) { fmt.Fprintf(t.w, format, args...) }

// command runs fn against the account id with Update (create-or-update,
// retried on conflicts) and prints the events it recorded, or the refusal.
func (t *teller) command(ctx context.Context, label, id string, fn func(*account.Account) error) error {
	t.printf("   %s\n", label)
	var recorded []any
	var from int64
	acc, err := t.accounts.Update(ctx, id, func(a *account.Account) error {
		if err := fn(a); err != nil {
			return err
		}
		recorded, from = a.Uncommitted(), a.StoredVersion()
		return nil
	})
	if err != nil {
		if acc != nil || !isDomainError(err) {
			return err
		}
		current, lerr := t.accounts.Load(ctx, id)
		if lerr != nil {
			return lerr
		}
		t.printf("     refused: %v (nothing recorded, still at v%d)\n", err, current.Version())
		return err
	}
	for i, e := range recorded {
		t.printf("     v%d %s\n", from+int64(i)+1, describe(e))
	}
	return nil
}

// tellers shows two tellers changing the same account from the same
// version: the second save is refused with a concurrency conflict, and the
// second teller reloads and retries its command.
func (t *teller) tellers(ctx context.Context, id string) error {
	one, err := t.accounts.Load(ctx, id)
	if err != nil {
		return err
	}
	two, err := t.accounts.Load(ctx, id)
	if err != nil {
		return err
	}
	t.printf("   teller 1 and teller 2 both load %s at v%d, balance %d\n", id, one.Version(), one.Balance)

	if err := one.Deposit(20); err != nil {
		return err
	}
	if _, err := t.accounts.Save(ctx, one); err != nil {
		return err
	}
	t.printf("   teller 1: deposit 20   -> saved at v%d, balance %d\n", one.Version(), one.Balance)

	if err := two.Withdraw(10); err != nil {
		return err
	}
	_, err = t.accounts.Save(ctx, two)
	if !errors.Is(err, eventstore.ErrConcurrencyConflict) {
		return fmt.Errorf("teller 2: want a concurrency conflict, got %v", err)
	}
	t.printf("   teller 2: withdraw 10  -> conflict detected: %v\n", err)

	var reloadedAt int64
	retried, err := t.accounts.Update(ctx, id, func(a *account.Account) error {
		reloadedAt = a.Version()
		return a.Withdraw(10)
	})
	if err != nil {
		return err
	}
	t.printf("   teller 2: reloads at v%d and retries -> saved at v%d, balance %d\n", reloadedAt, retried.Version(), retried.Balance)
	return nil
}

func isDomainError(err error) bool {
	for _, target := range []error{account.ErrInsufficientFunds, account.ErrInvalidAmount, account.ErrNotOpen, account.ErrAlreadyOpen, account.ErrNoOwner} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func describe(e any) string {
	switch e := e.(type) {
	case account.AccountOpened:
		return account.TypeAccountOpened + " owner=" + e.Owner
	case account.DepositCompleted:
		return fmt.Sprintf("%s amount=%d", account.TypeDepositCompleted, e.Amount)
	case account.WithdrawalCompleted:
		return fmt.Sprintf("%s amount=%d", account.TypeWithdrawalCompleted, e.Amount)
	default:
		return strings.TrimPrefix(fmt.Sprintf("%T", e), "account.")
	}
}
