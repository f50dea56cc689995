// Package eventbus carries stored events to other services: publishers,
// consumer groups with retries and dead letters, typed handlers, an
// in-process bus, and the [Relay] that publishes what the event store
// committed. It is broker-agnostic: package natsbus implements it on NATS
// JetStream, and the conformance suite in eventbus/bustest checks every
// implementation.
//
// # The store is the outbox
//
// Services do not publish events themselves. They append to the event
// store; a [Relay] (a projection, with the runner's leadership,
// checkpoints and retries) publishes every committed event, in the store's
// global order, with its event ID as the broker's deduplication key, and
// moves its checkpoint only over events the broker acknowledged. Nothing
// committed is lost, nothing uncommitted is announced, and a relay that
// restarts republishes at most what the broker then drops as duplicates.
//
//	relay, err := eventbus.NewRelay(store, storage, bus, nil)
//	...
//	go relay.Run(ctx)
//
// # Consumers
//
// A consumer is a member of a named group ([Consumer]): every group
// receives every message, and the members of one group share them, each
// message handled by one member. [Handlers] dispatches by event type to
// typed functions, decoding and upcasting payloads with an
// [eventstore.Registry]:
//
//	h := eventbus.NewHandlers(registry)
//	eventbus.On(h, func(ctx context.Context, d eventbus.Delivery, e UserRegistered) error {
//		return mailer.Welcome(ctx, e.Email)
//	})
//	sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "welcome-email", Handler: h})
//
// A message is acknowledged when its handler returns nil. An error retries
// it with exponential backoff ([Backoff]); after [Consumer.MaxDeliveries]
// deliveries, or at once for a [Permanent] error, an undecodable payload or
// an unknown event type, the message goes to the dead letters
// ([DeadLetters]: list, replay, discard) and the others flow on. Delivery
// is at least once: make handlers idempotent (postgres.Idempotent records
// the event IDs it handled in the handler's own transaction).
//
// # Order
//
// By default the messages of one stream are handled one at a time, in
// stream order, by whichever member of the group takes them, while
// different streams run in parallel. [Consumer.Unordered] gives that up
// for more parallelism.
//
// See docs/eventbus.md in the repository for the guarantees and the
// failure modes.
package eventbus
