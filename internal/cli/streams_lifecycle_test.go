package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

// Usage mistakes of the lifecycle subcommands fail before connecting.
func TestStreamsLifecycleUsage(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none"}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"streams", "delete"}, "streams delete takes one stream id"},
		{[]string{"streams", "truncate", "--yes", "s"}, "streams truncate takes a stream id and the first version to keep"},
		{[]string{"streams", "truncate", "--yes", "s", "0"}, `"0" is not a version`},
		{[]string{"streams", "truncate", "--yes", "s", "x"}, `"x" is not a version`},
		{[]string{"streams", "archive", "--yes", "s"}, "--yes only confirms streams delete and streams truncate"},
		{[]string{"streams", "truncate", "--hard", "--yes", "s", "2"}, "--hard is a flag of streams delete"},
		{[]string{"streams", "list", "--yes"}, "--yes and --hard are flags of streams delete and streams truncate"},
		{[]string{"streams", "head", "--archived"}, "--archived is a flag of streams read"},
	}
	for _, tt := range tests {
		_, stderr := mustRun(t, env, 2, tt.args...)
		wantContains(t, strings.Join(tt.args, " "), stderr, tt.want)
	}
}

func TestStreamsLifecycleCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.DatabaseURL(t)
	env := map[string]string{"DATABASE_URL": db}
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Config{PollOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, id := range []string{"account-1", "account-2"} {
		var events []eventstore.Event
		for i := range 5 {
			events = append(events, eventstore.Event{Type: "Deposited", Data: fmt.Appendf(nil, `{"amount": %d}`, i+1)})
		}
		if _, err := store.Append(ctx, id, eventstore.NoStream, events...); err != nil {
			t.Fatal(err)
		}
	}

	// Without --yes, nothing changes.
	_, stderr := mustRun(t, env, 1, "streams", "truncate", "account-1", "3")
	wantContains(t, "truncate without --yes", stderr, "refusing streams truncate without --yes: it would remove the 2 events")
	_, stderr = mustRun(t, env, 1, "streams", "delete", "account-1")
	wantContains(t, "delete without --yes", stderr, "nothing was changed")
	_, stderr = mustRun(t, env, 1, "streams", "delete", "--hard", "account-1")
	wantContains(t, "delete --hard without --yes", stderr, "for good")
	out, _ := mustRun(t, env, 0, "streams", "state", "account-1")
	wantContains(t, "state", out, `stream "account-1": status live, version 5, first version 1`)

	out, _ = mustRun(t, env, 0, "streams", "truncate", "--yes", "account-1", "3")
	wantContains(t, "truncate", out, `truncated "account-1": status live, version 5, first version 3`)
	out, _ = mustRun(t, env, 0, "streams", "read", "account-1")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[1], "3 ") {
		t.Fatalf("read after truncate:\n%s\nwant a header and versions 3..5", out)
	}
	_, stderr = mustRun(t, env, 1, "streams", "truncate", "--yes", "account-1", "9")
	wantContains(t, "truncate beyond the head", stderr, "beyond the head")

	out, _ = mustRun(t, env, 0, "streams", "archive", "account-1")
	wantContains(t, "archive", out, `archived "account-1": status archived`)
	_, stderr = mustRun(t, env, 1, "streams", "read", "account-1")
	wantContains(t, "read archived", stderr, "is archived at version 5")
	out, _ = mustRun(t, env, 0, "streams", "read", "--archived", "account-1")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 {
		t.Fatalf("read --archived:\n%s\nwant a header and 3 events", out)
	}
	out, _ = mustRun(t, env, 0, "streams", "restore", "account-1")
	wantContains(t, "restore", out, `restored "account-1": status live, version 5, first version 3`)

	out, _ = mustRun(t, env, 0, "streams", "delete", "--yes", "account-2")
	wantContains(t, "delete", out, `deleted "account-2": status deleted`)
	_, stderr = mustRun(t, env, 1, "streams", "read", "account-2")
	wantContains(t, "read deleted", stderr, "is deleted at version 5")
	out, _ = mustRun(t, env, 0, "streams", "delete", "--hard", "--yes", "account-2")
	wantContains(t, "hard delete", out, `hard-deleted "account-2": status hard_deleted, version 5, first version 6`)
	_, stderr = mustRun(t, env, 1, "streams", "restore", "account-2")
	wantContains(t, "restore a tombstone", stderr, "cannot be read, appended to or recreated")
	_, stderr = mustRun(t, env, 1, "streams", "delete", "--yes", "account-404")
	wantContains(t, "delete a missing stream", stderr, `stream "account-404": stream not found`)
}
