package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// pages lists the templates of templates/, each parsed with layout.html.
var pages = []string{"overview", "streams", "stream", "log", "projections", "dead-letters", "dead-letter", "bus", "confirm", "error"}

var funcs = template.FuncMap{
	"rfc3339":  func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"utc":      func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"duration": formatDuration,
	"num":      formatInt,
	"shorten":  shorten,
	"pretty":   prettyJSON,
	"pos":      func(p eventstore.Position) string { return p.String() },
	"add":      func(a, b int64) int64 { return a + b },
	"ptable": func(rows []partitionView, actions bool, csrf string) partitionTable {
		return partitionTable{Rows: rows, Actions: actions, CSRF: csrf}
	},
	"dlform": func(dl projectionstore.DeadLetter, csrf, back string) deadLetterForm {
		return deadLetterForm{Letter: dl, CSRF: csrf, Back: back, CanRetry: canRetry(dl.Status), CanSkip: canSkip(dl.Status)}
	},
}

// partitionTable is what the "partitions" template renders.
type partitionTable struct {
	Rows    []partitionView
	Actions bool
	CSRF    string
}

// deadLetterForm is what the "dlactions" template renders.
type deadLetterForm struct {
	Letter            projectionstore.DeadLetter
	CSRF, Back        string
	CanRetry, CanSkip bool
}

func parseTemplates() (map[string]*template.Template, error) {
	out := make(map[string]*template.Template, len(pages))
	for _, name := range pages {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// view is what layout.html renders around a page.
type view struct {
	// Title is the page's title.
	Title string
	// Nav is the navigation entry to highlight.
	Nav string
	// AllowActions tells whether action buttons are shown.
	AllowActions bool
	// CSRF is the token that action forms carry.
	CSRF string
	// Page is the page's own data.
	Page any
}

// titled is implemented by the page data that sets the page's title and
// navigation entry.
type titled interface {
	title() (title, nav string)
}

type errorPage struct {
	Status     int
	StatusText string
	Message    string
}

func (p *errorPage) title() (string, string) { return p.StatusText, "" }

// render executes the page template name with page into a buffer, then
// writes it with status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, page titled) {
	title, nav := page.title()
	v := &view{Title: title, Nav: nav, AllowActions: c.cfg.AllowActions, Page: page}
	if c.cfg.AllowActions {
		v.CSRF = c.csrfToken(w, r)
	}
	var buf bytes.Buffer
	if err := c.tmpl[name].Execute(&buf, v); err != nil {
		c.cfg.Logger.Error("console: render page", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// formatInt writes n with thousands separators: 1,234,567.
func formatInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

// formatDuration rounds d for a person: 0s, 850ms, 12.3s, 4m05s, 3h12m.
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// shorten cuts s to about n bytes on one line.
func shorten(n int, s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// prettyJSON indents a JSON payload; what is not JSON comes back as is.
func prettyJSON(b []byte) string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return string(b)
	}
	return buf.String()
}
