// Package natsbus is the event bus on NATS JetStream: an [eventbus.Bus]
// whose messages live in a JetStream stream, consumed by durable consumer
// groups, with a dead-letter stream. It passes the eventbus/bustest
// conformance suite against a real nats-server.
//
//	nc, err := natsbus.Connect("nats://127.0.0.1:4222", "signup-service")
//	...
//	bus, err := natsbus.New(ctx, nc, nil) // creates or checks the streams
//	...
//	relay, err := eventbus.NewRelay(store, storage, bus, nil)
//	go relay.Run(ctx)
//	sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "welcome-email", Handler: h})
//
// # Layout on the broker
//
// Events go to the stream [Config.Stream] (default CHRONICLE) on the
// subject PREFIX.PARTITION.TOKEN: PARTITION is a hash of the aggregate
// stream ID into [Config.Partitions] (default 16), TOKEN the event type
// ([TypeToken]) or what [Config.Subject] returns. Each message carries
// its event ID as Nats-Msg-Id, so that the stream drops a publication
// of an event it stored less than [Config.Duplicates] ago; the type in
// Chronicle-Type; the rest of the envelope (stream, version, position,
// schema version, recorded-at, metadata) as JSON in Chronicle-Envelope;
// the payload as the body.
//
// # Consumer groups
//
// An ordered group (the default) has a durable consumer per partition,
// GROUP-pN, each allowing one unacknowledged message: every member pulls
// from every partition, the server hands each partition's next message to
// one of them, and the next only after the acknowledgement. So the events
// of one aggregate are handled in order by whichever member is alive, and
// partitions move between members as they come and go, with no
// coordination of ours. An unordered group ([eventbus.Consumer.Unordered])
// has one consumer, GROUP, and any number of messages in flight.
//
// Handlers run while the member extends the ack wait; a nil error acks,
// an error naks with the group's backoff, and after MaxDeliveries (or at
// once for a permanent error) the message is copied to the dead-letter
// stream, with the reason, the attempts and its original headers, and
// terminated. Replayed dead letters reach only their group, through its
// GROUP-replay consumer on the dead-letter stream.
//
// # Failures
//
// An unreachable or restarting server makes publications fail with
// [eventbus.ErrUnavailable] (the relay waits and retries), acknowledgements
// that do not come within [Config.AckTimeout] fail with
// [eventbus.ErrPublishFailed] (the relay republishes from its checkpoint),
// a message above the server's or stream's limit with
// [eventbus.ErrMessageTooLarge] before anything is sent. Use [Connect],
// or disable the reconnect buffer of your connection: a buffered
// publication could be stored after ones that follow it.
//
// See docs/eventbus.md in the repository.
package natsbus
