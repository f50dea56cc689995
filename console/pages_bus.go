package console

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/projection"
)

// defaultRelayName is the projection name of an [eventbus.Relay] whose
// config does not name it.
const defaultRelayName = "eventbus-relay"

// maxDeadLetterIDLength bounds a bus dead letter's ID in a form.
const maxDeadLetterIDLength = 200

// busPage is the event bus page: the relay, the consumer groups and the
// bus's dead letters.
type busPage struct {
	RelayName string
	// Relay holds the relay's partitions; empty when it never ran here.
	Relay []partitionView
	// LastFailure is the relay's last publish failure, when the relay runs
	// in this process (RelayKnown) and one failed.
	RelayKnown  bool
	LastFailure *eventbus.PublishFailure

	// HasBus tells whether a bus is configured; BusError is why it could
	// not be read.
	HasBus   bool
	BusError string
	Groups   []eventbus.GroupInfo
	// Group filters the dead letters.
	Group   string
	Letters []eventbus.DeadLetter
	// More tells that the page shows only the oldest Letters.
	More bool
	Done string
}

func (p *busPage) title() (string, string) { return "Event bus", "bus" }

// relayStatuses returns the status of the relay's partitions.
func (c *Console) relayStatuses(ctx context.Context) ([]projection.Status, error) {
	return projection.Statuses(ctx, c.store, cappedStorage{ProjectionStore: c.ps, store: c.store}, c.cfg.RelayName)
}

// busState reads what the page and its live updates show: an error of the
// bus is reported on the page, not as a failure of it.
func (c *Console) busState(ctx context.Context, p *busPage, withLetters bool) error {
	sts, err := c.relayStatuses(ctx)
	if err != nil {
		return err
	}
	p.RelayName = c.cfg.RelayName
	p.Relay = c.partitionViews(sts, time.Now())
	if c.cfg.Relay != nil {
		p.RelayKnown = true
		if f, ok := c.cfg.Relay.LastPublishError(); ok {
			p.LastFailure = &f
		}
	}
	if c.cfg.Bus == nil {
		return nil
	}
	p.HasBus = true
	if p.Groups, err = c.cfg.Bus.Groups(ctx); err != nil {
		p.BusError = busErrorText(err)
		return nil
	}
	if withLetters {
		p.Letters, err = c.cfg.Bus.DeadLetters(ctx, eventbus.DeadLetterFilter{Group: p.Group, Limit: c.cfg.PageSize + 1})
		if err != nil {
			p.BusError = busErrorText(err)
			return nil
		}
		if len(p.Letters) > c.cfg.PageSize {
			p.Letters, p.More = p.Letters[:c.cfg.PageSize], true
		}
	}
	return nil
}

func busErrorText(err error) string {
	return "the event bus cannot be read (" + err.Error() + "); this section works again as soon as it is back."
}

// busDoneNotice is the notice after a bus action, from the redirect's
// query.
func busDoneNotice(q url.Values) string {
	id := q.Get("id")
	if id == "" || len(id) > maxDeadLetterIDLength {
		return ""
	}
	switch q.Get("done") {
	case "replay":
		return "Dead letter " + id + " replayed: its group receives the message again, as a first delivery."
	case "discard":
		return "Dead letter " + id + " discarded."
	}
	return ""
}

func (c *Console) busPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := pageContext(r)
	defer cancel()
	q := r.URL.Query()
	p := &busPage{Group: q.Get("group"), Done: busDoneNotice(q)}
	if len(p.Group) > 200 {
		c.fail(w, r, badRequest("the group name is longer than a group can be (200 bytes)"))
		return
	}
	if err := c.busState(ctx, p, true); err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "bus", p)
}

// liveBus sends the relay's partitions and the groups' counts.
func (c *Console) liveBus(ctx context.Context, s *liveSender) error {
	p := &busPage{}
	if err := c.busState(ctx, p, false); err != nil {
		return err
	}
	m := fieldsMessage{Text: map[string]string{}, Points: map[string]string{}}
	addPartitionFields(&m, p.Relay)
	if p.LastFailure != nil {
		m.Text["relay:error"] = p.LastFailure.Err.Error()
	}
	m.Text["bus:error"] = p.BusError
	for _, g := range p.Groups {
		k := "group\x1f" + g.Group
		m.Text[k+":pending"] = formatInt(g.Pending())
		m.Text[k+":inflight"] = formatInt(g.InFlight())
		m.Text[k+":redelivered"] = formatInt(g.Redelivered())
		m.Text[k+":dead"] = formatInt(g.DeadLetters)
	}
	s.send("fields", m)
	return nil
}

func (c *Console) busReplayAction(w http.ResponseWriter, r *http.Request) {
	c.busLetterAction(w, r, "replay")
}

func (c *Console) busDiscardAction(w http.ResponseWriter, r *http.Request) {
	c.busLetterAction(w, r, "discard")
}

func (c *Console) busLetterAction(w http.ResponseWriter, r *http.Request, op string) {
	if !c.checkAction(w, r) {
		return
	}
	if c.cfg.Bus == nil {
		c.fail(w, r, notFound("no event bus is configured (console.Config.Bus)"))
		return
	}
	ctx, cancel := pageContext(r)
	defer cancel()
	id := r.PostFormValue("id")
	if id == "" || len(id) > maxDeadLetterIDLength {
		c.fail(w, r, badRequest("%q is not a dead letter id", shorten(maxDeadLetterIDLength, id)))
		return
	}
	group := r.PostFormValue("group")
	back := "bus"
	if group != "" {
		back = "bus?" + url.Values{"group": {group}}.Encode()
	}
	if r.PostFormValue("confirm") != "yes" {
		dl, err := c.busDeadLetter(ctx, id)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		question := "Replay dead letter " + id + "? Group " + dl.Group + " receives the message again, as a first delivery; the dead letter is removed."
		verb := "Replay"
		if op == "discard" {
			question = "Discard dead letter " + id + "? The message is removed for good: group " + dl.Group + " never handles it."
			verb = "Discard"
		}
		c.render(w, r, http.StatusOK, "confirm", &confirmPage{
			Action: "bus-" + op, Question: question, Button: verb + " dead letter " + id,
			Fields: [][2]string{{"id", id}, {"group", group}}, Cancel: back,
			Facts: [][2]string{
				{"Group", dl.Group},
				{"Event", dl.Message.StreamID + " version " + strconv.FormatInt(dl.Message.StreamVersion, 10) + ", " + dl.Message.Type},
				{"Attempts", strconv.Itoa(dl.Attempts)},
				{"Reason", shorten(500, dl.Reason)},
			},
		})
		return
	}
	var err error
	if op == "replay" {
		err = c.cfg.Bus.ReplayDeadLetter(ctx, id)
	} else {
		err = c.cfg.Bus.DiscardDeadLetter(ctx, id)
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	q := url.Values{"done": {op}, "id": {id}}
	if group != "" {
		q.Set("group", group)
	}
	seeOther(w, "bus?"+q.Encode())
}

// busDeadLetter finds a dead letter of the bus by ID. The bus lists dead
// letters oldest first, without an index by ID: this reads up to 10,000.
func (c *Console) busDeadLetter(ctx context.Context, id string) (eventbus.DeadLetter, error) {
	dls, err := c.cfg.Bus.DeadLetters(ctx, eventbus.DeadLetterFilter{Limit: 10_000})
	if err != nil {
		return eventbus.DeadLetter{}, err
	}
	for _, dl := range dls {
		if dl.ID == id {
			return dl, nil
		}
	}
	return eventbus.DeadLetter{}, notFound("dead letter %q not found on the event bus", id)
}
