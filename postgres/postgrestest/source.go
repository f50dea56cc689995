package postgrestest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

// Environment variables read by this package.
const (
	// EnvDatabaseURL names the variable holding the URL of a PostgreSQL
	// server to use instead of a container, e.g.
	// postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable.
	// The role needs CREATEDB (a superuser is simplest).
	EnvDatabaseURL = "CHRONICLE_TEST_DATABASE_URL"
	// EnvImage names the variable holding the container image to start when
	// EnvDatabaseURL is not set. The image must behave like the official
	// postgres image (POSTGRES_PASSWORD, "database system is ready to accept
	// connections" logged twice on first start).
	EnvImage = "CHRONICLE_TEST_POSTGRES_IMAGE"
	// EnvCI names the variable that, when true, turns "no PostgreSQL
	// available" from a skip into a test failure.
	EnvCI = "CI"
)

// DefaultImage is the image started when [EnvImage] is not set.
const DefaultImage = "postgres:15-alpine"

// Timeouts. Docker discovery must be quick so that machines without Docker
// skip at once; the container start includes pulling the image.
const (
	dockerProbeTimeout = 5 * time.Second
	containerTimeout   = 3 * time.Minute
)

// source is where the PostgreSQL server comes from, as decided by
// [chooseSource].
type source int

const (
	sourceEnv       source = iota + 1 // EnvDatabaseURL
	sourceContainer                   // a testcontainers container
	sourceSkip                        // nothing available: skip the test
	sourceFail                        // nothing available and CI: fail the test
)

func (s source) String() string {
	switch s {
	case sourceEnv:
		return "env"
	case sourceContainer:
		return "container"
	case sourceSkip:
		return "skip"
	case sourceFail:
		return "fail"
	}
	return "source(" + strconv.Itoa(int(s)) + ")"
}

// noPostgres is the reason given when no PostgreSQL is available.
const noPostgres = "no PostgreSQL: set " + EnvDatabaseURL + " or start Docker"

// chooseSource decides where the server comes from. probeDocker is called
// only when envURL is empty; it reports why Docker cannot be used, or nil.
// The returned reason explains a skip or failure.
func chooseSource(envURL string, ci bool, probeDocker func() error) (source, string) {
	if envURL != "" {
		return sourceEnv, ""
	}
	err := probeDocker()
	if err == nil {
		return sourceContainer, ""
	}
	reason := fmt.Sprintf("%s (%v)", noPostgres, err)
	if ci {
		return sourceFail, reason + "; " + EnvCI + "=true, so this is a failure, not a skip"
	}
	return sourceSkip, reason
}

// isCI reports whether the CI variable is set to a true value.
func isCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv(EnvCI))
	return ci
}

// server is the process-wide PostgreSQL server: found once, shared by
// every test of the process.
type server struct {
	once     sync.Once
	adminURL string // the maintenance database, superuser
	src      source
	reason   string // why src is sourceSkip or sourceFail
	err      error  // the server was expected but could not be reached
}

var theServer server

// get returns the admin URL, skipping or failing t as the environment says.
func (s *server) get(t interface {
	Helper()
	Skip(...any)
	Fatal(...any)
}) string {
	t.Helper()
	s.once.Do(s.init)
	switch {
	case s.src == sourceSkip:
		skips.add(s.reason)
		t.Skip(s.reason)
	case s.src == sourceFail:
		t.Fatal(s.reason)
	case s.err != nil && s.src == sourceContainer && !isCI():
		// Docker answers but cannot run the image (not pulled, no
		// registry): outside CI that is a machine without PostgreSQL.
		reason := s.err.Error() + " (skipped: " + EnvCI + " is not true)"
		skips.add(reason)
		t.Skip(reason)
	case s.err != nil:
		t.Fatal(s.err)
	}
	return s.adminURL
}

func (s *server) init() {
	envURL := os.Getenv(EnvDatabaseURL)
	s.src, s.reason = chooseSource(envURL, isCI(), probeDocker)
	switch s.src {
	case sourceEnv:
		s.adminURL, s.err = checkURL(envURL)
		if s.err != nil {
			s.err = fmt.Errorf("postgrestest: %s: %w", EnvDatabaseURL, s.err)
		}
	case sourceContainer:
		s.adminURL, s.err = startContainer()
	}
}

