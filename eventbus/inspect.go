package eventbus

import (
	"context"
	"time"
)

// Inspector is what operators' tools read from a bus and do to its dead
// letters: the web console (package console) takes one, so that it shows a
// bus without importing its broker's client. [*MemoryBus] and the NATS
// bus implement it.
type Inspector interface {
	DeadLetters
	// Groups reports the consumer groups the bus knows (those that ever
	// subscribed, or still have dead letters), ordered by name.
	Groups(ctx context.Context) ([]GroupInfo, error)
}

// GroupInfo is the state of one consumer group, as its bus counts it.
type GroupInfo struct {
	// Group is the consumer group's name.
	Group string
	// Consumers are the broker's consumers serving the group: one for the
	// in-process bus; on NATS one per partition (ordered groups) or one
	// (unordered), and the one receiving replayed dead letters.
	Consumers []ConsumerInfo
	// DeadLetters counts the group's dead letters.
	DeadLetters int64
}

// ConsumerInfo is the state of one broker consumer of a group.
type ConsumerInfo struct {
	// Name is the consumer's name at the broker.
	Name string
	// Pending counts the messages not yet delivered to the group.
	Pending int64
	// InFlight counts the messages delivered and not yet acknowledged,
	// including those waiting to be delivered again after a failure.
	InFlight int64
	// Redelivered counts the messages, among those in flight, delivered
	// more than once.
	Redelivered int64
	// LastActive is when the consumer last delivered a message; zero if
	// never or unknown.
	LastActive time.Time
}

// Pending sums the pending messages of the group's consumers.
func (g GroupInfo) Pending() int64 { return g.sum(func(c ConsumerInfo) int64 { return c.Pending }) }

// InFlight sums the messages in flight of the group's consumers.
func (g GroupInfo) InFlight() int64 { return g.sum(func(c ConsumerInfo) int64 { return c.InFlight }) }

// Redelivered sums the redelivered messages of the group's consumers.
func (g GroupInfo) Redelivered() int64 {
	return g.sum(func(c ConsumerInfo) int64 { return c.Redelivered })
}

func (g GroupInfo) sum(f func(ConsumerInfo) int64) int64 {
	var n int64
	for _, c := range g.Consumers {
		n += f(c)
	}
	return n
}
