package console

import (
	"errors"
	"html"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

func TestNewConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cfg       *Config
		wantField string // "" = valid
	}{
		{"nil means defaults", nil, ""},
		{"zero means defaults", &Config{}, ""},
		{"everything set", &Config{AllowActions: true, PageSize: 10, LiveInterval: time.Second, SampleInterval: time.Second, LagHistory: time.Hour}, ""},
		{"negative page size", &Config{PageSize: -1}, "config PageSize"},
		{"huge page size", &Config{PageSize: 501}, "config PageSize"},
		{"negative live interval", &Config{LiveInterval: -time.Second}, "config LiveInterval"},
		{"negative sample interval", &Config{SampleInterval: -time.Second}, "config SampleInterval"},
		{"negative lag history", &Config{LagHistory: -time.Second}, "config LagHistory"},
		{"relay name", &Config{RelayName: "my-relay"}, ""},
		{"invalid relay name", &Config{RelayName: "no spaces allowed\n"}, "config RelayName"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Config{}
			if tc.cfg != nil {
				c = *tc.cfg
			}
			_, err := c.withDefaults()
			var ve *eventstore.ValidationError
			switch {
			case tc.wantField == "" && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tc.wantField != "" && (!errors.As(err, &ve) || ve.Field != tc.wantField):
				t.Fatalf("err = %v, want a ValidationError on %q", err, tc.wantField)
			}
		})
	}
	if _, err := New(nil, nil, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("New(nil, nil, nil) err = %v, want ErrInvalidInput", err)
	}
}

