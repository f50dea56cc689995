package eventbus

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// RelayConfig configures a [Relay].
type RelayConfig struct {
	// Name is the relay's projection name: its checkpoint, lease and dead
	// letters are kept under it. Defaults to "eventbus-relay".
	Name string
	// Runner configures the projection runner (holder name, batch size,
	// poll interval...). Defaults to the runner's defaults.
	Runner *projection.Config
	// Backoff paces the retries while the broker is unavailable. Defaults
	// to 100ms up to 5s.
	Backoff Backoff
	// CheckpointInterval is how often, at most, a relay catching up stores
	// its checkpoint (see [projection.Projection.CheckpointInterval]).
	// Each store waits for the broker to acknowledge every publication it
	// covers, which stalls the relay while the last ones are in flight:
	// once per interval instead of once per batch. A relay that crashes
	// publishes again what it published since its stored checkpoint, and
	// the broker drops those duplicates by event ID (size the broker's
	// deduplication window well above this interval). A relay that has
	// caught up stores its checkpoint after every batch. Defaults to 1s;
	// negative stores it after every batch.
	CheckpointInterval time.Duration
	// Logger receives the relay's warnings. Defaults to slog.Default().
	Logger *slog.Logger
}

// defaultRelayCheckpointInterval is RelayConfig.CheckpointInterval's
// default.
const defaultRelayCheckpointInterval = time.Second

// Relay publishes every event the store commits, in the store's global
// order, to a bus. It is a projection run by a [projection.Runner]: one
// relay is active across all processes sharing the storage (the others
// stand by), its checkpoint lives in the storage, and it moves only over
// events the broker acknowledged. Publications carry the event ID, which
// the broker deduplicates on, so a relay restarting from its checkpoint
// republishes nothing twice within the broker's deduplication window.
//
// A message the broker can never take (too large) is parked in the
// projection's dead letters (chronicle projections dead-letters) and the
// relay moves on; while the broker is unavailable the relay waits and
// retries, losing nothing.
type Relay struct {
	runner *projection.Runner
	pub    AsyncPublisher
	name   string
	log    *slog.Logger
	back   Backoff
	failed failureRecord // the last publish failure (inspect_relay.go)
}

// NewRelay returns a relay publishing the events of store to pub, keeping
// its state in storage.
func NewRelay(store eventstore.Store, storage projectionstore.Storage, pub AsyncPublisher, cfg *RelayConfig) (*Relay, error) {
	if pub == nil {
		return nil, invalid("publisher", "must not be nil")
	}
	if storage == nil {
		return nil, invalid("storage", "must not be nil")
	}
	var c RelayConfig
	if cfg != nil {
		c = *cfg
	}
	c.Name = cmp.Or(c.Name, "eventbus-relay")
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.Backoff.Base = cmp.Or(c.Backoff.Base, 100*time.Millisecond)
	c.Backoff.Max = cmp.Or(c.Backoff.Max, max(5*time.Second, c.Backoff.Base))
	c.CheckpointInterval = cmp.Or(c.CheckpointInterval, defaultRelayCheckpointInterval)
	r := &Relay{pub: pub, name: c.Name, back: c.Backoff, log: c.Logger.With("component", "chronicle/eventbus-relay", "relay", c.Name)}
	runner, err := projection.New(store, &relayStorage{Storage: storage, store: store, r: r}, c.Runner)
	if err != nil {
		return nil, err
	}
	err = runner.Add(projection.Projection{
		Name:      c.Name,
		Handler:   projection.HandlerFunc(r.handle),
		Mode:      projection.AtLeastOnce,
		OnFailure: projection.ParkOnFailure,
		// Negative: after every batch.
		CheckpointInterval: max(c.CheckpointInterval, 0),
	})
	if err != nil {
		return nil, err
	}
	r.runner = runner
	return r, nil
}

// Run relays until ctx ends.
func (r *Relay) Run(ctx context.Context) error { return r.runner.Run(ctx) }

// Runner returns the projection runner, for its status and waits
// ([projection.Runner.WaitForHead]).
func (r *Relay) Runner() *projection.Runner { return r.runner }

// Name is the relay's projection name.
func (r *Relay) Name() string { return r.name }

// handle queues one event. Only a message that can never be published
// fails for good (it is parked); a failed earlier publication fails the
// batch, whose commit then fails, so that the runner restarts from the
// checkpoint and publishes again, in order.
func (r *Relay) handle(ctx context.Context, ev projection.Event) error {
	m := FromRecord(ev.Record)
	for attempt := 1; ; attempt++ {
		err := r.pub.PublishAsync(ctx, m)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		}
		r.failed.record(m, err)
		switch {
		case errors.Is(err, ErrPermanent) || errors.Is(err, eventstore.ErrInvalidInput):
			return projection.Permanent(err)
		case errors.Is(err, ErrPublishFailed):
			return err
		}
		d := r.back.Delay(attempt)
		r.log.Warn("cannot publish; retrying", "event_id", m.EventID.String(), "attempt", attempt, "retry_in", d, "error", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// relayStorage makes every checkpoint commit of the relay wait for the
// broker's acknowledgements of what it covers.
type relayStorage struct {
	projectionstore.Storage
	store eventstore.Store
	r     *Relay
}

// CountEvents keeps the storage's fast lag count (PostgreSQL's) visible
// through the wrapper, and counts through the store otherwise.
func (s *relayStorage) CountEvents(ctx context.Context, after, upTo eventstore.Position, partition, partitions int) (int64, error) {
	if c, ok := s.Storage.(projectionstore.EventCounter); ok {
		return c.CountEvents(ctx, after, upTo, partition, partitions)
	}
	var n int64
	for rec, err := range eventstore.ReadAllSeq(ctx, s.store, after, 1000) {
		if err != nil {
			return 0, err
		}
		if rec.Position.Compare(upTo) > 0 {
			break
		}
		if projection.PartitionOf(rec.StreamID, partitions) == partition {
			n++
		}
	}
	return n, nil
}

func (s *relayStorage) Acquire(ctx context.Context, key projectionstore.Key, partitions int, holder string) (projectionstore.Lease, error) {
	l, err := s.Storage.Acquire(ctx, key, partitions, holder)
	if err != nil || l == nil {
		return l, err
	}
	// Forget what an earlier lease left in flight: this one starts again
	// from the stored checkpoint.
	if err := s.r.pub.Flush(ctx); err != nil {
		s.r.log.Info("publications of the previous lease failed; they are published again", "error", err)
	}
	return &relayLease{Lease: l, flush: s.r.pub.Flush}, nil
}

type relayLease struct {
	projectionstore.Lease
	flush func(ctx context.Context) error
}

func (l *relayLease) Commit(ctx context.Context, c projectionstore.Commit) (projectionstore.Checkpoint, error) {
	if err := l.flush(ctx); err != nil {
		return projectionstore.Checkpoint{}, err
	}
	return l.Lease.Commit(ctx, c)
}
