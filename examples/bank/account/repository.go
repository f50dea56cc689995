package account

import (
	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
)

// Repository loads and saves accounts.
type Repository = aggregate.Repository[Account, *Account]

// NewRepository returns a repository of accounts in store, whose events are
// registered in reg (see [RegisterEvents]). A nil cfg means defaults.
func NewRepository(store eventstore.Store, reg *eventstore.Registry, cfg *aggregate.Config) (*Repository, error) {
	return aggregate.NewRepository[Account](store, reg, cfg)
}
