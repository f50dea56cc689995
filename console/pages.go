package console

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// appendRateWindow is the window of the overview's appends per second.
const appendRateWindow = time.Minute

// cappedStorage is the projection storage as [projection.Statuses] sees it
// from the console: its CountEvents stops at lagCountLimit, so that a
// projection far behind costs a bounded count.
type cappedStorage struct {
	*postgres.ProjectionStore
	store *postgres.Store
}

// The lag count goes through CountEvents only if it is the storage's
// EventCounter: otherwise projection.Statuses reads every event behind.
var _ projectionstore.EventCounter = cappedStorage{}

// CountEvents implements [projectionstore.EventCounter]. It counts up to
// lagCountLimit events exactly; beyond, it estimates the count from the
// global positions (an identity column: it overcounts only the positions
// of rolled-back appends), never below the limit. A partition of a
// partitioned projection is counted exactly (by the storage) when the
// events of every partition together stay under the limit, and estimated
// as its share of the positions beyond.
func (s cappedStorage) CountEvents(ctx context.Context, after, upTo eventstore.Position, partition, partitions int) (int64, error) {
	n, err := s.store.CountEventsUpTo(ctx, after, upTo, lagCountLimit)
	switch {
	case err != nil:
		return 0, err
	case n < lagCountLimit && partitions <= 1:
		return n, nil
	case n < lagCountLimit:
		return s.ProjectionStore.CountEvents(ctx, after, upTo, partition, partitions)
	}
	return max(lagCountLimit, (upTo.Global-after.Global)/int64(max(partitions, 1))), nil
}

// statuses returns the status of every partition of every projection.
func (c *Console) statuses(ctx context.Context) ([]projection.Status, error) {
	return projection.Statuses(ctx, c.store, cappedStorage{ProjectionStore: c.ps, store: c.store}, "")
}

// partitionView is one row of the projections tables.
type partitionView struct {
	projection.Status
	// Key identifies the row in live updates.
	Key string
	// Lag is LagEvents as text, "≈ 123,456" when estimated.
	Lag string
	// State sums the partition up in a word or two.
	State string
	// Points is the lag chart's polyline.
	Points string
	// First marks the first partition of its projection.
	First bool
}

func rowKey(st projection.Status) string {
	return st.Projection + "\x1f" + strconv.Itoa(st.Partition)
}

// lagText formats a lag in events; from lagCountLimit on it is an
// estimate.
func lagText(n int64) string {
	if n >= lagCountLimit {
		return "≈ " + formatInt(n)
	}
	return formatInt(n)
}

// stateOf summarises a partition's state, as `chronicle projections
// status` does.
func stateOf(st projection.Status) string {
	switch {
	case st.RebuildRequested:
		return "rebuild requested"
	case st.Error != "":
		return "stopped"
	case st.Holder == "":
		return "no holder"
	case st.LagEvents > 0:
		return "catching up"
	default:
		return "live"
	}
}

func (c *Console) partitionViews(sts []projection.Status, now time.Time) []partitionView {
	out := make([]partitionView, len(sts))
	for i, st := range sts {
		out[i] = partitionView{
			Status: st, Key: rowKey(st), Lag: lagText(st.LagEvents), State: stateOf(st),
			Points: c.lags.points(rowKey(st), now, c.cfg.LagHistory),
			First:  i == 0 || sts[i-1].Projection != st.Projection,
		}
	}
	return out
}

// ---------------------------------------------------------------- overview

type overviewPage struct {
	Events      int64
	EventsExact bool
	Head        eventstore.Position
	Rate        float64
	Horizon     time.Duration
	Projections int
	Behind      int
	Stopped     int
	Parked      int
	Partitions  []partitionView
}

func (p *overviewPage) title() (string, string) { return "Overview", "overview" }

