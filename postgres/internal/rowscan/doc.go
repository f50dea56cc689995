// Package rowscan decodes the event store's rows straight from their wire
// bytes: a speed trick kept apart from the main path.
//
// [Scan] reads the rows of a record or payload read. When the server sends
// the columns in binary format (pgx's default extended protocol), it decodes
// each row's raw values itself: payloads are copied into shared 8 KiB blocks
// instead of one allocation per event, stream and type names are shared
// between rows, and no reflection is involved. Any other format falls back
// to pgx's own scanning, which [ScanGeneric] always uses.
//
// # Why it is here
//
// BenchmarkScan in package postgres reads the same pages both ways in one
// run; the fast path must stay clearly ahead (≥ 10%) to earn its place, or
// be removed. FuzzDecodeRecord checks the fast decoder against pgx's own
// decoding of the same wire values, and that malformed values are errors,
// never panics. The one use of unsafe is blockArena.string: a string
// carved from a block the arena never writes again.
package rowscan
