package console

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/shred"
)

type signedUp struct {
	UserID string `json:"user_id" chronicle:"subject"`
	Email  string `json:"email" chronicle:"personal"`
	Plan   string `json:"plan"`
}

// Sealed personal values show as [encrypted], then as [redacted] once
// their subject is forgotten; never as ciphertext or cleartext.
func TestSealedValuesMasked(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	keys, err := postgres.NewSubjectKeyStore(e.pool)
	if err != nil {
		t.Fatal(err)
	}
	e.console.cfg.SubjectKeys = keys // before the first request
	kek, err := shred.NewAESKeyEncryptionKey(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	shredder, err := shred.New(keys, &shred.Config{KeyEncryptionKey: kek})
	if err != nil {
		t.Fatal(err)
	}
	reg := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: shredder})
	eventstore.MustRegister[signedUp](reg, "SignedUp")
	ev, err := reg.EncodeContext(t.Context(), signedUp{UserID: "u-1", Email: "ada@example.com", Plan: "gold"})
	if err != nil {
		t.Fatal(err)
	}
	res := e.append("user-u-1", ev)
	e.waitForHead("the event", func(head eventstore.Position) bool { return head.Compare(res.Position) >= 0 })

	check := func(when, want string) {
		t.Helper()
		for _, path := range []string{"stream?id=user-u-1", "log"} {
			status, body := e.get(path)
			if status != http.StatusOK {
				t.Fatalf("GET %s: %d", path, status)
			}
			for _, bad := range []string{"ada@example.com", "enc:v1:"} {
				if strings.Contains(body, bad) {
					t.Errorf("%s, %s shows %q", when, path, bad)
				}
			}
			if !strings.Contains(body, want) || !strings.Contains(body, "gold") {
				t.Errorf("%s, %s does not show %s and the plain field", when, path, want)
			}
		}
	}
	check("before the forget", "[encrypted]")
	if err := shredder.Forget(t.Context(), "u-1"); err != nil {
		t.Fatal(err)
	}
	check("after the forget", "[redacted]")
}