func (c *Console) overview(ctx context.Context) (*overviewPage, error) {
	p := &overviewPage{}
	var err error
	if p.Events, p.EventsExact, err = c.store.EventCount(ctx); err != nil {
		return nil, err
	}
	if p.Head, err = c.store.Head(ctx); err != nil {
		return nil, err
	}
	if p.Rate, err = c.store.AppendRate(ctx, appendRateWindow); err != nil {
		return nil, err
	}
	if p.Horizon, err = c.store.TailLag(ctx); err != nil {
		return nil, err
	}
	sts, err := c.statuses(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, st := range sts {
		if !seen[st.Projection] {
			seen[st.Projection] = true
			p.Projections++
		}
		if st.LagEvents > 0 {
			p.Behind++
		}
		if st.Error != "" {
			p.Stopped++
		}
		p.Parked += st.Parked
	}
	p.Partitions = c.partitionViews(sts, time.Now())
	return p, nil
}

func (c *Console) overviewPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := pageContext(r)
	defer cancel()
	p, err := c.overview(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "overview", p)
}

// ---------------------------------------------------------------- streams

type streamsPage struct {
	Prefix  string
	Before  int64
	Streams []eventstore.StreamInfo
	Next    int64 // the before of the next page, 0 when none
}

func (p *streamsPage) title() (string, string) { return "Streams", "streams" }

func (c *Console) streamsPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := pageContext(r)
	defer cancel()
	q := r.URL.Query()
	p := &streamsPage{Prefix: q.Get("prefix")}
	var err error
	if p.Before, err = queryInt(q, "before"); err != nil {
		c.fail(w, r, err)
		return
	}
	if len(p.Prefix) > eventstore.MaxStreamIDLength {
		c.fail(w, r, badRequest("the prefix is longer than a stream id can be (%d bytes)", eventstore.MaxStreamIDLength))
		return
	}
	p.Streams, err = c.store.ListStreams(ctx, eventstore.ListStreamsOptions{Prefix: p.Prefix, Before: p.Before, Limit: c.cfg.PageSize})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if len(p.Streams) == c.cfg.PageSize {
		p.Next = p.Streams[len(p.Streams)-1].Seq
	}
	c.render(w, r, http.StatusOK, "streams", p)
}

// ---------------------------------------------------------------- stream

type streamPage struct {
	StreamID string
	Version  int64 // the stream's current version
	From     int64 // the first version shown
	UpTo     int64 // time travel: the last version shown, 0 for all
	Events   []eventView
	// Paging: 0 when there is no such page.
	PrevFrom, NextFrom, LastFrom int64
}

func (p *streamPage) title() (string, string) { return "Stream " + p.StreamID, "streams" }

// eventView is an event as the pages show it.
type eventView struct {
	eventstore.Record
	Headers [][2]string // metadata headers, sorted by name
}

func newEventView(rec eventstore.Record) eventView {
	ev := eventView{Record: rec}
	for k, v := range rec.Metadata.Headers {
		ev.Headers = append(ev.Headers, [2]string{k, v})
	}
	slices.SortFunc(ev.Headers, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return ev
}

// queryInt reads a positive integer query parameter; absent is 0.
func queryInt(q url.Values, name string) (int64, error) {
	s := q.Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, badRequest("%s %q is not a positive whole number", name, s)
	}
	return n, nil
}

// queryPosition reads a position query parameter; absent is the zero
// Position.
func queryPosition(q url.Values, name string) (eventstore.Position, error) {
	s := q.Get(name)
	if s == "" {
		return eventstore.Position{}, nil
	}
	p, err := eventstore.ParsePosition(s)
	if err != nil {
		return eventstore.Position{}, badRequest("%s %q is not a position: positions look like 1234/5678 (transaction/global)", name, s)
	}
	return p, nil
}

func (c *Console) streamPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := pageContext(r)
	defer cancel()
	p, err := c.stream(ctx, r.URL.Query())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "stream", p)
}

