package console

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chronicle-go/chronicle/eventbus"
)

// TestBrowserBus opens the event bus page while the broker is down, sees
// the relay's lag and error, then the lag fall to 0 and the dead letters
// counted live once the broker is up, and replays a dead letter through
// its confirmation.
func TestBrowserBus(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{bus: true, cfg: &Config{AllowActions: true, LiveInterval: 200 * time.Millisecond, SampleInterval: 200 * time.Millisecond}})
	ctx := newTab(t)

	do(t, ctx, chromedp.Navigate(e.base+"bus"), chromedp.WaitVisible(chromedp.CSS("table.partitions")))
	if got := text(t, ctx, `[data-live$=":lag"]`); got != "17" {
		t.Fatalf("relay lag with the broker down = %q, want 17", got)
	}
	if got := text(t, ctx, `[data-live="relay:error"]`); !strings.Contains(got, "test broker is down") {
		t.Fatalf("relay error = %q", got)
	}
	if got := text(t, ctx, `[data-live$=":holder"]`); got != "relay-runner" {
		t.Fatalf("relay holder = %q", got)
	}
	screenshot(t, ctx, "bus-broker-down")

	// The broker comes up: the open page follows.
	e.openGate()
	waitJS(t, ctx, "the relay's lag at 0", `document.querySelector('[data-live$=":lag"]').textContent === "0"`)
	waitJS(t, ctx, "two dead letters of mailer", `document.querySelector('[data-live=`+jsString("group\x1fmailer:dead")+`]').textContent === "2"`)
	if got := text(t, ctx, `[data-live$=":state"]`); got != "live" {
		t.Errorf("relay state = %q, want live", got)
	}

	do(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("table.bus-dead-letters")))
	streams := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("table.bus-dead-letters tbody tr td:nth-child(3) a")).map(a => a.textContent)`))
	if !contains(streams, hostileID) || !contains(streams, "account-1") {
		t.Fatalf("dead letters of streams %q, want account-1 and the hostile ID as text", streams)
	}
	screenshot(t, ctx, "bus")

	replayed := e.busDeadLetter("account-1")
	e.heal() // the replay will succeed
	do(t, ctx, chromedp.Click(chromedp.CSS(`button[data-replay=`+jsString(replayed.ID)+`]`)), chromedp.WaitVisible(chromedp.ID("question")))
	if got := text(t, ctx, "#question"); !strings.HasPrefix(got, "Replay dead letter "+replayed.ID+"?") {
		t.Fatalf("confirmation asks %q", got)
	}
	screenshot(t, ctx, "confirm-replay")
	if dls, _ := e.bus.DeadLetters(context.Background(), eventbus.DeadLetterFilter{}); len(dls) != 2 {
		t.Fatalf("%d dead letters before confirming, want 2", len(dls))
	}
	do(t, ctx, chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("notice")))
	if got := text(t, ctx, "#notice"); !strings.Contains(got, "replayed") {
		t.Fatalf("notice = %q", got)
	}
	if loc := run(t, ctx, chromedp.Location()); !strings.Contains(loc, mountPath+"/bus?") {
		t.Fatalf("after the replay the browser is at %s, not under %s", loc, mountPath)
	}
	e.waitFor("the replayed message handled by mailer", func() bool {
		gs, err := e.bus.Groups(context.Background())
		if err != nil {
			return false
		}
		for _, g := range gs {
			if g.Group == "mailer" {
				return g.DeadLetters == 1 && g.Pending()+g.InFlight() == 0
			}
		}
		return false
	})
	waitJS(t, ctx, "one dead letter of mailer", `document.querySelector('[data-live=`+jsString("group\x1fmailer:dead")+`]').textContent === "1"`)
	if n := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('tr[data-letter=`+jsString(replayed.ID)+`]').length`)); n != 0 {
		t.Errorf("the replayed dead letter is still listed")
	}
}
