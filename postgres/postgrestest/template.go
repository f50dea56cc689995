package postgrestest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/migrations"
)

// templateLockKey is the advisory lock that serialises template builds
// across test processes (any key, fixed: "chronicle-postgrestest").
const templateLockKey int64 = 0x6368726f6e746573

// templateTimeout bounds waiting for another process's build plus our own.
const templateTimeout = 3 * time.Minute

// migrationsHash hashes the names and contents of Chronicle's embedded
// migration files, so that a schema change yields a new template.
func migrationsHash() string {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS(), path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("postgrestest: read embedded migrations: %v", err)) // embedded files cannot fail
	}
	return hex.EncodeToString(h.Sum(nil))
}

// templateName derives the template database's name from the schema key.
func templateName(key string) string {
	h := sha256.Sum256([]byte(key))
	return "chronicle_tpl_" + hex.EncodeToString(h[:8])
}

// buildTemplate makes sure the template database exists on the server,
// building it if needed. Processes racing to build it are serialised by an
// advisory lock; the template is built under another name and renamed when
// complete, so a crashed build never leaves a half-migrated template.
func buildTemplate(admin, name string, migrate func(context.Context, string) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), templateTimeout)
	defer cancel()
	conn, err := connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLockKey); err != nil {
		return fmt.Errorf("postgrestest: lock template %s: %w", name, err)
	}
	// Closing the connection releases the lock too, even on error paths.
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", templateLockKey) //nolint:errcheck

	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("postgrestest: look up template %s: %w", name, err)
	}
	if exists {
		return nil
	}

	build := name + "_build"
	buildID := pgx.Identifier{build}.Sanitize()
	steps := []string{
		"DROP DATABASE IF EXISTS " + buildID + " WITH (FORCE)", // left by a crashed build
		"CREATE DATABASE " + buildID,
	}
	for _, sql := range steps {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("postgrestest: build template %s: %w", name, err)
		}
	}
	if err := migrate(ctx, withDatabase(admin, build)); err != nil {
		return fmt.Errorf("postgrestest: migrate template %s: %w", name, err)
	}
	// The migration's connections may still be closing: end them, then
	// publish the template under its real name. ALLOW_CONNECTIONS false
	// guarantees that cloning never meets a connected session.
	terminate := "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
	steps = []string{
		"ALTER DATABASE " + buildID + " WITH ALLOW_CONNECTIONS false IS_TEMPLATE true",
		"ALTER DATABASE " + buildID + " RENAME TO " + pgx.Identifier{name}.Sanitize(),
	}
	for _, sql := range steps {
		for delay := 10 * time.Millisecond; ; delay = min(2*delay, time.Second) {
			if _, err = conn.Exec(ctx, terminate, build); err != nil {
				break
			}
			_, err = conn.Exec(ctx, sql)
			if !isObjectInUse(err) {
				break
			}
			select {
			case <-time.After(delay):
				continue
			case <-ctx.Done():
			}
			break
		}
		if err != nil {
			return fmt.Errorf("postgrestest: publish template %s: %w", name, err)
		}
	}
	return nil
}