func (c *Console) stream(ctx context.Context, q url.Values) (*streamPage, error) {
	id := q.Get("id")
	if id == "" {
		return nil, badRequest("no stream id given")
	}
	if err := eventstore.ValidateStreamID(id); err != nil {
		return nil, badRequest("%v", err)
	}
	from, err := queryInt(q, "from")
	if err != nil {
		return nil, err
	}
	upTo, err := queryInt(q, "upto")
	if err != nil {
		return nil, err
	}
	version, err := c.store.StreamVersion(ctx, id)
	if err != nil {
		return nil, err
	}
	p := &streamPage{StreamID: id, Version: version, From: max(from, 1), UpTo: upTo}
	last := version
	if upTo > 0 {
		last = min(upTo, version)
	}
	size := int64(c.cfg.PageSize)
	limit := min(size, last-p.From+1)
	if limit > 0 {
		recs, err := c.store.ReadStream(ctx, id, eventstore.ReadStreamOptions{From: p.From, Limit: int(limit)})
		if err != nil {
			return nil, err
		}
		c.maskPersonal(ctx, recs)
		for _, rec := range recs {
			p.Events = append(p.Events, newEventView(rec))
		}
	}
	if p.From > 1 {
		p.PrevFrom = max(p.From-size, 1)
	}
	if p.From+size <= last {
		p.NextFrom = p.From + size
		p.LastFrom = max(last-size+1, 1)
	}
	return p, nil
}

// ---------------------------------------------------------------- log

type logPage struct {
	Before eventstore.Position // zero: the newest page, tailed live
	Events []eventView
	Head   eventstore.Position
	Older  eventstore.Position // zero when there is nothing older
}

func (p *logPage) title() (string, string) { return "Global log", "log" }

func (c *Console) logPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := pageContext(r)
	defer cancel()
	before, err := queryPosition(r.URL.Query(), "before")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p := &logPage{Before: before}
	if p.Head, err = c.store.Head(ctx); err != nil {
		c.fail(w, r, err)
		return
	}
	recs, err := c.store.ReadAllBackward(ctx, before, c.cfg.PageSize)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.maskPersonal(ctx, recs)
	for _, rec := range recs {
		p.Events = append(p.Events, newEventView(rec))
	}
	if len(recs) == c.cfg.PageSize {
		p.Older = recs[len(recs)-1].Position
	}
	if before.IsZero() && len(recs) > 0 {
		// Tail from the newest event shown, not from a head read
		// earlier: nothing falls between the two.
		p.Head = recs[0].Position
	}
	c.render(w, r, http.StatusOK, "log", p)
}

// ---------------------------------------------------------------- projections

type projectionsPage struct {
	Partitions []partitionView
	Done       string // the action just done, for the notice
}

func (p *projectionsPage) title() (string, string) { return "Projections", "projections" }

func (c *Console) projectionsPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := pageContext(r)
	defer cancel()
	sts, err := c.statuses(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p := &projectionsPage{Partitions: c.partitionViews(sts, time.Now())}
	if name := r.URL.Query().Get("rebuilt"); name != "" {
		p.Done = "Rebuild of " + name + " requested: the runners holding its partitions reset it and replay every event."
	}
	c.render(w, r, http.StatusOK, "projections", p)
}

// ---------------------------------------------------------------- dead letters

var deadLetterStates = []projectionstore.DeadLetterStatus{
	projectionstore.DeadLetterParked, projectionstore.DeadLetterRetry, projectionstore.DeadLetterResolved, projectionstore.DeadLetterSkipped,
}

type deadLettersPage struct {
	Projection  string
	Status      string
	Projections []string
	States      []projectionstore.DeadLetterStatus
	Letters     []projectionstore.DeadLetter
	After       int64
	Next        int64 // the after of the next page, 0 when none
	Done        string
}

func (p *deadLettersPage) title() (string, string) { return "Dead letters", "dead-letters" }

