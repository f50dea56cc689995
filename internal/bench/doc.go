// Package bench is Chronicle's benchmark harness, run by `chronicle bench`.
//
// Every figure is a ratio against a raw pgx baseline measured in the same
// run on the same server, as the project's benchmark plan asks (see
// docs/operations.md, "Benchmark"): the baseline is
// the fastest honest pgx code on a minimal events table (schema
// bench_baseline), Chronicle is the postgres store, the aggregate
// repository and the event registry on the chronicle schema, both in one
// fresh database per run (created and dropped by [Run]).
//
// # Workloads
//
//   - append-1 (x1, x8, x32 writers): each writer runs commands that
//     append one Deposited event to one of its 50 existing account
//     streams, each its own save; the rate and each command's latency (p50,
//     p99). Baseline: one INSERT … SELECT FROM unnest(…) per command,
//     UNIQUE (stream_id, version) as the concurrency check. Chronicle:
//     aggregate Record + Repository.Save on a loaded account, with group
//     commit on (the store's default).
//   - append-10 (x1, x8, x32): the same with 10 events per save.
//   - append-1-no-group, append-10-no-group: the same with group commit
//     off, one statement and commit per save as the baseline does.
//   - load-100: rehydrating accounts of 100 events each. Baseline: SELECT
//     … WHERE stream_id = $1 ORDER BY version, JSON-decode, apply.
//     Chronicle: Repository.Load.
//   - catch-up: reading every event from the start (200,000 seeded plus
//     those of earlier workloads) and decoding each into its Go type.
//     Baseline: keyset scan on the identity position, pages of 1,000.
//     Chronicle: store.ReadAll through eventstore.ReadAllSeq and
//     Registry.Decode.
//   - catch-up-runner: the same read through a projection runner that
//     decodes each event, hands it to a handler and checkpoints per batch.
//   - tail-latency (notify, poll-only): time from an append's commit to a
//     live projection handling it, under a steady append load; p50 and p99.
//     Baseline: a raw LISTEN/NOTIFY round trip (notify) or a raw polling
//     loop at the same interval (poll-only).
//   - load-10k-snapshot: loading a 10,000-event account without and with a
//     snapshot (and the speed-up between the two).
//
// # Scale
//
// [RunScale] (`chronicle bench --scale N`) measures something else: how
// Chronicle's own rates hold as the events table grows. It fills a fresh
// database with 100,000 events, measures append-1 (one writer) and a
// catch-up over the whole table, fills the table up to N events with COPY,
// and measures again; the [ScaleReport] gives both and their ratio (1 =
// flat), and the peak resident memory while catching up.
//
// Seed data is written with COPY, interleaved across streams, and is not
// measured. Each run measures every workload on both sides, alternating
// which side goes first; the [Report] holds the medians and the ratio
// Chronicle/baseline (inverted for latencies, so that 1 means as fast and
// below 1 slower).
//
// # Adding a workload
//
// Write a function returning a workload (name, metrics, setup, baseline,
// chronicle) in a file of your own and add one line calling it to the list
// in workloads(). A side returns one value per metric; use [time] to
// measure only what the workload is about.
package bench
