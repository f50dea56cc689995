package notify

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channel is the channel stores NOTIFY after appends and LISTEN on.
const Channel = "chronicle_events"

// SQL wakes the LISTENers of every process. Appends inside a caller's
// transaction send it with the append: PostgreSQL delivers it when that
// transaction commits, and drops it if it rolls back.
const SQL = `SELECT pg_notify('` + Channel + `', '')`

// listenSQL starts listening on the connection.
const listenSQL = `LISTEN ` + Channel

// Reconnect backoff of the LISTEN connection.
const (
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 10 * time.Second
)

// Config configures a [Hub]. Every field is required.
type Config struct {
	// Logger receives the LISTEN connection's and the notifier's state
	// changes.
	Logger *slog.Logger
	// Listen is the configuration of the LISTEN connection; nil disables
	// LISTEN (poll-only mode).
	Listen *pgx.ConnConfig
	// PollInterval is the tick on which every watcher is woken.
	PollInterval time.Duration
	// Debounce is the shortest time between two wake-ups caused by
	// notifications, and between two NOTIFYs this hub sends.
	Debounce time.Duration
	// Notify sends [SQL] on the store's pool.
	Notify func(ctx context.Context) error
}

// Hub holds one store's watchers and the goroutines that wake them. Its
// goroutines start lazily and stop on [Hub.Close]; it is safe for
// concurrent use.
type Hub struct {
	cfg Config

	mu              sync.Mutex
	watchers        map[chan struct{}]struct{}
	closed          bool
	started         bool // dispatcher (and listener) running
	notifierStarted bool
	ctx             context.Context
	cancel          context.CancelFunc
	wg              sync.WaitGroup
	signals         chan struct{} // notifications and local appends, to the dispatcher
	requests        chan struct{} // committed local appends, to the notifier
}

// New returns a hub; nothing runs until the first [Hub.Watch] or
// [Hub.AfterCommit].
func New(cfg Config) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		cfg:      cfg,
		watchers: make(map[chan struct{}]struct{}),
		ctx:      ctx,
		cancel:   cancel,
		signals:  make(chan struct{}, 1),
		requests: make(chan struct{}, 1),
	}
}

// Watch returns a channel that receives a value (at most one pending) on
// each wake-up, closed when ctx is done or the hub is closed. The first
// call starts the dispatcher and the listener.
func (h *Hub) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || ctx.Err() != nil {
		close(ch)
		return ch
	}
	h.watchers[ch] = struct{}{}
	if !h.started {
		h.started = true
		h.wg.Add(1)
		go h.dispatch(h.ctx)
		if h.cfg.Listen != nil {
			h.wg.Add(1)
			go h.listen(h.ctx)
		}
	}
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.watchers[ch]; ok {
			delete(h.watchers, ch)
			close(ch)
		}
	})
	return ch
}

// Close stops the goroutines (the notifier sends a last pending NOTIFY
// first) and closes every watcher's channel.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	for ch := range h.watchers {
		delete(h.watchers, ch)
		close(ch)
	}
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
}

// wakeAll gives every watcher a pending wake-up.
func (h *Hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// signal hands a notification to the dispatcher without blocking.
func (h *Hub) signal() {
	select {
	case h.signals <- struct{}{}:
	default:
	}
}

// AfterCommit runs after one of the store's own appends committed: it
// wakes this process's watchers at once, without waiting for a
// notification's round trip, and asks the notifier to tell other
// processes.
func (h *Hub) AfterCommit() {
	h.signal()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	if !h.notifierStarted {
		h.notifierStarted = true
		h.wg.Add(1)
		go h.notifier(h.ctx)
	}
	h.mu.Unlock()
	select {
	case h.requests <- struct{}{}:
	default: // a notification is already due; it covers this append
	}
}

// notifier sends a NOTIFY after appends committed, on its own statement:
// at once after a quiet period, then at most once per debounce window
// while appends keep coming. A NOTIFY takes a cluster-wide lock at commit;
// sending it here, rather than from a trigger or from the append
// statement, keeps that lock out of the appends' commits, so concurrent
// appenders are not serialised (docs/postgres.md has the numbers).
func (h *Hub) notifier(ctx context.Context) {
	defer h.wg.Done()
	log := h.cfg.Logger.With("component", "chronicle/postgres notifier")
	failing := false
	send := func(ctx context.Context) {
		err := h.cfg.Notify(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			log.Warn("cannot notify other processes of new events; their watchers fall back to polling", "error", err)
		case err == nil && failing:
			failing = false
			log.Info("notifying other processes of new events again")
		}
	}
	for {
		select {
		case <-ctx.Done():
			select {
			case <-h.requests: // flush the last one
				flush, cancel := context.WithTimeout(context.Background(), time.Second)
				send(flush)
				cancel()
			default:
			}
			return
		case <-h.requests:
		}
		send(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(h.cfg.Debounce):
		}
	}
}

// dispatch wakes watchers on notifications (leading edge at once, then at
// most once per debounce window) and on every poll tick.
func (h *Hub) dispatch(ctx context.Context) {
	defer h.wg.Done()
	ticker := time.NewTicker(h.cfg.PollInterval)
	defer ticker.Stop()
	debounce := time.NewTimer(0)
	<-debounce.C
	var (
		window  bool // inside a debounce window
		pending bool // a notification arrived inside the window
	)
	for {
		select {
		case <-ctx.Done():
			debounce.Stop()
			return
		case <-ticker.C:
			h.wakeAll()
		case <-h.signals:
			if window {
				pending = true
				continue
			}
			h.wakeAll()
			window = true
			debounce.Reset(h.cfg.Debounce)
		case <-debounce.C:
			if pending {
				h.wakeAll()
				pending = false
				debounce.Reset(h.cfg.Debounce)
				continue
			}
			window = false
		}
	}
}

// listen keeps one connection LISTENing on Channel and forwards its
// notifications to the dispatcher. When the connection fails it
// reconnects with exponential backoff and jitter, then wakes every
// watcher, since notifications sent while it was down are lost.
func (h *Hub) listen(ctx context.Context) {
	defer h.wg.Done()
	log := h.cfg.Logger.With("component", "chronicle/postgres listener", "channel", Channel)
	backoff := listenBackoffMin
	connected := false
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, h.cfg.Listen)
		if err == nil {
			if _, err = conn.Exec(ctx, listenSQL); err != nil {
				closeConn(conn)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("cannot listen for event notifications; watchers fall back to polling", "error", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff/2 + rand.N(backoff/2+1)):
			}
			backoff = min(2*backoff, listenBackoffMax)
			continue
		}
		if connected {
			log.Info("listening for event notifications again")
		}
		connected = true
		backoff = listenBackoffMin
		// Poll after (re)connecting: notifications sent before LISTEN took
		// effect are lost.
		h.wakeAll()
		for {
			if _, err = conn.WaitForNotification(ctx); err != nil {
				break
			}
			h.signal()
		}
		closeConn(conn)
		if ctx.Err() != nil {
			return
		}
		log.Warn("lost the connection listening for event notifications; reconnecting", "error", err)
	}
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx) // the connection is broken or unwanted; nothing to report
}
