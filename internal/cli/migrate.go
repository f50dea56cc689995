package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/chronicle-go/chronicle/migrations"
)

func migrateCommand() command {
	var dbURL string
	return command{
		name:     "migrate",
		synopsis: "up | down | version | force N | steps N  [--database-url URL]",
		summary:  "apply, revert or inspect the database schema",
		help: `Subcommands:

  up         apply every migration not yet applied (a no-op when up to date)
  down       revert every migration: drops the chronicle schema and ALL EVENTS
  version    print the applied schema version; exits 1 when the schema is dirty
  force N    record version N as applied and clear the dirty flag, without
             running any migration (-1: none applied); use after repairing a
             failed migration by hand
  steps N    apply N migrations (N > 0) or revert -N migrations (N < 0)

The database URL comes from --database-url or DATABASE_URL. Connecting
gives up after 10 seconds unless the URL sets connect_timeout.`,
		flags: func(fs *flag.FlagSet) { databaseFlag(fs, &dbURL) },
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) == 0 {
				return usagef("missing subcommand")
			}
			sub, args := args[0], args[1:]
			op, ok := migrateOps[sub]
			if !ok {
				return usagef("unknown subcommand %q", sub)
			}
			n, err := op.arg(args)
			if err != nil {
				return err
			}
			u, err := databaseURL(env, dbURL)
			if err != nil {
				return err
			}
			return explainDirty(op.run(ctx, env, u, n), u)
		},
	}
}

// migrateOp is one "chronicle migrate" subcommand.
type migrateOp struct {
	arg func(args []string) (int, error)
	run func(ctx context.Context, env *Env, databaseURL string, n int) error
}

var migrateOps = map[string]migrateOp{
	"up": {arg: noArg("up"), run: func(ctx context.Context, env *Env, u string, _ int) error {
		if err := migrations.Up(ctx, u); err != nil {
			return err
		}
		return printVersion(ctx, env, u, "schema is up to date at version %d\n")
	}},
	"down": {arg: noArg("down"), run: func(ctx context.Context, env *Env, u string, _ int) error {
		if err := migrations.Down(ctx, u); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, "reverted every migration: the chronicle schema is gone")
		return nil
	}},
	"version": {arg: noArg("version"), run: func(ctx context.Context, env *Env, u string, _ int) error {
		v, dirty, err := migrations.Version(ctx, u)
		if err != nil {
			return err
		}
		if dirty {
			fmt.Fprintf(env.Stdout, "version %d (dirty)\n", v)
			return &migrations.DirtyError{Version: v}
		}
		fmt.Fprintf(env.Stdout, "version %d (latest %d)\n", v, migrations.Latest())
		return nil
	}},
	"force": {arg: intArg("force", -1), run: func(ctx context.Context, env *Env, u string, n int) error {
		if err := migrations.Force(ctx, u, n); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "forced version %d; the schema is marked clean\n", n)
		return nil
	}},
	"steps": {arg: intArg("steps", 0), run: func(ctx context.Context, env *Env, u string, n int) error {
		if err := migrations.Steps(ctx, u, n); err != nil {
			return err
		}
		return printVersion(ctx, env, u, "schema is at version %d\n")
	}},
}

func printVersion(ctx context.Context, env *Env, u, format string) error {
	v, _, err := migrations.Version(ctx, u)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, format, v)
	return nil
}

func noArg(sub string) func([]string) (int, error) {
	return func(args []string) (int, error) {
		if len(args) > 0 {
			return 0, usagef("migrate %s takes no arguments, got %q", sub, args[0])
		}
		return 0, nil
	}
}

// intArg parses the one integer argument of force (min -1) and steps
// (anything but 0, marked by min 0).
func intArg(sub string, minimum int) func([]string) (int, error) {
	return func(args []string) (int, error) {
		if len(args) != 1 {
			return 0, usagef("migrate %s takes one number", sub)
		}
		n, err := strconv.Atoi(args[0])
		switch {
		case err != nil:
			return 0, usagef("migrate %s: %q is not a number", sub, args[0])
		case minimum == 0 && n == 0:
			return 0, usagef("migrate steps: N must not be 0")
		case minimum < 0 && n < minimum:
			return 0, usagef("migrate %s: version must be -1 or more, got %d", sub, n)
		}
		return n, nil
	}
}

// explainDirty adds the way out to a dirty-schema error and removes the
// password from any error.
func explainDirty(err error, databaseURL string) error {
	var de *migrations.DirtyError
	if errors.As(err, &de) {
		return fmt.Errorf("%w\nto fix: repair the database by hand, then run `chronicle migrate force %d` if migration %d is fully applied, or `chronicle migrate force %d` with the previous version if it is not",
			err, de.Version, de.Version, previous(de.Version))
	}
	return redact(err, databaseURL)
}

// previous returns the embedded migration version just below v, or -1.
func previous(v uint) int {
	prev := -1
	for _, p := range migrationVersions() {
		if p < v && int(p) > prev {
			prev = int(p)
		}
	}
	return prev
}

// migrationVersions lists the versions of the embedded migrations.
func migrationVersions() []uint {
	entries, _ := fs.ReadDir(migrations.FS(), ".")
	var vs []uint
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".up.sql") {
			continue
		}
		var v uint
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil {
			vs = append(vs, v)
		}
	}
	return vs
}
