package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/chronicle-go/chronicle/migrations"
)

// Exit codes returned by [Main].
const (
	exitOK    = 0 // success
	exitError = 1 // the command ran and failed
	exitUsage = 2 // bad arguments: nothing was done
)

// Env is what a command may touch of the outside world. [Main] gets it from
// its caller, so tests run commands with buffers and a fake environment.
type Env struct {
	// Stdout receives a command's results.
	Stdout io.Writer
	// Stderr receives errors, usage text and progress.
	Stderr io.Writer
	// Getenv reads an environment variable (os.Getenv in the real program).
	Getenv func(string) string
}

// command is one verb of the chronicle program.
type command struct {
	// name is the verb, e.g. "migrate".
	name string
	// synopsis is the argument summary printed after the name, e.g.
	// "up | down | version | force N | steps N".
	synopsis string
	// summary is a one-line description for the command list.
	summary string
	// help is the full help text printed by "chronicle help name" and on a
	// usage error, after the synopsis. Flags are appended from flags.
	help string
	// flags declares the command's flags on fs; it may be nil. run gets
	// the values through the closure.
	flags func(fs *flag.FlagSet)
	// run executes the command with the positional arguments left after
	// flag parsing. A *usageError prints the command's usage and exits 2.
	run func(ctx context.Context, env *Env, args []string) error
}

// commands lists every verb, in the order of the help text. To add a verb,
// write a function returning a command in your own file and add one line
// here.
func commands() []command {
	return []command{
		migrateCommand(),
		streamsCommand(),
		projectionsCommand(),
		busCommand(),
		subjectsCommand(),
		doctorCommand(),
		uiCommand(),
		benchCommand(),
		versionCommand(),
		helpCommand(),
	}
}

// usageError reports bad arguments: the command's usage follows the message.
type usageError struct {
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// Main runs the chronicle program with args (without the program name) and
// returns the process exit code: 0 on success, 1 when the command failed,
// 2 on a usage error.
func Main(ctx context.Context, args []string, env *Env) int {
	if len(args) == 0 {
		printUsage(env.Stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		printUsage(env.Stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	cmd, ok := lookup(name)
	if !ok {
		fmt.Fprintf(env.Stderr, "chronicle: unknown command %q\n\n", name)
		printUsage(env.Stderr)
		return exitUsage
	}
	return runCommand(ctx, cmd, args[1:], env)
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func runCommand(ctx context.Context, cmd command, args []string, env *Env) int {
	fs := flag.NewFlagSet("chronicle "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printCommandUsage(env.Stdout, cmd)
		return exitOK
	}
	if err == nil {
		err = cmd.run(ctx, env, positional)
	}
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue) || isFlagError(err):
		fmt.Fprintf(env.Stderr, "chronicle %s: %v\n\n", cmd.name, err)
		printCommandUsage(env.Stderr, cmd)
		return exitUsage
	default:
		fmt.Fprintf(env.Stderr, "chronicle %s: %v\n", cmd.name, err)
		return exitError
	}
}

// flagError marks errors from flag parsing, which are usage errors.
type flagError struct{ err error }

func (e *flagError) Error() string { return e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

func isFlagError(err error) bool {
	var fe *flagError
	return errors.As(err, &fe)
}

// parseInterspersed parses flags anywhere among the arguments, so that
// "migrate up --database-url X" works like "migrate --database-url X up".
// Negative numbers are arguments, not flags ("migrate steps -1"). A "--"
// ends flag parsing.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for len(args) > 0 {
		if isNegativeNumber(args[0]) {
			positional = append(positional, args[0])
			args = args[1:]
			continue
		}
		// Hide the next negative number from fs.Parse.
		end := len(args)
		for i, a := range args {
			if a == "--" {
				break
			}
			if isNegativeNumber(a) {
				end = i
				break
			}
		}
		if err := fs.Parse(args[:end]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &flagError{err: err}
		}
		rest := fs.Args()
		consumed := end - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			// fs.Parse stopped after "--": everything else is positional.
			return append(positional, args[consumed:]...), nil
		}
		if len(rest) > 0 {
			positional = append(positional, rest[0])
			consumed++
		}
		args = args[consumed:]
	}
	return positional, nil
}

func isNegativeNumber(s string) bool {
	if len(s) < 2 || s[0] != '-' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func printUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("chronicle manages a Chronicle event store in PostgreSQL.\n\nUsage:\n\n  chronicle <command> [arguments]\n\nCommands:\n\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-12s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun \"chronicle help <command>\" for a command's arguments and flags.\n")
	b.WriteString("Commands that use a database take --database-url or the DATABASE_URL environment variable.\n")
	io.WriteString(w, b.String())
}

func printCommandUsage(w io.Writer, cmd command) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: chronicle %s %s\n", cmd.name, cmd.synopsis)
	if cmd.help != "" {
		b.WriteString("\n" + strings.TrimRight(cmd.help, "\n") + "\n")
	}
	if cmd.flags != nil {
		fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		cmd.flags(fs)
		var flags strings.Builder
		fs.SetOutput(&flags)
		fs.PrintDefaults()
		if flags.Len() > 0 {
			b.WriteString("\nFlags:\n" + flags.String())
		}
	}
	io.WriteString(w, b.String())
}

