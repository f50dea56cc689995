package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestMain(m *testing.M) {
	os.Exit(postgrestest.ReportSkips(m).Run())
}

func TestStory(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), &out, ""); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"on the in-memory store",
		"v1 AccountOpened owner=Alice",
		"v2 DepositCompleted amount=100",
		"v3 WithdrawalCompleted amount=30",
		"refused: insufficient funds: cannot withdraw 500 from a balance of 70 (nothing recorded, still at v3)",
		"teller 1: deposit 20   -> saved at v4, balance 90",
		`conflict detected: concurrency conflict on stream "account-alice": expected version 3, actual 4`,
		"teller 2: reloads at v4 and retries -> saved at v5, balance 80",
		"account-alice Alice  balance 80",
		"account-bob   Bob    balance 50",
		"(read 7 events from the checkpoint)",
		"now:           v5, balance 80",
		"as of v2:      v2, balance 100",
		"as of the moment before the withdrawal of 30: v2, balance 100",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the story does not contain %q", want)
		}
	}
	if t.Failed() {
		t.Logf("story:\n%s", text)
	}
}

func TestStoryPostgres(t *testing.T) {
	t.Parallel()
	dsn := postgrestest.DatabaseURL(t)
	var out bytes.Buffer
	// Twice on the same database: a second run must not trip over the first.
	for range 2 {
		out.Reset()
		if err := run(context.Background(), &out, dsn); err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
	}
	text := out.String()
	for _, want := range []string{
		"on the PostgreSQL store",
		"refused: insufficient funds: cannot withdraw 500 from a balance of 70 (nothing recorded, still at v3)",
		"conflict detected: concurrency conflict on stream",
		"teller 2: reloads at v4 and retries -> saved at v5, balance 80",
		"(read 7 events from the checkpoint)",
		"as of the moment before the withdrawal of 30: v2, balance 100",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the story does not contain %q", want)
		}
	}
	if t.Failed() {
		t.Logf("story:\n%s", text)
	}
}
