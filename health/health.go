package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/projection"
)

// Defaults of [Config].
const (
	defaultMaxLagEvents      = 1000
	defaultMaxLagAge         = time.Minute
	defaultMaxTransactionAge = time.Minute
	defaultTimeout           = 10 * time.Second
	defaultTransactions      = 5
)

// Config configures a [Checker]. The zero value (or a nil *Config) gives
// the defaults.
type Config struct {
	// MaxLagEvents is the number of events a projection partition may lag
	// behind the head before the report calls it lagging. Defaults to
	// 1000.
	MaxLagEvents int64

	// MaxLagAge is how old the oldest event a partition has not handled
	// may be before the report calls it lagging. Defaults to 1m.
	MaxLagAge time.Duration

	// MaxTransactionAge is how long a transaction that has written may
	// stay open, holding back the read horizon of every tailing reader,
	// before the report warns about it. Defaults to 1m.
	MaxTransactionAge time.Duration

	// Transactions is how many of the oldest open writing transactions the
	// report lists. Defaults to 5.
	Transactions int

	// Timeout bounds one check of the whole report (or of readiness).
	// Defaults to 10s.
	Timeout time.Duration
}

func (cfg *Config) withDefaults() (Config, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	invalid := func(field, reason string) error {
		return &eventstore.ValidationError{Field: "config " + field, Reason: reason}
	}
	switch {
	case c.MaxLagEvents < 0:
		return c, invalid("MaxLagEvents", fmt.Sprintf("%d is negative", c.MaxLagEvents))
	case c.MaxLagAge < 0:
		return c, invalid("MaxLagAge", fmt.Sprintf("%s is negative", c.MaxLagAge))
	case c.MaxTransactionAge < 0:
		return c, invalid("MaxTransactionAge", fmt.Sprintf("%s is negative", c.MaxTransactionAge))
	case c.Transactions < 0:
		return c, invalid("Transactions", fmt.Sprintf("%d is negative", c.Transactions))
	case c.Timeout < 0:
		return c, invalid("Timeout", fmt.Sprintf("%s is negative", c.Timeout))
	}
	c.MaxLagEvents = cmp.Or(c.MaxLagEvents, defaultMaxLagEvents)
	c.MaxLagAge = cmp.Or(c.MaxLagAge, defaultMaxLagAge)
	c.MaxTransactionAge = cmp.Or(c.MaxTransactionAge, defaultMaxTransactionAge)
	c.Transactions = cmp.Or(c.Transactions, defaultTransactions)
	c.Timeout = cmp.Or(c.Timeout, defaultTimeout)
	return c, nil
}

// Status is the verdict of a check, and of a whole report.
type Status string

const (
	// OK: nothing to do.
	OK Status = "ok"
	// Warning: something needs an operator's attention soon (a lagging
	// projection, parked dead letters, a long transaction), but the
	// service works.
	Warning Status = "warning"
	// Critical: the service does not work as it should (the database does
	// not answer, the schema is behind, a projection has stopped).
	Critical Status = "critical"
)

// worse returns the more severe of s and t.
func worse(s, t Status) Status {
	rank := map[Status]int{OK: 0, Warning: 1, Critical: 2}
	if rank[t] > rank[s] {
		return t
	}
	return s
}

// The names of the checks of a [Report].
const (
	CheckDatabase    = "database"
	CheckSchema      = "schema"
	CheckProjections = "projections"
	CheckDeadLetters = "dead letters"
	CheckReadHorizon = "read horizon"
	CheckTables      = "tables"
)

// Check is the verdict of one check, with the numbers behind it.
type Check struct {
	// Name is one of the Check* names, e.g. [CheckSchema].
	Name string `json:"name"`
	// Status is the verdict.
	Status Status `json:"status"`
	// Summary says what was found, on one line, with the numbers.
	Summary string `json:"summary"`
	// Details has one line per item worth a look: a stopped or lagging
	// partition, a transaction, a table.
	Details []string `json:"details,omitempty"`
}

// Report is the result of [Checker.Check]: the verdict of each check, the
// worst of them, and the data they were made from.
type Report struct {
	// Status is the worst status of Checks.
	Status Status `json:"status"`
	// CheckedAt is when the check started.
	CheckedAt time.Time `json:"checked_at"`
	// Checks are the verdicts, in a fixed order.
	Checks []Check `json:"checks"`

	// Schema is the schema's version, when it could be read.
	Schema *Schema `json:"schema,omitempty"`
	// Projections is the state of every projection partition.
	Projections []Partition `json:"projections,omitempty"`
	// OpenTransactions are the oldest open transactions that hold the read
	// horizon back, oldest first.
	OpenTransactions []Transaction `json:"open_transactions,omitempty"`
	// Tables are the chronicle schema's tables, largest first.
	Tables []Table `json:"tables,omitempty"`
}

