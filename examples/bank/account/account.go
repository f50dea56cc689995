package account

import (
	"errors"
	"fmt"

	"github.com/chronicle-go/chronicle/aggregate"
)

// Domain errors. Commands that fail record nothing.
var (
	// ErrInsufficientFunds: a withdrawal larger than the balance. The
	// error is an [*InsufficientFundsError].
	ErrInsufficientFunds = errors.New("insufficient funds")
	// ErrInvalidAmount: an amount that is not positive.
	ErrInvalidAmount = errors.New("amount must be positive")
	// ErrNotOpen: a deposit or withdrawal on an account never opened.
	ErrNotOpen = errors.New("account is not open")
	// ErrAlreadyOpen: opening an account twice.
	ErrAlreadyOpen = errors.New("account is already open")
	// ErrNoOwner: opening an account without an owner.
	ErrNoOwner = errors.New("account owner must not be empty")
)

// InsufficientFundsError refuses a withdrawal larger than the balance. It
// matches [ErrInsufficientFunds].
type InsufficientFundsError struct {
	// Balance is the account's balance.
	Balance int64
	// Amount is the refused withdrawal.
	Amount int64
}

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("insufficient funds: cannot withdraw %d from a balance of %d", e.Amount, e.Balance)
}

// Is matches [ErrInsufficientFunds].
func (e *InsufficientFundsError) Is(target error) bool { return target == ErrInsufficientFunds }

// Account is a bank account: an event-sourced aggregate whose stream holds
// an [AccountOpened] followed by deposits and withdrawals.
type Account struct {
	aggregate.Base

	// Owner is the account holder's name.
	Owner string `json:"owner"`
	// Opened reports whether the account has been opened.
	Opened bool `json:"opened"`
	// Balance is the current balance, in whole currency units.
	Balance int64 `json:"balance"`
}

// Apply implements [aggregate.Root].
func (a *Account) Apply(event any) error {
	switch e := event.(type) {
	case AccountOpened:
		a.Owner = e.Owner
		a.Opened = true
	case DepositCompleted:
		a.Balance += e.Amount
	case WithdrawalCompleted:
		a.Balance -= e.Amount
	default:
		return aggregate.Unhandled(event)
	}
	return nil
}

// Open opens the account for owner.
func (a *Account) Open(owner string) error {
	switch {
	case a.Opened:
		return ErrAlreadyOpen
	case owner == "":
		return ErrNoOwner
	}
	return aggregate.Record(a, AccountOpened{AccountID: a.ID(), Owner: owner})
}

// Deposit pays amount into the account.
func (a *Account) Deposit(amount int64) error {
	switch {
	case !a.Opened:
		return ErrNotOpen
	case amount <= 0:
		return ErrInvalidAmount
	}
	return aggregate.Record(a, DepositCompleted{AccountID: a.ID(), Amount: amount})
}

// Withdraw takes amount out of the account. A withdrawal larger than the
// balance is refused with an [*InsufficientFundsError] and records nothing.
func (a *Account) Withdraw(amount int64) error {
	switch {
	case !a.Opened:
		return ErrNotOpen
	case amount <= 0:
		return ErrInvalidAmount
	case amount > a.Balance:
		return &InsufficientFundsError{Balance: a.Balance, Amount: amount}
	}
	return aggregate.Record(a, WithdrawalCompleted{AccountID: a.ID(), Amount: amount})
}
