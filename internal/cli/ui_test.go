package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestUIArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"extra argument", []string{"ui", "now"}, 2, "ui takes no arguments"},
		{"listen without port", []string{"ui", "--listen", "127.0.0.1", "--database-url", "postgres://x@127.0.0.1/db"}, 2, `--listen "127.0.0.1" is not host:port`},
		{"no database", []string{"ui"}, 1, "no database url"},
		{"unreachable database", []string{"ui", "--database-url", "postgres://x:pw@127.0.0.1:1/none?connect_timeout=2"}, 1, "connect to database"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := run(t, nil, tc.args...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantStderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tc.wantCode, tc.wantStderr)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestUIServes starts `chronicle ui` on a free loopback port, loads the
// overview, checks the DNS-rebinding guard and stops it with ctx.
func TestUIServes(t *testing.T) {
	t.Parallel()
	db := postgrestest.DatabaseURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"ui", "--database-url", db, "--listen", "127.0.0.1:0"},
			&Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
	}()
	addr := regexp.MustCompile(`http://127\.0\.0\.1:\d+/`)
	var base string
	deadline := time.Now().Add(30 * time.Second)
	for base == "" {
		select {
		case code := <-done:
			t.Fatalf("chronicle ui exited %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("chronicle ui printed no address: %q %q", stdout.String(), stderr.String())
		}
		base = addr.FindString(stdout.String())
		time.Sleep(10 * time.Millisecond)
	}
	wantContains(t, "stdout", stdout.String(), "(read-only)")

	get := func(host string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(""); code != http.StatusOK || !strings.Contains(body, "<h1>Overview</h1>") {
		t.Fatalf("GET /: %d %s", code, body)
	}
	if code, _ := get("localhost:8080"); code != http.StatusOK {
		t.Fatalf("GET / as localhost: %d", code)
	}
	if code, _ := get("attacker.example"); code != http.StatusMisdirectedRequest {
		t.Fatalf("GET / with a foreign Host: %d, want 421", code)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("chronicle ui exited %d after interruption: %s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("chronicle ui did not stop")
	}
}

func TestUINATSUnreachable(t *testing.T) {
	t.Parallel()
	db := postgrestest.DatabaseURL(t)
	code, _, stderr := run(t, nil, "ui", "--database-url", db, "--listen", "127.0.0.1:0", "--nats", "nats://127.0.0.1:1")
	if code != 1 || !strings.Contains(stderr, "connect to nats") {
		t.Fatalf("exit %d, stderr %q; want 1 and a nats connection error", code, stderr)
	}
}
