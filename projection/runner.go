package projection

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Defaults of [Config].
const (
	defaultBatchSize       = 500
	defaultPollInterval    = time.Second
	defaultAcquireInterval = time.Second
	defaultBatchTimeout    = 30 * time.Second
	maxBatchSize           = 100_000
)

// Config configures a [Runner]. A nil *Config means the defaults.
type Config struct {
	// Logger receives the runner's operational messages: partitions
	// acquired and released, failures, retries, parked events, stops and
	// rebuilds. Defaults to [slog.Default].
	Logger *slog.Logger

	// Holder names this runner in checkpoints, status reports and the
	// instances sharing partitioned projections: it must be unique among
	// the runners of a projection. Use something an operator recognises
	// (host and process). Defaults to "<hostname>/<pid>/<random>".
	Holder string

	// BatchSize is the default number of events read, handled and
	// checkpointed at once (see [Projection.BatchSize]). Defaults to 500.
	BatchSize int

	// PollInterval is how often an idle partition polls for new events
	// when no wake-up from [eventstore.Store.Watch] arrives, and checks
	// its checkpoint for rebuild requests, its dead letters for retry
	// requests, and its lease for liveness. Defaults to 1s.
	PollInterval time.Duration

	// AcquireInterval is how often a runner that does not hold a partition
	// tries to acquire it (every three intervals when it holds its share
	// of a partitioned projection), and how often it records itself as a
	// live instance of its partitioned projections: it bounds the time
	// another runner takes over from a holder that died, and the time
	// partitions take to spread over runners. Defaults to 1s.
	AcquireInterval time.Duration

	// BatchTimeout bounds each unit of work the runner commits: in
	// [Transactional] mode, the time a batch's transaction stays open,
	// from the first statement of its handlers to the commit of its
	// checkpoint. An open transaction holds back the transaction horizon
	// of the whole PostgreSQL cluster, so every tailing reader (of every
	// database on the server) lags behind it: a handler stuck inside a
	// batch must not stall them for longer than this. When it runs out,
	// the handlers' ctx is done and the transaction rolls back, even if
	// the handler ignores ctx (the PostgreSQL storage then closes the
	// lease's connection, losing the lease, and also sets the session's
	// idle_in_transaction_session_timeout so that the server ends it when
	// the process itself is frozen). The batch counts as a failure of the
	// event being handled (also when ending it cost the lease: the
	// attempt counts when the partition is acquired again, so the event
	// is parked or the partition stopped once [RetryPolicy.MaxAttempts]
	// is reached), and the next batches are halved until one commits. Keep it well above the time a batch normally takes.
	// Defaults to 30s.
	BatchTimeout time.Duration

	// Retry is the default retry policy of projections (see
	// [Projection.Retry]). Its zero fields default to 5 attempts, a 100ms
	// base delay and a 10s maximum delay.
	Retry RetryPolicy

	// Observer is told about every batch the runner handles (see
	// [BatchObserver]), for traces and metrics. Defaults to nil: none.
	Observer BatchObserver
}

// Projection is a named handler with checkpoints, registered with
// [Runner.Add].
type Projection struct {
	// Name identifies the projection and its checkpoints; see
	// [ValidateName]. Renaming a projection starts it from scratch.
	Name string

	// Handler handles the events. Use a [*Handlers] for typed handlers,
	// a [HandlerFunc] to receive every event.
	Handler Handler

	// Mode is [Transactional] or [AtLeastOnce]. Defaults to Transactional.
	Mode Mode

	// Partitions splits the projection into this many partitions by
	// [PartitionOf] the stream ID, each with its own checkpoint, holder
	// and goroutine, so that handlers run in parallel while each stream's
	// events stay in order. The runners running the projection share its
	// partitions: with k runners each holds about Partitions/k, and
	// partitions move when a runner joins, leaves or dies (see
	// docs/projections.md for the bounds). It cannot change once the
	// projection has checkpoints. Defaults to 1.
	Partitions int

	// BatchSize is the number of events read, handled and checkpointed at
	// once. Defaults to [Config.BatchSize].
	BatchSize int

	// CheckpointInterval lets an [AtLeastOnce] projection that is
	// catching up (reading full batches) store its checkpoint at most once
	// per interval instead of after every batch: the batches in between
	// are handled and their checkpoint is stored with a later one. A
	// checkpoint commit that waits for something (the [eventbus] relay's
	// waits for the broker's acknowledgements of the batch) then stalls
	// the projection once per interval rather than once per batch. The
	// checkpoint is always stored before the partition goes idle (caught
	// up), after a handler failure, on a retry or a stop, and on
	// shutdown; a crash delivers the events handled since the stored
	// checkpoint again, as at-least-once delivery allows. Status and
	// [Runner.WaitFor] report the stored checkpoint. Only for AtLeastOnce
	// projections. Defaults to 0: the checkpoint is stored after every
	// batch.
	CheckpointInterval time.Duration

	// Retry is the retry policy of failing events. Zero fields default to
	// those of [Config.Retry].
	Retry RetryPolicy

	// OnFailure is what happens to an event that still fails after the
	// retries. Defaults to [StopOnFailure].
	OnFailure FailurePolicy

	// Reset clears the read model of one partition (the whole read model
	// when the projection has one partition) before a rebuild replays it.
	// In [Transactional] mode it runs in the transaction that resets the
	// checkpoint, so the reset and the restart commit together. It must
	// be idempotent. Defaults to the handler's [Resetter.Reset] if it has
	// one; without either, a rebuild only replays the events.
	Reset func(ctx context.Context, partition int) error
}

