package console

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/shred"
)

// The defaults of [Config].
const (
	defaultPageSize       = 50
	defaultLiveInterval   = 2 * time.Second
	defaultSampleInterval = 5 * time.Second
	defaultLagHistory     = 10 * time.Minute
	maxPageSize           = 500
)

// lagCountLimit caps the lag in events the console counts per partition:
// a partition further behind shows an estimate from the global positions
// ("≈ 123,456") instead of costing a count of millions of rows on every
// refresh.
const lagCountLimit = 10_000

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures a [Console]. The zero value (or a nil *Config) gives
// the defaults: a read-only console.
type Config struct {
	// AllowActions enables the buttons that change state: retrying and
	// skipping dead letters and requesting a projection rebuild. Each
	// action is a POST protected against cross-site request forgery and
	// asks for a confirmation. Defaults to false: the console only reads.
	AllowActions bool

	// Logger receives the console's operational messages: failed reads
	// of the background lag sampler and of live updates. Defaults to
	// [slog.Default].
	Logger *slog.Logger

	// PageSize is the number of rows of a page of events, streams or dead
	// letters; a page's "limit" query parameter may ask for up to 500.
	// Defaults to 50.
	PageSize int

	// LiveInterval is how often live views (the overview, the log tail,
	// projections) refresh while a page shows them. The log tail also
	// wakes up on the store's notifications. Defaults to 2s.
	LiveInterval time.Duration

	// SampleInterval is how often the console samples the lag of every
	// projection for the lag charts, from the first request on until
	// [Console.Close]. Defaults to 5s.
	SampleInterval time.Duration

	// LagHistory is how far back the lag charts go. Defaults to 10m.
	LagHistory time.Duration

	// Bus is the event bus whose consumer groups and dead letters the
	// event bus page shows, with replay and discard of dead letters when
	// AllowActions is set: a *natsbus.Bus or an *eventbus.MemoryBus, or
	// anything implementing [eventbus.Inspector]. Defaults to nil: the page
	// shows the relay only, and says that no bus is configured.
	Bus eventbus.Inspector

	// Relay is the relay, when it runs in this process: the event bus page
	// then shows its last publish error. Defaults to nil: the page shows
	// the relay's state from the database only.
	Relay *eventbus.Relay

	// RelayName is the projection name of the relay the event bus page
	// shows. Defaults to the name of Relay when it is set, otherwise to
	// "eventbus-relay" (the default of [eventbus.RelayConfig.Name]).
	RelayName string

	// SubjectKeys is the key store of crypto-shredding (package shred).
	// The console never decrypts: it shows each sealed personal value as
	// [encrypted], or as [redacted] once its key is gone (its subject was
	// forgotten), and needs the key store only to tell which. Defaults to
	// nil: every sealed value shows as [encrypted].
	SubjectKeys shred.KeyStore
}

func (cfg Config) withDefaults() (Config, error) {
	invalid := func(field, reason string) error {
		return &eventstore.ValidationError{Field: "config " + field, Reason: reason}
	}
	switch {
	case cfg.PageSize < 0 || cfg.PageSize > maxPageSize:
		return cfg, invalid("PageSize", fmt.Sprintf("%d is not between 1 and %d", cfg.PageSize, maxPageSize))
	case cfg.LiveInterval < 0:
		return cfg, invalid("LiveInterval", fmt.Sprintf("%s is negative", cfg.LiveInterval))
	case cfg.SampleInterval < 0:
		return cfg, invalid("SampleInterval", fmt.Sprintf("%s is negative", cfg.SampleInterval))
	case cfg.LagHistory < 0:
		return cfg, invalid("LagHistory", fmt.Sprintf("%s is negative", cfg.LagHistory))
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.PageSize = cmp.Or(cfg.PageSize, defaultPageSize)
	cfg.LiveInterval = cmp.Or(cfg.LiveInterval, defaultLiveInterval)
	cfg.SampleInterval = cmp.Or(cfg.SampleInterval, defaultSampleInterval)
	cfg.LagHistory = cmp.Or(cfg.LagHistory, defaultLagHistory)
	if cfg.RelayName == "" && cfg.Relay != nil {
		cfg.RelayName = cfg.Relay.Name()
	}
	cfg.RelayName = cmp.Or(cfg.RelayName, defaultRelayName)
	if err := projection.ValidateName(cfg.RelayName); err != nil {
		return cfg, invalid("RelayName", err.Error())
	}
	return cfg, nil
}

// Console is the web console: an [http.Handler] serving pages about the
// events, streams, projections and dead letters of one database. Mount it
// at the root or under a path of your own (with [http.StripPrefix]):
// every link it renders is relative, so it works under any prefix. It
// does no authentication: put your own in front of it.
//
// A Console is safe for concurrent use. Close it when done, to stop its
// lag sampler.
type Console struct {
	store  *postgres.Store
	ps     *postgres.ProjectionStore
	cfg    Config
	tmpl   map[string]*template.Template
	mux    *http.ServeMux
	static http.Handler
	cop    *http.CrossOriginProtection

	samplerOnce sync.Once
	lags        *lagHistory
	ctx         context.Context // done on Close
	cancel      context.CancelFunc
	wg          sync.WaitGroup

	// liveStreams counts the live-update connections being served.
	liveStreams atomic.Int64
}

// New returns a Console reading through store and projections. A nil cfg
// means the defaults: a read-only console. New does not connect; a page
// reports a database it cannot reach, and works again once it is back.
func New(store *postgres.Store, projections *postgres.ProjectionStore, cfg *Config) (*Console, error) {
	if store == nil {
		return nil, &eventstore.ValidationError{Field: "store", Reason: "must not be nil"}
	}
	if projections == nil {
		return nil, &eventstore.ValidationError{Field: "projections", Reason: "must not be nil"}
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	con := &Console{
		store:  store,
		ps:     projections,
		cfg:    c,
		tmpl:   tmpl,
		static: http.StripPrefix("/static/", http.FileServerFS(static)),
		cop:    http.NewCrossOriginProtection(),
		lags:   newLagHistory(int(c.LagHistory / c.SampleInterval)),
		ctx:    ctx,
		cancel: cancel,
	}
	con.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		con.renderError(w, r, http.StatusForbidden, "cross-origin request refused: actions must come from the console's own pages")
	}))
	con.routes()
	return con, nil
}

