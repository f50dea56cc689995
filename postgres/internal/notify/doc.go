// Package notify wakes the event store's watchers: a hint that new events
// may be readable, never the source of truth (readers poll too).
//
// A [Hub] holds the watchers of one store. It wakes them on every poll
// tick, at once after the store's own appends ([Hub.AfterCommit]), and on
// notifications that arrive on a dedicated LISTEN connection from the
// stores of every process, debounced. After its own appends commit it
// sends one NOTIFY ([SQL]) on the pool, at most once per debounce window.
// The LISTEN connection reconnects with backoff and wakes every watcher
// after reconnecting, since notifications sent while it was down are lost.
package notify
