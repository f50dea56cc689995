package postgres

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(postgrestest.ReportSkips(m))
}

// setupStore returns a Store on a fresh migrated database, and its pool.
// The store is closed before the pool when the test ends. cfg may be nil;
// its Logger defaults to discarding.
func setupStore(t testing.TB, cfg *Config) (*Store, *pgxpool.Pool) {
	t.Helper()
	pool := postgrestest.Pool(t)
	return newStoreOn(t, pool, cfg), pool
}

// newStoreOn returns a second Store on an existing pool.
func newStoreOn(t testing.TB, pool *pgxpool.Pool, cfg *Config) *Store {
	t.Helper()
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(pool, &c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// adminConn connects to the server's maintenance database as a superuser.
func adminConn(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), postgrestest.AdminURL(t))
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(t.Context(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	tests := []struct {
		name      string
		cfg       *Config
		wantField string // "" = valid
	}{
		{"nil means defaults", nil, ""},
		{"zero means defaults", &Config{}, ""},
		{"everything set", &Config{MaxEventSize: 10, PollOnly: true, PollInterval: time.Minute, NotifyDebounce: time.Millisecond}, ""},
		{"negative max event size", &Config{MaxEventSize: -1}, "config MaxEventSize"},
		{"negative poll interval", &Config{PollInterval: -time.Second}, "config PollInterval"},
		{"tiny poll interval", &Config{PollInterval: time.Microsecond}, "config PollInterval"},
		{"negative debounce", &Config{NotifyDebounce: -time.Second}, "config NotifyDebounce"},
		{"listen config with poll only", &Config{PollOnly: true, ListenConfig: pool.Config().ConnConfig}, "config ListenConfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(pool, tt.cfg)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				s.Close()
				return
			}
			var ve *eventstore.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.wantField || !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Fatalf("New error %v, want a *ValidationError for %q", err, tt.wantField)
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		s, err := New(pool, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		c := s.cfg
		if c.Logger != slog.Default() || c.MaxEventSize != eventstore.DefaultMaxEventSize ||
			c.PollInterval != time.Second || c.NotifyDebounce != 10*time.Millisecond || c.PollOnly || c.ListenConfig == nil {
			t.Fatalf("defaults: %+v", c)
		}
	})
	t.Run("nil pool", func(t *testing.T) {
		t.Parallel()
		if _, err := New(nil, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Fatalf("New(nil, nil) error %v, want ErrInvalidInput", err)
		}
	})
}

func TestSchemaMissing(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, "DROP SCHEMA chronicle CASCADE"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Append(ctx, "s", eventstore.Any, eventstore.Event{Type: "E", Data: []byte(`{}`)})
	if !errors.Is(err, ErrSchemaMissing) {
		t.Fatalf("Append without schema: error %v, want ErrSchemaMissing", err)
	}
	if _, err := s.ReadAll(ctx, eventstore.Position{}, 10); !errors.Is(err, ErrSchemaMissing) {
		t.Fatalf("ReadAll without schema: error %v, want ErrSchemaMissing", err)
	}
}
