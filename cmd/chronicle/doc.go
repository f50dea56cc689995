// Command chronicle manages a Chronicle event store in PostgreSQL: it
// applies the schema migrations, reads streams and runs the benchmark.
// Run "chronicle help" for the commands; docs/operations.md is the
// reference.
package main
