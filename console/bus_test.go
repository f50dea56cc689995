package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventbus"
)

// gatedPublisher is a broker that is down (every publication fails with
// ErrUnavailable) until opened.
type gatedPublisher struct {
	*eventbus.MemoryBus
	open atomic.Bool
}

var errBrokerDown = fmt.Errorf("test broker is down: %w", eventbus.ErrUnavailable)

func (g *gatedPublisher) PublishAsync(ctx context.Context, m eventbus.Message) error {
	if !g.open.Load() {
		return errBrokerDown
	}
	return g.MemoryBus.PublishAsync(ctx, m)
}

// startBus subscribes the groups "mailer" and "audit" and runs the relay,
// and waits until the relay holds its checkpoint and has failed to publish.
func (e *testEnv) startBus() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.mu.Lock()
	e.busFailing["account-1"] = true
	e.busFailing[hostileID] = true
	e.mu.Unlock()
	subscribe := func(group string, h eventbus.HandlerFunc) {
		sub, err := e.bus.Subscribe(ctx, eventbus.Consumer{Group: group, Handler: h, Backoff: eventbus.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() {
			cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
			defer ccancel()
			sub.Close(cctx)
		})
	}
	subscribe("mailer", func(ctx context.Context, d eventbus.Delivery) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.busFailing[d.StreamID] && d.StreamVersion == 1 {
			return eventbus.Permanent(fmt.Errorf("cannot mail <b>%s</b>: \"no address\"", d.StreamID))
		}
		return nil
	})
	subscribe("audit", func(ctx context.Context, d eventbus.Delivery) error { return nil })
	done := make(chan error, 1)
	go func() { done <- e.relay.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			e.t.Errorf("relay: %v", err)
		}
	})
	e.waitFor("the relay's checkpoint and a failed publication", func() bool {
		cps, err := e.ps.Checkpoints(context.Background(), e.relay.Name())
		_, failed := e.relay.LastPublishError()
		return err == nil && len(cps) == 1 && cps[0].Holder != "" && failed
	})
}

// openGate brings the broker up and waits until the relay has published
// everything and "mailer" dead-lettered its two messages.
func (e *testEnv) openGate() {
	e.t.Helper()
	e.gate.open.Store(true)
	e.waitFor("two dead letters in group mailer", func() bool {
		dls, err := e.bus.DeadLetters(context.Background(), eventbus.DeadLetterFilter{Group: "mailer"})
		return err == nil && len(dls) == 2
	})
}

