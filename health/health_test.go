package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/health"
	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/projection"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	pool  *pgxpool.Pool
	store *postgres.Store
	ps    *postgres.ProjectionStore
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{pool: postgrestest.Pool(t)}
	var err error
	if f.store, err = postgres.New(f.pool, &postgres.Config{PollOnly: true, PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.store.Close)
	if f.ps, err = postgres.NewProjectionStore(f.pool, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) checker(t *testing.T, cfg *health.Config) *health.Checker {
	t.Helper()
	c, err := health.New(f.store, f.ps, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitVisible waits until the event at pos is readable (a transaction
// held open by another test holds the read horizon back).
func (f *fixture) waitVisible(t *testing.T, pos eventstore.Position) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		head, err := f.store.Head(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if head.Compare(pos) >= 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("head %s has not reached %s", head, pos)
		}
	}
}

func mustCheck(t *testing.T, r health.Report, name string, want health.Status) health.Check {
	t.Helper()
	c, ok := r.Check(name)
	if !ok {
		t.Fatalf("no %q check in %+v", name, r.Checks)
	}
	if c.Status != want {
		t.Errorf("%s: %s (%s %q), want %s", name, c.Status, c.Summary, c.Details, want)
	}
	return c
}

func TestHealthyDatabase(t *testing.T) {
	t.Parallel()
	f := setup(t)
	r := f.checker(t, nil).Check(t.Context())
	if r.Status != health.OK || r.Problems() != 0 {
		t.Errorf("fresh database: %s, %+v", r.Status, r.Checks)
	}
	names := make([]string, len(r.Checks))
	for i, c := range r.Checks {
		names[i] = c.Name
	}
	want := []string{health.CheckDatabase, health.CheckSchema, health.CheckProjections, health.CheckDeadLetters, health.CheckReadHorizon, health.CheckTables}
	if !slices.Equal(names, want) {
		t.Errorf("checks %v, want %v", names, want)
	}
	if r.Schema == nil || r.Schema.Version != migrations.Latest() {
		t.Errorf("schema %+v", r.Schema)
	}
	if !slices.ContainsFunc(r.Tables, func(tb health.Table) bool { return tb.Name == "events" && len(tb.Indexes) > 0 }) {
		t.Errorf("tables %+v: want events with its indexes", r.Tables)
	}
	if c := mustCheck(t, r, health.CheckTables, health.OK); !strings.Contains(c.Summary, "table(s)") || len(c.Details) != len(r.Tables) {
		t.Errorf("tables check %+v", c)
	}
}

// failOn fails permanently on events of type "Bad".
var failOn = projection.HandlerFunc(func(_ context.Context, ev projection.Event) error {
	if ev.Type == "Bad" {
		return projection.Permanent(errors.New("bad event"))
	}
	return nil
})

func TestStoppedLaggingAndParked(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	ev := func(typ string) eventstore.Event { return eventstore.Event{Type: typ, Data: []byte(`{}`)} }
	first, err := f.store.Append(ctx, "s-1", eventstore.NoStream, ev("Good"), ev("Bad"), ev("Good"))
	if err != nil {
		t.Fatal(err)
	}
	f.waitVisible(t, first.Position) // else WaitForHead may find an empty head
	runner, err := projection.New(f.store, f.ps, &projection.Config{Logger: slog.New(slog.DiscardHandler), PollInterval: 20 * time.Millisecond, AcquireInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []projection.Projection{
		{Name: "parks", Handler: failOn, OnFailure: projection.ParkOnFailure},
		{Name: "stops", Handler: failOn, OnFailure: projection.StopOnFailure},
	} {
		if err := runner.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := runner.WaitForHead(waitCtx, "parks"); err != nil {
		t.Fatal(err)
	}
	if err := runner.WaitForHead(waitCtx, "stops"); !errors.Is(err, projection.ErrStopped) {
		t.Fatalf("stops: %v, want stopped", err)
	}
	stop()
	<-done

	// Events no runner handles any more: "parks" lags by 3. (The stopped
	// runner's sessions may still show as holders for a moment: the
	// server ends a backend shortly after its client disconnects.)
	res, err := f.store.Append(ctx, "s-2", eventstore.NoStream, ev("Good"), ev("Good"), ev("Good"))
	if err != nil {
		t.Fatal(err)
	}
	f.waitVisible(t, res.Position)

	r := f.checker(t, &health.Config{MaxLagEvents: 2}).Check(ctx)
	if r.Status != health.Critical {
		t.Errorf("report %s, want critical", r.Status)
	}
	c := mustCheck(t, r, health.CheckProjections, health.Critical)
	if !strings.Contains(c.Summary, "2 projection(s), 2 partition(s): 1 stopped, 1 lagging (more than 2 events") {
		t.Errorf("summary %q", c.Summary)
	}
	if len(c.Details) != 2 || !strings.HasPrefix(c.Details[0], "lagging: parks/0 at ") || !strings.Contains(c.Details[0], ", 3 events and ") ||
		!strings.HasPrefix(c.Details[1], "stopped: stops/0 at ") || !strings.Contains(c.Details[1], "5 events behind (") ||
		!strings.Contains(c.Details[1], "bad event") {
		t.Errorf("details %q", c.Details)
	}
	d := mustCheck(t, r, health.CheckDeadLetters, health.Warning)
	if !strings.HasPrefix(d.Summary, "1 parked") || !slices.Equal(d.Details, []string{"parks/0: 1"}) {
		t.Errorf("dead letters %+v", d)
	}
	i := slices.IndexFunc(r.Projections, func(p health.Partition) bool { return p.Projection == "stops" })
	if i < 0 || !r.Projections[i].Stopped || r.Projections[i].LagEvents != 5 || r.Projections[i].Error == "" {
		t.Errorf("projections %+v", r.Projections)
	}

	// Below the thresholds, lag is no problem; the stop still is.
	r = f.checker(t, &health.Config{MaxLagEvents: 3, MaxLagAge: time.Hour}).Check(ctx)
	if c := mustCheck(t, r, health.CheckProjections, health.Critical); !strings.Contains(c.Summary, "1 stopped, 0 lagging") {
		t.Errorf("summary %q", c.Summary)
	}
	// Age alone makes a partition lag.
	r = f.checker(t, &health.Config{MaxLagEvents: 100, MaxLagAge: time.Nanosecond}).Check(ctx)
	if c := mustCheck(t, r, health.CheckProjections, health.Critical); !strings.Contains(c.Summary, "1 stopped, 1 lagging") {
		t.Errorf("summary %q", c.Summary)
	}
}

func TestHeldTransaction(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	cfg := f.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "forgotten-report"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	// A transaction that has written: it has a transaction id.
	if _, err := tx.Exec(ctx, `INSERT INTO chronicle.projection_checkpoints (projection, partition, partitions) VALUES ('held', 0, 1)`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)

	r := f.checker(t, &health.Config{MaxTransactionAge: 50 * time.Millisecond, Transactions: 100}).Check(ctx)
	c := mustCheck(t, r, health.CheckReadHorizon, health.Warning)
	if !strings.Contains(c.Summary, "longer than 50ms") {
		t.Errorf("summary %q", c.Summary)
	}
	pid := int(conn.PgConn().PID())
	i := slices.IndexFunc(r.OpenTransactions, func(tx health.Transaction) bool { return tx.PID == pid })
	if i < 0 {
		t.Fatalf("pid %d not in %+v", pid, r.OpenTransactions)
	}
	got := r.OpenTransactions[i]
	if got.ApplicationName != "forgotten-report" || got.AgeSeconds < 0.06 || got.State != "idle in transaction" ||
		!strings.HasPrefix(got.Query, "INSERT INTO chronicle.projection_checkpoints") {
		t.Errorf("transaction %+v", got)
	}
	if !slices.ContainsFunc(c.Details, func(d string) bool {
		return strings.HasPrefix(d, fmt.Sprintf("pid %d, open for ", pid)) && strings.Contains(d, `application "forgotten-report"`) &&
			strings.Contains(d, "idle in transaction for ") && strings.Contains(d, ": INSERT INTO chronicle.projection_checkpoints")
	}) {
		t.Errorf("details %q", c.Details)
	}
	if r.Status != health.Warning {
		t.Errorf("report %s, want warning", r.Status)
	}
	_ = tx.Rollback(ctx)
}

func TestOutdatedSchema(t *testing.T) {
	t.Parallel()
	latest := migrations.Latest()
	tests := []struct {
		name    string
		sql     string
		want    health.Status
		summary string
	}{
		{"behind", fmt.Sprintf(`UPDATE chronicle.schema_migrations SET version = %d`, latest-1), health.Critical,
			fmt.Sprintf("version %d (latest %d): 1 migration(s) not applied", latest-1, latest)},
		{"dirty", `UPDATE chronicle.schema_migrations SET dirty = true`, health.Critical, "dirty"},
		{"ahead", fmt.Sprintf(`UPDATE chronicle.schema_migrations SET version = %d`, latest+1), health.Warning, "newer than this build"},
		{"never migrated", `DROP TABLE chronicle.schema_migrations`, health.Critical, "no migration applied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			if _, err := f.pool.Exec(t.Context(), tt.sql); err != nil {
				t.Fatal(err)
			}
			c := f.checker(t, nil)
			for _, r := range []health.Report{c.Check(t.Context()), c.Ready(t.Context())} {
				if ck := mustCheck(t, r, health.CheckSchema, tt.want); !strings.Contains(ck.Summary, tt.summary) {
					t.Errorf("summary %q, want %q in it", ck.Summary, tt.summary)
				}
				if r.Status != tt.want {
					t.Errorf("report %s, want %s", r.Status, tt.want)
				}
			}
			rec := httptest.NewRecorder()
			c.ReadyHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if wantCode := map[health.Status]int{health.Critical: 503, health.Warning: 200}[tt.want]; rec.Code != wantCode {
				t.Errorf("ready: %d, want %d", rec.Code, wantCode)
			}
		})
	}
}

func TestHandlers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	c := f.checker(t, nil)
	get := func(h http.Handler) (int, health.Report) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		var r health.Report
		if rec.Code != 200 && rec.Code != 503 || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%d %s", rec.Code, rec.Header().Get("Content-Type"))
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatalf("%v: %s", err, rec.Body)
		}
		return rec.Code, r
	}
	if code, r := get(c.ReadyHandler()); code != 200 || r.Status != health.OK || len(r.Checks) != 2 {
		t.Errorf("ready: %d %+v", code, r)
	}
	if code, r := get(c.ReportHandler()); code != 200 || r.Status != health.OK || len(r.Checks) != 6 || len(r.Tables) == 0 {
		t.Errorf("report: %d %+v", code, r)
	}
	rec := httptest.NewRecorder()
	health.LiveHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/livez", nil))
	if rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Errorf("live: %d %q", rec.Code, rec.Body)
	}

	// The database down: not ready, and nothing else is checked.
	closed, err := pgxpool.New(t.Context(), f.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	down, err := postgres.New(closed, &postgres.Config{PollOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	dc, err := health.New(down, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []http.Handler{dc.ReadyHandler(), dc.ReportHandler()} {
		code, r := get(h)
		if code != 503 || r.Status != health.Critical || len(r.Checks) != 1 || r.Checks[0].Name != health.CheckDatabase {
			t.Errorf("database down: %d %+v", code, r)
		}
	}
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(t.Context(), "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Config{PollOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tests := []struct {
		name  string
		cfg   *health.Config
		field string // "" = valid
	}{
		{"nil", nil, ""},
		{"zero", &health.Config{}, ""},
		{"all set", &health.Config{MaxLagEvents: 1, MaxLagAge: time.Second, MaxTransactionAge: time.Second, Transactions: 1, Timeout: time.Second}, ""},
		{"negative lag events", &health.Config{MaxLagEvents: -1}, "MaxLagEvents"},
		{"negative lag age", &health.Config{MaxLagAge: -1}, "MaxLagAge"},
		{"negative transaction age", &health.Config{MaxTransactionAge: -1}, "MaxTransactionAge"},
		{"negative transactions", &health.Config{Transactions: -1}, "Transactions"},
		{"negative timeout", &health.Config{Timeout: -1}, "Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := health.New(store, nil, tt.cfg)
			var ve *eventstore.ValidationError
			switch {
			case tt.field == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tt.field != "" && (!errors.As(err, &ve) || ve.Field != "config "+tt.field):
				t.Errorf("error %v, want a validation error of config %s", err, tt.field)
			}
		})
	}
	if _, err := health.New(nil, nil, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("nil store: %v", err)
	}
}

func TestMissingSchema(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if _, err := f.pool.Exec(t.Context(), `DROP SCHEMA chronicle CASCADE`); err != nil {
		t.Fatal(err)
	}
	r := f.checker(t, nil).Check(t.Context())
	mustCheck(t, r, health.CheckDatabase, health.OK)
	mustCheck(t, r, health.CheckSchema, health.Critical)
	for _, name := range []string{health.CheckProjections, health.CheckDeadLetters, health.CheckTables} {
		if c := mustCheck(t, r, name, health.Critical); !strings.HasSuffix(c.Summary, "the chronicle schema is missing; run chronicle migrate up") {
			t.Errorf("%s: %q", name, c.Summary)
		}
	}
	mustCheck(t, r, health.CheckReadHorizon, health.OK)
	if r.Problems() != 4 || r.Status != health.Critical {
		t.Errorf("%d problems, status %s", r.Problems(), r.Status)
	}
}
