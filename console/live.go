package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
)

// Live updates are server-sent events on GET live?view=…: the page's
// script (static/app.js) opens an EventSource, and the browser closes it
// when the page goes away, which ends the handler. Three kinds of message:
//
//	event: fields  {"text": {key: text}, "points": {key: polyline}}
//	event: events  [logEvent, …]  (view=log: new events, oldest first)
//	event: status  {"ok": bool, "message": text}
//
// Keys name elements by their data-live attribute; the script sets their
// textContent (never HTML), so user data in them stays text.

// fieldsMessage updates elements of the page.
type fieldsMessage struct {
	Text   map[string]string `json:"text"`
	Points map[string]string `json:"points,omitempty"`
}

// logEvent is an event of the log tail, as the script renders it.
type logEvent struct {
	Position string `json:"position"`
	Stream   string `json:"stream"`
	Version  int64  `json:"version"`
	Type     string `json:"type"`
	Schema   int    `json:"schema"`
	At       string `json:"at"`
	AtUTC    string `json:"at_utc"`
	Data     string `json:"data"`
}

// liveBatch is the most events of the log tail sent at once.
const liveBatch = 200

func (c *Console) live(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	view := q.Get("view")
	var after eventstore.Position
	switch view {
	case "overview", "projections", "bus":
	case "log":
		var err error
		if after, err = queryPosition(q, "after"); err != nil {
			c.fail(w, r, err)
			return
		}
	default:
		c.fail(w, r, badRequest("unknown live view %q", view))
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		c.fail(w, r, &pageError{status: http.StatusNotImplemented, msg: "live updates need a server that can stream"})
		return
	}
	c.liveStreams.Add(1)
	defer c.liveStreams.Add(-1)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-c.ctx.Done(): // Close ends live streams
			cancel()
		case <-ctx.Done():
		}
	}()
	var wake <-chan struct{}
	if view == "log" {
		wake = c.store.Watch(ctx)
	}
	ticker := time.NewTicker(c.cfg.LiveInterval)
	defer ticker.Stop()
	s := &liveSender{w: w, f: flusher}
	down := false
	for {
		var err error
		switch view {
		case "overview":
			err = c.liveOverview(ctx, s)
		case "projections":
			err = c.liveProjections(ctx, s)
		case "bus":
			err = c.liveBus(ctx, s)
		case "log":
			var more bool
			after, more, err = c.liveLog(ctx, s, after)
			if err == nil && more {
				continue
			}
		}
		if ctx.Err() != nil || s.err != nil {
			return
		}
		switch {
		case err != nil:
			down = true
			_, msg := classify(err)
			s.send("status", map[string]any{"ok": false, "message": msg})
		case down:
			down = false
			s.send("status", map[string]any{"ok": true, "message": ""})
		default:
			s.comment() // detects a closed connection
		}
		if s.err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case _, ok := <-wake:
			if !ok {
				wake = nil
			}
		}
	}
}

// liveSender writes server-sent events; after a write error it stops.
type liveSender struct {
	w   http.ResponseWriter
	f   http.Flusher
	err error
}

func (s *liveSender) send(event string, v any) {
	if s.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		s.err = err
		return
	}
	if _, s.err = fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); s.err == nil {
		s.f.Flush()
	}
}

func (s *liveSender) comment() {
	if s.err != nil {
		return
	}
	if _, s.err = fmt.Fprint(s.w, ": tick\n\n"); s.err == nil {
		s.f.Flush()
	}
}

func (c *Console) liveOverview(ctx context.Context, s *liveSender) error {
	p, err := c.overview(ctx)
	if err != nil {
		return err
	}
	events := formatInt(p.Events)
	if !p.EventsExact {
		events = "≈ " + events
	}
	m := fieldsMessage{
		Text: map[string]string{
			"events":      events,
			"head":        p.Head.String(),
			"rate":        strconv.FormatFloat(p.Rate, 'f', 1, 64),
			"horizon":     formatDuration(p.Horizon),
			"projections": strconv.Itoa(p.Projections),
			"behind":      strconv.Itoa(p.Behind),
			"stopped":     strconv.Itoa(p.Stopped),
			"parked":      strconv.Itoa(p.Parked),
		},
		Points: map[string]string{},
	}
	addPartitionFields(&m, p.Partitions)
	s.send("fields", m)
	return nil
}

