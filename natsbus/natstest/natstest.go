// Package natstest gives tests a real NATS server with JetStream: the one
// named by CHRONICLE_TEST_NATS_URL (CI runs a standalone nats-server), or
// one embedded in the test process on a random loopback port with its own
// temporary store.
package natstest

import (
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EnvURL names the environment variable with the URL of a NATS server for
// tests.
const EnvURL = "CHRONICLE_TEST_NATS_URL"

// Server is an embedded NATS server with JetStream.
type Server struct {
	opts *server.Options
	mu   sync.Mutex
	srv  *server.Server
}

// Start starts an embedded server on a random loopback port, with its
// store in a temporary directory. It is shut down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := StartServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// StartServer starts an embedded server storing in dir. The caller shuts
// it down.
func StartServer(dir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: &server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	}}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	srv, err := server.NewServer(s.opts)
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("nats server on port %d not ready after 10s", s.opts.Port)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return nil
}

// URL is the server's client URL.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.opts.Port) }

// Shutdown stops the server.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart stops the server and starts it again on the same port and
// store, as a server restart in production would.
func (s *Server) Restart(t testing.TB, down time.Duration) {
	t.Helper()
	s.Shutdown()
	time.Sleep(down)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// URL returns the URL of a NATS server shared by the tests of the process:
// CHRONICLE_TEST_NATS_URL when set, otherwise an embedded server started
// on first use. Tests sharing it must use their own stream names.
func URL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "chronicle-nats-")
		if err != nil {
			shared.err = err
			return
		}
		shared.srv, shared.err = StartServer(dir)
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.srv.URL()
}

// Stop shuts the shared embedded server down, if one was started; call it
// from TestMain after the tests ran.
func Stop() {
	if shared.srv != nil {
		shared.srv.Shutdown()
		_ = os.RemoveAll(shared.srv.opts.StoreDir)
	}
}

// PrivateURL returns CHRONICLE_TEST_NATS_URL when set, otherwise the URL
// of an embedded server of the test's own, shut down when the test ends
// (for packages that check for leaked goroutines).
func PrivateURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return Start(t).URL()
}
