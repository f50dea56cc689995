package console

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// TestBrowserPages opens every page in Chromium, checks what it shows,
// and saves its screenshots at laptop and phone widths.
func TestBrowserPages(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{runner: true, cfg: &Config{AllowActions: true, LiveInterval: 200 * time.Millisecond, SampleInterval: 200 * time.Millisecond}})
	ctx := newTab(t)
	// The viewer is in Tokyo: times must show in their zone, not UTC.
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Tokyo"}); err != nil {
		t.Fatal(err)
	}
	dl := e.deadLetter("account-1")

	tests := []struct {
		name  string
		path  string
		check func(t *testing.T)
	}{
		{"overview", "", func(t *testing.T) {
			waitJS(t, ctx, "the live event count", `document.querySelector('[data-live="events"]').textContent === "17"`)
			if got := text(t, ctx, `[data-live="parked"]`); got != "2" {
				t.Errorf("open dead letters = %q, want 2", got)
			}
			if got := text(t, ctx, "table.partitions tbody tr td strong"); got != "ledger" {
				t.Errorf("first projection = %q, want ledger", got)
			}
		}},
		{"streams", "streams", func(t *testing.T) {
			got := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("table.streams tbody tr td:first-child a")).map(a => a.textContent)`))
			want := []string{"order-7", hostileID, "account-2", "account-1", "account-0"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("streams listed %q, want %q (newest first)", got, want)
			}
		}},
		{"streams-prefix", "streams?prefix=account-", func(t *testing.T) {
			n := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("table.streams tbody tr").length`))
			if n != 3 {
				t.Errorf("prefix account- lists %d streams, want 3", n)
			}
		}},
		{"streams-empty", "streams?prefix=nobody", func(t *testing.T) {
			if got := text(t, ctx, "p.empty"); !strings.Contains(got, "No stream ID starts with nobody") {
				t.Errorf("empty state = %q", got)
			}
		}},
		{"stream", "stream?id=order-7", func(t *testing.T) {
			if got := text(t, ctx, "#stream-id"); got != "order-7" {
				t.Errorf("stream id = %q", got)
			}
			body := text(t, ctx, "main")
			for _, want := range []string{"OrderPlaced", "schema 2", "req-42", "cmd-9", "tenant", "acme", `"currency": "EUR"`} {
				if !strings.Contains(body, want) {
					t.Errorf("stream page lacks %q", want)
				}
			}
			// Recorded times are converted to the viewer's zone.
			utc := run(t, ctx, chromedp.AttributeValue(chromedp.CSS(".event time"), "title"))
			local := text(t, ctx, ".event time")
			if !strings.HasSuffix(utc.Value, "UTC") || local == utc.Value || local == "" {
				t.Errorf("time shows %q (UTC %q): not converted to the viewer's zone", local, utc.Value)
			}
			if got := text(t, ctx, "#tz"); got != "Asia/Tokyo" {
				t.Errorf("footer time zone = %q, want Asia/Tokyo", got)
			}
		}},
		{"stream-time-travel", "stream?id=account-1&upto=2", func(t *testing.T) {
			n := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("article.event").length`))
			if n != 2 {
				t.Errorf("time travel to version 2 shows %d events, want 2", n)
			}
		}},
		{"log", "log", func(t *testing.T) {
			n := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#log-rows tr").length`))
			if n != 17 {
				t.Errorf("log shows %d events, want 17", n)
			}
			if got := text(t, ctx, "#log-rows tr td:nth-child(2) a"); got != "order-7" {
				t.Errorf("newest event's stream = %q, want order-7", got)
			}
		}},
		{"projections", "projections", func(t *testing.T) {
			waitJS(t, ctx, "a lag chart", `document.querySelector("polyline").getAttribute("points").split(" ").length >= 3`)
			if got := text(t, ctx, `td[data-live$=":holder"]`); got != "test-runner" {
				t.Errorf("holder = %q, want test-runner", got)
			}
		}},
		{"dead-letters", "dead-letters", func(t *testing.T) {
			n := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("table.dead-letters tbody tr").length`))
			if n != 2 {
				t.Errorf("dead letters shown = %d, want 2", n)
			}
		}},
		{"dead-letters-filtered", "dead-letters?projection=ledger&status=skipped", func(t *testing.T) {
			if got := text(t, ctx, "p.empty"); !strings.Contains(got, "No dead letters match this filter") {
				t.Errorf("empty state = %q", got)
			}
		}},
		{"dead-letter", "dead-letter?id=" + strconv.FormatInt(dl.ID, 10), func(t *testing.T) {
			if got := text(t, ctx, "pre.error-text"); !strings.Contains(got, `<b>balance</b> would be "negative"`) {
				t.Errorf("error = %q", got)
			}
			if got := text(t, ctx, "article.event .type"); got != "Deposited" {
				t.Errorf("event type = %q", got)
			}
		}},
		{"error-unknown-stream", "stream?id=nobody", func(t *testing.T) {
			if got := text(t, ctx, "#error-message"); got != `stream "nobody": stream not found` {
				t.Errorf("error message = %q", got)
			}
		}},
		{"error-bad-position", "log?before=yesterday", func(t *testing.T) {
			if got := text(t, ctx, "#error-message"); !strings.Contains(got, `before "yesterday" is not a position`) {
				t.Errorf("error message = %q", got)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			do(t, ctx, chromedp.Navigate(e.base+tc.path), chromedp.WaitVisible(chromedp.CSS("main h1")))
			tc.check(t)
			screenshot(t, ctx, tc.name)
		})
	}
}

// TestBrowserHostileStreamID checks that a stream ID, a payload and an
// error message written to break out of HTML render as text everywhere:
// the page shows them verbatim and no script of theirs runs (newTab fails
// the test on any dialog).
func TestBrowserHostileStreamID(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{runner: true, cfg: &Config{AllowActions: true, LiveInterval: 100 * time.Millisecond}})
	ctx := newTab(t)
	dl := e.deadLetter(hostileID)

	// Typed into the "go to stream" box, as a person would.
	do(t, ctx, chromedp.Navigate(e.base), chromedp.WaitVisible(chromedp.ID("goto-id")),
		chromedp.SendKeys(chromedp.ID("goto-id"), hostileID+kb.Enter), chromedp.WaitVisible(chromedp.ID("stream-id")))
	if got := text(t, ctx, "#stream-id"); got != hostileID {
		t.Fatalf("stream page shows the id as %q, want %q", got, hostileID)
	}
	if got := text(t, ctx, "pre.payload"); !strings.Contains(got, `"note": "</script><script>alert(3)</script>"`) {
		t.Fatalf("payload = %q", got)
	}
	screenshot(t, ctx, "hostile-stream")

	// The log, rendered by the server and by the live script.
	do(t, ctx, chromedp.Navigate(e.base+"log"), chromedp.WaitVisible(chromedp.ID("log-rows")))
	live := `live"<svg onload=alert(4)>'`
	e.append(live, eventstore.Event{Type: "Deposited", Data: []byte(`{"x":"<img src=x onerror=alert(5)>"}`)})
	waitJS(t, ctx, "the hostile live event", `document.querySelector("#log-rows tr td:nth-child(2) a").textContent === `+jsString(live))
	links := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#log-rows a")).map(a => a.textContent)`))
	if !contains(links, hostileID) || !contains(links, live) {
		t.Fatalf("log links %q lack the hostile stream IDs", links)
	}
	// The live row's link opens the right stream. The live script replaces
	// the rows every LiveInterval, so the link is found and clicked in one
	// step inside the page: a click by node ID can meet a replaced node.
	if !run(t, ctx, chromedp.Evaluate[bool](`(a => (a.click(), true))(document.querySelector("#log-rows tr:first-child a"))`)) {
		t.Fatal("clicking the live row's link")
	}
	do(t, ctx, chromedp.WaitVisible(chromedp.ID("stream-id")))
	if got := text(t, ctx, "#stream-id"); got != live {
		t.Fatalf("the live row links to %q, want %q", got, live)
	}

	do(t, ctx, chromedp.Navigate(e.base+"dead-letter?id="+strconv.FormatInt(dl.ID, 10)), chromedp.WaitVisible(chromedp.CSS("pre.error-text")))
	body := text(t, ctx, "main")
	if !strings.Contains(body, hostileID) {
		t.Fatalf("dead letter page lacks the hostile stream id as text")
	}
	scripts := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("script, img, svg:not(.spark)").length`))
	if scripts != 1 {
		t.Fatalf("%d script, img or svg elements on the dead letter page, want the console's one script", scripts)
	}
}

func jsString(s string) string { return strconv.Quote(s) }

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestBrowserRetryAndSkip clicks through a retry and a skip of dead
// letters, confirmation included, and checks the database and the page.
func TestBrowserRetryAndSkip(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{runner: true, cfg: &Config{AllowActions: true}})
	ctx := newTab(t)
	retried := e.deadLetter("account-1")
	skipped := e.deadLetter(hostileID)
	e.heal() // the retry will succeed

	do(t, ctx, chromedp.Navigate(e.base+"dead-letters"), chromedp.WaitVisible(chromedp.CSS("table.dead-letters")))
	do(t, ctx, chromedp.Click(chromedp.CSS(`button[data-retry="`+strconv.FormatInt(retried.ID, 10)+`"]`)), chromedp.WaitVisible(chromedp.ID("question")))
	if got := text(t, ctx, "#question"); !strings.HasPrefix(got, "Retry dead letter "+strconv.FormatInt(retried.ID, 10)+"?") {
		t.Fatalf("confirmation asks %q", got)
	}
	screenshot(t, ctx, "confirm-retry")
	// Nothing happens before the confirmation.
	if got := e.deadLetter("account-1").Status; got != projectionstore.DeadLetterParked {
		t.Fatalf("dead letter is %s before confirming, want parked", got)
	}
	do(t, ctx, chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("notice")))
	if got := text(t, ctx, "#notice"); !strings.Contains(got, "retry requested") {
		t.Fatalf("notice = %q", got)
	}
	if loc := run(t, ctx, chromedp.Location()); !strings.Contains(loc, mountPath+"/dead-letters?") {
		t.Fatalf("after the retry the browser is at %s, not under %s", loc, mountPath)
	}
	e.waitFor("the retried dead letter resolved", func() bool { return e.deadLetter("account-1").Status == projectionstore.DeadLetterResolved })
	do(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("table.dead-letters")))
	if got := text(t, ctx, "#dl-"+strconv.FormatInt(retried.ID, 10)+" [data-status]"); got != "resolved" {
		t.Fatalf("retried dead letter shows %q, want resolved", got)
	}

	// Skip from the dead letter's own page, with the keyboard only: Tab to
	// the Skip button, Enter, then Enter on the focused confirmation.
	do(t, ctx, chromedp.Navigate(e.base+"dead-letter?id="+strconv.FormatInt(skipped.ID, 10)), chromedp.WaitVisible(chromedp.CSS("pre.error-text")))
	for i := 0; ; i++ {
		if i == 40 {
			t.Fatal("the Skip button is not reachable with Tab")
		}
		do(t, ctx, chromedp.KeyEvent(kb.Tab))
		if run(t, ctx, chromedp.Evaluate[bool](`document.activeElement.hasAttribute("data-skip")`)) {
			break
		}
	}
	do(t, ctx, chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.ID("question")))
	waitJS(t, ctx, "the confirm button focused", `document.activeElement.id === "confirm"`)
	do(t, ctx, chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.ID("notice")))
	if got := text(t, ctx, "#notice"); !strings.Contains(got, "skipped") {
		t.Fatalf("notice = %q", got)
	}
	if got := text(t, ctx, "[data-status]"); got != "skipped" {
		t.Fatalf("skipped dead letter shows %q", got)
	}
	if got := e.deadLetter(hostileID).Status; got != projectionstore.DeadLetterSkipped {
		t.Fatalf("dead letter is %s in the database, want skipped", got)
	}
	screenshot(t, ctx, "dead-letter-skipped")

	// Rebuild the projection from its page.
	do(t, ctx, chromedp.Navigate(e.base+"projections"), chromedp.WaitVisible(chromedp.CSS(`button[data-rebuild="ledger"]`)),
		chromedp.Click(chromedp.CSS(`button[data-rebuild="ledger"]`)), chromedp.WaitVisible(chromedp.ID("question")))
	if got := text(t, ctx, "#question"); !strings.HasPrefix(got, "Rebuild projection ledger?") {
		t.Fatalf("confirmation asks %q", got)
	}
	do(t, ctx, chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.CSS("p.notice")))
	if got := text(t, ctx, "p.notice"); !strings.HasPrefix(got, "Rebuild of ledger requested") {
		t.Fatalf("notice = %q", got)
	}
}

// TestBrowserLiveUpdates appends events while the overview and the log
// are open, and sees them arrive without a reload; the live connection
// ends when the page goes away.
func TestBrowserLiveUpdates(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{cfg: &Config{LiveInterval: 100 * time.Millisecond}})
	ctx := newTab(t)

	do(t, ctx, chromedp.Navigate(e.base), chromedp.WaitVisible(chromedp.CSS("main h1")))
	waitJS(t, ctx, "the overview's count", `document.querySelector('[data-live="events"]').textContent === "17"`)
	e.append("account-9", eventstore.Event{Type: "Deposited", Data: []byte(`{}`)}, eventstore.Event{Type: "Deposited", Data: []byte(`{}`)})
	waitJS(t, ctx, "the overview's count to grow", `document.querySelector('[data-live="events"]').textContent === "19"`)

	do(t, ctx, chromedp.Navigate(e.base+"log"), chromedp.WaitVisible(chromedp.ID("log-rows")))
	waitJS(t, ctx, "the live stream to open", "true")
	for i := range 3 {
		e.append("live-"+strconv.Itoa(i), eventstore.Event{Type: "Ticked", Data: []byte(`{"tick":` + strconv.Itoa(i) + `}`)})
	}
	waitJS(t, ctx, "three live rows", `document.querySelectorAll("#log-rows tr").length === 22`)
	got := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#log-rows tr td:nth-child(2) a")).slice(0, 4).map(a => a.textContent)`))
	if strings.Join(got, ",") != "live-2,live-1,live-0,account-9" {
		t.Fatalf("newest rows %v, want live-2,live-1,live-0,account-9 (newest first, none twice)", got)
	}
	screenshot(t, ctx, "log-live")
	if n := e.console.liveStreams.Load(); n != 1 {
		t.Fatalf("%d live connections with the log open, want 1", n)
	}
	do(t, ctx, chromedp.Navigate("about:blank"))
	e.waitFor("the live connection to end", func() bool { return e.console.liveStreams.Load() == 0 })
}

