package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

// appGrants are the grants docs/postgres.md gives an application
// role. Keep the two in sync.
const appGrants = `
GRANT USAGE ON SCHEMA chronicle TO %[1]s;
GRANT SELECT, INSERT ON chronicle.events TO %[1]s;
GRANT SELECT, INSERT, UPDATE ON chronicle.streams TO %[1]s;`

// TestLeastPrivilegeRole runs the store as a role that has only the grants
// the documentation lists: appends, reads, LISTEN/NOTIFY and TailLag work,
// and events cannot be changed or deleted.
func TestLeastPrivilegeRole(t *testing.T) {
	t.Parallel()
	dbURL := postgrestest.DatabaseURL(t)
	admin := adminConn(t)
	ctx := t.Context()

	var b [6]byte
	_, _ = rand.Read(b[:])
	role := "chronicle_test_app_" + hex.EncodeToString(b[:]) // generated, never input
	password := hex.EncodeToString(b[:]) + "pw"
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD '"+password+"'"); err != nil {
		t.Fatal(err)
	}
	owner, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The test database is dropped by postgrestest; the role is
		// cluster-wide and must go too, once nothing in the database
		// refers to it.
		_, _ = owner.Exec(ctx, "DROP OWNED BY "+role)
		owner.Close(ctx)
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := admin.Exec(ctx, "DROP ROLE IF EXISTS "+role)
			if err == nil || time.Now().After(deadline) {
				if err != nil {
					t.Errorf("drop role: %v", err)
				}
				return
			}
			time.Sleep(50 * time.Millisecond) // its sessions are closing
		}
	})
	if _, err := owner.Exec(ctx, fmtGrants(role)); err != nil {
		t.Fatal(err)
	}

	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := newStoreOn(t, pool, &Config{PollInterval: time.Hour})

	ch := s.Watch(ctx)
	waitListener(t, pool, 1)
	requireWake(t, ch, "first connection") // not to be mistaken for the notification's
	other := newStoreOn(t, pool, &Config{PollOnly: true})
	evs := testEvents("E", 2)
	res, err := other.Append(ctx, "s", eventstore.NoStream, evs...)
	if err != nil {
		t.Fatalf("Append as the app role: %v", err)
	}
	requireWake(t, ch, "notification as the app role")
	if _, err := other.Append(ctx, "s", eventstore.NoStream, evs...); err != nil {
		t.Fatalf("idempotent retry as the app role: %v", err)
	}
	if _, err := other.Append(ctx, "s", eventstore.Exact(1), testEvents("E", 1)...); !errors.Is(err, eventstore.ErrConcurrencyConflict) {
		t.Fatalf("conflict as the app role: %v", err)
	}
	recs := readAllUntil(t, s, eventstore.Position{}, 2)
	if recs[1].Position != res.Position {
		t.Fatalf("ReadAll as the app role: %+v", recs)
	}
	if h, err := s.Head(ctx); err != nil || h != res.Position {
		t.Fatalf("Head as the app role = %s, %v", h, err)
	}
	if _, err := s.TailLag(ctx); err != nil {
		t.Fatalf("TailLag as the app role: %v", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendTx(ctx, tx, "t", eventstore.NoStream, testEvents("E", 1)...); err != nil {
		t.Fatalf("AppendTx as the app role: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// The log is append-only for this role.
	for _, sql := range []string{
		`UPDATE chronicle.events SET data = '{}'`,
		`DELETE FROM chronicle.events`,
		`TRUNCATE chronicle.events`,
	} {
		_, err := pool.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Fatalf("%s as the app role: %v, want insufficient_privilege", sql, err)
		}
	}
}

func fmtGrants(role string) string {
	return fmt.Sprintf(appGrants, role)
}