// Check returns the check named name, if the report has it.
func (r Report) Check(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// Problems counts the checks that are not [OK].
func (r Report) Problems() int {
	n := 0
	for _, c := range r.Checks {
		if c.Status != OK {
			n++
		}
	}
	return n
}

func (r *Report) add(c Check) {
	r.Checks = append(r.Checks, c)
	r.Status = worse(r.Status, c.Status)
}

// Schema is the applied schema version next to the one this build
// expects.
type Schema struct {
	// Version is the applied version (0: none).
	Version uint `json:"version"`
	// Latest is the newest version this build knows ([migrations.Latest]).
	Latest uint `json:"latest"`
	// Dirty reports a migration that failed half-way.
	Dirty bool `json:"dirty"`
}

// Partition is the state of one projection partition.
type Partition struct {
	// Projection is the projection's name.
	Projection string `json:"projection"`
	// Partition is the partition's index, from 0.
	Partition int `json:"partition"`
	// Partitions is the projection's number of partitions.
	Partitions int `json:"partitions"`
	// Checkpoint is the last position handled, as "transaction/global".
	Checkpoint string `json:"checkpoint"`
	// Head is the store's head when checked, as "transaction/global".
	Head string `json:"head"`
	// LagEvents counts the events after the checkpoint.
	LagEvents int64 `json:"lag_events"`
	// LagSeconds is the age of the oldest event not handled yet.
	LagSeconds float64 `json:"lag_seconds"`
	// Holder is the runner holding the partition, or "".
	Holder string `json:"holder,omitempty"`
	// Parked counts the dead letters parked or waiting for a retry.
	Parked int `json:"parked"`
	// Error is why the partition stopped, or "".
	Error string `json:"error,omitempty"`
	// Stopped reports a partition stopped by a failure.
	Stopped bool `json:"stopped"`
	// Lagging reports a partition behind the thresholds of [Config].
	Lagging bool `json:"lagging"`
}

// Transaction is an open transaction holding the read horizon back (see
// postgres.OpenTransaction).
type Transaction struct {
	// PID is the backend's process id (0 for a prepared transaction).
	PID int `json:"pid"`
	// Database is the database the transaction runs in.
	Database string `json:"database"`
	// User is the role running it.
	User string `json:"user"`
	// ApplicationName is the session's application_name.
	ApplicationName string `json:"application_name"`
	// ClientAddr is the client's address, "" for a local socket.
	ClientAddr string `json:"client_addr,omitempty"`
	// State is the backend's state, e.g. "idle in transaction".
	State string `json:"state"`
	// AgeSeconds is how long the transaction has been open.
	AgeSeconds float64 `json:"age_seconds"`
	// StateAgeSeconds is how long the backend has been in State.
	StateAgeSeconds float64 `json:"state_age_seconds"`
	// Query is the start of its current or last statement.
	Query string `json:"query"`
}

// Table is the disk usage of one table of the chronicle schema.
type Table struct {
	// Name is the table's name, without the schema.
	Name string `json:"name"`
	// Rows is the planner's estimate (-1: never analysed).
	Rows int64 `json:"rows"`
	// TableBytes is the size of the table's data, TOAST included.
	TableBytes int64 `json:"table_bytes"`
	// IndexBytes is the size of all its indexes.
	IndexBytes int64 `json:"index_bytes"`
	// Indexes are its indexes, largest first.
	Indexes []Index `json:"indexes,omitempty"`
}

// Index is the disk usage of one index.
type Index struct {
	// Name is the index's name, without the schema.
	Name string `json:"name"`
	// Bytes is its size.
	Bytes int64 `json:"bytes"`
}

// Checker checks the health of a Chronicle database: create it with [New]
// and call [Checker.Check], or mount its HTTP handlers.
type Checker struct {
	store       *postgres.Store
	projections *postgres.ProjectionStore
	cfg         Config
}

// New returns a Checker of the database of store. projections may be nil:
// the report then has no projection and dead letter checks. A nil cfg
// means the defaults.
func New(store *postgres.Store, projections *postgres.ProjectionStore, cfg *Config) (*Checker, error) {
	if store == nil {
		return nil, &eventstore.ValidationError{Field: "store", Reason: "must not be nil"}
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Checker{store: store, projections: projections, cfg: c}, nil
}

// Ready checks what a service needs to serve: the database answers and
// its schema is at the version this build expects. It is the readiness
// probe of [Checker.ReadyHandler].
func (c *Checker) Ready(ctx context.Context) Report {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	r := Report{Status: OK, CheckedAt: time.Now().UTC()}
	if !c.checkDatabase(ctx, &r) {
		return r
	}
	c.checkSchema(ctx, &r)
	return r
}

// Check runs every check: the database answers, the schema version,
// stopped and lagging projections, parked dead letters, the transactions
// holding the read horizon, and the size of the tables. A check that
// cannot run (a query fails) is [Critical] with the error in its summary;
// when the database does not answer, the other checks are skipped.
func (c *Checker) Check(ctx context.Context) Report {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	r := Report{Status: OK, CheckedAt: time.Now().UTC()}
	if !c.checkDatabase(ctx, &r) {
		return r
	}
	c.checkSchema(ctx, &r)
	if c.projections != nil {
		c.checkProjections(ctx, &r)
	}
	c.checkReadHorizon(ctx, &r)
	c.checkTables(ctx, &r)
	return r
}

func (c *Checker) checkDatabase(ctx context.Context, r *Report) bool {
	if err := c.store.Ping(ctx); err != nil {
		r.add(Check{Name: CheckDatabase, Status: Critical, Summary: "does not answer: " + err.Error()})
		return false
	}
	r.add(Check{Name: CheckDatabase, Status: OK, Summary: "answers"})
	return true
}

func (c *Checker) checkSchema(ctx context.Context, r *Report) {
	latest := migrations.Latest()
	v, err := c.store.SchemaVersion(ctx)
	switch {
	case errors.Is(err, postgres.ErrSchemaMissing):
		r.add(Check{Name: CheckSchema, Status: Critical, Summary: fmt.Sprintf(
			"no migration applied (no chronicle.schema_migrations table); latest is %d: run chronicle migrate up", latest)})
		return
	case err != nil:
		r.add(Check{Name: CheckSchema, Status: Critical, Summary: "cannot read the version: " + err.Error()})
		return
	}
	r.Schema = &Schema{Version: v.Version, Latest: latest, Dirty: v.Dirty}
	ck := Check{Name: CheckSchema, Status: OK, Summary: fmt.Sprintf("version %d (latest %d)", v.Version, latest)}
	switch {
	case v.Dirty:
		ck.Status = Critical
		ck.Summary += ": dirty, a migration failed half-way; repair it, then chronicle migrate force N"
	case v.Version < latest:
		ck.Status = Critical
		ck.Summary += fmt.Sprintf(": %d migration(s) not applied; run chronicle migrate up", latest-v.Version)
	case v.Version > latest:
		ck.Status = Warning
		ck.Summary += ": the database is newer than this build"
	}
	r.add(ck)
}

func (c *Checker) checkProjections(ctx context.Context, r *Report) {
	sts, err := projection.Statuses(ctx, c.store, c.projections, "")
	if err != nil {
		msg := "cannot read the projections: " + describeError(err)
		r.add(Check{Name: CheckProjections, Status: Critical, Summary: msg})
		r.add(Check{Name: CheckDeadLetters, Status: Critical, Summary: msg})
		return
	}
	proj := Check{Name: CheckProjections, Status: OK}
	dead := Check{Name: CheckDeadLetters, Status: OK}
	names := map[string]bool{}
	var stopped, lagging, parked int
	for _, st := range sts {
		names[st.Projection] = true
		p := Partition{
			Projection: st.Projection, Partition: st.Partition, Partitions: st.Partitions,
			Checkpoint: st.Position.String(), Head: st.Head.String(), LagEvents: st.LagEvents,
			LagSeconds: st.LagTime.Seconds(), Holder: st.Holder, Parked: st.Parked, Error: st.Error,
			Stopped: st.Error != "",
			Lagging: st.LagEvents > c.cfg.MaxLagEvents || st.LagTime > c.cfg.MaxLagAge,
		}
		r.Projections = append(r.Projections, p)
		key := fmt.Sprintf("%s/%d", p.Projection, p.Partition)
		holder := cmp.Or(p.Holder, "no holder")
		switch {
		case p.Stopped:
			stopped++
			proj.Details = append(proj.Details, fmt.Sprintf("stopped: %s at %s, %d events behind (%s): %s",
				key, p.Checkpoint, p.LagEvents, holder, shorten(p.Error, 200)))
		case p.Lagging:
			lagging++
			proj.Details = append(proj.Details, fmt.Sprintf("lagging: %s at %s, %d events and %s behind the head %s (%s)",
				key, p.Checkpoint, p.LagEvents, st.LagTime.Round(time.Millisecond), p.Head, holder))
		}
		if p.Parked > 0 {
			parked += p.Parked
			dead.Details = append(dead.Details, fmt.Sprintf("%s: %d", key, p.Parked))
		}
	}
	proj.Summary = fmt.Sprintf("%d projection(s), %d partition(s): %d stopped, %d lagging (more than %d events or %s behind)",
		len(names), len(sts), stopped, lagging, c.cfg.MaxLagEvents, c.cfg.MaxLagAge)
	switch {
	case stopped > 0:
		proj.Status = Critical
	case lagging > 0:
		proj.Status = Warning
	}
	dead.Summary = fmt.Sprintf("%d parked or waiting for a retry", parked)
	if parked > 0 {
		dead.Status = Warning
		dead.Summary += ": list them with chronicle projections dead-letters list"
	}
	r.add(proj)
	r.add(dead)
}

func (c *Checker) checkReadHorizon(ctx context.Context, r *Report) {
	txs, err := c.store.OpenTransactions(ctx, c.cfg.Transactions)
	if err != nil {
		r.add(Check{Name: CheckReadHorizon, Status: Critical, Summary: "cannot read the open transactions: " + err.Error()})
		return
	}
	ck := Check{Name: CheckReadHorizon, Status: OK}
	if len(txs) == 0 {
		ck.Summary = "not held back: no open transaction has written"
		r.add(ck)
		return
	}
	for _, tx := range txs {
		t := Transaction{
			PID: tx.PID, Database: tx.Database, User: tx.User, ApplicationName: tx.ApplicationName,
			ClientAddr: tx.ClientAddr, State: tx.State, AgeSeconds: tx.Age.Seconds(),
			StateAgeSeconds: tx.StateAge.Seconds(), Query: tx.Query,
		}
		r.OpenTransactions = append(r.OpenTransactions, t)
		ck.Details = append(ck.Details, describeTransaction(tx))
	}
	oldest := txs[0]
	ck.Summary = fmt.Sprintf("held back %s by the oldest open writing transaction (pid %d)", oldest.Age.Round(time.Millisecond), oldest.PID)
	if oldest.Age > c.cfg.MaxTransactionAge {
		ck.Status = Warning
		ck.Summary += fmt.Sprintf(": longer than %s; tailing readers and projections see no newer event until it ends", c.cfg.MaxTransactionAge)
	}
	r.add(ck)
}

func describeTransaction(tx postgres.OpenTransaction) string {
	var b strings.Builder
	if tx.PID == 0 {
		fmt.Fprintf(&b, "prepared transaction %q", tx.Query)
	} else {
		fmt.Fprintf(&b, "pid %d", tx.PID)
	}
	fmt.Fprintf(&b, ", open for %s", tx.Age.Round(time.Millisecond))
	fmt.Fprintf(&b, ", application %q, user %s, database %s", tx.ApplicationName, tx.User, tx.Database)
	if tx.ClientAddr != "" {
		fmt.Fprintf(&b, ", client %s", tx.ClientAddr)
	}
	if tx.PID != 0 {
		fmt.Fprintf(&b, ", %s for %s: %s", tx.State, tx.StateAge.Round(time.Millisecond), shorten(tx.Query, 100))
	}
	return b.String()
}

func (c *Checker) checkTables(ctx context.Context, r *Report) {
	sizes, err := c.store.TableSizes(ctx)
	if err != nil {
		r.add(Check{Name: CheckTables, Status: Critical, Summary: "cannot read the table sizes: " + describeError(err)})
		return
	}
	ck := Check{Name: CheckTables, Status: OK}
	var total int64
	for _, ts := range sizes {
		t := Table{Name: ts.Name, Rows: ts.Rows, TableBytes: ts.TableBytes, IndexBytes: ts.IndexBytes}
		var idx []string
		for _, i := range ts.Indexes {
			t.Indexes = append(t.Indexes, Index{Name: i.Name, Bytes: i.Bytes})
			idx = append(idx, fmt.Sprintf("%s %s", i.Name, formatBytes(i.Bytes)))
		}
		r.Tables = append(r.Tables, t)
		total += ts.TotalBytes()
		rows := "never analysed"
		if ts.Rows >= 0 {
			rows = fmt.Sprintf("~%d rows", ts.Rows)
		}
		ck.Details = append(ck.Details, fmt.Sprintf("chronicle.%s: %s (table %s, indexes %s; %s): %s",
			ts.Name, formatBytes(ts.TotalBytes()), formatBytes(ts.TableBytes), formatBytes(ts.IndexBytes), rows, strings.Join(idx, ", ")))
	}
	ck.Summary = fmt.Sprintf("%d table(s), %s with indexes", len(sizes), formatBytes(total))
	r.add(ck)
}

// describeError shortens the error of a check that could not run.
func describeError(err error) string {
	if errors.Is(err, postgres.ErrSchemaMissing) {
		return "the chronicle schema is missing; run chronicle migrate up"
	}
	return err.Error()
}

// formatBytes writes n in binary units: 512 B, 1.5 KiB, 12.0 MiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// shorten cuts s to about n bytes, on one line.
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n] + "…"
}
