package natsbus

import (
	"context"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-go/chronicle/eventbus"
)

var _ eventbus.Inspector = (*Bus)(nil)

// groupDescription starts the description of every consumer that
// Subscribe creates; the group's name follows it.
const groupDescription = "chronicle consumer group "

// Groups reports the consumer groups of the bus, ordered by name: every
// group with a consumer on the event stream or the dead-letter stream (a
// group's consumers stay after its members stop), or with dead letters.
// Its consumers are those of the event stream (one per partition for an
// ordered group), then the one receiving replayed dead letters, with the
// counts JetStream keeps: pending (not yet delivered), in flight (awaiting
// acknowledgement) and redelivered.
func (b *Bus) Groups(ctx context.Context) ([]eventbus.GroupInfo, error) {
	byName := map[string]*eventbus.GroupInfo{}
	get := func(name string) *eventbus.GroupInfo {
		g := byName[name]
		if g == nil {
			g = &eventbus.GroupInfo{Group: name}
			byName[name] = g
		}
		return g
	}
	for _, s := range []jetstream.Stream{b.stream, b.dlq} {
		list := s.ListConsumers(ctx)
		for ci := range list.Info() {
			group, ok := strings.CutPrefix(ci.Config.Description, groupDescription)
			if !ok {
				continue // not ours
			}
			c := eventbus.ConsumerInfo{
				Name:        ci.Name,
				Pending:     int64(ci.NumPending),
				InFlight:    int64(ci.NumAckPending),
				Redelivered: int64(ci.NumRedelivered),
			}
			if ci.Delivered.Last != nil {
				c.LastActive = *ci.Delivered.Last
			}
			g := get(group)
			g.Consumers = append(g.Consumers, c)
		}
		if err := list.Err(); err != nil {
			return nil, brokerError("list consumers of "+s.CachedInfo().Config.Name, err)
		}
	}
	prefix := b.cfg.DeadLetterPrefix + ".dead."
	info, err := b.dlq.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, brokerError("read dead-letter counts", err)
	}
	for subject, n := range info.State.Subjects {
		if group, ok := strings.CutPrefix(subject, prefix); ok {
			get(group).DeadLetters += int64(n)
		}
	}
	out := make([]eventbus.GroupInfo, 0, len(byName))
	for _, g := range byName {
		// Partitions in order (p2 before p10), the replay consumer last.
		slices.SortFunc(g.Consumers, func(a, b eventbus.ConsumerInfo) int {
			if len(a.Name) != len(b.Name) {
				return len(a.Name) - len(b.Name)
			}
			return strings.Compare(a.Name, b.Name)
		})
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b eventbus.GroupInfo) int { return strings.Compare(a.Group, b.Group) })
	return out, nil
}
