package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/chronicle-go/chronicle/console"
	"github.com/chronicle-go/chronicle/natsbus"
	"github.com/chronicle-go/chronicle/postgres"
)

// uiDefaultListen is where `chronicle ui` listens unless told otherwise:
// loopback only.
const uiDefaultListen = "127.0.0.1:8080"

func uiCommand() command {
	var (
		dbURL        string
		listen       string
		allowActions bool
		bus          uiBus
	)
	return command{
		name:     "ui",
		synopsis: "[--listen ADDR] [--allow-actions] [--database-url URL] [--nats URL [--stream NAME]] [--relay NAME]",
		summary:  "serve the web console: streams, events, projections, dead letters",
		help: `Serves the web console until interrupted (Ctrl-C): an overview, streams and
their events, the global log tailed live, projections with their lag, and
dead letters, and the event bus: the relay's progress and, with --nats, the
consumer groups and their dead letters.

The console is read-only unless --allow-actions is given: then dead letters
can be retried and skipped and projections rebuilt, each after a
confirmation. It has no authentication and listens on loopback by default;
to reach it from elsewhere, use an SSH tunnel, or mount package console in
your own service behind its authentication. See docs/ui.md.`,
		flags: func(fs *flag.FlagSet) {
			databaseFlag(fs, &dbURL)
			fs.StringVar(&listen, "listen", uiDefaultListen, "`address` to listen on (host:port)")
			fs.BoolVar(&allowActions, "allow-actions", false, "allow retrying and skipping dead letters, rebuilding projections, and replaying and discarding the bus's dead letters")
			fs.StringVar(&bus.natsURL, "nats", "", "NATS server `url` of the event bus, for its consumer groups and dead letters (none by default)")
			fs.StringVar(&bus.stream, "stream", "CHRONICLE", "the bus's JetStream `stream` (its dead letters are in NAME_DLQ)")
			fs.StringVar(&bus.relay, "relay", "eventbus-relay", "the relay's projection `name`")
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usagef("ui takes no arguments")
			}
			host, _, err := net.SplitHostPort(listen)
			if err != nil {
				return usagef("--listen %q is not host:port", listen)
			}
			u, err := databaseURL(env, dbURL)
			if err != nil {
				return err
			}
			return redact(serveUI(ctx, env, u, listen, host, allowActions, bus), u)
		},
	}
}

// uiBus is what `chronicle ui` shows of the event bus.
type uiBus struct {
	natsURL, stream, relay string
}

// serveUI serves the console on listen until ctx is done.
func serveUI(ctx context.Context, env *Env, databaseURL, listen, host string, allowActions bool, bus uiBus) error {
	pool, err := openPool(ctx, databaseURL, 8, 5*time.Second)
	if err != nil {
		return err
	}
	defer pool.Close()
	logger := slog.New(slog.NewTextHandler(env.Stderr, nil))
	store, err := postgres.New(pool, &postgres.Config{Logger: logger})
	if err != nil {
		return err
	}
	defer store.Close()
	ps, err := postgres.NewProjectionStore(pool, nil)
	if err != nil {
		return err
	}
	keys, err := postgres.NewSubjectKeyStore(pool)
	if err != nil {
		return err
	}
	cfg := &console.Config{AllowActions: allowActions, Logger: logger, SubjectKeys: keys, RelayName: bus.relay}
	if bus.natsURL != "" {
		nc, err := natsbus.Connect(bus.natsURL, "chronicle-ui")
		if err != nil {
			return err
		}
		defer nc.Close()
		nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		b, err := natsbus.New(nctx, nc, &natsbus.Config{Stream: bus.stream, DeadLetterStream: bus.stream + "_DLQ", Existing: true, Logger: logger})
		if err != nil {
			return err
		}
		cfg.Bus = b
	}
	con, err := console.New(store, ps, cfg)
	if err != nil {
		return err
	}
	defer con.Close()

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var handler http.Handler = con
	loopback := isLoopbackHost(host)
	if loopback {
		handler = loopbackHostOnly(con)
	} else {
		what := "sees your events"
		if allowActions {
			what = "sees your events and can retry, skip and rebuild"
		}
		fmt.Fprintf(env.Stderr, "warning: listening on %s, beyond this machine; the console has no authentication: anyone who reaches it %s\n", ln.Addr(), what)
	}
	mode := "read-only"
	if allowActions {
		mode = "actions allowed"
	}
	fmt.Fprintf(env.Stdout, "chronicle console (%s) on http://%s/\n", mode, ln.Addr())
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Live updates stream forever: end them before waiting for the
	// others.
	con.Close()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

// isLoopbackHost reports whether host (from --listen) is a loopback
// address or localhost.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHostOnly refuses requests whose Host header is not a loopback
// name or address: a page of another site whose name an attacker points
// at 127.0.0.1 (DNS rebinding) could otherwise read the console.
func loopbackHostOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		host = strings.Trim(host, "[]")
		if !isLoopbackHost(host) {
			http.Error(w, "the console listens on loopback: open it as http://127.0.0.1 or http://localhost", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}
