package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/natsbus"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

func main() {
	var dsn, natsURL string
	flag.StringVar(&dsn, "dsn", os.Getenv("DATABASE_URL"), "PostgreSQL URL; the in-memory store is used when empty (default $DATABASE_URL)")
	flag.StringVar(&natsURL, "nats", os.Getenv("NATS_URL"), "NATS server URL; the in-process bus is used when empty (default $NATS_URL)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, dsn, natsURL); err != nil {
		fmt.Fprintln(os.Stderr, "signup:", err)
		os.Exit(1)
	}
}

// world is what the service runs on.
type world struct {
	store   eventstore.Store
	storage projectionstore.Storage
	bus     eventbus.Bus
	pool    *pgxpool.Pool // nil in memory
	suffix  string        // this run's names, on shared servers
	close   []func()
}

func (w *world) shutdown() {
	for _, f := range slices.Backward(w.close) {
		f()
	}
}

func open(ctx context.Context, dsn, natsURL string, log *slog.Logger) (*world, error) {
	w := &world{suffix: eventstore.NewEventID().String()[24:]}
	if dsn == "" {
		storage, err := memory.NewProjectionStore(nil)
		if err != nil {
			return nil, err
		}
		w.store, w.storage = memory.New(nil), storage
	} else {
		if err := migrations.Up(ctx, dsn); err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		w.close = append(w.close, pool.Close)
		store, err := postgres.New(pool, nil)
		if err != nil {
			w.shutdown()
			return nil, err
		}
		w.close = append(w.close, store.Close)
		storage, err := postgres.NewProjectionStore(pool, nil)
		if err != nil {
			w.shutdown()
			return nil, err
		}
		if _, err := pool.Exec(ctx, createPointsSQL); err != nil {
			w.shutdown()
			return nil, fmt.Errorf("create the points table: %w", err)
		}
		w.store, w.storage, w.pool = store, storage, pool
	}
	if natsURL == "" {
		w.bus = eventbus.NewMemoryBus(&eventbus.MemoryConfig{Logger: log})
		return w, nil
	}
	nc, err := natsbus.Connect(natsURL, "signup-example")
	if err != nil {
		w.shutdown()
		return nil, err
	}
	w.close = append(w.close, nc.Close)
	// Streams of this run's own, deleted at the end.
	tag := strings.ToUpper(w.suffix)
	bus, err := natsbus.New(ctx, nc, &natsbus.Config{
		Stream: "SIGNUP_" + tag, SubjectPrefix: "signup." + tag + ".events", DeadLetterPrefix: "signup." + tag + ".dead", Logger: log,
	})
	if err != nil {
		w.shutdown()
		return nil, err
	}
	w.close = append(w.close, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = bus.DeleteStreams(ctx)
	})
	w.bus = bus
	return w, nil
}

// createPointsSQL is the points service's table (its own, not Chronicle's).
const createPointsSQL = `CREATE TABLE IF NOT EXISTS signup_points (
    email  text   NOT NULL,
    points int    NOT NULL,
    event  uuid   NOT NULL PRIMARY KEY
)`

const awardPointsSQL = `INSERT INTO signup_points (email, points, event) VALUES ($1, $2, $3)`