func TestFormatting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		got, want string
	}{
		{formatInt(0), "0"},
		{formatInt(999), "999"},
		{formatInt(1000), "1,000"},
		{formatInt(1234567), "1,234,567"},
		{formatInt(-1234), "-1,234"},
		{formatDuration(0), "0s"},
		{formatDuration(850 * time.Millisecond), "850ms"},
		{formatDuration(12340 * time.Millisecond), "12.3s"},
		{formatDuration(245 * time.Second), "4m05s"},
		{formatDuration(3*time.Hour + 12*time.Minute), "3h12m"},
		{lagText(12), "12"},
		{lagText(lagCountLimit), "≈ 10,000"},
		{lagText(123456), "≈ 123,456"},
		{shorten(5, "ab  cd\nef"), "ab cd…"},
		{shorten(3, "aéb"), "aé…"},
		{shorten(2, "aéb"), "a…"},
		{prettyJSON([]byte(`{"a":[1,2]}`)), "{\n  \"a\": [\n    1,\n    2\n  ]\n}"},
		{prettyJSON([]byte(`not json`)), "not json"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestBadInput checks that bad requests get a clear page with the right
// status, never a stack trace or a driver error.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{runner: true})
	tests := []struct {
		path   string
		status int
		want   string
	}{
		{"stream?id=" + url.QueryEscape("no-such-stream"), http.StatusNotFound, `stream &#34;no-such-stream&#34;: stream not found`},
		{"stream", http.StatusBadRequest, "no stream id given"},
		{"stream?id=" + url.QueryEscape(strings.Repeat("x", 2000)), http.StatusBadRequest, "invalid stream id"},
		{"stream?id=" + url.QueryEscape("\xff\xfe"), http.StatusBadRequest, "invalid stream id"},
		{"stream?id=account-1&from=abc", http.StatusBadRequest, "from &#34;abc&#34; is not a positive whole number"},
		{"stream?id=account-1&upto=-3", http.StatusBadRequest, "upto &#34;-3&#34; is not a positive whole number"},
		{"log?before=12-34", http.StatusBadRequest, "before &#34;12-34&#34; is not a position"},
		{"log?before=" + url.QueryEscape("1/-5"), http.StatusBadRequest, "is not a position"},
		{"live?view=log&after=nope", http.StatusBadRequest, "after &#34;nope&#34; is not a position"},
		{"live?view=bogus", http.StatusBadRequest, "unknown live view"},
		{"dead-letter?id=999999", http.StatusNotFound, "dead letter 999999 not found"},
		{"dead-letter?id=x", http.StatusBadRequest, "is not a positive whole number"},
		{"dead-letter", http.StatusBadRequest, "no dead letter id given"},
		{"dead-letters?status=lost", http.StatusBadRequest, "status &#34;lost&#34; is not parked, retry, resolved or skipped"},
		{"dead-letters?after=-1", http.StatusBadRequest, "is not a positive whole number"},
		{"no-such-page", http.StatusNotFound, "no such page"},
		{"streams?before=x", http.StatusBadRequest, "before &#34;x&#34; is not a positive whole number"},
		{"streams?prefix=" + strings.Repeat("p", 300), http.StatusBadRequest, "the prefix is longer than a stream id can be"},
	}
	for _, tc := range tests {
		status, body := e.get(tc.path)
		if status != tc.status {
			t.Errorf("GET %s: status %d, want %d", tc.path, status, tc.status)
		}
		mustContain(t, "GET "+tc.path, body, tc.want, `<link rel="stylesheet" href="static/console.css">`)
		if strings.Contains(body, "goroutine") || strings.Contains(body, "SQLSTATE") {
			t.Errorf("GET %s leaks internals: %s", tc.path, body)
		}
	}
}

// TestHostileValuesAreEscaped checks the HTML itself: the hostile stream
// ID, payload and error message appear only escaped, in text, attributes
// and URLs.
func TestHostileValuesAreEscaped(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{runner: true, cfg: &Config{AllowActions: true}})
	dl := e.deadLetter(hostileID)
	for _, path := range []string{
		"stream?id=" + url.QueryEscape(hostileID),
		"log",
		"dead-letters",
		"dead-letter?id=" + itoa(dl.ID),
	} {
		status, body := e.get(path)
		if status != http.StatusOK {
			t.Fatalf("GET %s: status %d: %s", path, status, body)
		}
		for _, raw := range []string{"<script>alert", "<img src=x", "</script><script>", "<b>balance</b>"} {
			if strings.Contains(body, raw) {
				t.Errorf("GET %s: the page contains %q unescaped", path, raw)
			}
		}
		if got := strings.Count(body, "<script"); got != 1 {
			t.Errorf("GET %s: %d script elements, want the console's own only", path, got)
		}
	}
	_, body := e.get("stream?id=" + url.QueryEscape(hostileID))
	mustContain(t, "stream page", body, html.EscapeString(hostileID)[:20])
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestReadOnly checks that a console without AllowActions shows no action
// and refuses actions even with a valid token.
func TestReadOnly(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{runner: true})
	dl := e.deadLetter("account-1")
	for _, path := range []string{"dead-letters", "dead-letter?id=" + itoa(dl.ID), "projections"} {
		status, body := e.get(path)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, status)
		}
		for _, f := range []string{`action="retry"`, `action="skip"`, `action="rebuild"`} {
			if strings.Contains(body, f) {
				t.Errorf("read-only %s has a form %s", path, f)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.base+"retry", strings.NewReader("id="+itoa(dl.ID)+"&confirm=yes&csrf=abc"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: csrfCookie, Value: "abc"})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST retry on a read-only console: %d, want 403", resp.StatusCode)
	}
	if got := e.deadLetter("account-1"); got.Status != projectionstore.DeadLetterParked {
		t.Fatalf("dead letter is %s after a refused retry, want parked", got.Status)
	}
}

