package shred_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/shred"
)

type CustomerRegistered struct {
	eventstore.Redactions
	CustomerID string `json:"customer_id" chronicle:"subject"`
	Name       string `json:"name" chronicle:"personal"`
	Email      string `json:"email" chronicle:"personal"`
	Plan       string `json:"plan"`
}

type EmailChanged struct {
	eventstore.Redactions
	CustomerID string `json:"customer_id" chronicle:"subject"`
	Email      string `json:"email" chronicle:"personal"`
}

type Customer struct {
	aggregate.Base
	Name, Email, Plan string
	Redacted          bool
}

func (c *Customer) Apply(event any) error {
	switch e := event.(type) {
	case CustomerRegistered:
		c.Name, c.Email, c.Plan = e.Name, e.Email, e.Plan
		c.Redacted = c.Redacted || e.IsRedacted()
	case EmailChanged:
		c.Email = e.Email
		c.Redacted = c.Redacted || e.IsRedacted()
	default:
		return aggregate.Unhandled(event)
	}
	return nil
}

func newRegistry(t *testing.T, keys shred.KeyStore) (*eventstore.Registry, *shred.Shredder) {
	t.Helper()
	kek, err := shred.NewAESKeyEncryptionKey(bytes.Repeat([]byte{42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	s, err := shred.New(keys, &shred.Config{KeyEncryptionKey: kek})
	if err != nil {
		t.Fatal(err)
	}
	reg := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: s})
	eventstore.MustRegister[CustomerRegistered](reg, "CustomerRegistered")
	eventstore.MustRegister[EmailChanged](reg, "EmailChanged")
	return reg, s
}

// cleartext lists the personal values of the test; none may ever be stored
// or published.
var cleartext = [][]byte{[]byte("Ada Lovelace"), []byte("ada@example.com"), []byte("ada@lovelace.org")}

func holdsCleartext(data []byte) bool {
	return slices.ContainsFunc(cleartext, func(c []byte) bool { return bytes.Contains(data, c) })
}

// TestForgetEveryReader forgets a subject and checks every reader of the
// in-memory store: stream reads, ReadAll, the aggregate repository, a
// projection and the relay's bus messages. (The CLI's output is checked
// on PostgreSQL in internal/cli.)
func TestForgetEveryReader(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // a hang limit, not a speed assumption
	defer cancel()
	store := memory.New(nil)
	reg, shredder := newRegistry(t, memory.NewSubjectKeyStore())
	customers, err := aggregate.NewRepository[Customer](store, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	save := func(id string, events ...any) {
		t.Helper()
		c, err := customers.Load(ctx, id)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			c, err = customers.New(id), nil
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if err := aggregate.Record(c, e); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := customers.Save(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	save("customer-ada", CustomerRegistered{CustomerID: "ada", Name: "Ada Lovelace", Email: "ada@example.com", Plan: "gold"})
	save("customer-bob", CustomerRegistered{CustomerID: "bob", Name: "Bob", Email: "bob@example.com", Plan: "free"})
	save("customer-ada", EmailChanged{CustomerID: "ada", Email: "ada@lovelace.org"})

	if c, err := customers.Load(ctx, "customer-ada"); err != nil || c.Email != "ada@lovelace.org" || c.Name != "Ada Lovelace" {
		t.Fatalf("before the forget: %+v, %v", c, err)
	}
	if err := shredder.Forget(ctx, "ada"); err != nil {
		t.Fatal(err)
	}

	t.Run("stream read", func(t *testing.T) {
		var versions []int64
		for rec, err := range eventstore.ReadStreamSeq(ctx, store, "customer-ada", eventstore.ReadStreamOptions{}, 10) {
			if err != nil {
				t.Fatal(err)
			}
			versions = append(versions, rec.StreamVersion)
			if holdsCleartext(rec.Data) {
				t.Errorf("stored payload holds cleartext: %s", rec.Data)
			}
			v, err := reg.DecodeContext(ctx, rec)
			if err != nil {
				t.Fatalf("decode v%d: %v", rec.StreamVersion, err)
			}
			if r := eventstore.RedactedFields(v); len(r) == 0 {
				t.Errorf("v%d decoded unredacted: %+v", rec.StreamVersion, v)
			}
		}
		if !slices.Equal(versions, []int64{1, 2}) {
			t.Errorf("versions %v, want [1 2]", versions)
		}
	})

	t.Run("read all", func(t *testing.T) {
		var (
			last  eventstore.Position
			types []string
		)
		for rec, err := range eventstore.ReadAllSeq(ctx, store, eventstore.Position{}, 10) {
			if err != nil {
				t.Fatal(err)
			}
			if rec.Position.Compare(last) <= 0 {
				t.Errorf("position %s after %s", rec.Position, last)
			}
			last = rec.Position
			types = append(types, rec.Type)
			v, err := reg.DecodeContext(ctx, rec)
			if err != nil {
				t.Fatal(err)
			}
			switch e := v.(type) {
			case CustomerRegistered:
				if e.CustomerID == "bob" && (e.Email != "bob@example.com" || e.IsRedacted()) {
					t.Errorf("bob was redacted: %+v", e)
				}
				if e.CustomerID == "ada" && (e.Email != "" || e.Name != "" || e.Plan != "gold" || !slices.Equal(e.Redacted(), []string{"email", "name"})) {
					t.Errorf("ada: %+v, redacted %v", e, e.Redacted())
				}
			case EmailChanged:
				if e.Email != "" || !e.IsRedacted() {
					t.Errorf("ada's email change: %+v", e)
				}
			}
		}
		if !slices.Equal(types, []string{"CustomerRegistered", "CustomerRegistered", "EmailChanged"}) {
			t.Errorf("types %v", types)
		}
	})

	t.Run("aggregate load", func(t *testing.T) {
		c, err := customers.Load(ctx, "customer-ada")
		if err != nil {
			t.Fatal(err)
		}
		if c.Version() != 2 || c.Name != "" || c.Email != "" || c.Plan != "gold" || !c.Redacted {
			t.Errorf("loaded %+v (version %d)", c, c.Version())
		}
		// The aggregate still takes commands and saves.
		if err := aggregate.Record(c, EmailChanged{CustomerID: "ada"}); err != nil {
			t.Fatal(err)
		}
		if _, err := customers.Save(ctx, c); err != nil {
			t.Errorf("saving an event without personal values after the forget: %v", err)
		}
		if err := aggregate.Record(c, EmailChanged{CustomerID: "ada", Email: "again@example.com"}); err != nil {
			t.Fatal(err)
		}
		if _, err := customers.Save(ctx, c); !errors.Is(err, shred.ErrSubjectForgotten) {
			t.Errorf("saving personal data of a forgotten subject = %v, want ErrSubjectForgotten", err)
		}
	})

	t.Run("projection", func(t *testing.T) {
		var (
			mu     sync.Mutex
			emails = map[string]string{}
			red    = map[string]bool{}
		)
		h := projection.NewHandlers(reg)
		projection.On(h, func(_ context.Context, _ projection.Event, e CustomerRegistered) error {
			mu.Lock()
			defer mu.Unlock()
			emails[e.CustomerID], red[e.CustomerID] = e.Email, e.IsRedacted()
			return nil
		})
		storage, err := memory.NewProjectionStore(nil)
		if err != nil {
			t.Fatal(err)
		}
		runner, err := projection.New(store, storage, &projection.Config{Logger: slog.New(slog.DiscardHandler), PollInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := runner.Add(projection.Projection{Name: "emails", Handler: h}); err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- runner.Run(runCtx) }()
		defer func() { stop(); <-done }()
		if err := runner.WaitForHead(ctx, "emails"); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if emails["ada"] != "" || !red["ada"] || emails["bob"] != "bob@example.com" || red["bob"] {
			t.Errorf("projection saw %v (redacted %v)", emails, red)
		}
	})

	t.Run("relay", func(t *testing.T) {
		bus := eventbus.NewMemoryBus(&eventbus.MemoryConfig{Logger: slog.New(slog.DiscardHandler)})
		storage, err := memory.NewProjectionStore(nil)
		if err != nil {
			t.Fatal(err)
		}
		relay, err := eventbus.NewRelay(store, storage, bus, &eventbus.RelayConfig{
			Runner: &projection.Config{Logger: slog.New(slog.DiscardHandler), PollInterval: 10 * time.Millisecond, AcquireInterval: 10 * time.Millisecond},
		})
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu        sync.Mutex
			published [][]byte
			decoded   = map[string]CustomerRegistered{}
		)
		all := make(chan struct{})
		h := eventbus.NewHandlers(reg)
		eventbus.On(h, func(_ context.Context, _ eventbus.Delivery, e CustomerRegistered) error {
			mu.Lock()
			defer mu.Unlock()
			decoded[e.CustomerID] = e
			return nil
		})
		eventbus.On(h, func(context.Context, eventbus.Delivery, EmailChanged) error { return nil })
		h.All(func(_ context.Context, d eventbus.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			published = append(published, d.Data)
			if len(published) == 4 {
				close(all)
			}
			return nil
		})
		sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "mailer", Handler: h})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- relay.Run(runCtx) }()
		select {
		case <-all:
		case <-ctx.Done():
			t.Fatal("hang: the relay did not publish 4 messages")
		}
		stop()
		<-done
		_ = sub.Close(ctx)
		mu.Lock()
		defer mu.Unlock()
		for _, data := range published {
			if holdsCleartext(data) {
				t.Errorf("a bus message holds cleartext: %s", data)
			}
		}
		if ada := decoded["ada"]; ada.Email != "" || !ada.IsRedacted() || ada.Plan != "gold" {
			t.Errorf("bus consumer decoded %+v", ada)
		}
		if bob := decoded["bob"]; bob.Email != "bob@example.com" {
			t.Errorf("bus consumer decoded %+v", bob)
		}
	})
}

// A retried append re-encodes its events: sealing is deterministic, so the
// retry stores the same bytes and is a no-op, not a duplicate event.
func TestRetriedAppendIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memory.New(nil)
	reg, _ := newRegistry(t, memory.NewSubjectKeyStore())
	id := eventstore.NewEventID()
	for attempt := range 2 {
		ev, err := reg.EncodeContext(ctx, CustomerRegistered{CustomerID: "ada", Name: "Ada Lovelace", Email: "ada@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		ev.ID = id
		if _, err := store.Append(ctx, "customer-ada", eventstore.NoStream, ev); err != nil {
			t.Fatalf("attempt %d: %v", attempt+1, err)
		}
	}
	if v, err := store.StreamVersion(ctx, "customer-ada"); err != nil || v != 1 {
		t.Errorf("stream version %d, %v; want 1", v, err)
	}
}

// flakyKeys fails its first reads by key ID, like a key store that is
// briefly out of reach.
type flakyKeys struct {
	shred.KeyStore
	mu       sync.Mutex
	failures int
}

func (f *flakyKeys) Key(ctx context.Context, id string) (shred.Key, error) {
	f.mu.Lock()
	fail := f.failures > 0
	if fail {
		f.failures--
	}
	f.mu.Unlock()
	if fail {
		return shred.Key{}, errors.New("key store unreachable")
	}
	return f.KeyStore.Key(ctx, id)
}

// A key store out of reach is retried by the projection runner, never
// parked as an undecodable event.
func TestProjectionRetriesKeyStoreErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // a hang limit
	defer cancel()
	keys := memory.NewSubjectKeyStore()
	writer, _ := newRegistry(t, keys)
	store := memory.New(nil)
	ev, err := writer.EncodeContext(ctx, CustomerRegistered{CustomerID: "ada", Email: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "customer-ada", eventstore.NoStream, ev); err != nil {
		t.Fatal(err)
	}
	reader, _ := newRegistry(t, &flakyKeys{KeyStore: keys, failures: 2}) // a cold cache: it must read the key
	var (
		mu   sync.Mutex
		seen []string
	)
	h := projection.NewHandlers(reader)
	projection.On(h, func(_ context.Context, _ projection.Event, e CustomerRegistered) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, e.Email)
		return nil
	})
	storage, err := memory.NewProjectionStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := projection.New(store, storage, &projection.Config{Logger: slog.New(slog.DiscardHandler), PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = runner.Add(projection.Projection{Name: "emails", Handler: h, OnFailure: projection.ParkOnFailure,
		Retry: projection.RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	defer func() { stop(); <-done }()
	if err := runner.WaitForHead(ctx, "emails"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, []string{"ada@example.com"}) {
		t.Errorf("handler saw %q, want the email once, after the retries", seen)
	}
}

// So does a bus consumer: the message is delivered again, not
// dead-lettered.
func TestBusRetriesKeyStoreErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // a hang limit
	defer cancel()
	keys := memory.NewSubjectKeyStore()
	writer, _ := newRegistry(t, keys)
	ev, err := writer.EncodeContext(ctx, CustomerRegistered{CustomerID: "ada", Email: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	reader, _ := newRegistry(t, &flakyKeys{KeyStore: keys, failures: 2})
	got := make(chan string, 1)
	h := eventbus.NewHandlers(reader)
	eventbus.On(h, func(_ context.Context, _ eventbus.Delivery, e CustomerRegistered) error {
		got <- e.Email
		return nil
	})
	bus := eventbus.NewMemoryBus(&eventbus.MemoryConfig{Logger: slog.New(slog.DiscardHandler)})
	sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "mailer", Handler: h, MaxDeliveries: 5,
		Backoff: eventbus.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close(ctx)
	err = bus.Publish(ctx, eventbus.Message{EventID: eventstore.NewEventID(), Type: ev.Type, SchemaVersion: ev.SchemaVersion,
		StreamID: "customer-ada", StreamVersion: 1, Data: ev.Data})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case email := <-got:
		if email != "ada@example.com" {
			t.Errorf("consumer got %q", email)
		}
	case <-ctx.Done():
		dls, _ := bus.DeadLetters(context.Background(), eventbus.DeadLetterFilter{})
		t.Fatalf("hang: the message was not handled (%d dead letters)", len(dls))
	}
}