// canRetry and canSkip tell which actions a dead letter's state allows,
// as postgres.ProjectionStore enforces them.
func canRetry(s projectionstore.DeadLetterStatus) bool {
	return s == projectionstore.DeadLetterParked || s == projectionstore.DeadLetterSkipped
}

func canSkip(s projectionstore.DeadLetterStatus) bool {
	return s == projectionstore.DeadLetterParked || s == projectionstore.DeadLetterRetry
}

// doneNotice is the notice after an action, from the redirect's query.
func doneNotice(q url.Values) string {
	id := q.Get("id")
	if _, err := strconv.ParseInt(id, 10, 64); err != nil {
		return ""
	}
	switch q.Get("done") {
	case "retry":
		return "Dead letter " + id + ": retry requested. The holder of its partition handles the event again at its next poll."
	case "skip":
		return "Dead letter " + id + ": skipped."
	}
	return ""
}

func (c *Console) deadLettersPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := pageContext(r)
	defer cancel()
	q := r.URL.Query()
	p := &deadLettersPage{Projection: q.Get("projection"), Status: q.Get("status"), States: deadLetterStates, Done: doneNotice(q)}
	if p.Status != "" && !projectionstore.DeadLetterStatus(p.Status).Valid() {
		c.fail(w, r, badRequest("status %q is not parked, retry, resolved or skipped", p.Status))
		return
	}
	if p.Projection != "" {
		if err := projection.ValidateName(p.Projection); err != nil {
			c.fail(w, r, badRequest("%v", err))
			return
		}
	}
	var err error
	if p.After, err = queryInt(q, "after"); err != nil {
		c.fail(w, r, err)
		return
	}
	cps, err := c.ps.Checkpoints(ctx, "")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	for _, cp := range cps {
		if !slices.Contains(p.Projections, cp.Projection) {
			p.Projections = append(p.Projections, cp.Projection)
		}
	}
	p.Letters, err = c.ps.DeadLetters(ctx, projectionstore.DeadLetterFilter{
		Projection: p.Projection, Status: projectionstore.DeadLetterStatus(p.Status), AfterID: p.After, Limit: c.cfg.PageSize,
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if len(p.Letters) == c.cfg.PageSize {
		p.Next = p.Letters[len(p.Letters)-1].ID
	}
	c.render(w, r, http.StatusOK, "dead-letters", p)
}

type deadLetterPage struct {
	Letter projectionstore.DeadLetter
	Event  *eventView // nil when the event is gone
	Done   string
}

func (p *deadLetterPage) title() (string, string) {
	return "Dead letter " + strconv.FormatInt(p.Letter.ID, 10), "dead-letters"
}

// deadLetter returns the dead letter id.
func (c *Console) deadLetter(ctx context.Context, id int64) (projectionstore.DeadLetter, error) {
	dls, err := c.ps.DeadLetters(ctx, projectionstore.DeadLetterFilter{AfterID: id - 1, Limit: 1})
	if err != nil {
		return projectionstore.DeadLetter{}, err
	}
	if len(dls) == 0 || dls[0].ID != id {
		return projectionstore.DeadLetter{}, notFound("dead letter %d not found", id)
	}
	return dls[0], nil
}

func (c *Console) deadLetterPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := pageContext(r)
	defer cancel()
	id, err := queryInt(r.URL.Query(), "id")
	if err == nil && id == 0 {
		err = badRequest("no dead letter id given")
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	dl, err := c.deadLetter(ctx, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p := &deadLetterPage{Letter: dl, Done: doneNotice(r.URL.Query())}
	recs, err := c.store.ReadStream(ctx, dl.StreamID, eventstore.ReadStreamOptions{From: dl.StreamVersion, Limit: 1})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.maskPersonal(ctx, recs)
	if len(recs) == 1 && recs[0].EventID == dl.EventID {
		ev := newEventView(recs[0])
		p.Event = &ev
	}
	c.render(w, r, http.StatusOK, "dead-letter", p)
}
