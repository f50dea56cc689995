// Package bustest is the conformance suite of [eventbus.Bus]: the contract
// every bus implementation shares, so that code tested on the in-process
// bus runs unchanged on a broker.
//
//	func TestConformance(t *testing.T) {
//		bustest.Run(t, func(t *testing.T) eventbus.Bus {
//			return eventbus.NewMemoryBus(nil)
//		}, nil)
//	}
//
// # What it checks
//
//   - delivery: every field of a message arrives intact, exactly once per
//     group, including messages published before the group subscribed,
//     through Publish and through PublishAsync and Flush;
//   - deduplication of publications by event ID;
//   - consumer groups: each group receives every message, the members of
//     one group share them (each handled by one member);
//   - per-stream order with several members running handlers concurrently,
//     failures and retries included, and its opt-out;
//   - redelivery after a handler error, with growing attempt numbers;
//   - dead letters: after MaxDeliveries, at once for a permanent error or an
//     unknown event type, while the other messages flow; listing, replay to
//     the failing group only, discard;
//   - shutdown: Close waits for the handlers in flight, no handler runs
//     after it, and an interrupted message goes to another member;
//   - bad input: invalid consumers and messages fail with
//     [eventstore.ErrInvalidInput].
//
// Run it with -race.
package bustest
