// Package cli is the chronicle command: every verb, its flags, its output
// and its exit codes. cmd/chronicle only calls [Main] with the process's
// arguments, streams and environment; tests call it with buffers.
//
// # Commands
//
//	chronicle migrate up | down --yes | version | force N | steps N  [--database-url URL]
//	chronicle streams read STREAM [--from N] [--limit N] [--backward] [--json]
//	chronicle streams list [--prefix P] [--limit N] [--before SEQ] [--json]
//	chronicle streams head
//	chronicle streams state STREAM
//	chronicle streams delete [--hard] --yes STREAM
//	chronicle streams truncate --yes STREAM VERSION
//	chronicle streams archive|restore STREAM
//	chronicle streams read --archived STREAM
//	chronicle projections status [NAME] [--json]
//	chronicle projections rebuild NAME [--no-wait]
//	chronicle projections dead-letters list [--state parked|retry|resolved|skipped|all] [--projection NAME] [--json]
//	chronicle projections dead-letters retry|skip ID...
//	chronicle subjects forget SUBJECT --yes | rotate SUBJECT
//	chronicle bench --dsn URL [--runs N] [--events N] [--workloads a,b] [--quick]
//	chronicle version [--database-url URL]
//	chronicle help [command]
//
// migrate down drops every event: it refuses without --yes (saying what it
// would drop) and never prompts, so nothing piped into it can confirm it.
// So do streams delete and streams truncate, which remove events.
//
// Commands that use a database take --database-url, or the DATABASE_URL
// environment variable. docs/operations.md is the user's reference.
//
// # Exit codes and messages
//
// 0 on success; 1 when the command ran and failed (unreachable database,
// dirty schema, ...), with "chronicle <verb>: <lowercase message>" on
// stderr; 2 on a usage error, followed by the command's usage. Results go
// to stdout, everything else to stderr. Passwords of database URLs never
// appear in messages.
//
// # Adding a command
//
// Write a function returning a command in a file of your own (its flags,
// synopsis, help text and run function) and add one line calling it to
// the list in commands(). Flags may appear before or after the
// subcommand's arguments; negative numbers are arguments, not flags.
package cli
