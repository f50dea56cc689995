package bench

import (
	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
)

// Deposited is the one event type of the benchmark: a deposit into a bank
// account.
type Deposited struct {
	AccountID string  `json:"account_id"`
	Amount    float64 `json:"amount"`
	Currency  string  `json:"currency"`
	Note      string  `json:"note"`
}

// depositedType is Deposited's registered name, stored in the event type
// column on both sides.
const depositedType = "Deposited"

// deposit returns the benchmark payload for an account:
// {"account_id":"acc-000123","amount":125.5,"currency":"EUR","note":"deposit via ATM 42"}.
func deposit(accountID string) Deposited {
	return Deposited{AccountID: accountID, Amount: 125.5, Currency: "EUR", Note: "deposit via ATM 42"}
}

// account is the benchmark's aggregate, rehydrated by load-100.
type account struct {
	aggregate.Base
	balance  float64
	deposits int
}

// Apply implements aggregate.Root.
func (a *account) Apply(event any) error {
	switch e := event.(type) {
	case Deposited:
		a.balance += e.Amount
		a.deposits++
	default:
		return aggregate.Unhandled(event)
	}
	return nil
}

// Deposit is the command of the append workloads.
func (a *account) Deposit(d Deposited) error { return aggregate.Record(a, d) }

// plainAccount is the baseline's account: the same state, applied by hand.
type plainAccount struct {
	version  int64
	balance  float64
	deposits int
}

func (a *plainAccount) apply(d Deposited) {
	a.balance += d.Amount
	a.deposits++
}

func newRegistry() *eventstore.Registry {
	reg := eventstore.NewRegistry(nil)
	eventstore.MustRegister[Deposited](reg, depositedType)
	return reg
}