// checkURL accepts postgres:// URLs only: database names are swapped in
// the URL's path.
func checkURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("invalid url: want postgres://user:password@host:port/database")
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", fmt.Errorf("invalid url: scheme %q, want postgres://", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("invalid url: no host")
	}
	return u.String(), nil
}

// probeDocker reports whether a Docker daemon answers, quickly. The
// discovery in testcontainers may panic; that counts as no Docker.
func probeDocker() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), dockerProbeTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("%v", r)
			}
		}()
		// NewDockerClientWithOpts finds the daemon and asks for its info.
		cli, err := testcontainers.NewDockerClientWithOpts(ctx)
		if err == nil {
			cli.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		return dockerUnreachable(os.Getenv("DOCKER_HOST"), fileExists, firstLine(err))
	case <-ctx.Done():
		return errors.New("docker daemon not reachable: no answer within " + dockerProbeTimeout.String())
	}
}

// defaultDockerSocket is where a Docker daemon listens when DOCKER_HOST is
// not set.
const defaultDockerSocket = "/var/run/docker.sock"

// dockerUnreachable explains why no Docker daemon answered, naming the
// real cause. testcontainers tries every known location and reports only
// the last one it tried (rootless Docker), which misleads when the daemon
// is simply not running.
func dockerUnreachable(dockerHost string, exists func(string) bool, err error) error {
	switch {
	case dockerHost != "":
		return fmt.Errorf("docker daemon not reachable at DOCKER_HOST=%s: %v", dockerHost, err)
	case !exists(defaultDockerSocket):
		return errors.New("docker daemon not reachable: it is not running (no socket at " + defaultDockerSocket + ") and DOCKER_HOST is not set")
	}
	msg := err.Error()
	if strings.Contains(msg, "rootless Docker not found") {
		msg = "no answer on unix://" + defaultDockerSocket
	}
	return errors.New("docker daemon not reachable: " + msg)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// firstLine shortens testcontainers' multi-line discovery errors.
func firstLine(err error) error {
	if err == nil {
		return nil
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return errors.New(msg)
}

// startContainer starts (or, within one go test run, reuses) the
// PostgreSQL container and returns its admin URL.
func startContainer() (string, error) {
	image := os.Getenv(EnvImage)
	if image == "" {
		image = DefaultImage
	}
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	ctr, err := tcpostgres.Run(ctx, image,
		testcontainers.WithLogger(quietLogger{}),
		testcontainers.WithReuseByName(containerName(image)),
		testcontainers.WithCmd("postgres",
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "max_connections=500",
		),
		testcontainers.WithTmpfs(map[string]string{"/var/lib/postgresql/data": "rw"}),
		tcpostgres.BasicWaitStrategies(),
	)
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "reaper") {
			hint = " (the Ryuk reaper could not start: set TESTCONTAINERS_RYUK_DISABLED=true where its image cannot be pulled)"
		}
		return "", fmt.Errorf("postgrestest: start container from image %s%s (set %s to use another image, or %s to use a running server): %w",
			image, hint, EnvImage, EnvDatabaseURL, err)
	}
	u, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		return "", fmt.Errorf("postgrestest: container address: %w", err)
	}
	// The container is not terminated by this process: other test
	// processes of the same run may be using it. Ryuk removes it when the
	// run ends; with Ryuk disabled it stays and the next run reuses it.
	return u, nil
}

// containerName names the shared container. All test processes of one
// `go test` run (one testcontainers session) share it. When Ryuk is
// disabled nothing removes containers, so the name is stable across runs
// and the next run reuses the container instead of leaving one per run.
// With Ryuk enabled the name includes the session, because Ryuk removes
// the container when the session that created it ends, even while another
// session still uses it.
func containerName(image string) string {
	h := sha256.Sum256([]byte(image))
	name := "chronicle-postgrestest-" + hex.EncodeToString(h[:4])
	if disabled, _ := strconv.ParseBool(os.Getenv("TESTCONTAINERS_RYUK_DISABLED")); !disabled {
		name += "-" + testcontainers.SessionID()[:12]
	}
	return name
}

// quietLogger drops testcontainers' progress logs, which would otherwise be
// printed to stderr of every test binary.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
