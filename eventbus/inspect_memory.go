package eventbus

import (
	"context"
	"slices"
	"strings"
)

var _ Inspector = (*MemoryBus)(nil)

// Groups reports the groups that subscribed to the bus, and those with
// dead letters, ordered by name. Each has one consumer, named after it,
// whose LastActive is unknown (zero).
func (b *MemoryBus) Groups(ctx context.Context) ([]GroupInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	byName := map[string]*GroupInfo{}
	get := func(name string) *GroupInfo {
		g := byName[name]
		if g == nil {
			g = &GroupInfo{Group: name}
			byName[name] = g
		}
		return g
	}
	for name, g := range b.groups {
		c := ConsumerInfo{Name: name}
		for _, it := range g.items {
			switch {
			case it.attempts == 0:
				c.Pending++
			default:
				c.InFlight++
				if it.attempts > 1 {
					c.Redelivered++
				}
			}
		}
		get(name).Consumers = []ConsumerInfo{c}
	}
	for _, d := range b.dead {
		get(d.Group).DeadLetters++
	}
	out := make([]GroupInfo, 0, len(byName))
	for _, g := range byName {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b GroupInfo) int { return strings.Compare(a.Group, b.Group) })
	return out, nil
}
