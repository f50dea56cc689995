package account_test

import (
	"context"
	"errors"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/examples/bank/account"
	"github.com/chronicle-go/chronicle/memory"
)

func setup(t *testing.T) (*memory.Store, *eventstore.Registry, *account.Repository) {
	t.Helper()
	store := memory.New(nil)
	reg, err := account.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	repo, err := account.NewRepository(store, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return store, reg, repo
}

func TestCommands(t *testing.T) {
	t.Parallel()
	_, _, repo := setup(t)
	open := func(t *testing.T, balance int64) *account.Account {
		t.Helper()
		a := repo.New("account-1")
		if err := a.Open("Ada"); err != nil {
			t.Fatal(err)
		}
		if balance > 0 {
			if err := a.Deposit(balance); err != nil {
				t.Fatal(err)
			}
		}
		return a
	}
	for _, tc := range []struct {
		name    string
		account func(t *testing.T) *account.Account
		command func(a *account.Account) error
		want    error
		balance int64
	}{
		{"Open", func(*testing.T) *account.Account { return repo.New("account-1") }, func(a *account.Account) error { return a.Open("Ada") }, nil, 0},
		{"OpenTwice", func(t *testing.T) *account.Account { return open(t, 0) }, func(a *account.Account) error { return a.Open("Bob") }, account.ErrAlreadyOpen, 0},
		{"OpenWithoutOwner", func(*testing.T) *account.Account { return repo.New("account-1") }, func(a *account.Account) error { return a.Open("") }, account.ErrNoOwner, 0},
		{"Deposit", func(t *testing.T) *account.Account { return open(t, 0) }, func(a *account.Account) error { return a.Deposit(10) }, nil, 10},
		{"DepositZero", func(t *testing.T) *account.Account { return open(t, 0) }, func(a *account.Account) error { return a.Deposit(0) }, account.ErrInvalidAmount, 0},
		{"DepositNegative", func(t *testing.T) *account.Account { return open(t, 0) }, func(a *account.Account) error { return a.Deposit(-5) }, account.ErrInvalidAmount, 0},
		{"DepositNotOpen", func(*testing.T) *account.Account { return repo.New("account-1") }, func(a *account.Account) error { return a.Deposit(10) }, account.ErrNotOpen, 0},
		{"Withdraw", func(t *testing.T) *account.Account { return open(t, 50) }, func(a *account.Account) error { return a.Withdraw(20) }, nil, 30},
		{"WithdrawEverything", func(t *testing.T) *account.Account { return open(t, 50) }, func(a *account.Account) error { return a.Withdraw(50) }, nil, 0},
		{"WithdrawTooMuch", func(t *testing.T) *account.Account { return open(t, 50) }, func(a *account.Account) error { return a.Withdraw(51) }, account.ErrInsufficientFunds, 50},
		{"WithdrawNegative", func(t *testing.T) *account.Account { return open(t, 50) }, func(a *account.Account) error { return a.Withdraw(-1) }, account.ErrInvalidAmount, 50},
		{"WithdrawNotOpen", func(*testing.T) *account.Account { return repo.New("account-1") }, func(a *account.Account) error { return a.Withdraw(1) }, account.ErrNotOpen, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := tc.account(t)
			before := len(a.Uncommitted())
			err := tc.command(a)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("command = %v, want %v", err, tc.want)
			}
			recorded := len(a.Uncommitted()) - before
			if tc.want != nil && recorded != 0 {
				t.Fatalf("a refused command recorded %d events", recorded)
			}
			if tc.want == nil && recorded != 1 {
				t.Fatalf("the command recorded %d events, want 1", recorded)
			}
			if a.Balance != tc.balance {
				t.Fatalf("balance %d, want %d", a.Balance, tc.balance)
			}
		})
	}
}

func TestInsufficientFundsError(t *testing.T) {
	t.Parallel()
	_, _, repo := setup(t)
	ctx := context.Background()
	a := repo.New("account-1")
	_ = a.Open("Ada")
	_ = a.Deposit(70)
	if _, err := repo.Save(ctx, a); err != nil {
		t.Fatal(err)
	}
	_, err := repo.Update(ctx, "account-1", func(a *account.Account) error { return a.Withdraw(500) })
	var ife *account.InsufficientFundsError
	if !errors.As(err, &ife) || ife.Balance != 70 || ife.Amount != 500 {
		t.Fatalf("Update = %v, want an InsufficientFundsError(70, 500)", err)
	}
	got, err := repo.Load(ctx, "account-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version() != 2 || got.Balance != 70 {
		t.Fatalf("after a refused withdrawal: version %d balance %d, want 2 70", got.Version(), got.Balance)
	}
}

func TestBalances(t *testing.T) {
	t.Parallel()
	store, reg, repo := setup(t)
	ctx := context.Background()

	// An event of another part of the application is skipped.
	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, eventstore.Event{Type: "OrderPlaced", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"account-1", "account-2"} {
		if _, err := repo.Update(ctx, id, func(a *account.Account) error {
			if err := a.Open("owner of " + id); err != nil {
				return err
			}
			return a.Deposit(100)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := repo.Update(ctx, "account-1", func(a *account.Account) error { return a.Withdraw(25) }); err != nil {
		t.Fatal(err)
	}

	all := account.NewBalances(reg, eventstore.Position{})
	n, err := all.CatchUp(ctx, store)
	if err != nil || n != 6 {
		t.Fatalf("CatchUp = %d, %v; want 6 events", n, err)
	}
	if b, ok := all.Balance("account-1"); !ok || b != 75 {
		t.Fatalf("account-1 balance %d %v, want 75", b, ok)
	}
	if b, ok := all.Balance("account-2"); !ok || b != 100 {
		t.Fatalf("account-2 balance %d %v, want 100", b, ok)
	}
	if o, _ := all.Owner("account-2"); o != "owner of account-2" {
		t.Fatalf("account-2 owner %q", o)
	}
	if got := all.Accounts(); len(got) != 2 || got[0] != "account-1" || got[1] != "account-2" {
		t.Fatalf("accounts %v", got)
	}

	// Catching up again reads only the new events.
	if _, err := repo.Update(ctx, "account-2", func(a *account.Account) error { return a.Deposit(1) }); err != nil {
		t.Fatal(err)
	}
	if n, err := all.CatchUp(ctx, store); err != nil || n != 1 {
		t.Fatalf("second CatchUp = %d, %v; want 1 event", n, err)
	}
	if b, _ := all.Balance("account-2"); b != 101 {
		t.Fatalf("account-2 balance %d, want 101", b)
	}

	// A read model started from a checkpoint sees only what follows it.
	later := account.NewBalances(reg, head)
	if n, err := later.CatchUp(ctx, store); err != nil || n != 6 {
		t.Fatalf("CatchUp from the head = %d, %v; want 6", n, err)
	}
	if later.Checkpoint() != all.Checkpoint() {
		t.Fatalf("checkpoints differ: %s and %s", later.Checkpoint(), all.Checkpoint())
	}

	// A corrupt account event stops the read model at the event before it.
	if _, err := store.Append(ctx, "account-3", eventstore.NoStream, eventstore.Event{Type: account.TypeDepositCompleted, Data: []byte(`{"amount":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	before := all.Checkpoint()
	if _, err := all.CatchUp(ctx, store); !errors.Is(err, eventstore.ErrDecode) {
		t.Fatalf("CatchUp over a corrupt event = %v, want ErrDecode", err)
	}
	if all.Checkpoint() != before {
		t.Fatal("the checkpoint moved past a corrupt event")
	}
}
