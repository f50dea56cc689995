// Package health checks a Chronicle database: a Go API ([Checker.Check])
// that reports, with the numbers, what an operator must know, HTTP
// handlers for a service's liveness and readiness probes, and what
// `chronicle doctor` prints.
//
// # Checks
//
// A [Report] holds one [Check] per concern, each [OK], [Warning] or
// [Critical]:
//
//   - database ([CheckDatabase]): the database answers. Critical
//     otherwise, and the other checks are skipped.
//   - schema ([CheckSchema]): the schema version recorded by the
//     migrations against the newest this build knows. Behind or dirty is
//     critical; ahead (a newer build migrated it) is a warning.
//   - projections ([CheckProjections]): every partition's lag behind the
//     head, in events and in time. A stopped partition is critical; one
//     lagging beyond [Config.MaxLagEvents] or [Config.MaxLagAge] is a
//     warning.
//   - dead letters ([CheckDeadLetters]): events parked (or waiting for a
//     retry) per partition; any is a warning.
//   - read horizon ([CheckReadHorizon]): the oldest open transactions that
//     have written, in the whole cluster, with their pid, age, application
//     name, state and the start of their statement. Until the oldest ends,
//     no tailing reader sees a newer event; one older than
//     [Config.MaxTransactionAge] is a warning.
//   - tables ([CheckTables]): the size of each table of the chronicle
//     schema and of its indexes, for capacity planning; always OK.
//
// # Probes
//
// Mount [LiveHandler] as the liveness probe (it never touches the
// database), [Checker.ReadyHandler] as the readiness probe (database and
// schema), and [Checker.ReportHandler] on an internal port for monitors:
//
//	checker, err := health.New(store, projections, nil)
//	mux.Handle("GET /livez", health.LiveHandler())
//	mux.Handle("GET /readyz", checker.ReadyHandler())
//	internal.Handle("GET /health", checker.ReportHandler())
//
// The role needs pg_read_all_stats (or pg_monitor) to see other roles'
// transactions; see docs/operations.md.
package health
