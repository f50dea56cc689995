package cli

import (
	"bytes"
	"context"
	"flag"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(postgrestest.ReportSkips(m))
}

// run runs Main with buffers and the given environment.
func run(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &Env{
		Stdout: &out,
		Stderr: &errOut,
		Getenv: func(k string) string { return env[k] },
	})
	return code, out.String(), errOut.String()
}

func TestArguments(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-pw"
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{name: "no arguments", wantCode: 2, wantStderr: []string{"Usage:", "migrate", "streams", "bench"}},
		{name: "help", args: []string{"help"}, wantStdout: []string{"Usage:", "migrate", "help <command>"}},
		{name: "--help", args: []string{"--help"}, wantStdout: []string{"Usage:"}},
		{name: "help migrate", args: []string{"help", "migrate"}, wantStdout: []string{"chronicle migrate up | down", "force N", "-database-url", "DATABASE_URL"}},
		{name: "help unknown", args: []string{"help", "nope"}, wantCode: 2, wantStderr: []string{`unknown command "nope"`}},
		{name: "migrate -h", args: []string{"migrate", "-h"}, wantStdout: []string{"Usage: chronicle migrate"}},
		{name: "unknown command", args: []string{"migrat"}, wantCode: 2, wantStderr: []string{`unknown command "migrat"`, "Commands:"}},
		{name: "version", args: []string{"version"}, wantStdout: []string{"chronicle ", "schema version"}},
		{name: "--version", args: []string{"--version"}, wantStdout: []string{"schema version"}},
		{name: "version extra", args: []string{"version", "x"}, wantCode: 2, wantStderr: []string{"no arguments"}},

		{name: "migrate alone", args: []string{"migrate"}, wantCode: 2, wantStderr: []string{"missing subcommand", "Usage: chronicle migrate"}},
		{name: "migrate unknown", args: []string{"migrate", "sideways"}, wantCode: 2, wantStderr: []string{`unknown subcommand "sideways"`}},
		{name: "migrate up extra", args: []string{"migrate", "up", "now"}, wantCode: 2, wantStderr: []string{"takes no arguments"}},
		{name: "migrate force missing", args: []string{"migrate", "force"}, wantCode: 2, wantStderr: []string{"one number"}},
		{name: "migrate force nan", args: []string{"migrate", "force", "one"}, wantCode: 2, wantStderr: []string{`"one" is not a number`}},
		{name: "migrate force -2", args: []string{"migrate", "force", "-2"}, wantCode: 2, wantStderr: []string{"-1 or more"}},
		{name: "migrate steps 0", args: []string{"migrate", "steps", "0"}, wantCode: 2, wantStderr: []string{"must not be 0"}},
		{name: "streams list with an argument", args: []string{"streams", "list", "x"}, wantCode: 2, wantStderr: []string{"takes no arguments"}},
		{name: "streams list negative limit", args: []string{"streams", "list", "--limit", "-1"}, wantCode: 2, wantStderr: []string{"limit"}},
		{name: "streams list --backward", args: []string{"streams", "list", "--backward"}, wantCode: 2, wantStderr: []string{"flags of streams read"}},
		{name: "streams read --prefix", args: []string{"streams", "read", "s", "--prefix", "a"}, wantCode: 2, wantStderr: []string{"flags of streams list"}},
		{name: "migrate force unknown", args: []string{"migrate", "force", "99"}, wantCode: 2, wantStderr: []string{"unknown version 99", "known: -1, 1"}},
		{name: "migrate force 0", args: []string{"migrate", "force", "0"}, wantCode: 2, wantStderr: []string{"unknown version 0"}},
		{name: "migrate up --yes", args: []string{"migrate", "up", "--yes"}, wantCode: 2, wantStderr: []string{"--yes only confirms migrate down"}},
		{name: "help version", args: []string{"help", "version"}, wantStdout: []string{"--database-url", "schema version applied"}},
		{name: "version bad url", args: []string{"version", "--database-url", "mysql://x"}, wantCode: 1, wantStderr: []string{`scheme "mysql"`}},
		{name: "unknown flag", args: []string{"migrate", "--databse-url", "x", "up"}, wantCode: 2, wantStderr: []string{"flag provided but not defined: -databse-url"}},
		{name: "flag without value", args: []string{"migrate", "up", "--database-url"}, wantCode: 2, wantStderr: []string{"flag needs an argument"}},

		{name: "no url", args: []string{"migrate", "up"}, wantCode: 1, wantStderr: []string{"chronicle migrate: no database url: pass --database-url or set DATABASE_URL"}},
		{name: "wrong scheme flag", args: []string{"migrate", "up", "--database-url", "mysql://root:" + secret + "@h/db"}, wantCode: 1, wantStderr: []string{`invalid database url: scheme "mysql"`}},
		{name: "wrong scheme env", env: map[string]string{"DATABASE_URL": "mysql://root:" + secret + "@h/db"}, args: []string{"migrate", "version"}, wantCode: 1, wantStderr: []string{`scheme "mysql"`}},
		{name: "garbage url", args: []string{"migrate", "up", "--database-url", secret + " not a url"}, wantCode: 1, wantStderr: []string{"invalid database url"}},
		{name: "bad url syntax", args: []string{"migrate", "up", "--database-url", "postgres://u:" + secret + "@[::1/db"}, wantCode: 1, wantStderr: []string{"invalid database url"}},
		{name: "no host", args: []string{"migrate", "up", "--database-url", "postgres://u:" + secret + "@/db"}, wantCode: 1, wantStderr: []string{"no host"}},
		{name: "unreachable", args: []string{"migrate", "up", "--database-url", "postgres://u:" + secret + "@127.0.0.1:1/db?sslmode=disable"}, wantCode: 1, wantStderr: []string{"chronicle migrate: connect to database", "127.0.0.1:1"}},
		{name: "flag beats env", env: map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:1/db"}, args: []string{"migrate", "version", "--database-url", "mysql://h/db"}, wantCode: 1, wantStderr: []string{`scheme "mysql"`}},

		{name: "bench extra", args: []string{"bench", "now"}, wantCode: 2, wantStderr: []string{"takes no arguments"}},
		{name: "bench unknown workload", args: []string{"bench", "--workloads", "append-1,append-2"}, wantCode: 2, wantStderr: []string{`unknown workload "append-2"`, "catch-up"}},
		{name: "bench negative", args: []string{"bench", "--runs=-1"}, wantCode: 2, wantStderr: []string{"must not be negative"}},
		{name: "bench no url", args: []string{"bench"}, wantCode: 1, wantStderr: []string{"no database url: pass --dsn or set DATABASE_URL", "create databases"}},
		{name: "bench disagree", args: []string{"bench", "--dsn", "postgres://a/b", "--database-url", "postgres://c/d"}, wantCode: 2, wantStderr: []string{"disagree"}},
		{name: "bench unreachable", args: []string{"bench", "--quick", "--dsn", "postgres://u:" + secret + "@127.0.0.1:1/db?sslmode=disable"}, wantCode: 1, wantStderr: []string{"chronicle bench: connect to database"}},
		{name: "streams alone", args: []string{"streams"}, wantCode: 2, wantStderr: []string{"missing subcommand"}},
		{name: "streams read no id", args: []string{"streams", "read"}, wantCode: 2, wantStderr: []string{"one stream id"}},
		{name: "streams head extra", args: []string{"streams", "head", "x"}, wantCode: 2, wantStderr: []string{"takes no arguments"}},
		{name: "streams read negative", args: []string{"streams", "read", "a", "--from=-3"}, wantCode: 2, wantStderr: []string{"must not be negative"}},
		{name: "streams read no url", args: []string{"streams", "read", "account-1"}, wantCode: 1, wantStderr: []string{"no database url"}},
		{name: "streams unreachable", args: []string{"streams", "head", "--database-url", "postgres://u:" + secret + "@127.0.0.1:1/db?sslmode=disable"}, wantCode: 1, wantStderr: []string{"connect to database"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := run(t, tt.env, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout does not contain %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, stderr)
				}
			}
			if tt.wantCode == 0 && stderr != "" {
				t.Errorf("stderr on success: %s", stderr)
			}
			if tt.wantCode != 0 && stdout != "" {
				t.Errorf("stdout on failure: %s", stdout)
			}
			if strings.Contains(stdout+stderr, secret) {
				t.Errorf("output leaks the password:\n%s%s", stdout, stderr)
			}
			if tt.wantCode == 1 {
				first, _, _ := strings.Cut(stderr, "\n")
				_, msg, _ := strings.Cut(first, ": ")
				if msg == "" || msg[:1] != strings.ToLower(msg[:1]) {
					t.Errorf("error message is not of the form \"chronicle verb: lowercase message\": %q", first)
				}
			}
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantPos  []string
		wantURL  string
		wantFlag bool
		wantErr  bool
	}{
		{args: nil, wantPos: nil},
		{args: []string{"up"}, wantPos: []string{"up"}},
		{args: []string{"--database-url", "u", "up"}, wantPos: []string{"up"}, wantURL: "u"},
		{args: []string{"up", "--database-url", "u"}, wantPos: []string{"up"}, wantURL: "u"},
		{args: []string{"up", "-database-url=u", "-v"}, wantPos: []string{"up"}, wantURL: "u", wantFlag: true},
		{args: []string{"steps", "-1", "--database-url", "u"}, wantPos: []string{"steps", "-1"}, wantURL: "u"},
		{args: []string{"--database-url", "u", "force", "-1"}, wantPos: []string{"force", "-1"}, wantURL: "u"},
		{args: []string{"read", "--", "-v", "--database-url"}, wantPos: []string{"read", "-v", "--database-url"}},
		{args: []string{"-1", "-12"}, wantPos: []string{"-1", "-12"}},
		{args: []string{"--nope"}, wantErr: true},
		{args: []string{"x", "--database-url"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(&bytes.Buffer{})
			u := fs.String("database-url", "", "")
			v := fs.Bool("v", false, "")
			pos, err := parseInterspersed(fs, tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if !slices.Equal(pos, tt.wantPos) || *u != tt.wantURL || *v != tt.wantFlag {
				t.Errorf("got %q url=%q v=%v, want %q url=%q v=%v", pos, *u, *v, tt.wantPos, tt.wantURL, tt.wantFlag)
			}
		})
	}
}

// TestCommandTable checks the command list is usable: unique names, a
// summary, a synopsis where the command takes arguments.
func TestCommandTable(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, c := range commands() {
		if c.name == "" || c.summary == "" || c.run == nil {
			t.Errorf("command %+v lacks a name, summary or run", c.name)
		}
		if seen[c.name] {
			t.Errorf("command %q listed twice", c.name)
		}
		seen[c.name] = true
		code, stdout, _ := run(t, nil, "help", c.name)
		if code != 0 || !strings.Contains(stdout, "Usage: chronicle "+c.name) {
			t.Errorf("help %s: exit %d, output %q", c.name, code, stdout)
		}
	}
}
