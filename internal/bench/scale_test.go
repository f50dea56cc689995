package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestRunScaleSmall(t *testing.T) {
	t.Parallel()
	report, err := RunScale(context.Background(), &ScaleConfig{
		DatabaseURL: postgrestest.AdminURL(t), Small: 2500, Events: 12_000, Commands: 20, Runs: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"append-1 x1", "append-1 x1, random streams", "WAL per append, random streams", "catch-up", "raw pgx scan, same table", "catch-up peak RSS"}
	if len(report.Rows) != len(want) {
		t.Fatalf("rows %+v, want %q", report.Rows, want)
	}
	for i, row := range report.Rows {
		if row.Metric != want[i] || row.Small <= 0 || row.Large <= 0 || row.Ratio <= 0 {
			t.Errorf("row %d: %+v, want %q with positive numbers", i, row, want[i])
		}
	}
	var out bytes.Buffer
	if err := report.Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"2500", "12k", "raw pgx scan", "catch-up peak RSS", "MiB", "WAL per append", "kB"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report does not show %q:\n%s", s, out.String())
		}
	}
}

func TestScaleConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		cfg  ScaleConfig
		want string
	}{
		{"no url", ScaleConfig{}, "no database url"},
		{"negative", ScaleConfig{DatabaseURL: "postgres://x/y", Runs: -1}, "negative"},
		{"small too small", ScaleConfig{DatabaseURL: "postgres://x/y", Small: 100}, "at least the 50 appended accounts"},
		{"large not larger", ScaleConfig{DatabaseURL: "postgres://x/y", Small: 5000, Events: 5000}, "must be larger"},
	} {
		_, err := RunScale(context.Background(), &c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

func TestHumanCount(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{100_000: "100k", 10_000_000: "10M", 2500: "2500", 12_000: "12k", 1_500_000: "1500k"} {
		if got := humanCount(n); got != want {
			t.Errorf("humanCount(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCurrentRSS(t *testing.T) {
	t.Parallel()
	if rss := currentRSS(); rss < 1<<20 {
		t.Fatalf("current RSS %d bytes: /proc/self/status not read", rss)
	}
	stop := sampleRSS()
	if peak := stop(); peak < 1<<20 {
		t.Fatalf("peak RSS %d bytes", peak)
	}
}

// TestWALBytesCountsUnflushedWAL pins walBytesSQL to the WAL insert
// position: a commit with synchronous_commit off leaves its WAL in the
// buffers, where the write position (pg_current_wal_lsn) does not see it
// until the WAL writer's next round. Reading the write position made the
// scale report's WAL per append 0 on test clusters (which run with
// synchronous_commit off).
func TestWALBytesCountsUnflushedWAL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := postgrestest.Pool(t)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, sql := range []string{
		"CREATE TABLE wal_probe (n bigint)",
		"SET synchronous_commit = off",
		// A checkpoint writes and flushes the WAL so far (best effort: it
		// needs a superuser or pg_checkpoint).
		"CHECKPOINT",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil && sql != "CHECKPOINT" {
			t.Fatal(err)
		}
	}
	var before, after int64
	if err := conn.QueryRow(ctx, walBytesSQL).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO wal_probe VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, walBytesSQL).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("WAL position %d before an insert, %d after: the insert's WAL is not counted", before, after)
	}
}