func (e *testEnv) busDeadLetter(stream string) eventbus.DeadLetter {
	e.t.Helper()
	dls, err := e.bus.DeadLetters(context.Background(), eventbus.DeadLetterFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, dl := range dls {
		if dl.Message.StreamID == stream {
			return dl
		}
	}
	e.t.Fatalf("no bus dead letter of stream %q", stream)
	return eventbus.DeadLetter{}
}

func TestBusPageWithoutBus(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	status, body := e.get("bus")
	if status != http.StatusOK {
		t.Fatalf("GET bus: %d", status)
	}
	mustContain(t, "bus page without a bus", body, `id="no-bus"`, "No event bus is configured", `id="relay-empty"`, "eventbus-relay", "not known here")
	// Actions on a console without a bus say so.
	if status, _ := e.get("bus?group=" + url.QueryEscape(strings.Repeat("g", 201))); status != http.StatusBadRequest {
		t.Errorf("GET bus with a 201-byte group: %d, want 400", status)
	}
}

func TestBusPage(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{bus: true, cfg: &Config{AllowActions: true}})
	// The broker is down: the relay lags by every event and says why.
	status, body := e.get("bus")
	if status != http.StatusOK {
		t.Fatalf("GET bus: %d", status)
	}
	mustContain(t, "bus page, broker down", body, `data-live="eventbus-relay`+"\x1f"+`0:lag">17<`, "test broker is down", "relay-runner",
		`<tr data-group="audit">`, `<tr data-group="mailer">`, `id="bus-dl-empty"`)

	e.openGate()
	e.waitFor("the relay at the head", func() bool {
		_, body := e.get("bus")
		return strings.Contains(body, `data-live="eventbus-relay`+"\x1f"+`0:lag">0<`)
	})
	_, body = e.get("bus")
	replayed := e.busDeadLetter("account-1")
	discarded := e.busDeadLetter(hostileID)
	mustContain(t, "bus page, broker up", body, `data-replay="`+replayed.ID+`"`, `data-discard="`+discarded.ID+`"`,
		"cannot mail &lt;b&gt;account-1&lt;/b&gt;: &#34;no address&#34;", // escaped
		`data-live="group`+"\x1f"+`mailer:dead">2<`)
	if strings.Contains(body, "<b>account-1</b>") || strings.Contains(body, "<script>alert(1)") {
		t.Error("the bus page holds unescaped user data")
	}
	// Filtered by group.
	_, body = e.get("bus?group=audit")
	mustContain(t, "bus page filtered by audit", body, `id="bus-dl-empty"`, "No dead letters in group audit")

	tok := strings.Repeat("A", 43)
	post := func(action, form string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, e.base+action, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: csrfCookie, Value: tok})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, resp.Request.URL.String())
		return resp.StatusCode, b.String()
	}
	tests := []struct {
		name, action, form string
		want               int
	}{
		{"no token", "bus-replay", "id=" + replayed.ID + "&confirm=yes", http.StatusForbidden},
		{"wrong token", "bus-discard", "id=" + discarded.ID + "&confirm=yes&csrf=" + strings.Repeat("B", 43), http.StatusForbidden},
		{"no id", "bus-replay", "confirm=yes&csrf=" + tok, http.StatusBadRequest},
		{"unknown id, confirmation", "bus-replay", "id=999&csrf=" + tok, http.StatusNotFound},
		{"unknown id", "bus-discard", "id=999&confirm=yes&csrf=" + tok, http.StatusNotFound},
		{"confirmation", "bus-replay", "id=" + replayed.ID + "&csrf=" + tok, http.StatusOK},
	}
	for _, tc := range tests {
		if got, _ := post(tc.action, tc.form); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	if dls, _ := e.bus.DeadLetters(context.Background(), eventbus.DeadLetterFilter{}); len(dls) != 2 {
		t.Fatalf("%d dead letters after refused and unconfirmed actions, want 2", len(dls))
	}

	e.heal()
	status, loc := post("bus-replay", "id="+replayed.ID+"&group=mailer&confirm=yes&csrf="+tok)
	if status != http.StatusOK || !strings.Contains(loc, mountPath+"/bus?") || !strings.Contains(loc, "done=replay") || !strings.Contains(loc, "group=mailer") {
		t.Fatalf("confirmed replay: %d at %s", status, loc)
	}
	status, loc = post("bus-discard", "id="+discarded.ID+"&confirm=yes&csrf="+tok)
	if status != http.StatusOK || !strings.Contains(loc, "done=discard") {
		t.Fatalf("confirmed discard: %d at %s", status, loc)
	}
	// The replayed message is handled (healed): no dead letter is left.
	e.waitFor("no dead letters and nothing in flight", func() bool {
		gs, err := e.bus.Groups(context.Background())
		if err != nil {
			return false
		}
		for _, g := range gs {
			if g.DeadLetters+g.Pending()+g.InFlight() != 0 {
				return false
			}
		}
		return len(gs) == 2
	})
	if status, _ := post("bus-discard", "id="+discarded.ID+"&confirm=yes&csrf="+tok); status != http.StatusNotFound {
		t.Errorf("discarding a discarded dead letter: %d, want 404", status)
	}
}

func TestBusActionsReadOnly(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{bus: true})
	e.openGate()
	dl := e.busDeadLetter("account-1")
	_, body := e.get("bus")
	if strings.Contains(body, `action="bus-replay"`) || strings.Contains(body, `action="bus-discard"`) {
		t.Error("a read-only bus page has action forms")
	}
	tok := strings.Repeat("A", 43)
	req, _ := http.NewRequest(http.MethodPost, e.base+"bus-discard", strings.NewReader("id="+dl.ID+"&confirm=yes&csrf="+tok))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: csrfCookie, Value: tok})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST bus-discard on a read-only console: %d, want 403", resp.StatusCode)
	}
	if dls, _ := e.bus.DeadLetters(context.Background(), eventbus.DeadLetterFilter{}); len(dls) != 2 {
		t.Fatalf("%d dead letters after a refused discard, want 2", len(dls))
	}
}
