package account

import "github.com/chronicle-go/chronicle/eventstore"

// AccountOpened is the first event of every account stream.
type AccountOpened struct {
	// AccountID is the account's stream ID.
	AccountID string `json:"account_id"`
	// Owner is the account holder's name.
	Owner string `json:"owner"`
}

// DepositCompleted records money paid into an account.
type DepositCompleted struct {
	// AccountID is the account's stream ID.
	AccountID string `json:"account_id"`
	// Amount is the amount paid in, in whole currency units.
	Amount int64 `json:"amount"`
}

// WithdrawalCompleted records money taken out of an account.
type WithdrawalCompleted struct {
	// AccountID is the account's stream ID.
	AccountID string `json:"account_id"`
	// Amount is the amount taken out, in whole currency units.
	Amount int64 `json:"amount"`
}

// Event type names, as stored.
const (
	TypeAccountOpened       = "AccountOpened"
	TypeDepositCompleted    = "DepositCompleted"
	TypeWithdrawalCompleted = "WithdrawalCompleted"
)

// RegisterEvents registers the account's event types in reg.
func RegisterEvents(reg *eventstore.Registry) error {
	if err := eventstore.Register[AccountOpened](reg, TypeAccountOpened); err != nil {
		return err
	}
	if err := eventstore.Register[DepositCompleted](reg, TypeDepositCompleted); err != nil {
		return err
	}
	return eventstore.Register[WithdrawalCompleted](reg, TypeWithdrawalCompleted)
}

// NewRegistry returns a registry holding the account's event types.
func NewRegistry() (*eventstore.Registry, error) {
	reg := eventstore.NewRegistry(nil)
	if err := RegisterEvents(reg); err != nil {
		return nil, err
	}
	return reg, nil
}
