package cli

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/shred"
)

type customerRegistered struct {
	eventstore.Redactions
	CustomerID string `json:"customer_id" chronicle:"subject"`
	Email      string `json:"email" chronicle:"personal"`
	Plan       string `json:"plan"`
}

type customer struct {
	aggregate.Base
	Email, Plan string
	Redacted    bool
}

func (c *customer) Apply(event any) error {
	e, ok := event.(customerRegistered)
	if !ok {
		return aggregate.Unhandled(event)
	}
	c.Email, c.Plan, c.Redacted = e.Email, e.Plan, e.IsRedacted()
	return nil
}

var testMasterKey = bytes.Repeat([]byte{9}, 32)

// TestSubjectsEndToEnd stores personal data on PostgreSQL, forgets a
// subject with the CLI, and checks the CLI's output and the application's
// reads (through a second key store instance whose cache must let go of
// the forgotten key within its TTL).
func TestSubjectsEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := postgrestest.DatabaseURL(t)
	pool, err := openPool(ctx, db, 4, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Config{PollOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	keys, err := postgres.NewSubjectKeyStore(pool)
	if err != nil {
		t.Fatal(err)
	}
	kek, err := shred.NewAESKeyEncryptionKey(testMasterKey)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 200 * time.Millisecond
	shredder, err := shred.New(keys, &shred.Config{KeyEncryptionKey: kek, CacheTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	reg := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: shredder})
	eventstore.MustRegister[customerRegistered](reg, "CustomerRegistered")
	customers, err := aggregate.NewRepository[customer](store, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []customerRegistered{{CustomerID: "ada", Email: "ada@example.com", Plan: "gold"}, {CustomerID: "bob", Email: "bob@example.com", Plan: "free"}} {
		c := customers.New("customer-" + e.CustomerID)
		if err := aggregate.Record(c, e); err != nil {
			t.Fatal(err)
		}
		if _, err := customers.Save(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// A retried append re-encodes: the same bytes, an idempotent no-op.
	retryID := eventstore.NewEventID()
	for attempt := range 2 {
		ev, err := reg.EncodeContext(ctx, customerRegistered{CustomerID: "bob", Email: "bob@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		ev.ID = retryID
		if _, err := store.Append(ctx, "customer-bob-retried", eventstore.NoStream, ev); err != nil {
			t.Fatalf("append attempt %d: %v", attempt+1, err)
		}
	}
	if c, err := customers.Load(ctx, "customer-ada"); err != nil || c.Email != "ada@example.com" { // caches ada's key
		t.Fatalf("load before the forget: %+v, %v", c, err)
	}
	noCleartext := func(what, out string) {
		t.Helper()
		for _, c := range []string{"ada@example.com", "bob@example.com", "enc:v1:"} {
			if strings.Contains(out, c) {
				t.Errorf("%s shows %q:\n%s", what, c, out)
			}
		}
	}
	env := map[string]string{"DATABASE_URL": db}

	out, _ := mustRun(t, env, 0, "streams", "read", "customer-ada")
	noCleartext("streams read", out)
	wantContains(t, "streams read before the forget", out, `"email":"[encrypted]"`)
	wantContains(t, "streams read before the forget", out, `"plan":"gold"`)

	_, stderr := mustRun(t, env, 1, "subjects", "forget", "ada")
	wantContains(t, "forget without --yes", stderr, "refusing to forget")
	if c, err := customers.Load(ctx, "customer-ada"); err != nil || c.Email != "ada@example.com" {
		t.Fatalf("a refused forget changed something: %+v, %v", c, err)
	}

	out, _ = mustRun(t, env, 0, "subjects", "forget", "ada", "--yes")
	wantContains(t, "forget", out, `forgot subject "ada"`)
	forgotAt := time.Now()

	for _, args := range [][]string{{"streams", "read", "customer-ada"}, {"streams", "read", "customer-ada", "--json"}} {
		out, _ = mustRun(t, env, 0, args...)
		noCleartext(strings.Join(args, " "), out)
		wantContains(t, strings.Join(args, " "), out, `"email":"[redacted]"`)
		wantContains(t, strings.Join(args, " "), out, `"plan":"gold"`)
	}
	out, _ = mustRun(t, env, 0, "streams", "read", "customer-bob")
	wantContains(t, "bob after ada's forget", out, `"email":"[encrypted]"`)
	out, _ = mustRun(t, env, 0, "streams", "list")
	noCleartext("streams list", out)
	wantContains(t, "streams list", out, "customer-ada")

	// The application's Shredder did not forget: it may serve its cached
	// key for up to its TTL, never longer.
	time.Sleep(time.Until(forgotAt.Add(ttl + 10*time.Millisecond)))
	c, err := customers.Load(ctx, "customer-ada")
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != 1 || c.Email != "" || c.Plan != "gold" || !c.Redacted {
		t.Errorf("load after the forget and the TTL: %+v (version %d)", c, c.Version())
	}
	if c, err := customers.Load(ctx, "customer-bob"); err != nil || c.Email != "bob@example.com" {
		t.Errorf("bob after ada's forget: %+v, %v", c, err)
	}
	c = customers.New("customer-ada-2")
	_ = aggregate.Record(c, customerRegistered{CustomerID: "ada", Email: "ada@new.example"})
	if _, err := customers.Save(ctx, c); !errors.Is(err, shred.ErrSubjectForgotten) {
		t.Errorf("save personal data of the forgotten subject = %v, want ErrSubjectForgotten", err)
	}

	// Bad input.
	out, _ = mustRun(t, env, 0, "subjects", "forget", "ada", "--yes")
	wantContains(t, "second forget", out, `forgot subject "ada"`)
	_, stderr = mustRun(t, env, 1, "subjects", "forget", "nobody", "--yes")
	wantContains(t, "forget unknown", stderr, `unknown subject "nobody"`)
	_, stderr = mustRun(t, env, 2, "subjects", "forget")
	wantContains(t, "forget without a subject", stderr, "takes one subject id")
	_, stderr = mustRun(t, env, 2, "subjects", "erase", "ada")
	wantContains(t, "unknown subcommand", stderr, `unknown subcommand "erase"`)

	// Rotation.
	_, stderr = mustRun(t, env, 1, "subjects", "rotate", "bob")
	wantContains(t, "rotate without a master key", stderr, masterKeyEnv)
	env[masterKeyEnv] = base64.StdEncoding.EncodeToString(testMasterKey)
	out, _ = mustRun(t, env, 0, "subjects", "rotate", "bob")
	wantContains(t, "rotate", out, `subject "bob": new key version 2`)
	_, stderr = mustRun(t, env, 1, "subjects", "rotate", "ada")
	wantContains(t, "rotate forgotten", stderr, `subject "ada" is forgotten`)
	if k, err := keys.CurrentKey(ctx, "bob"); err != nil || k.Version != 2 {
		t.Fatalf("bob's current key after rotate: %+v, %v", k, err)
	}
	time.Sleep(ttl + 10*time.Millisecond) // the application picks the new version up within its TTL
	c = customers.New("customer-bob-2")
	_ = aggregate.Record(c, customerRegistered{CustomerID: "bob", Email: "bob@new.example"})
	if _, err := customers.Save(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"customer-bob", "customer-bob-2"} {
		if c, err := customers.Load(ctx, id); err != nil || !strings.HasPrefix(c.Email, "bob@") {
			t.Errorf("%s after the rotation: %+v, %v", id, c, err)
		}
	}
	recs, err := store.ReadStream(ctx, "customer-bob-2", eventstore.ReadStreamOptions{})
	if err != nil || len(recs) != 1 {
		t.Fatal(recs, err)
	}
	k2, _ := keys.CurrentKey(ctx, "bob")
	if !bytes.Contains(recs[0].Data, []byte(k2.ID)) {
		t.Errorf("an event saved after the rotation is not sealed with version 2: %s", recs[0].Data)
	}
}
