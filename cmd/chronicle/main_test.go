package main_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestMain(m *testing.M) {
	os.Exit(postgrestest.ReportSkips(m).Run())
}

var emptyDatabases = mustEmptyTemplate()

func mustEmptyTemplate() *postgrestest.Template {
	tpl, err := postgrestest.New(&postgrestest.Config{
		Key:     "empty",
		Migrate: func(context.Context, string) error { return nil },
	})
	if err != nil {
		panic(err)
	}
	return tpl
}

// buildBinary builds the real chronicle binary.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "chronicle")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// chronicle runs the binary and returns its exit code and output.
func chronicle(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	return chronicleStdin(t, bin, env, "", args...)
}

// chronicleStdin runs the binary with stdin as its standard input.
func chronicleStdin(t *testing.T, bin string, env []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exitErr):
		return exitErr.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("run chronicle: %v", err)
	return 0, "", ""
}

func TestBinarySmoke(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)

	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := chronicle(t, bin, nil)
		if code != 2 || !strings.Contains(stderr, "Usage:") {
			t.Errorf("no arguments: exit %d, stderr %q; want 2 and the usage", code, stderr)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := chronicle(t, bin, []string{"DATABASE_URL="}, "migrate", "up", "--database-url", "postgres://x:secret-pw@127.0.0.1:1/none")
		if code != 1 || !strings.Contains(stderr, "chronicle migrate: connect to database") || stdout != "" {
			t.Errorf("unreachable database: exit %d, stdout %q, stderr %q; want 1 and a connect error", code, stdout, stderr)
		}
		if strings.Contains(stderr, "secret-pw") {
			t.Errorf("stderr leaks the password: %q", stderr)
		}
	})
	t.Run("migrate", func(t *testing.T) {
		t.Parallel()
		env := []string{"DATABASE_URL=" + emptyDatabases.DatabaseURL(t)}
		latest := fmt.Sprintf("version %d (latest %d)", migrations.Latest(), migrations.Latest())
		for _, step := range []struct {
			args     []string
			stdin    string
			wantCode int
			want     string
		}{
			{args: []string{"migrate", "up"}, want: fmt.Sprintf("schema is up to date at version %d", migrations.Latest())},
			{args: []string{"migrate", "version"}, want: latest},
			// "n" (or "y") piped in changes nothing: down never prompts.
			{args: []string{"migrate", "down"}, stdin: "n\n", wantCode: 1},
			{args: []string{"migrate", "down"}, stdin: "y\n", wantCode: 1},
			{args: []string{"migrate", "version"}, want: latest},
			{args: []string{"migrate", "down", "--yes"}, want: "reverted every migration"},
			{args: []string{"migrate", "version"}, want: "version 0"},
		} {
			code, stdout, stderr := chronicleStdin(t, bin, env, step.stdin, step.args...)
			if code != step.wantCode || !strings.Contains(stdout, step.want) {
				t.Fatalf("chronicle %s: exit %d, stdout %q, stderr %q; want %d and %q", strings.Join(step.args, " "), code, stdout, stderr, step.wantCode, step.want)
			}
		}
	})
}