// TestActionsNeedTokenAndSameOrigin posts actions without the token, with
// a wrong one, and from another origin: all refused, nothing changed.
func TestActionsNeedTokenAndSameOrigin(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{runner: true, cfg: &Config{AllowActions: true}})
	dl := e.deadLetter("account-1")
	id := itoa(dl.ID)
	post := func(body string, cookie string, header map[string]string) int {
		req, _ := http.NewRequest(http.MethodPost, e.base+"skip", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: csrfCookie, Value: cookie})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tok := strings.Repeat("A", 43)
	tests := []struct {
		name   string
		body   string
		cookie string
		header map[string]string
		want   int
	}{
		{"no token", "id=" + id + "&confirm=yes", tok, nil, http.StatusForbidden},
		{"no cookie", "id=" + id + "&confirm=yes&csrf=" + tok, "", nil, http.StatusForbidden},
		{"wrong token", "id=" + id + "&confirm=yes&csrf=" + strings.Repeat("B", 43), tok, nil, http.StatusForbidden},
		{"cross-site", "id=" + id + "&confirm=yes&csrf=" + tok, tok, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"other origin", "id=" + id + "&confirm=yes&csrf=" + tok, tok, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"unconfirmed asks", "id=" + id + "&csrf=" + tok, tok, nil, http.StatusOK},
		{"bad id", "id=x&confirm=yes&csrf=" + tok, tok, nil, http.StatusBadRequest},
		{"unknown id", "id=987654&confirm=yes&csrf=" + tok, tok, nil, http.StatusNotFound},
	}
	for _, tc := range tests {
		if got := post(tc.body, tc.cookie, tc.header); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := e.deadLetter("account-1"); got.Status != projectionstore.DeadLetterParked {
		t.Fatalf("dead letter is %s after refused skips, want parked", got.Status)
	}
	// The same request, confirmed with the right token, works.
	if got := post("id="+id+"&confirm=yes&csrf="+tok, tok, nil); got != http.StatusOK {
		t.Fatalf("confirmed skip: status %d (after the redirect), want 200", got)
	}
	if got := e.deadLetter("account-1"); got.Status != projectionstore.DeadLetterSkipped {
		t.Fatalf("dead letter is %s after a confirmed skip, want skipped", got.Status)
	}
	// Skipping it again is a state error, shown as such.
	if got := post("id="+id+"&confirm=yes&csrf="+tok, tok, nil); got != http.StatusOK {
		t.Fatalf("skip of a skipped dead letter: %d", got)
	}
}

// TestMountedUnderAPrefix checks the redirect to the trailing slash and
// that the pages link relative to the mount point.
func TestMountedUnderAPrefix(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(e.srv.URL + mountPath + "?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || loc != mountPath+"/" {
		t.Fatalf("GET %s: %d to %q, want a redirect to %s/", mountPath, resp.StatusCode, loc, mountPath)
	}
	_, body := e.get("")
	if strings.Contains(body, `href="/`) || strings.Contains(body, `src="/`) || strings.Contains(body, `action="/`) {
		t.Fatalf("the overview has an absolute link, which breaks under a prefix")
	}
	status, css := e.get("static/console.css")
	if status != http.StatusOK || !strings.Contains(css, "--accent") {
		t.Fatalf("static/console.css: %d", status)
	}
}

// TestLagCountedThenEstimated checks the lag of a partition: counted
// exactly up to lagCountLimit events, estimated from the global positions
// beyond, never below the limit.
func TestLagCountedThenEstimated(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	ctx := t.Context()
	// A rolled-back append of 500 events leaves a gap of 500 global
	// positions: the estimate counts it, an exact count does not, so the
	// test tells them apart.
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `
INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, data)
SELECT gen_random_uuid(), 'rolled-back', g, 'Filled', '{}' FROM generate_series(1, 500) AS g`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `
INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, data)
SELECT gen_random_uuid(), 'bulk', g, 'Filled', '{}' FROM generate_series(1, 12000) AS g`); err != nil {
		t.Fatal(err)
	}
	e.waitForHead("every event", func(head eventstore.Position) bool { return head.Global >= 12517 })
	// "far" has never run; "near" is 17 events behind.
	if err := e.ps.RequestRebuild(ctx, "far", 1); err != nil {
		t.Fatal(err)
	}
	recs, err := e.store.ReadAll(ctx, eventstore.Position{}, 12000)
	if err != nil || len(recs) != 12000 {
		t.Fatalf("ReadAll: %d, %v", len(recs), err)
	}
	near := recs[len(recs)-1].Position
	if _, err := e.pool.Exec(ctx, `INSERT INTO chronicle.projection_checkpoints (projection, partition, partitions, transaction_id, global_position)
VALUES ('near', 0, 1, $1, $2)`, near.Transaction, near.Global); err != nil {
		t.Fatal(err)
	}
	sts, err := e.console.statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lags := map[string]int64{}
	for _, st := range sts {
		lags[st.Projection] = st.LagEvents
	}
	if lags["near"] != 17 {
		t.Errorf("near lag = %d, want 17 (counted)", lags["near"])
	}
	if lags["far"] < 12517 || lags["far"] > 12600 {
		t.Errorf("far lag = %d, want about 12,517 (12,017 events and 500 rolled-back positions: estimated, not counted)", lags["far"])
	}
	_, body := e.get("projections")
	mustContain(t, "projections page", body, ">≈ "+formatInt(lags["far"])+"<", ">17<")
}

