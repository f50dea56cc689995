package postgres

import (
	"context"
)

// Watch returns a channel that receives a value (at most one pending) when
// new events may be readable; see [eventstore.Store.Watch]. It is a hint:
// after each wake-up, read with [Store.ReadAll] until it returns less than
// a page.
//
// Watchers are woken when a notification arrives on the store's LISTEN
// connection (debounced by [Config.NotifyDebounce]), at once after this
// store's own appends, on every [Config.PollInterval] tick, and after the
// LISTEN connection is re-established, so a lost notification costs at
// most one interval. Notifications come from the stores of every process:
// each sends one after its appends commit (at most one per
// NotifyDebounce), and appends inside a caller's transaction notify when
// it commits. The first Watch starts the LISTEN connection (unless
// [Config.PollOnly]) and the ticker; [Store.Close] stops them.
//
// The channel is closed when ctx is done or the store is closed.
func (s *Store) Watch(ctx context.Context) <-chan struct{} {
	return s.watch.Watch(ctx)
}
