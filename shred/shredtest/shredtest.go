package shredtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/shred"
)

// Run runs the conformance suite against the key stores newStore returns.
// Each call of newStore must return an empty store (or one whose subjects
// no other test uses); the suite runs its subtests in parallel.
func Run(t *testing.T, newStore func(t *testing.T) shred.KeyStore) {
	t.Helper()
	t.Run("CreateAndRead", func(t *testing.T) { t.Parallel(); testCreateAndRead(t, newStore(t)) })
	t.Run("VersionExists", func(t *testing.T) { t.Parallel(); testVersionExists(t, newStore(t)) })
	t.Run("UnknownSubject", func(t *testing.T) { t.Parallel(); testUnknownSubject(t, newStore(t)) })
	t.Run("Forget", func(t *testing.T) { t.Parallel(); testForget(t, newStore(t)) })
	t.Run("ForgetRacesCreate", func(t *testing.T) { t.Parallel(); testForgetRacesCreate(t, newStore(t)) })
}

func newKey(subject string, version int) shred.Key {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return shred.Key{ID: hex.EncodeToString(b[:]), Subject: subject, Version: version, Wrapped: []byte("wrapped-" + hex.EncodeToString(b[:4]))}
}

func mustCreate(t *testing.T, ks shred.KeyStore, k shred.Key) shred.Key {
	t.Helper()
	got, err := ks.CreateKey(context.Background(), k)
	if err != nil {
		t.Fatalf("CreateKey(%s v%d): %v", k.Subject, k.Version, err)
	}
	return got
}

func testCreateAndRead(t *testing.T, ks shred.KeyStore) {
	ctx := context.Background()
	k1 := mustCreate(t, ks, newKey("alice", 1))
	if k1.CreatedAt.IsZero() {
		t.Error("CreateKey did not set CreatedAt")
	}
	k2 := mustCreate(t, ks, newKey("alice", 2))
	mustCreate(t, ks, newKey("bob", 1))

	cur, err := ks.CurrentKey(ctx, "alice")
	if err != nil {
		t.Fatalf("CurrentKey: %v", err)
	}
	if cur.ID != k2.ID || cur.Version != 2 || cur.Subject != "alice" || !bytes.Equal(cur.Wrapped, k2.Wrapped) {
		t.Errorf("CurrentKey = %+v, want %+v", cur, k2)
	}
	old, err := ks.Key(ctx, k1.ID)
	if err != nil {
		t.Fatalf("Key(v1): %v", err)
	}
	if old.ID != k1.ID || old.Version != 1 || old.Subject != "alice" || !bytes.Equal(old.Wrapped, k1.Wrapped) {
		t.Errorf("Key(v1) = %+v, want %+v", old, k1)
	}
	if _, err := ks.Key(ctx, "0123456789abcdef0123456789abcdef"); !errors.Is(err, shred.ErrKeyNotFound) {
		t.Errorf("Key(unknown) = %v, want ErrKeyNotFound", err)
	}
}

func testVersionExists(t *testing.T, ks shred.KeyStore) {
	mustCreate(t, ks, newKey("carol", 1))
	if _, err := ks.CreateKey(context.Background(), newKey("carol", 1)); !errors.Is(err, shred.ErrKeyExists) {
		t.Errorf("second version 1 = %v, want ErrKeyExists", err)
	}
	if _, err := ks.CreateKey(context.Background(), shred.Key{ID: newKey("", 0).ID, Subject: "", Version: 1, Wrapped: []byte{1}}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("empty subject = %v, want ErrInvalidInput", err)
	}
}

func testUnknownSubject(t *testing.T, ks shred.KeyStore) {
	ctx := context.Background()
	var se *shred.SubjectError
	if _, err := ks.CurrentKey(ctx, "nobody"); !errors.Is(err, shred.ErrUnknownSubject) || !errors.As(err, &se) || se.Subject != "nobody" {
		t.Errorf("CurrentKey(unknown) = %v, want a *SubjectError matching ErrUnknownSubject", err)
	}
	if err := ks.Forget(ctx, "nobody"); !errors.Is(err, shred.ErrUnknownSubject) {
		t.Errorf("Forget(unknown) = %v, want ErrUnknownSubject", err)
	}
}

func testForget(t *testing.T, ks shred.KeyStore) {
	ctx := context.Background()
	k1 := mustCreate(t, ks, newKey("dave", 1))
	k2 := mustCreate(t, ks, newKey("dave", 2))
	other := mustCreate(t, ks, newKey("erin", 1))
	if err := ks.Forget(ctx, "dave"); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	for _, k := range []shred.Key{k1, k2} {
		if _, err := ks.Key(ctx, k.ID); !errors.Is(err, shred.ErrKeyNotFound) {
			t.Errorf("Key(v%d) after forget = %v, want ErrKeyNotFound", k.Version, err)
		}
	}
	if _, err := ks.CurrentKey(ctx, "dave"); !errors.Is(err, shred.ErrSubjectForgotten) {
		t.Errorf("CurrentKey after forget = %v, want ErrSubjectForgotten", err)
	}
	if _, err := ks.CreateKey(ctx, newKey("dave", 3)); !errors.Is(err, shred.ErrSubjectForgotten) {
		t.Errorf("CreateKey after forget = %v, want ErrSubjectForgotten", err)
	}
	if err := ks.Forget(ctx, "dave"); err != nil {
		t.Errorf("second Forget = %v, want nil (a retried erasure succeeds)", err)
	}
	if _, err := ks.Key(ctx, other.ID); err != nil {
		t.Errorf("another subject's key after forget: %v", err)
	}
}

// testForgetRacesCreate creates keys for a subject from several goroutines
// while it is forgotten: afterwards, no key the store acknowledged may
// remain readable.
func testForgetRacesCreate(t *testing.T, ks shred.KeyStore) {
	ctx := context.Background()
	for round := range 5 {
		subject := fmt.Sprintf("race-%d", round)
		mustCreate(t, ks, newKey(subject, 1))
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			created []shred.Key
		)
		for w := range 4 {
			wg.Go(func() {
				for v := 2 + w*50; v < 2+w*50+20; v++ {
					k, err := ks.CreateKey(ctx, newKey(subject, v))
					if errors.Is(err, shred.ErrSubjectForgotten) {
						return
					}
					if err != nil {
						t.Errorf("CreateKey: %v", err)
						return
					}
					mu.Lock()
					created = append(created, k)
					mu.Unlock()
				}
			})
		}
		if err := ks.Forget(ctx, subject); err != nil {
			t.Fatalf("Forget: %v", err)
		}
		wg.Wait()
		for _, k := range created {
			if _, err := ks.Key(ctx, k.ID); !errors.Is(err, shred.ErrKeyNotFound) {
				t.Fatalf("key v%d of %s is readable after the forget returned (err %v)", k.Version, subject, err)
			}
		}
	}
}
