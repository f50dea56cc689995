package health

import (
	"context"
	"encoding/json"
	"net/http"
)

// LiveHandler returns the liveness probe: it answers 200 "ok" to every
// request, as long as the process serves HTTP. It deliberately does not
// touch the database: a database outage must make instances unready, not
// have them all restarted.
func LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
}

// ReadyHandler returns the readiness probe: it runs [Checker.Ready] (the
// database answers, the schema is current) and answers 200 with the
// report as JSON, or 503 when the report is [Critical].
func (c *Checker) ReadyHandler() http.Handler {
	return c.handler(c.Ready)
}

// ReportHandler returns a handler that runs every check ([Checker.Check])
// and answers 200 with the report as JSON, or 503 when the report is
// [Critical]: a stopped projection or a schema behind makes it 503, a
// lagging projection or a long transaction does not. Each request runs
// the checks (a few queries per projection partition): mount it on an
// internal port, for monitors and operators, not as a frequent probe.
// The report names the sessions holding the read horizon and the start of
// their last statement.
func (c *Checker) ReportHandler() http.Handler {
	return c.handler(c.Check)
}

func (c *Checker) handler(check func(context.Context) Report) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r := check(req.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if r.Status == Critical {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
	})
}