// run registers three users and lets both consumer groups handle them.
func run(ctx context.Context, out io.Writer, dsn, natsURL string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	reg, err := newRegistry()
	if err != nil {
		return err
	}
	w, err := open(ctx, dsn, natsURL, log)
	if err != nil {
		return err
	}
	defer w.shutdown()
	where := "the in-memory store"
	if w.pool != nil {
		where = "PostgreSQL"
	}
	via := "in-process bus"
	if natsURL != "" {
		via = "NATS JetStream"
	}
	fmt.Fprintf(out, "signup service on %s, events relayed through the %s\n\n", where, via)

	// The relay: store → bus, checkpointed over acknowledged events.
	relay, err := eventbus.NewRelay(w.store, w.storage, w.bus, &eventbus.RelayConfig{
		Name:   "signup-relay-" + w.suffix,
		Runner: &projection.Config{Logger: log, PollInterval: 50 * time.Millisecond, AcquireInterval: 50 * time.Millisecond},
		Logger: log,
	})
	if err != nil {
		return err
	}
	runCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(runCtx) }()
	defer func() { stopRelay(); <-relayDone }()

	// The two consumer groups.
	var mu sync.Mutex
	var emails, points []string
	handled := make(chan struct{}, 16)
	welcome := eventbus.NewHandlers(reg)
	eventbus.On(welcome, func(ctx context.Context, d eventbus.Delivery, e UserRegistered) error {
		mu.Lock()
		emails = append(emails, fmt.Sprintf("welcome e-mail to %s %s <%s> (stored as schema v%d)", e.FirstName, e.LastName, e.Email, d.SchemaVersion))
		mu.Unlock()
		handled <- struct{}{}
		return nil
	})
	award := func(ctx context.Context, d eventbus.Delivery, e UserRegistered) error {
		mu.Lock()
		points = append(points, fmt.Sprintf("100 points to %s", e.Email))
		mu.Unlock()
		handled <- struct{}{}
		return nil
	}
	var pointsHandler eventbus.Handler
	if w.pool != nil {
		// Exactly one award per event, whatever the redeliveries.
		pointsHandler = postgres.Idempotent(w.pool, "points-"+w.suffix, func(ctx context.Context, tx pgx.Tx, d eventbus.Delivery) error {
			e, err := eventstore.Decode[UserRegistered](reg, d.Record())
			if err != nil {
				return eventbus.Permanent(err)
			}
			if _, err := tx.Exec(ctx, awardPointsSQL, e.Email, 100, d.EventID.String()); err != nil {
				return err
			}
			return award(ctx, d, e)
		})
	} else {
		h := eventbus.NewHandlers(reg)
		eventbus.On(h, award)
		pointsHandler = h
	}
	for _, c := range []eventbus.Consumer{
		{Group: "welcome-email-" + w.suffix, Handler: welcome},
		{Group: "points-" + w.suffix, Handler: pointsHandler, Types: []string{"UserRegistered"}},
	} {
		sub, err := w.bus.Subscribe(ctx, c)
		if err != nil {
			return err
		}
		defer sub.Close(context.WithoutCancel(ctx))
	}

	// The service: append, never publish.
	users := []struct{ first, last, email string }{{"Ada", "Lovelace", "ada"}, {"Alan", "Turing", "alan"}}
	for _, u := range users {
		ev, err := reg.Encode(UserRegistered{FirstName: u.first, LastName: u.last, Email: u.email + "-" + w.suffix + "@example.com"})
		if err != nil {
			return err
		}
		if _, err := w.store.Append(ctx, "user-"+u.email+"-"+w.suffix, eventstore.NoStream, ev); err != nil {
			return err
		}
		fmt.Fprintf(out, "registered %s %s\n", u.first, u.last)
	}
	// A registration stored by the service's first version (schema v1).
	legacy, err := json.Marshal(UserRegisteredV1{Name: "Grace Hopper", Email: "grace-" + w.suffix + "@example.com"})
	if err != nil {
		return err
	}
	if _, err := w.store.Append(ctx, "user-grace-"+w.suffix, eventstore.NoStream, eventstore.Event{
		ID: eventstore.NewEventID(), Type: "UserRegistered", SchemaVersion: 1, Data: legacy,
	}); err != nil {
		return err
	}
	fmt.Fprintf(out, "registered Grace Hopper (by the old version, schema v1)\n\n")

	for range 2 * (len(users) + 1) {
		select {
		case <-handled:
		case <-ctx.Done():
			return errors.New("the consumers did not handle every registration in time")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(emails)
	slices.Sort(points)
	fmt.Fprintln(out, "welcome-email group:")
	for _, l := range emails {
		fmt.Fprintln(out, "  "+strings.ReplaceAll(l, "-"+w.suffix, ""))
	}
	fmt.Fprintln(out, "points group:")
	for _, l := range points {
		fmt.Fprintln(out, "  "+strings.ReplaceAll(l, "-"+w.suffix, ""))
	}
	return nil
}