// Runner runs projections: for every partition of every projection it
// acquires the partition's lease, catches up from its checkpoint in
// batches, then follows new events. Create it with [New], register
// projections with [Runner.Add], then call [Runner.Run].
type Runner struct {
	store   eventstore.Store
	storage projectionstore.Storage
	cfg     Config
	log     *slog.Logger

	mu          sync.Mutex
	projections []*proj
	byName      map[string]*proj
	started     bool

	wake    broadcast // new events may be readable
	commits broadcast // some local partition committed or changed state
}

// proj is a registered projection with its defaults filled in.
type proj struct {
	Projection
	reset func(ctx context.Context, partition int) error
	parts []*partState
	share *share // this runner's share of the partitions
}

// partState is what this process knows of a partition.
type partState struct {
	mu      sync.Mutex
	holding bool
	pos     eventstore.Position
	err     error         // non-nil while stopped
	shed    chan struct{} // a request to give the partition up (see balance.go)
}

func (s *partState) set(fn func(*partState)) {
	s.mu.Lock()
	fn(s)
	s.mu.Unlock()
}

func (s *partState) get() (holding bool, pos eventstore.Position, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holding, s.pos, s.err
}

// New returns a runner that reads events from store and keeps its state in
// storage. A nil cfg means the defaults.
func New(store eventstore.Store, storage projectionstore.Storage, cfg *Config) (*Runner, error) {
	if store == nil {
		return nil, invalid("store", "must not be nil")
	}
	if storage == nil {
		return nil, invalid("storage", "must not be nil")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	switch {
	case c.BatchSize < 0 || c.BatchSize > maxBatchSize:
		return nil, invalid("config BatchSize", fmt.Sprintf("%d is not between 1 and %d", c.BatchSize, maxBatchSize))
	case c.PollInterval < 0:
		return nil, invalid("config PollInterval", fmt.Sprintf("%s is negative", c.PollInterval))
	case c.AcquireInterval < 0:
		return nil, invalid("config AcquireInterval", fmt.Sprintf("%s is negative", c.AcquireInterval))
	case c.BatchTimeout < 0:
		return nil, invalid("config BatchTimeout", fmt.Sprintf("%s is negative", c.BatchTimeout))
	}
	if err := c.Retry.validate("config Retry"); err != nil {
		return nil, err
	}
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.Holder = cmp.Or(c.Holder, defaultHolder())
	c.BatchSize = cmp.Or(c.BatchSize, defaultBatchSize)
	c.PollInterval = cmp.Or(c.PollInterval, defaultPollInterval)
	c.AcquireInterval = cmp.Or(c.AcquireInterval, defaultAcquireInterval)
	c.BatchTimeout = cmp.Or(c.BatchTimeout, defaultBatchTimeout)
	c.Retry = c.Retry.withDefaults(RetryPolicy{MaxAttempts: defaultMaxAttempts, BaseDelay: defaultBaseDelay, MaxDelay: defaultMaxDelay})
	return &Runner{
		store:   store,
		storage: storage,
		cfg:     c,
		log:     c.Logger.With("component", "chronicle/projection", "holder", c.Holder),
		byName:  map[string]*proj{},
	}, nil
}

func defaultHolder() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	var b [3]byte
	_, _ = crand.Read(b[:]) // never fails
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Holder returns the name this runner holds partitions under.
func (r *Runner) Holder() string { return r.cfg.Holder }

// Add registers a projection. It fails with an error matching
// [eventstore.ErrInvalidInput] for an invalid configuration (including the
// registration mistakes of a [*Handlers]), a duplicate name, or when the
// runner has already started.
func (r *Runner) Add(p Projection) error {
	if err := ValidateName(p.Name); err != nil {
		return err
	}
	field := func(f string) string { return fmt.Sprintf("projection %q %s", p.Name, f) }
	switch {
	case p.Handler == nil:
		return invalid(field("Handler"), "must not be nil")
	case p.Mode != Transactional && p.Mode != AtLeastOnce:
		return invalid(field("Mode"), fmt.Sprintf("%d is not a Mode", p.Mode))
	case p.OnFailure != StopOnFailure && p.OnFailure != ParkOnFailure:
		return invalid(field("OnFailure"), fmt.Sprintf("%d is not a FailurePolicy", p.OnFailure))
	case p.Partitions < 0 || p.Partitions > maxPartitions:
		return invalid(field("Partitions"), fmt.Sprintf("%d is not between 1 and %d", p.Partitions, maxPartitions))
	case p.CheckpointInterval < 0:
		return invalid(field("CheckpointInterval"), "must not be negative")
	case p.CheckpointInterval > 0 && p.Mode != AtLeastOnce:
		return invalid(field("CheckpointInterval"), "needs Mode AtLeastOnce (a Transactional batch commits with its read model)")
	case p.BatchSize < 0 || p.BatchSize > maxBatchSize:
		return invalid(field("BatchSize"), fmt.Sprintf("%d is not between 1 and %d", p.BatchSize, maxBatchSize))
	}
	if err := p.Retry.validate(field("Retry")); err != nil {
		return err
	}
	if v, ok := p.Handler.(interface{ Err() error }); ok {
		if err := v.Err(); err != nil {
			return invalid(field("Handler"), err.Error())
		}
	}
	p.Partitions = cmp.Or(p.Partitions, 1)
	p.BatchSize = cmp.Or(p.BatchSize, r.cfg.BatchSize)
	p.Retry = p.Retry.withDefaults(r.cfg.Retry)
	if p.Retry.MaxAttempts == 0 {
		p.Retry.MaxAttempts = 1
	}
	pr := &proj{Projection: p, reset: p.Reset, share: newShare()}
	if pr.reset == nil {
		if rs, ok := p.Handler.(Resetter); ok {
			pr.reset = rs.Reset
		}
	}
	for range p.Partitions {
		pr.parts = append(pr.parts, &partState{shed: make(chan struct{}, 1)})
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return invalid(field("registration"), "the runner has already started")
	}
	if r.byName[p.Name] != nil {
		return invalid(field("Name"), "is already registered")
	}
	r.projections = append(r.projections, pr)
	r.byName[p.Name] = pr
	return nil
}

// Run runs every registered projection until ctx is done, then returns
// nil once every partition has stopped. Each partition runs in its own
// goroutine: a projection that fails (or stops) never blocks the others.
//
// On cancellation the batch in progress is abandoned: in [Transactional]
// mode its transaction rolls back and its checkpoint is unchanged; in
// [AtLeastOnce] mode the events already handled are checkpointed (with a
// short grace period) and the rest will be delivered again. Leases are
// released, so that another runner takes over at once.
//
// Run can be called once; a second call fails with an error matching
// [ErrRunnerStarted]. It fails at once, with an error matching
// [ErrNoProjections], if no projection is registered.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return fmt.Errorf("projection runner: run called twice: %w", ErrRunnerStarted)
	}
	r.started = true
	projections := slices.Clone(r.projections)
	r.mu.Unlock()
	if len(projections) == 0 {
		return fmt.Errorf("projection runner: %w: add one with Runner.Add before Run", ErrNoProjections)
	}

	var wg sync.WaitGroup
	watch := r.store.Watch(ctx)
	wg.Go(func() {
		for range watch {
			r.wake.notify()
		}
	})
	for _, p := range projections {
		if p.balancerNeeded() {
			wg.Go(func() { r.balance(ctx, p) })
		}
		for i := range p.Partitions {
			w := &worker{r: r, p: p, key: projectionstore.Key{Projection: p.Name, Partition: i}, state: p.parts[i], spare: make(chan []Event, 2)}
			w.log = r.log.With("projection", p.Name, "partition", i)
			wg.Go(func() { w.run(ctx) })
		}
	}
	wg.Wait()
	return nil
}

// broadcast wakes every goroutine waiting on it.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed by the next notify.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
	b.mu.Unlock()
}

// invalid returns a validation error for field.
func invalid(field, reason string) error {
	return &eventstore.ValidationError{Field: field, Reason: reason}
}

// sleep waits for d or until ctx is done, reporting whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter returns d ± 20%, so that many runners started together do not
// poll in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d*4/5 + rand.N(d*2/5+1)
}