// TestRebuildAction requests a rebuild through the console: the first POST
// asks for a confirmation, the confirmed one marks the checkpoints, and an
// unknown projection is a 404.
func TestRebuildAction(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{cfg: &Config{AllowActions: true}})
	ctx := t.Context()
	if _, err := e.pool.Exec(ctx, `INSERT INTO chronicle.projection_checkpoints (projection, partition, partitions) VALUES ('balances', 0, 2), ('balances', 1, 2)`); err != nil {
		t.Fatal(err)
	}
	tok := strings.Repeat("T", 43)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(form url.Values) (int, string, string) {
		form.Set("csrf", tok)
		req, _ := http.NewRequest(http.MethodPost, e.base+"rebuild", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: csrfCookie, Value: tok})
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), string(b)
	}
	requested := func() bool {
		cps, err := e.ps.Checkpoints(ctx, "balances")
		if err != nil || len(cps) != 2 {
			t.Fatalf("checkpoints: %v, %v", cps, err)
		}
		return cps[0].RebuildRequested && cps[1].RebuildRequested
	}

	status, _, body := post(url.Values{"projection": {"balances"}})
	if status != http.StatusOK || !strings.Contains(body, "Rebuild projection balances?") || requested() {
		t.Fatalf("unconfirmed rebuild: %d, requested %v", status, requested())
	}
	status, loc, _ := post(url.Values{"projection": {"balances"}, "confirm": {"yes"}})
	if status != http.StatusSeeOther || loc != "projections?rebuilt=balances" || !requested() {
		t.Fatalf("confirmed rebuild: %d to %q, requested %v", status, loc, requested())
	}
	_, body = e.get(loc)
	mustContain(t, "projections after the rebuild", body, "Rebuild of balances requested", "rebuild requested")
	if status, _, _ := post(url.Values{"projection": {"nobody"}}); status != http.StatusNotFound {
		t.Fatalf("rebuild of an unknown projection: %d, want 404", status)
	}
	if status, _, _ := post(url.Values{"projection": {""}, "confirm": {"yes"}}); status != http.StatusBadRequest {
		t.Fatalf("rebuild without a name: %d, want 400", status)
	}
}

// The streams page shows each stream's lifecycle status, deleted and
// archived streams included.
func TestStreamsShowStatus(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	ctx := t.Context()
	for _, id := range []string{"st-live", "st-deleted", "st-archived"} {
		e.append(id, eventstore.Event{Type: "Opened", Data: []byte(`{}`)})
	}
	if _, err := e.store.DeleteStream(ctx, "st-deleted", eventstore.Any); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.ArchiveStream(ctx, "st-archived", eventstore.Any); err != nil {
		t.Fatal(err)
	}
	status, body := e.get("streams?prefix=st-")
	if status != http.StatusOK {
		t.Fatalf("GET streams: %d", status)
	}
	for _, want := range []string{
		`>st-live</a></td><td class="num">1</td><td class="lifecycle lifecycle-live">live</td>`,
		`>st-deleted</a></td><td class="num">1</td><td class="lifecycle lifecycle-deleted">deleted</td>`,
		`>st-archived</a></td><td class="num">1</td><td class="lifecycle lifecycle-archived">archived</td>`,
	} {
		mustContain(t, "streams page", body, want)
	}
}
