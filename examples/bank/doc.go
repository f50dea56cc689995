// Command bank is Chronicle's example service: bank accounts as
// event-sourced aggregates, with a read model of balances. It tells a short
// story: commands and the events they record, a refused withdrawal, two
// tellers racing on one account, the balances, and time travel.
//
// With no flags it runs on the in-memory store:
//
//	go run ./examples/bank
//
// With -dsn (or DATABASE_URL) it runs on PostgreSQL, applying Chronicle's
// migrations first:
//
//	go run ./examples/bank -dsn 'postgres://user:pass@localhost:5432/bank'
//
// Its store and its projection handler are wrapped with package telemetry;
// with -otel-stdout the spans and metrics are written to stderr as JSON
// (each append and the handling of its events share a trace):
//
//	go run ./examples/bank -otel-stdout 2> telemetry.json
package main
