package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/chronicle-go/chronicle/migrations"
)

func migrateCommand() command {
	var (
		dbURL string
		yes   bool
	)
	return command{
		name:     "migrate",
		synopsis: "up | down --yes | version | force N | steps N  [--database-url URL]",
		summary:  "apply, revert or inspect the database schema",
		help: `Subcommands:

  up         apply every migration not yet applied and list them (a no-op
             when up to date)
  down --yes revert every migration: drops every Chronicle table and ALL
             EVENTS; without --yes it only says what it would drop
  version    print the applied schema version; exits 1 when the schema is dirty
  force N    record version N (-1: none applied, or a known migration) as
             applied and clear the dirty flag, without running any migration;
             use after repairing a failed migration by hand
  steps N    apply N migrations (N > 0) or revert -N migrations (N < 0)

The database URL comes from --database-url or DATABASE_URL. Connecting
gives up after 10 seconds unless the URL sets connect_timeout.`,
		flags: func(fs *flag.FlagSet) {
			databaseFlag(fs, &dbURL)
			fs.BoolVar(&yes, "yes", false, "confirm migrate down, which drops every event")
		},
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
			if yes && sub != "down" {
				return usagef("--yes only confirms migrate down")
			}
			u, err := databaseURL(env, dbURL)
			if err != nil {
				return err
			}
			m, err := migrations.Open(ctx, u)
			if err != nil {
				return redact(err, u)
			}
			defer m.Close(context.WithoutCancel(ctx))
			return explainDirty(op.run(ctx, env, m, migrateArgs{n: n, yes: yes}), u)
		},
	}
}

// migrateOp is one "chronicle migrate" subcommand.
type migrateOp struct {
	arg func(args []string) (int, error)
	run func(ctx context.Context, env *Env, m *migrations.Migrator, a migrateArgs) error
}

// migrateArgs are a subcommand's parsed arguments.
type migrateArgs struct {
	n   int  // force's version, steps' count
	yes bool // --yes: down is confirmed
}

var migrateOps = map[string]migrateOp{
	"up": {arg: noArg("up"), run: func(ctx context.Context, env *Env, m *migrations.Migrator, _ migrateArgs) error {
		applied, err := m.Up(ctx)
		printMigrations(env, "applied", applied)
		if err != nil {
			return err
		}
		if len(applied) == 0 {
			fmt.Fprint(env.Stdout, "nothing to apply: ")
		}
		return printVersion(ctx, env, m, "schema is up to date at version %d\n")
	}},
	"down": {arg: noArg("down"), run: func(ctx context.Context, env *Env, m *migrations.Migrator, a migrateArgs) error {
		if !a.yes {
			return refuseDown(ctx, m)
		}
		undone, err := m.Down(ctx)
		printMigrations(env, "reverted", undone)
		if err != nil {
			return err
		}
		if len(undone) == 0 {
			fmt.Fprintln(env.Stdout, "nothing to revert: no migration is applied")
			return nil
		}
		fmt.Fprintln(env.Stdout, "reverted every migration: Chronicle's tables and events are gone")
		return nil
	}},
	"version": {arg: noArg("version"), run: func(ctx context.Context, env *Env, m *migrations.Migrator, _ migrateArgs) error {
		v, dirty, err := m.Version(ctx)
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
	"force": {arg: intArg("force", -1), run: func(ctx context.Context, env *Env, m *migrations.Migrator, a migrateArgs) error {
		if err := m.Force(ctx, a.n); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "forced version %d; the schema is marked clean\n", a.n)
		return nil
	}},
	"steps": {arg: intArg("steps", 0), run: func(ctx context.Context, env *Env, m *migrations.Migrator, a migrateArgs) error {
		done, err := m.Steps(ctx, a.n)
		if a.n > 0 {
			printMigrations(env, "applied", done)
		} else {
			printMigrations(env, "reverted", done)
		}
		if err != nil {
			return err
		}
		return printVersion(ctx, env, m, "schema is at version %d\n")
	}},
}

// refuseDown says what migrate down would drop, and drops nothing.
func refuseDown(ctx context.Context, m *migrations.Migrator) error {
	v, _, err := m.Version(ctx)
	if err != nil {
		return err
	}
	var applied []string
	for _, mg := range slices.Backward(migrations.List()) {
		if mg.Version <= v {
			applied = append(applied, mg.String())
		}
	}
	if len(applied) == 0 {
		return errors.New("refusing migrate down without --yes (no migration is applied, so it would drop nothing)")
	}
	return fmt.Errorf("refusing migrate down without --yes: it would revert %d migrations (%s), "+
		"dropping every Chronicle table in schema %s with ALL EVENTS, snapshots, projection checkpoints and dead letters; "+
		"nothing was changed; run `chronicle migrate down --yes` to drop them",
		len(applied), strings.Join(applied, ", "), migrations.Schema)
}

func printMigrations(env *Env, verb string, list []migrations.Migration) {
	for _, mg := range list {
		fmt.Fprintf(env.Stdout, "%s %s\n", verb, mg)
	}
}

func printVersion(ctx context.Context, env *Env, m *migrations.Migrator, format string) error {
	v, _, err := m.Version(ctx)
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
		case minimum < 0 && n >= 0 && !slices.Contains(migrationVersions(), uint(n)):
			return 0, usagef("migrate %s: unknown version %d (known: -1, %s)", sub, n, joinVersions())
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
	var vs []uint
	for _, m := range migrations.List() {
		vs = append(vs, m.Version)
	}
	return vs
}

func joinVersions() string {
	var vs []string
	for _, v := range migrationVersions() {
		vs = append(vs, strconv.FormatUint(uint64(v), 10))
	}
	return strings.Join(vs, ", ")
}
