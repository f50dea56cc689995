package bench

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/natsbus/natstest"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(postgrestest.ReportSkips(m))
}

func TestRunQuick(t *testing.T) {
	t.Parallel()
	var progress bytes.Buffer
	report, err := Run(context.Background(), &Config{
		DatabaseURL: postgrestest.AdminURL(t),
		NATSURL:     natstest.PrivateURL(t),
		Quick:       true,
		Progress:    &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, w := range workloads() {
		for i := range w.metrics {
			want = append(want, w.metricLabel(i))
		}
	}
	if len(report.Rows) != len(want) {
		t.Fatalf("report has %d rows, want %d (%q)", len(report.Rows), len(want), want)
	}
	for i, row := range report.Rows {
		if row.Workload != want[i] {
			t.Errorf("row %d is %q, want %q", i, row.Workload, want[i])
		}
		// A latency may be 0: the tailer handled the event before the
		// writer had its commit acknowledged (tailClock.percentiles); the
		// ratio is then 0 or, with a 0 on Chronicle's side, left at 0.
		latency := row.Unit == "ms"
		switch {
		case row.Unit == "":
			t.Errorf("row %q has no unit: %+v", row.Workload, row)
		case latency && (row.Baseline < 0 || row.Chronicle < 0 || row.Ratio < 0):
			t.Errorf("row %q has negative latencies: %+v", row.Workload, row)
		case !latency && (row.Baseline <= 0 || row.Chronicle <= 0 || row.Ratio <= 0):
			t.Errorf("row %q has non-positive numbers: %+v", row.Workload, row)
		}
		if len(row.BaselineRuns) != report.Config.Runs || len(row.ChronicleRuns) != report.Config.Runs {
			t.Errorf("row %q has %d/%d samples, want %d", row.Workload, len(row.BaselineRuns), len(row.ChronicleRuns), report.Config.Runs)
		}
	}
	var out bytes.Buffer
	if err := report.Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, label := range want {
		if !strings.Contains(out.String(), label) {
			t.Errorf("printed report lacks %q:\n%s", label, out.String())
		}
	}
	if !strings.Contains(out.String(), "ratio") || !strings.Contains(progress.String(), "chronicle") {
		t.Errorf("printed report or progress incomplete:\n%s\n%s", out.String(), progress.String())
	}
	if report.Server == "" {
		t.Error("report has no server version")
	}
}

func TestRunSelectsWorkloads(t *testing.T) {
	t.Parallel()
	report, err := Run(context.Background(), &Config{
		DatabaseURL: postgrestest.AdminURL(t),
		Quick:       true,
		Workloads:   []string{"append-10"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, row := range report.Rows {
		got = append(got, row.Workload)
	}
	want := []string{
		"append-10 x1", "append-10 x1 p50", "append-10 x1 p99",
		"append-10 x8", "append-10 x8 p50", "append-10 x8 p99",
		"append-10 x32", "append-10 x32 p50", "append-10 x32 p99",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows = %q, want %q", got, want)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "no url", cfg: Config{}, wantErr: "no database url"},
		{name: "unknown workload", cfg: Config{DatabaseURL: "postgres://h/db", Workloads: []string{"append-2"}}, wantErr: `unknown workload "append-2"`},
		{name: "negative", cfg: Config{DatabaseURL: "postgres://h/db", Runs: -1}, wantErr: "must not be negative"},
		{name: "ok", cfg: Config{DatabaseURL: "postgres://h/db", Workloads: []string{"catch-up"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := tt.cfg.withDefaults()
			if tt.wantErr == "" {
				if err != nil || c.Runs != 3 || c.Events != 200_000 || c.Commands != 500 || c.Loads != 1000 {
					t.Errorf("withDefaults = %+v, %v; want the defaults", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestNamesAreUniqueLabels(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, w := range workloads() {
		if w.baseline == nil || w.chronicle == nil || len(w.metrics) == 0 {
			t.Errorf("workload %q is incomplete", w.label())
		}
		for i := range w.metrics {
			l := w.metricLabel(i)
			if seen[l] {
				t.Errorf("two rows labelled %q", l)
			}
			seen[l] = true
		}
	}
	names := Names()
	for _, want := range []string{"append-1", "append-10", "load-100", "catch-up"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names() = %q, missing %q", names, want)
		}
	}
}

func TestTailClockSkipsWarmup(t *testing.T) {
	t.Parallel()
	c := newTailClock()
	t0 := time.Now()
	c.skip("warm")
	c.handle("warm", t0) // a warm-up event handled: not counted
	c.commit("a", t0)
	c.handle("a", t0.Add(3*time.Millisecond))
	if n := c.count(); n != 1 {
		t.Fatalf("count = %d, want 1 (the warm-up event is not measured)", n)
	}
	got, err := c.percentiles()
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != 3 || got[1] != 3 {
		t.Fatalf("percentiles = %v, want [3 3]", got)
	}
}
