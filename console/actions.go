package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"

	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// csrfCookie holds the browser's anti-forgery token; every action form
// carries the same value in a hidden field (double submit). A cross-site
// page can neither read the cookie nor the token; on top of that,
// [http.CrossOriginProtection] refuses cross-origin POSTs outright.
const csrfCookie = "chronicle_console_csrf"

// csrfToken returns the request's token, setting a new cookie when it has
// none. The cookie has no Path: it defaults to the directory of the page,
// which is where the console is mounted, since every page sits directly
// under it.
func (c *Console) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) == 43 {
		return ck.Value
	}
	b := make([]byte, 32)
	rand.Read(b) // never fails
	tok := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: tok, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	return tok
}

// checkAction refuses a POST when actions are disabled or its token does
// not match the cookie's.
func (c *Console) checkAction(w http.ResponseWriter, r *http.Request) bool {
	if !c.cfg.AllowActions {
		c.renderError(w, r, http.StatusForbidden, "this console is read-only: start it with --allow-actions (console.Config.AllowActions) to retry, skip or rebuild")
		return false
	}
	ck, err := r.Cookie(csrfCookie)
	form := r.PostFormValue("csrf")
	if err != nil || form == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(form)) != 1 {
		c.renderError(w, r, http.StatusForbidden, "the form's security token is missing or stale: reload the page and try again")
		return false
	}
	return true
}

// confirmPage asks before an action; posting its form with confirm=yes
// performs it.
type confirmPage struct {
	Action   string // the form's target: retry, skip or rebuild
	Question string
	Button   string
	Fields   [][2]string // hidden fields besides csrf and confirm
	Cancel   string      // the link back
	Letter   *projectionstore.DeadLetter
	Facts    [][2]string // what the action is about, when Letter is nil
}

func (p *confirmPage) title() (string, string) { return "Confirm", "" }

func (c *Console) retryAction(w http.ResponseWriter, r *http.Request) {
	c.deadLetterAction(w, r, "retry", "Retry", c.ps.RetryDeadLetter)
}

func (c *Console) skipAction(w http.ResponseWriter, r *http.Request) {
	c.deadLetterAction(w, r, "skip", "Skip", c.ps.SkipDeadLetter)
}

func (c *Console) deadLetterAction(w http.ResponseWriter, r *http.Request, op, verb string, do func(context.Context, int64) error) {
	if !c.checkAction(w, r) {
		return
	}
	ctx, cancel := pageContext(r)
	defer cancel()
	idText := r.PostFormValue("id")
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 {
		c.fail(w, r, badRequest("%q is not a dead letter id", idText))
		return
	}
	back := r.PostFormValue("back")
	if back != "dead-letter" {
		back = "dead-letters"
	}
	if r.PostFormValue("confirm") != "yes" {
		dl, err := c.deadLetter(ctx, id)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		question := "Retry dead letter " + idText + "? The holder of its partition handles the event again at its next poll: resolved if it succeeds, parked again if it fails."
		if op == "skip" {
			question = "Skip dead letter " + idText + "? The projection gives up on this event for good (you can still retry it later)."
		}
		cancelURL := "dead-letters"
		if back == "dead-letter" {
			cancelURL = "dead-letter?id=" + idText
		}
		c.render(w, r, http.StatusOK, "confirm", &confirmPage{
			Action: op, Question: question, Button: verb + " dead letter " + idText,
			Fields: [][2]string{{"id", idText}, {"back", back}}, Cancel: cancelURL, Letter: &dl,
		})
		return
	}
	if err := do(ctx, id); err != nil {
		c.fail(w, r, err)
		return
	}
	q := url.Values{"done": {op}, "id": {idText}}
	target := "dead-letters?" + q.Encode()
	if back == "dead-letter" {
		target = "dead-letter?" + q.Encode()
	}
	seeOther(w, target)
}

func (c *Console) rebuildAction(w http.ResponseWriter, r *http.Request) {
	if !c.checkAction(w, r) {
		return
	}
	ctx, cancel := pageContext(r)
	defer cancel()
	name := r.PostFormValue("projection")
	if err := projection.ValidateName(name); err != nil {
		c.fail(w, r, badRequest("%v", err))
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		cps, err := c.ps.Checkpoints(ctx, name)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if len(cps) == 0 {
			c.fail(w, r, notFound("projection %q has no checkpoints (has a runner ever run it?)", name))
			return
		}
		c.render(w, r, http.StatusOK, "confirm", &confirmPage{
			Action:   "rebuild",
			Question: "Rebuild projection " + name + "? The runners holding its partitions reset its read model and replay every event; it lags until the replay is done.",
			Button:   "Rebuild " + name, Fields: [][2]string{{"projection", name}}, Cancel: "projections",
		})
		return
	}
	if err := c.ps.RequestRebuild(ctx, name, 0); err != nil {
		c.fail(w, r, err)
		return
	}
	seeOther(w, "projections?"+url.Values{"rebuilt": {name}}.Encode())
}

// seeOther redirects to target, relative to the page: the browser resolves
// it against the URL it posted to, prefix included. (http.Redirect would
// resolve it against r.URL.Path, which http.StripPrefix has shortened.)
func seeOther(w http.ResponseWriter, target string) {
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusSeeOther)
}
