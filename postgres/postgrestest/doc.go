// Package postgrestest gives each test its own migrated PostgreSQL database,
// for Chronicle's integration tests and for yours.
//
// Every call to [DatabaseURL] or [Pool] creates a new database cloned from a
// template that already holds Chronicle's schema, and drops it when the test
// ends. Cloning takes tens of milliseconds, so tests can call t.Parallel()
// and never see each other's events.
//
//	func TestDeposit(t *testing.T) {
//		t.Parallel()
//		pool := postgrestest.Pool(t) // fresh database, chronicle schema applied
//		store, err := postgres.New(pool, nil)
//		if err != nil {
//			t.Fatal(err)
//		}
//		// ... use store; the database is dropped when the test ends
//	}
//
// # Where the server comes from
//
// When [EnvDatabaseURL] (CHRONICLE_TEST_DATABASE_URL) is set, its server is
// used; the role needs CREATEDB, and the URL should name a maintenance
// database such as postgres:
//
//	CHRONICLE_TEST_DATABASE_URL='postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable' go test ./...
//
// Otherwise a PostgreSQL container is started through testcontainers-go
// from [EnvImage] (CHRONICLE_TEST_POSTGRES_IMAGE, default [DefaultImage]),
// tuned for tests (fsync off, data on tmpfs). The test processes of one
// `go test ./...` run share one container, found by name. The usual
// testcontainers variables apply: set TESTCONTAINERS_RYUK_DISABLED=true
// where the Ryuk image cannot be pulled (the container then outlives the
// run and the next run reuses it; remove it with
// `docker rm -f $(docker ps -aq --filter name=chronicle-postgrestest)`), and
// TESTCONTAINERS_HOST_OVERRIDE when the mapped port is not on localhost.
//
// When neither is available the test is skipped with the reason "no
// PostgreSQL: set CHRONICLE_TEST_DATABASE_URL or start Docker"; so is it
// when Docker runs but cannot start the image (for example, it cannot be
// pulled). When the
// environment variable CI is true, the test fails instead, so that a CI
// job cannot pass by skipping every integration test. The reason names the
// real cause (no socket at /var/run/docker.sock, DOCKER_HOST unreachable,
// no answer), not the last location testcontainers happened to try.
//
// [ReportSkips], called from TestMain, prints one line after a package's
// tests saying how many skipped and why.
//
// # Your own schema
//
// Tests that need tables of their own next to Chronicle's use a [Template]
// built from a [Config]. The template is migrated once per [Config.Key] on
// the server and kept there, so change the key when the schema changes:
//
//	var testDB = mustTemplate()
//
//	func mustTemplate() *postgrestest.Template {
//		tpl, err := postgrestest.New(&postgrestest.Config{
//			Key: "myapp-schema-v7",
//			Migrate: func(ctx context.Context, databaseURL string) error {
//				if err := migrations.Up(ctx, databaseURL); err != nil {
//					return err
//				}
//				return myapp.Migrate(ctx, databaseURL)
//			},
//		})
//		if err != nil {
//			panic(err)
//		}
//		return tpl
//	}
//
//	func TestTransfer(t *testing.T) {
//		pool := testDB.Pool(t)
//		// ...
//	}
//
// # Open transactions
//
// Chronicle's readers of all events stop at the oldest transaction still
// open anywhere on the server (the transaction-id horizon), and the test
// processes of a `go test ./...` run share one server: a test that keeps a
// transaction open stalls every other package's tests that wait for the
// head of the event log. To bound the harm, every database handed out here
// is created with idle_in_transaction_session_timeout set to
// [IdleInTransactionTimeout] (ALTER DATABASE … SET, since settings are not
// copied from the template): the server ends a session left idle in a
// transaction that long, and the test that owned it fails with a closed
// connection instead of silently stalling the others. Keep transactions in
// tests short anyway. A test that really needs a longer idle transaction
// overrides it on its own session, with SET idle_in_transaction_session_timeout
// = '5min' or the URL parameter
// options=-c%20idle_in_transaction_session_timeout%3D300000.
//
// # Names and leftovers
//
// Template databases are named chronicle_tpl_<hash of the key> and test
// databases chronicle_test_<random>; both names are generated here, never
// taken from input. Building a template is serialised across processes with
// an advisory lock and published by a rename, so a crashed build leaves no
// half-migrated template. A test process killed before its cleanups ran
// leaves its chronicle_test_* databases behind; on a long-lived server,
// drop them when no tests are running.
package postgrestest
