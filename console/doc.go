// Package console is Chronicle's web console: pages to look at the events,
// streams, projections and dead letters of a PostgreSQL event store, and,
// when allowed, to retry or skip dead letters and rebuild projections.
//
// `chronicle ui` serves it on its own; a service can mount it too, under
// a path of its own and behind its own authentication:
//
//	con, err := console.New(store, projections, &console.Config{AllowActions: true})
//	if err != nil {
//		return err
//	}
//	defer con.Close()
//	mux.Handle("/admin/chronicle/", requireAdmin(http.StripPrefix("/admin/chronicle", con)))
//
// # Pages
//
//   - overview: event count, head position, appends per second, the age
//     of the read horizon and the projections at a glance, refreshed live;
//   - streams: newest created first, searched by prefix, paged;
//   - stream: its events with version, type, schema version, time,
//     metadata and the payload as formatted JSON, paged; time travel shows
//     the events up to a version;
//   - log: the global order, newest first, tailed live;
//   - projections: every partition's checkpoint, lag in events and time,
//     a chart of the lag over the last minutes, holder and state, with
//     rebuild;
//   - dead letters: filtered by projection and state, with the error and
//     the event, and retry and skip;
//   - event bus: the relay's checkpoint, lag, holder, state and last
//     publish error, and, with [Config.Bus] (an
//     [github.com/chronicle-go/chronicle/eventbus.Inspector], such as a
//     NATS or in-memory bus), the consumer groups' pending, in-flight
//     and redelivered messages per consumer and their dead letters, with
//     replay and discard.
//
// # Safety
//
// The console is read-only unless [Config.AllowActions] is set. Actions
// (retry, skip, rebuild, replay, discard) are POST requests that carry an anti-forgery token (double-submit
// cookie), pass [http.CrossOriginProtection], and ask for a confirmation
// first. Every value is escaped by html/template, and the live-update
// script only ever sets text. Input never reaches SQL other than as a bind
// parameter of package postgres's statements. Responses carry a strict
// Content-Security-Policy. There is no authentication: put yours in front.
//
// # Live updates
//
// The overview, the log, the projections and the event bus pages refresh through
// server-sent events (GET live), every [Config.LiveInterval] and, for the
// log, on the store's notifications. A stream ends when the page closes.
// A database that goes away is reported on the page, which recovers on its
// own when the database is back.
//
// # Cost
//
// Every page runs a few statements that use an index or the catalog (see
// postgres/inspect.go): the event count is the planner's estimate above
// 100,000 events, and a projection's lag is counted up to 10,000 events and
// estimated from the global positions beyond.
// docs/ui.md has the measurements on a million events.
package console
