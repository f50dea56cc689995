package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/health"
	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestDoctorArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"extra argument", []string{"doctor", "now"}, "doctor takes no arguments"},
		{"negative lag", []string{"doctor", "--max-lag-events=-1"}, "must not be negative"},
		{"negative age", []string{"doctor", "--max-transaction-age=-1s"}, "must not be negative"},
		{"bad duration", []string{"doctor", "--max-lag-age", "soon"}, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := run(t, map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:1/db"}, tt.args...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) || !strings.Contains(stderr, "Usage: chronicle doctor") {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
		})
	}
	if code, _, stderr := run(t, nil, "doctor"); code != exitError || !strings.Contains(stderr, "no database url") {
		t.Errorf("no url: exit %d, %q", code, stderr)
	}
}

func TestDoctorHealthy(t *testing.T) {
	t.Parallel()
	db := postgrestest.DatabaseURL(t)
	latest := migrations.Latest()
	out, _ := mustRun(t, nil, 0, "doctor", "--database-url", db)
	for _, want := range []string{
		"database      ok        answers\n",
		fmt.Sprintf("schema        ok        version %d (latest %d)\n", latest, latest),
		"projections   ok        0 projection(s), 0 partition(s)",
		"dead letters  ok        0 parked",
		"read horizon  ok ",
		"tables        ok ",
		"- chronicle.events: ",
		"status: ok\n",
	} {
		wantContains(t, "doctor", out, want)
	}

	out, _ = mustRun(t, map[string]string{"DATABASE_URL": db}, 0, "doctor", "--json")
	var r health.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if r.Status != health.OK || len(r.Checks) != 6 || r.Schema == nil || r.Schema.Version != latest || len(r.Tables) == 0 {
		t.Errorf("--json report %+v", r)
	}
}

func TestDoctorFindsProblems(t *testing.T) {
	t.Parallel()
	db := postgrestest.DatabaseURL(t)
	ctx := context.Background()
	latest := migrations.Latest()
	cfg, err := pgx.ParseConfig(db)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "doctor-test-holder"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// An outdated schema, and a transaction that has written left open.
	if _, err := conn.Exec(ctx, `UPDATE chronicle.schema_migrations SET version = $1`, latest-1); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO chronicle.projection_checkpoints (projection, partition, partitions, error)
		VALUES ('balances', 0, 1, 'handler failed: boom')`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)

	code, out, stderr := run(t, nil, "doctor", "--database-url", db, "--max-transaction-age", "20ms", "--transactions", "100")
	if code != exitError {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, stderr)
	}
	wantContains(t, "doctor", out, fmt.Sprintf("schema        critical  version %d (latest %d): 1 migration(s) not applied; run chronicle migrate up", latest-1, latest))
	wantContains(t, "doctor", out, "read horizon  warning   held back ")
	wantContains(t, "doctor", out, fmt.Sprintf("- pid %d, open for ", conn.PgConn().PID()))
	wantContains(t, "doctor", out, `application "doctor-test-holder"`)
	wantContains(t, "doctor", out, "idle in transaction for ")
	wantContains(t, "doctor", out, ": INSERT INTO chronicle.projection_checkpoints")
	wantContains(t, "doctor", out, "status: critical (2 check(s) not ok)")
	wantContains(t, "stderr", stderr, "chronicle doctor: 2 check(s) not ok, status critical")

	// Once committed, the stopped projection is reported and the horizon
	// is free.
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run(t, nil, "doctor", "--database-url", db, "--max-transaction-age", "1h")
	if code != exitError {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	wantContains(t, "doctor", out, "projections   critical  1 projection(s), 1 partition(s): 1 stopped, 0 lagging")
	wantContains(t, "doctor", out, "- stopped: balances/0 at 0/0, 0 events behind (no holder): handler failed: boom")
}
