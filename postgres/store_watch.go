package postgres

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// storeNotifyChannel is the channel stores NOTIFY after appends and
// LISTEN on.
const storeNotifyChannel = "chronicle_events"

// Reconnect backoff of the LISTEN connection.
const (
	storeListenBackoffMin = 100 * time.Millisecond
	storeListenBackoffMax = 10 * time.Second
)

// Watch returns a channel that receives a value (at most one pending) when
// new events may be readable; see [eventstore.Store.Watch]. It is a hint:
// after each wake-up, read with [Store.ReadAll] until it returns less than
// a page.
//
// Watchers are woken when a notification arrives on the store's LISTEN
// connection (debounced by [Config.NotifyDebounce]), at once after this
// store's own appends, on every [Config.PollInterval] tick, and after the
// LISTEN connection is re-established, so a lost notification costs at
// most one interval. Notifications come from the stores of every process:
// each sends one after its appends commit (at most one per
// NotifyDebounce), and appends inside a caller's transaction notify when
// it commits. The first Watch starts the LISTEN connection (unless
// [Config.PollOnly]) and the ticker; [Store.Close] stops them.
//
// The channel is closed when ctx is done or the store is closed.
func (s *Store) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if s.watchClosed || ctx.Err() != nil {
		close(ch)
		return ch
	}
	s.watchers[ch] = struct{}{}
	if !s.watchStarted {
		s.watchStarted = true
		s.watchWG.Add(1)
		go s.watchDispatch(s.watchCtx)
		if !s.cfg.PollOnly {
			s.watchWG.Add(1)
			go s.watchListen(s.watchCtx)
		}
	}
	context.AfterFunc(ctx, func() {
		s.watchMu.Lock()
		defer s.watchMu.Unlock()
		if _, ok := s.watchers[ch]; ok {
			delete(s.watchers, ch)
			close(ch)
		}
	})
	return ch
}

// watchWakeAll gives every watcher a pending wake-up.
func (s *Store) watchWakeAll() {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// watchSignal hands a notification to the dispatcher without blocking.
func (s *Store) watchSignal() {
	select {
	case s.watchNotify <- struct{}{}:
	default:
	}
}

// watchAfterCommit runs after one of this store's own appends committed:
// it wakes this process's watchers at once, without waiting for a
// notification's round trip, and asks the notifier to tell other
// processes.
func (s *Store) watchAfterCommit() {
	s.watchSignal()
	s.watchMu.Lock()
	if s.watchClosed {
		s.watchMu.Unlock()
		return
	}
	if !s.notifierStarted {
		s.notifierStarted = true
		s.watchWG.Add(1)
		go s.watchNotifier(s.watchCtx)
	}
	s.watchMu.Unlock()
	select {
	case s.notifyRequest <- struct{}{}:
	default: // a notification is already due; it covers this append
	}
}

// notifySQL wakes the LISTENers of every process.
const notifySQL = `SELECT pg_notify('` + storeNotifyChannel + `', '')`

// watchNotifier sends a NOTIFY after appends committed, on its own
// statement: at once after a quiet period, then at most once per
// NotifyDebounce while appends keep coming. A NOTIFY takes a cluster-wide
// lock at commit; sending it here, rather than from a trigger or from the
// append statement, keeps that lock out of the appends' commits, so
// concurrent appenders are not serialised (docs/postgres.md has the
// numbers). Appends inside a caller's transaction notify at that
// transaction's commit instead (see storeAppendOnce).
func (s *Store) watchNotifier(ctx context.Context) {
	defer s.watchWG.Done()
	failing := false
	send := func(ctx context.Context) {
		_, err := s.pool.Exec(ctx, notifySQL)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			s.cfg.Logger.Warn("cannot notify other processes of new events; their watchers fall back to polling",
				"component", "chronicle/postgres notifier", "error", err)
		case err == nil && failing:
			failing = false
			s.cfg.Logger.Info("notifying other processes of new events again", "component", "chronicle/postgres notifier")
		}
	}
	for {
		select {
		case <-ctx.Done():
			select {
			case <-s.notifyRequest: // flush the last one
				flush, cancel := context.WithTimeout(context.Background(), time.Second)
				send(flush)
				cancel()
			default:
			}
			return
		case <-s.notifyRequest:
		}
		send(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(s.cfg.NotifyDebounce):
		}
	}
}

// watchDispatch wakes watchers on notifications (leading edge at once,
// then at most once per debounce window) and on every poll tick.
func (s *Store) watchDispatch(ctx context.Context) {
	defer s.watchWG.Done()
	ticker := time.NewTicker(s.cfg.PollInterval)
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
			s.watchWakeAll()
		case <-s.watchNotify:
			if window {
				pending = true
				continue
			}
			s.watchWakeAll()
			window = true
			debounce.Reset(s.cfg.NotifyDebounce)
		case <-debounce.C:
			if pending {
				s.watchWakeAll()
				pending = false
				debounce.Reset(s.cfg.NotifyDebounce)
				continue
			}
			window = false
		}
	}
}

// watchListen keeps one connection LISTENing on storeNotifyChannel and
// forwards its notifications to the dispatcher. When the connection fails
// it reconnects with exponential backoff and jitter, then wakes every
// watcher, since notifications sent while it was down are lost.
func (s *Store) watchListen(ctx context.Context) {
	defer s.watchWG.Done()
	log := s.cfg.Logger.With("component", "chronicle/postgres listener", "channel", storeNotifyChannel)
	backoff := storeListenBackoffMin
	connected := false
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, s.cfg.ListenConfig)
		if err == nil {
			if _, err = conn.Exec(ctx, "LISTEN "+storeNotifyChannel); err != nil {
				s.watchCloseConn(conn)
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
			backoff = min(2*backoff, storeListenBackoffMax)
			continue
		}
		if connected {
			log.Info("listening for event notifications again")
		}
		connected = true
		backoff = storeListenBackoffMin
		// Poll after (re)connecting: notifications sent before LISTEN took
		// effect are lost.
		s.watchWakeAll()
		for {
			if _, err = conn.WaitForNotification(ctx); err != nil {
				break
			}
			s.watchSignal()
		}
		s.watchCloseConn(conn)
		if ctx.Err() != nil {
			return
		}
		log.Warn("lost the connection listening for event notifications; reconnecting", "error", err)
	}
}

func (s *Store) watchCloseConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx) // the connection is broken or unwanted; nothing to report
}
