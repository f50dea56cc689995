package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/chronicle-go/chronicle/natsbus/natstest"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

var wantLines = []string{
	"registered Grace Hopper (by the old version, schema v1)",
	"welcome e-mail to Ada Lovelace <ada@example.com> (stored as schema v2)",
	"welcome e-mail to Grace Hopper <grace@example.com> (stored as schema v1)",
	"100 points to alan@example.com",
	"100 points to grace@example.com",
}

func check(t *testing.T, dsn, natsURL, where string) {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), &out, dsn, natsURL); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range append(wantLines, where) {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

func TestSignupInMemory(t *testing.T) {
	t.Parallel()
	check(t, "", "", "on the in-memory store, events relayed through the in-process bus")
}

func TestSignupPostgresNATS(t *testing.T) {
	t.Parallel()
	check(t, postgrestest.DatabaseURL(t), natstest.PrivateURL(t), "on PostgreSQL, events relayed through the NATS JetStream")
}