func helpCommand() command {
	return command{
		name:     "help",
		synopsis: "[command]",
		summary:  "show help for chronicle or one command",
		run: func(_ context.Context, env *Env, args []string) error {
			switch len(args) {
			case 0:
				printUsage(env.Stdout)
				return nil
			case 1:
				cmd, ok := lookup(args[0])
				if !ok {
					return usagef("unknown command %q", args[0])
				}
				printCommandUsage(env.Stdout, cmd)
				return nil
			}
			return usagef("too many arguments")
		},
	}
}

func versionCommand() command {
	var dbURL string
	return command{
		name:     "version",
		synopsis: "[--database-url URL]",
		summary:  "print the version of chronicle and of its schema",
		help: `Prints the version of this binary and the latest schema version it
knows. With --database-url (not DATABASE_URL: version never connects
unless asked), it also prints the schema version applied in that database.`,
		flags: func(fs *flag.FlagSet) { databaseFlag(fs, &dbURL) },
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usagef("version takes no arguments")
			}
			if dbURL != "" {
				if err := checkDatabaseURL(dbURL); err != nil {
					return err
				}
			}
			fmt.Fprintf(env.Stdout, "chronicle %s (schema version %d)\n", buildVersion(), migrations.Latest())
			if dbURL == "" {
				return nil
			}
			v, dirty, err := migrations.Version(ctx, dbURL)
			if err != nil {
				return redact(err, dbURL)
			}
			switch {
			case dirty:
				fmt.Fprintf(env.Stdout, "database schema version %d (dirty)\n", v)
				return &migrations.DirtyError{Version: v}
			case v < migrations.Latest():
				fmt.Fprintf(env.Stdout, "database schema version %d (behind: run chronicle migrate up)\n", v)
			case v > migrations.Latest():
				fmt.Fprintf(env.Stdout, "database schema version %d (newer than this binary)\n", v)
			default:
				fmt.Fprintf(env.Stdout, "database schema version %d (up to date)\n", v)
			}
			return nil
		},
	}
}

// buildVersion returns the module version the binary was built from, or
// "(devel)" for a build from a working tree.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok || info.Main.Version == "" {
		return "(devel)"
	}
	v := info.Main.Version
	if i := slices.IndexFunc(info.Settings, func(s debug.BuildSetting) bool { return s.Key == "vcs.revision" }); i >= 0 && v == "(devel)" {
		rev := info.Settings[i].Value
		v += " " + rev[:min(12, len(rev))]
	}
	return v
}
