package console_test

import (
	"context"
	"crypto/subtle"
	"log"
	"net/http"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/console"
	"github.com/chronicle-go/chronicle/postgres"
)

// This example needs a PostgreSQL server, so it has no Output comment: it
// is compiled, not run. The package's tests mount the console the same
// way, under /admin/chronicle, and drive it in a browser.

// Mount the console under a path of your service, behind your own
// authentication, with actions allowed.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	projections, err := postgres.NewProjectionStore(pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	con, err := console.New(store, projections, &console.Config{AllowActions: true})
	if err != nil {
		log.Fatal(err)
	}
	defer con.Close()

	mux := http.NewServeMux()
	mux.Handle("/admin/chronicle/", requireAdmin(http.StripPrefix("/admin/chronicle", con)))
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}

// requireAdmin stands for your service's authentication.
func requireAdmin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pw, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(pw), []byte(os.Getenv("ADMIN_PASSWORD"))) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="chronicle"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