// Close stops the background lag sampler and ends the live-update
// connections. Pages keep being served (without lag history).
func (c *Console) Close() {
	c.cancel()
	c.wg.Wait()
}

func (c *Console) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.overviewPage)
	mux.HandleFunc("GET /streams", c.streamsPage)
	mux.HandleFunc("GET /stream", c.streamPage)
	mux.HandleFunc("GET /log", c.logPage)
	mux.HandleFunc("GET /projections", c.projectionsPage)
	mux.HandleFunc("GET /dead-letters", c.deadLettersPage)
	mux.HandleFunc("GET /dead-letter", c.deadLetterPage)
	mux.HandleFunc("POST /retry", c.retryAction)
	mux.HandleFunc("POST /skip", c.skipAction)
	mux.HandleFunc("POST /rebuild", c.rebuildAction)
	mux.HandleFunc("GET /bus", c.busPage)
	mux.HandleFunc("POST /bus-replay", c.busReplayAction)
	mux.HandleFunc("POST /bus-discard", c.busDiscardAction)
	mux.HandleFunc("GET /live", c.live)
	mux.Handle("GET /static/", c.static)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.renderError(w, r, http.StatusNotFound, "no such page")
	})
	c.mux = mux
}

// ServeHTTP serves the console's pages.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			c.cfg.Logger.Error("console: panic serving a page", "path", r.URL.Path, "panic", v)
			c.renderError(w, r, http.StatusInternalServerError, "internal error")
		}
	}()
	c.samplerOnce.Do(c.startSampler)
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if r.URL.Path == "" {
		// Mounted with http.StripPrefix("/admin", …) and asked for
		// "/admin": relative links need the trailing slash.
		path, _, _ := strings.Cut(r.RequestURI, "?")
		http.Redirect(w, r, path+"/", http.StatusMovedPermanently)
		return
	}
	c.cop.Handler(c.mux).ServeHTTP(w, r)
}

// pageError is an error a page reports with its HTTP status.
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &pageError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &pageError{status: http.StatusNotFound, msg: fmt.Sprintf(format, args...)}
}

// classify turns an error of the stores into an HTTP status and a message
// for a person: bad input and unknown things say so; anything else is the
// database failing, which the console reports and recovers from.
func classify(err error) (int, string) {
	var pe *pageError
	switch {
	case errors.As(err, &pe):
		return pe.status, pe.msg
	case errors.Is(err, eventstore.ErrStreamNotFound),
		errors.Is(err, projection.ErrDeadLetterNotFound),
		errors.Is(err, eventbus.ErrDeadLetterNotFound),
		errors.Is(err, projection.ErrUnknownProjection):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, eventstore.ErrInvalidInput):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, projection.ErrDeadLetterState):
		return http.StatusConflict, err.Error()
	case errors.Is(err, eventbus.ErrUnavailable), errors.Is(err, eventbus.ErrPublishFailed), errors.Is(err, eventbus.ErrClosed):
		return http.StatusServiceUnavailable, "the event bus is unavailable (" + err.Error() + "); try again once it is back."
	case errors.Is(err, postgres.ErrSchemaMissing):
		return http.StatusServiceUnavailable, postgres.ErrSchemaMissing.Error()
	default:
		return http.StatusServiceUnavailable, "the database is unavailable (" + err.Error() + "); this page works again as soon as it is back."
	}
}

// fail renders the page for err.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the browser went away
	}
	status, msg := classify(err)
	if status >= 500 {
		c.cfg.Logger.Warn("console: page failed", "path", r.URL.Path, "err", err)
	}
	c.renderError(w, r, status, msg)
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "error", &errorPage{Status: status, StatusText: http.StatusText(status), Message: msg})
}

// timeout bounds the reads of one page.
const timeout = 10 * time.Second

func pageContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), timeout)
}
