package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestBalancesProjection(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), &out, ""); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"5. The balances projection, kept in memory by a projection runner",
		"account-alice Alice  balance 80 (v5)",
		"account-bob   Bob    balance 50 (v2)",
		`projection "bank-balances": checkpoint 7/7, held, 0 parked`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the story does not contain %q:\n%s", want, out.String())
		}
	}
}

func TestBalancesProjectionPostgres(t *testing.T) {
	t.Parallel()
	dsn := postgrestest.DatabaseURL(t)
	ctx := context.Background()
	// Twice on one database: the second run resumes from the checkpoint
	// the first one committed.
	for range 2 {
		var out bytes.Buffer
		if err := run(ctx, &out, dsn); err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		for _, want := range []string{"kept in the PostgreSQL table bank_balances", "Alice  balance 80 (v5)", "Bob    balance 50 (v2)"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("the story does not contain %q:\n%s", want, out.String())
			}
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, total int64
	if err := conn.QueryRow(ctx, `SELECT count(*), sum(balance) FROM bank_balances`).Scan(&rows, &total); err != nil {
		t.Fatal(err)
	}
	if rows != 4 || total != 2*(80+50) {
		t.Fatalf("bank_balances has %d rows summing to %d, want 4 rows summing to 260", rows, total)
	}
}
