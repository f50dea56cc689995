package account

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Balances is an in-memory read model: the balance of every account, fed
// by reading all events in global order from a checkpoint. It is safe for
// concurrent use.
type Balances struct {
	reg *eventstore.Registry

	mu         sync.RWMutex
	checkpoint eventstore.Position
	balances   map[string]int64
	owners     map[string]string
	versions   map[string]int64
}

// NewBalances returns a read model that will read the events after the
// position from (the zero Position for all events), decoding them with reg.
func NewBalances(reg *eventstore.Registry, from eventstore.Position) *Balances {
	return &Balances{reg: reg, checkpoint: from, balances: map[string]int64{}, owners: map[string]string{}, versions: map[string]int64{}}
}

// CatchUp reads every event stored after the checkpoint, updates the
// balances and advances the checkpoint. Events of other types than the
// account's are skipped. It returns the number of events read.
func (b *Balances) CatchUp(ctx context.Context, store eventstore.Store) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for rec, err := range eventstore.ReadAllSeq(ctx, store, b.checkpoint, 1000) {
		if err != nil {
			return n, fmt.Errorf("balances: %w", err)
		}
		ev, err := b.reg.Decode(rec)
		switch {
		case errors.Is(err, eventstore.ErrUnknownEventType):
			// Not an account event: another part of the application.
		case err != nil:
			return n, fmt.Errorf("balances: event %d in %q: %w", rec.StreamVersion, rec.StreamID, err)
		default:
			b.apply(rec.StreamID, ev)
			b.versions[rec.StreamID] = rec.StreamVersion
		}
		b.checkpoint = rec.Position
		n++
	}
	return n, nil
}

func (b *Balances) apply(accountID string, event any) {
	switch e := event.(type) {
	case AccountOpened:
		b.owners[accountID] = e.Owner
		b.balances[accountID] = 0
	case DepositCompleted:
		b.balances[accountID] += e.Amount
	case WithdrawalCompleted:
		b.balances[accountID] -= e.Amount
	}
}

// Balance returns an account's balance and whether the account is known.
func (b *Balances) Balance(accountID string) (int64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	v, ok := b.balances[accountID]
	return v, ok
}

// Version returns the stream version of the last event of the account that
// the read model has applied (0 when none): a reader that just saved
// version v waits until Version reaches v to read its own write.
func (b *Balances) Version(accountID string) int64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.versions[accountID]
}

// Owner returns an account's owner and whether the account is known.
func (b *Balances) Owner(accountID string) (string, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	v, ok := b.owners[accountID]
	return v, ok
}

// Accounts returns the known account IDs, sorted.
func (b *Balances) Accounts() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return slices.Sorted(maps.Keys(b.balances))
}

// Checkpoint returns the position of the last event read.
func (b *Balances) Checkpoint() eventstore.Position {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.checkpoint
}
