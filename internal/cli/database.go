package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// databaseFlag declares --database-url on fs and returns its value.
func databaseFlag(fs *flag.FlagSet, target *string) {
	fs.StringVar(target, "database-url", "", "PostgreSQL `url`, e.g. postgres://user:pass@host:5432/db (default $DATABASE_URL)")
}

// databaseURL returns the URL from the flag, else from DATABASE_URL, after
// a syntax check that never echoes the password.
func databaseURL(env *Env, flagValue string) (string, error) {
	u := flagValue
	if u == "" {
		u = env.Getenv("DATABASE_URL")
	}
	if u == "" {
		return "", errors.New("no database url: pass --database-url or set DATABASE_URL")
	}
	if err := checkDatabaseURL(u); err != nil {
		return "", err
	}
	return u, nil
}

// checkDatabaseURL rejects what cannot be a PostgreSQL URL before any
// connection attempt.
func checkDatabaseURL(raw string) error {
	if !strings.HasPrefix(raw, "postgres://") && !strings.HasPrefix(raw, "postgresql://") {
		scheme, _, ok := strings.Cut(raw, "://")
		if !ok || strings.ContainsAny(scheme, "@:/ ") {
			return errors.New("invalid database url: want postgres://user:password@host:port/database")
		}
		return fmt.Errorf("invalid database url: scheme %q, want postgres://", scheme)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole input, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("invalid database url: %w", err)
	}
	if u.Host == "" {
		return errors.New("invalid database url: no host")
	}
	return nil
}

// redact removes the password of databaseURL from err's message, for
// errors from libraries that echo the URL.
func redact(err error, databaseURL string) error {
	u, perr := url.Parse(databaseURL)
	if err == nil || perr != nil || u.User == nil {
		return err
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), pw, "xxxxx"), err: err}
}

// redactedError is err with the password blanked out of its message; it
// still unwraps to err for errors.Is.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// openPool opens a pool of at most maxConns connections on databaseURL
// (connecting with connectTimeout unless the URL sets one) and checks that
// the database answers. The caller closes it.
func openPool(ctx context.Context, databaseURL string, maxConns int32, connectTimeout time.Duration) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("invalid database url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}