// TestBrowserDatabaseGoneAndBack cuts the console's connection to
// PostgreSQL while the overview is open, then restores it: the page says
// the database is unavailable and recovers by itself.
func TestBrowserDatabaseGoneAndBack(t *testing.T) {
	t.Parallel()
	var proxy *tcpProxy
	e := setup(t, setupOptions{
		cfg: &Config{LiveInterval: 100 * time.Millisecond},
		dial: func(t *testing.T, dbURL string) *pgxpool.Pool {
			var u string
			proxy, u = newProxy(t, dbURL)
			return proxyPool(t, u)
		},
	})
	ctx := newTab(t)
	do(t, ctx, chromedp.Navigate(e.base), chromedp.WaitVisible(chromedp.CSS("main h1")))
	waitJS(t, ctx, "the overview's count", `document.querySelector('[data-live="events"]').textContent === "17"`)

	proxy.stop()
	waitJS(t, ctx, "the unavailable banner", `!document.getElementById("live-status").hidden`)
	if got := text(t, ctx, "#live-status"); !strings.Contains(got, "database is unavailable") {
		t.Fatalf("banner = %q", got)
	}
	screenshot(t, ctx, "database-gone")
	status, body := e.get("stream?id=account-1")
	if status != 503 || !strings.Contains(body, "database is unavailable") {
		t.Fatalf("stream page without a database: %d", status)
	}

	proxy.start()
	waitJS(t, ctx, "the banner to go", `document.getElementById("live-status").hidden`)
	e.append("account-0", eventstore.Event{Type: "Deposited", Data: []byte(`{}`)})
	waitJS(t, ctx, "live updates to resume", `document.querySelector('[data-live="events"]').textContent === "18"`)
	if status, _ := e.get("stream?id=account-1"); status != 200 {
		t.Fatalf("stream page after the database came back: %d", status)
	}
}
