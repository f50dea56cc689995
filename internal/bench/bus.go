package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/natsbus"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/projection"
)

// The bus workloads need a NATS server with JetStream (Config.NATSURL);
// each side publishes to streams of its own, deleted afterwards.

// busRelayEvents caps the events relayed by bus-relay: enough for a few
// seconds of publishing per run, so that a hiccup of a shared machine does
// not decide the ratio.
const busRelayEvents = 200_000

// busWindow is natsbus's default publication window.
const busWindow = 1024

// busSetup connects to the NATS server and returns a bus on streams of its
// own, with a function deleting them and closing the connection.
func busSetup(ctx context.Context, e *env, side string) (*natsbus.Bus, *nats.Conn, func(), error) {
	nc, err := natsbus.Connect(e.cfg.NATSURL, "chronicle-bench")
	if err != nil {
		return nil, nil, nil, err
	}
	tag := side + "_" + benchRandom()
	bus, err := natsbus.New(ctx, nc, &natsbus.Config{
		Stream: "BENCH_" + tag, SubjectPrefix: "bench." + tag + ".events", DeadLetterPrefix: "bench." + tag + ".dead",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return bus, nc, func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = bus.DeleteStreams(dctx)
		nc.Close()
	}, nil
}

// busRelayWorkload measures publishing stored events to JetStream: the
// relay (reading the store, publishing asynchronously with its window,
// checkpointing over acknowledged events) against raw nats.go asynchronous
// publishing of the same messages, prepared in memory, with the same
// window and the same headers and message IDs.
func busRelayWorkload() workload {
	n := func(e *env) int { return min(e.cfg.Events, busRelayEvents) }
	return workload{
		name:    "bus-relay",
		nats:    true,
		metrics: throughput("events/s"),
		setup: func(ctx context.Context, e *env) error {
			// The events: the run's database may already hold others;
			// the relay publishes all of them and is timed per event.
			// Both sides read them, once below the read horizon.
			if err := busAppend(ctx, e, n(e)); err != nil {
				return err
			}
			return e.waitReadable(ctx)
		},
		baseline: func(ctx context.Context, e *env) ([]float64, error) {
			bus, nc, done, err := busSetup(ctx, e, "raw")
			if err != nil {
				return nil, err
			}
			defer done()
			var msgs []*nats.Msg
			for rec, err := range eventstore.ReadAllSeq(ctx, e.store, eventstore.Position{}, 5000) {
				if err != nil {
					return nil, err
				}
				m := eventbus.FromRecord(rec)
				msg := nats.NewMsg(bus.Subject(m))
				msg.Data = m.Data
				msg.Header.Set(natsbus.HeaderType, m.Type)
				msg.Header.Set(natsbus.HeaderEnvelope, fmt.Sprintf(`{"id":%q,"v":%d,"stream":%q,"version":%d,"position":%q}`,
					m.EventID, m.SchemaVersion, m.StreamID, m.StreamVersion, m.Position))
				msg.Header.Set(jetstream.MsgIDHeader, m.EventID.String())
				msgs = append(msgs, msg)
			}
			js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(busWindow+1))
			if err != nil {
				return nil, err
			}
			// The same window as the relay's: at most busWindow awaiting
			// their acknowledgement, waited for in order.
			var pending []jetstream.PubAckFuture
			waitOldest := func() error {
				select {
				case <-pending[0].Ok():
				case err := <-pending[0].Err():
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
				pending = pending[1:]
				return nil
			}
			t0 := time.Now()
			for _, msg := range msgs {
				for len(pending) >= busWindow {
					if err := waitOldest(); err != nil {
						return nil, err
					}
				}
				f, err := js.PublishMsgAsync(msg)
				if err != nil {
					return nil, err
				}
				pending = append(pending, f)
			}
			for len(pending) > 0 {
				if err := waitOldest(); err != nil {
					return nil, err
				}
			}
			return []float64{rate(len(msgs), time.Since(t0))}, nil
		},
		chronicle: func(ctx context.Context, e *env) ([]float64, error) {
			bus, _, done, err := busSetup(ctx, e, "relay")
			if err != nil {
				return nil, err
			}
			defer done()
			total, err := busCount(ctx, e)
			if err != nil {
				return nil, err
			}
			ps, err := postgres.NewProjectionStore(e.pool, nil)
			if err != nil {
				return nil, err
			}
			relay, err := eventbus.NewRelay(e.store, ps, bus, &eventbus.RelayConfig{
				Name:   "bench-relay-" + benchRandom(),
				Runner: &projection.Config{Logger: slog.New(slog.DiscardHandler), BatchSize: 2000},
				Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				return nil, err
			}
			rctx, cancel := context.WithCancel(ctx)
			errc := make(chan error, 1)
			t0 := time.Now()
			go func() { errc <- relay.Run(rctx) }()
			err = relay.Runner().WaitForHead(ctx, relay.Name())
			elapsed := time.Since(t0)
			cancel()
			if err := errors.Join(err, <-errc); err != nil {
				return nil, err
			}
			return []float64{rate(total, elapsed)}, nil
		},
	}
}

// busProbeType is the type of the latency probes: a type of their own, so
// that the consumer group filters out the earlier workloads' events on the
// broker instead of working through them first.
const busProbeType = "BusLatencyProbe"

func busProbe(id string) (eventstore.Event, error) {
	eid, err := eventstore.ParseEventID(id)
	if err != nil {
		return eventstore.Event{}, err
	}
	return eventstore.Event{ID: eid, Type: busProbeType, SchemaVersion: 1, Data: []byte(`{"probe":true}`)}, nil
}

// busAppend appends n Deposited events in commands of 100.
func busAppend(ctx context.Context, e *env, n int) error {
	for i := 0; i < n; i += 100 {
		evs := make([]eventstore.Event, 0, 100)
		for range min(100, n-i) {
			ev, err := e.registry.Encode(deposit("bus-acc"))
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		if _, err := e.store.Append(ctx, fmt.Sprintf("bus-acc-%06d", i/100), eventstore.Any, evs...); err != nil {
			return err
		}
	}
	return nil
}

// busCount counts the events in the store.
func busCount(ctx context.Context, e *env) (int, error) {
	n := 0
	for _, err := range eventstore.ReadAllSeq(ctx, e.store, eventstore.Position{}, 5000) {
		if err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// busLatencyWorkload measures the time from an append's commit to a
// consumer group's handler, under a steady load of tailRate appends per
// second (cfg.Commands events), as p50 and p99: through the relay and
// natsbus, against the dual write that the outbox replaces (commit, then
// publish with nats.go, a raw JetStream consumer).
func busLatencyWorkload() workload {
	return workload{
		name:    "bus-latency",
		nats:    true,
		metrics: []metric{{label: "p50", unit: "ms", lowerIsBetter: true}, {label: "p99", unit: "ms", lowerIsBetter: true}},
		baseline: func(ctx context.Context, e *env) ([]float64, error) {
			bus, nc, done, err := busSetup(ctx, e, "dual")
			if err != nil {
				return nil, err
			}
			defer done()
			js, err := jetstream.New(nc)
			if err != nil {
				return nil, err
			}
			clock := newTailClock()
			cons, err := js.CreateOrUpdateConsumer(ctx, bus.Config().Stream, jetstream.ConsumerConfig{
				Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy,
			})
			if err != nil {
				return nil, err
			}
			cc, err := cons.Consume(func(msg jetstream.Msg) {
				clock.handle(msg.Headers().Get(jetstream.MsgIDHeader), time.Now())
				_ = msg.Ack()
			})
			if err != nil {
				return nil, err
			}
			defer cc.Stop()
			err = tailWrite(ctx, e, clock, func(ctx context.Context, i int, id string) error {
				ev, err := e.registry.Encode(deposit("x"))
				if err != nil {
					return err
				}
				if ev.ID, err = eventstore.ParseEventID(id); err != nil {
					return err
				}
				if _, err := e.store.Append(ctx, fmt.Sprintf("bus-dual-acc-%03d", i%50), eventstore.Any, ev); err != nil {
					return err
				}
				msg := nats.NewMsg(fmt.Sprintf("%s.0.Deposited", bus.Config().SubjectPrefix))
				msg.Data = ev.Data
				msg.Header.Set(jetstream.MsgIDHeader, id)
				_, err = js.PublishMsg(ctx, msg)
				return err
			})
			if err != nil {
				return nil, err
			}
			if err := tailWaitAll(ctx, e, clock); err != nil {
				return nil, err
			}
			return clock.percentiles()
		},
		chronicle: func(ctx context.Context, e *env) ([]float64, error) {
			bus, _, done, err := busSetup(ctx, e, "outbox")
			if err != nil {
				return nil, err
			}
			defer done()
			// The relay reads through a store of its own, as another
			// process's would, woken by LISTEN/NOTIFY.
			reader, err := postgres.New(e.pool, &postgres.Config{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				return nil, err
			}
			defer reader.Close()
			ps, err := postgres.NewProjectionStore(e.pool, nil)
			if err != nil {
				return nil, err
			}
			relay, err := eventbus.NewRelay(reader, ps, bus, &eventbus.RelayConfig{
				Name:   "bench-relay-" + benchRandom(),
				Runner: &projection.Config{Logger: slog.New(slog.DiscardHandler)},
				Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				return nil, err
			}
			rctx, cancel := context.WithCancel(ctx)
			errc := make(chan error, 1)
			go func() { errc <- relay.Run(rctx) }()
			defer func() { cancel(); <-errc }()
			// Catch up with the events of earlier workloads first.
			if err := relay.Runner().WaitForHead(ctx, relay.Name()); err != nil {
				return nil, err
			}
			head, err := e.store.Head(ctx)
			if err != nil {
				return nil, err
			}
			clock := newTailClock()
			sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "bench", Types: []string{busProbeType},
				Handler: eventbus.HandlerFunc(func(_ context.Context, d eventbus.Delivery) error {
					if d.Position.Compare(head) > 0 { // not an earlier workload's
						clock.handle(d.EventID.String(), time.Now())
					}
					return nil
				})})
			if err != nil {
				return nil, err
			}
			defer sub.Close(context.WithoutCancel(ctx))
			err = tailWrite(ctx, e, clock, func(ctx context.Context, i int, id string) error {
				ev, err := busProbe(id)
				if err != nil {
					return err
				}
				_, err = e.store.Append(ctx, fmt.Sprintf("bus-outbox-acc-%03d", i%50), eventstore.Any, ev)
				return err
			})
			if err != nil {
				return nil, err
			}
			if err := tailWaitAll(ctx, e, clock); err != nil {
				return nil, err
			}
			return clock.percentiles()
		},
	}
}
