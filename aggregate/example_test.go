package aggregate_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/snapshot"
)

// Events are plain structs, registered by name.

type AccountOpened struct {
	Owner string `json:"owner"`
}

type MoneyDeposited struct {
	Amount int64 `json:"amount"`
}

type MoneyWithdrawn struct {
	Amount int64 `json:"amount"`
}

var ErrInsufficientFunds = errors.New("insufficient funds")

// Account embeds aggregate.Base; Apply is the only place state changes.
type Account struct {
	aggregate.Base
	Owner   string
	Balance int64
}

func (a *Account) Apply(event any) error {
	switch e := event.(type) {
	case AccountOpened:
		a.Owner = e.Owner
	case MoneyDeposited:
		a.Balance += e.Amount
	case MoneyWithdrawn:
		a.Balance -= e.Amount
	default:
		return aggregate.Unhandled(event)
	}
	return nil
}

// Commands validate, then record events.

func (a *Account) Open(owner string) error {
	return aggregate.Record(a, AccountOpened{Owner: owner})
}

func (a *Account) Deposit(amount int64) error {
	return aggregate.Record(a, MoneyDeposited{Amount: amount})
}

func (a *Account) Withdraw(amount int64) error {
	if amount > a.Balance {
		return ErrInsufficientFunds
	}
	return aggregate.Record(a, MoneyWithdrawn{Amount: amount})
}

func newAccounts() *aggregate.Repository[Account, *Account] {
	reg := eventstore.NewRegistry(nil)
	eventstore.MustRegister[AccountOpened](reg, "AccountOpened")
	eventstore.MustRegister[MoneyDeposited](reg, "MoneyDeposited")
	eventstore.MustRegister[MoneyWithdrawn](reg, "MoneyWithdrawn")
	accounts, err := aggregate.NewRepository[Account](memory.New(nil), reg, nil)
	if err != nil {
		panic(err)
	}
	return accounts
}

func Example() {
	ctx := context.Background()
	accounts := newAccounts()

	acc := accounts.New("account-42")
	_ = acc.Open("Ada")
	_ = acc.Deposit(100)
	if _, err := accounts.Save(ctx, acc); err != nil {
		fmt.Println(err)
		return
	}

	loaded, err := accounts.Load(ctx, "account-42")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(loaded.Owner, loaded.Balance, "at version", loaded.Version())

	err = loaded.Withdraw(500)
	fmt.Println(err, "- still at version", loaded.Version())
	// Output:
	// Ada 100 at version 2
	// insufficient funds - still at version 2
}

func ExampleRepository_Update() {
	ctx := context.Background()
	accounts := newAccounts()

	// Update creates the aggregate when its stream does not exist yet...
	_, err := accounts.Update(ctx, "account-7", func(a *Account) error {
		if a.Version() == 0 {
			if err := a.Open("Grace"); err != nil {
				return err
			}
		}
		return a.Deposit(50)
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// ...and reloads and retries when another writer saved first.
	acc, err := accounts.Update(ctx, "account-7", func(a *Account) error { return a.Withdraw(20) })
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(acc.Balance, "at version", acc.Version())

	// A command's own error aborts the update; nothing is saved.
	_, err = accounts.Update(ctx, "account-7", func(a *Account) error { return a.Withdraw(1000) })
	fmt.Println(errors.Is(err, ErrInsufficientFunds))
	// Output:
	// 30 at version 3
	// true
}

// Save returns where the events were stored: the stream's new version and
// the global position of the last event, which a reader of a projection
// can wait for (read-your-writes).
func ExampleRepository_Save() {
	ctx := context.Background()
	accounts := newAccounts()
	acc := accounts.New("account-3")
	_ = acc.Open("Barbara")
	_ = acc.Deposit(70)
	res, err := accounts.Save(ctx, acc)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.StreamID, "at version", res.Version, "position", res.Position.Global)

	// Nothing new to save: the stored version, and nothing to wait for.
	res, err = accounts.Save(ctx, acc)
	fmt.Println(res.Version, res.Position.IsZero(), err)
	// Output:
	// account-3 at version 2 position 2
	// 2 true <nil>
}

func ExampleRepository_Save_conflict() {
	ctx := context.Background()
	accounts := newAccounts()
	acc := accounts.New("account-9")
	_ = acc.Open("Alan")
	_, _ = accounts.Save(ctx, acc)

	// Two copies loaded at version 1: the second save is refused.
	one, _ := accounts.Load(ctx, "account-9")
	two, _ := accounts.Load(ctx, "account-9")
	_ = one.Deposit(10)
	_ = two.Deposit(20)
	_, err := accounts.Save(ctx, one)
	fmt.Println(err)
	_, err = accounts.Save(ctx, two)
	fmt.Println(errors.Is(err, eventstore.ErrConcurrencyConflict))
	fmt.Println(err)
	// Output:
	// <nil>
	// true
	// concurrency conflict on stream "account-9": expected version 1, actual 2
}

func ExampleRepository_LoadVersion() {
	ctx := context.Background()
	accounts := newAccounts()
	acc := accounts.New("account-1")
	_ = acc.Open("Edsger")
	_ = acc.Deposit(100)
	_ = acc.Withdraw(60)
	_, _ = accounts.Save(ctx, acc)

	for v := int64(1); v <= 3; v++ {
		then, err := accounts.LoadVersion(ctx, "account-1", v)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("version %d: balance %d\n", then.Version(), then.Balance)
	}
	_, err := accounts.LoadVersion(ctx, "account-1", 4)
	fmt.Println(err)
	// Output:
	// version 1: balance 0
	// version 2: balance 100
	// version 3: balance 40
	// load "account-1" at version 4: the stream is at version 3
}

func ExampleRepository_Snapshot() {
	ctx := context.Background()
	reg := eventstore.NewRegistry(nil)
	eventstore.MustRegister[AccountOpened](reg, "AccountOpened")
	eventstore.MustRegister[MoneyDeposited](reg, "MoneyDeposited")
	accounts, err := aggregate.NewRepository[Account](memory.New(nil), reg, &aggregate.Config{
		Snapshots:      memory.NewSnapshotStore(nil),
		SnapshotPolicy: snapshot.EveryN(3), // after every third event
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = accounts.Update(ctx, "account-5", func(a *Account) error { return a.Open("Barbara") })
	for range 4 {
		_, _ = accounts.Update(ctx, "account-5", func(a *Account) error { return a.Deposit(10) })
	}

	// The load starts from the snapshot taken at version 3 and applies
	// events 4 and 5.
	acc, _ := accounts.Load(ctx, "account-5")
	fmt.Println(acc.Owner, acc.Balance, "at version", acc.Version(), "from the snapshot at", acc.SnapshotVersion())

	// An explicit snapshot, whatever the policy.
	_ = accounts.Snapshot(ctx, acc)
	acc, _ = accounts.Load(ctx, "account-5")
	fmt.Println("snapshot at", acc.SnapshotVersion())
	// Output:
	// Barbara 40 at version 5 from the snapshot at 3
	// snapshot at 5
}