func addPartitionFields(m *fieldsMessage, parts []partitionView) {
	for _, pv := range parts {
		m.Text[pv.Key+":lag"] = pv.Lag
		m.Text[pv.Key+":lagtime"] = formatDuration(pv.LagTime)
		m.Text[pv.Key+":state"] = pv.State
		m.Text[pv.Key+":checkpoint"] = pv.Position.String()
		m.Text[pv.Key+":parked"] = strconv.Itoa(pv.Parked)
		holder := pv.Holder
		if holder == "" {
			holder = "–"
		}
		m.Text[pv.Key+":holder"] = holder
		m.Points[pv.Key] = pv.Points
	}
}

func (c *Console) liveProjections(ctx context.Context, s *liveSender) error {
	sts, err := c.statuses(ctx)
	if err != nil {
		return err
	}
	m := fieldsMessage{Text: map[string]string{}, Points: map[string]string{}}
	addPartitionFields(&m, c.partitionViews(sts, time.Now()))
	s.send("fields", m)
	return nil
}

// liveLog sends the events after after; more reports a full batch.
func (c *Console) liveLog(ctx context.Context, s *liveSender, after eventstore.Position) (eventstore.Position, bool, error) {
	recs, err := c.store.ReadAll(ctx, after, liveBatch)
	if err != nil || len(recs) == 0 {
		return after, false, err
	}
	c.maskPersonal(ctx, recs)
	out := make([]logEvent, len(recs))
	for i, rec := range recs {
		out[i] = logEvent{
			Position: rec.Position.String(), Stream: rec.StreamID, Version: rec.StreamVersion, Type: rec.Type,
			Schema: rec.SchemaVersion, At: rec.RecordedAt.UTC().Format(time.RFC3339Nano),
			AtUTC: rec.RecordedAt.UTC().Format("2006-01-02 15:04:05 UTC"), Data: shorten(200, string(rec.Data)),
		}
	}
	s.send("events", out)
	return recs[len(recs)-1].Position, len(recs) == liveBatch, nil
}

// ---------------------------------------------------------------- lag history

// lagSample is one measurement of a partition's lag.
type lagSample struct {
	at     time.Time
	events int64
}

// lagHistory keeps the recent lag samples of every partition, for the
// charts.
type lagHistory struct {
	mu     sync.Mutex
	max    int
	series map[string][]lagSample
}

func newLagHistory(n int) *lagHistory {
	return &lagHistory{max: max(n, 2), series: map[string][]lagSample{}}
}

func (h *lagHistory) add(at time.Time, sts []projection.Status) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := make(map[string]bool, len(sts))
	for _, st := range sts {
		k := rowKey(st)
		seen[k] = true
		s := append(h.series[k], lagSample{at: at, events: st.LagEvents})
		if len(s) > h.max {
			s = s[len(s)-h.max:]
		}
		h.series[k] = s
	}
	for k := range h.series {
		if !seen[k] {
			delete(h.series, k)
		}
	}
}

// Chart geometry: a viewBox of chartW × chartH with a margin.
const (
	chartW = 120
	chartH = 30
)

// points returns the SVG polyline of key's lag over the window ending at
// now: time to the right, lag up, scaled to the largest lag shown.
func (h *lagHistory) points(key string, now time.Time, window time.Duration) string {
	h.mu.Lock()
	s := h.series[key]
	h.mu.Unlock()
	var peak int64 = 1
	for _, p := range s {
		peak = max(peak, p.events)
	}
	var b []byte
	for _, p := range s {
		age := now.Sub(p.at)
		if age > window {
			continue
		}
		x := float64(chartW) * (1 - float64(age)/float64(window))
		y := float64(chartH-1) - float64(chartH-2)*float64(p.events)/float64(peak)
		b = strconv.AppendFloat(b, x, 'f', 1, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, y, 'f', 1, 64)
		b = append(b, ' ')
	}
	if len(b) > 0 {
		b = b[:len(b)-1]
	}
	return string(b)
}

func (c *Console) startSampler() {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ticker := time.NewTicker(c.cfg.SampleInterval)
		defer ticker.Stop()
		failing := false
		for {
			ctx, cancel := context.WithTimeout(c.ctx, timeout)
			sts, err := c.statuses(ctx)
			cancel()
			switch {
			case c.ctx.Err() != nil:
				return
			case err != nil && !failing:
				failing = true
				c.cfg.Logger.Warn("console: cannot sample projection lag", "err", err)
			case err == nil:
				failing = false
				c.lags.add(time.Now(), sts)
			}
			select {
			case <-c.ctx.Done():
				return
			case <-ticker.C:
			}
		}
	}()
}
