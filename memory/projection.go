package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// ProjectionStoreConfig configures a [ProjectionStore]. A nil
// *ProjectionStoreConfig means the defaults.
type ProjectionStoreConfig struct {
	// Transactional makes the store's leases transactional
	// ([projectionstore.Lease.Transactional]): a commit's work runs in a
	// [ProjectionTx], whose staged writes ([ProjectionTx.OnCommit]) apply
	// only when the checkpoint moves, together with it, and are dropped
	// when the work or the compare-and-set fails. A [projection.Transactional]
	// projection whose handler writes its read model through the
	// transaction then changes it exactly once per event, as on
	// PostgreSQL. Defaults to false: the work's effects are immediate and
	// not rolled back, so transactional projections run as
	// [projection.AtLeastOnce] ones.
	Transactional bool
}

// ProjectionStore is a [projectionstore.Storage] in memory, for the
// in-memory event store, tests and single-process programs. Leadership
// holds between the runners sharing one ProjectionStore (one process).
// Everything is lost when the process exits, like the in-memory store's
// events and the read models built from them.
//
// By default it is not transactional (see
// [ProjectionStoreConfig.Transactional]). Since a holder cannot lose its
// lease while its process lives, a commit can then only fail on a handler
// error, and the runner never hands an event twice to a handler that
// succeeded on it, except after a failure of that very event.
//
// A ProjectionStore is safe for concurrent use.
type ProjectionStore struct {
	now           func() time.Time
	transactional bool

	mu        sync.Mutex
	rows      map[projectionstore.Key]*projectionRow
	dls       []*projectionstore.DeadLetter // in ID order
	nextID    int64
	instances map[string]map[string]time.Time // projection → holder → expiry
}

type projectionRow struct {
	cp    projectionstore.Checkpoint
	lease *projectionLease
}

var (
	_ projectionstore.Storage = (*ProjectionStore)(nil)
	_ projectionstore.Lease   = (*projectionLease)(nil)
)

// NewProjectionStore returns an empty ProjectionStore. A nil cfg means the
// defaults.
func NewProjectionStore(cfg *ProjectionStoreConfig) (*ProjectionStore, error) {
	var c ProjectionStoreConfig
	if cfg != nil {
		c = *cfg
	}
	return &ProjectionStore{
		now:           time.Now,
		transactional: c.Transactional,
		rows:          map[projectionstore.Key]*projectionRow{},
		instances:     map[string]map[string]time.Time{},
	}, nil
}

// ProjectionTx is the unit of work of a commit on a transactional
// [ProjectionStore]: a handler finds it in its ctx with
// [ProjectionTxFrom] and stages its read-model writes with
// [ProjectionTx.OnCommit].
type ProjectionTx struct {
	mu       sync.Mutex
	onCommit []func()
}

// OnCommit stages fn, which runs if and when the commit succeeds, with
// the checkpoint's move, under the store's lock: fn must not call the
// store. Staged functions run in the order staged.
func (tx *ProjectionTx) OnCommit(fn func()) {
	tx.mu.Lock()
	tx.onCommit = append(tx.onCommit, fn)
	tx.mu.Unlock()
}

type projectionTxKey struct{}

// ProjectionTxFrom returns the transaction of the commit ctx belongs to:
// in a [projection.Transactional] projection run on a transactional
// ProjectionStore, the handler's (and the reset hook's) ctx carries it.
func ProjectionTxFrom(ctx context.Context) (*ProjectionTx, bool) {
	tx, ok := ctx.Value(projectionTxKey{}).(*ProjectionTx)
	return tx, ok
}

// Heartbeat implements [projectionstore.Storage].
func (m *ProjectionStore) Heartbeat(ctx context.Context, name, holder string, ttl time.Duration) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := projection.ValidateName(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	live := m.instances[name]
	if live == nil {
		live = map[string]time.Time{}
		m.instances[name] = live
	}
	live[holder] = now.Add(ttl)
	out := make([]string, 0, len(live))
	for h, exp := range live {
		if !exp.After(now) {
			delete(live, h)
			continue
		}
		out = append(out, h)
	}
	slices.Sort(out)
	return out, nil
}

// Leave implements [projectionstore.Storage].
func (m *ProjectionStore) Leave(ctx context.Context, name, holder string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.instances[name], holder)
	return nil
}

// Acquire implements [projectionstore.Storage].
func (m *ProjectionStore) Acquire(ctx context.Context, key projectionstore.Key, partitions int, holder string) (projectionstore.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validateKey(key, partitions); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, other := range m.rows {
		if k.Projection == key.Projection && other.cp.Partitions != partitions {
			return nil, &projection.PartitionsMismatchError{Projection: key.Projection, Stored: other.cp.Partitions, Configured: partitions}
		}
	}
	row := m.rows[key]
	if row == nil {
		row = &projectionRow{cp: projectionstore.Checkpoint{Projection: key.Projection, Partition: key.Partition, Partitions: partitions, UpdatedAt: m.now()}}
		m.rows[key] = row
	}
	if row.lease != nil {
		return nil, nil
	}
	row.lease = &projectionLease{m: m, key: key, holder: holder, done: make(chan struct{})}
	row.cp.Holder = holder
	return row.lease, nil
}

func validateKey(key projectionstore.Key, partitions int) error {
	if err := projection.ValidateName(key.Projection); err != nil {
		return err
	}
	if partitions < 1 || partitions > projectionstore.MaxPartitions {
		return invalid("partitions", fmt.Sprintf("%d is not between 1 and %d", partitions, projectionstore.MaxPartitions))
	}
	if key.Partition < 0 || key.Partition >= partitions {
		return invalid("partition", fmt.Sprintf("%d is not between 0 and %d", key.Partition, partitions-1))
	}
	return nil
}

// Checkpoints implements [projectionstore.Storage].
func (m *ProjectionStore) Checkpoints(ctx context.Context, name string) ([]projectionstore.Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []projectionstore.Checkpoint
	for key, row := range m.rows {
		if name == "" || key.Projection == name {
			out = append(out, m.checkpointLocked(row))
		}
	}
	slices.SortFunc(out, func(a, b projectionstore.Checkpoint) int {
		return cmp.Or(cmp.Compare(a.Projection, b.Projection), cmp.Compare(a.Partition, b.Partition))
	})
	return out, nil
}

func (m *ProjectionStore) checkpointLocked(row *projectionRow) projectionstore.Checkpoint {
	cp := row.cp
	cp.Parked = 0
	for _, dl := range m.dls {
		if dl.Projection == cp.Projection && dl.Partition == cp.Partition && (dl.Status == projectionstore.DeadLetterParked || dl.Status == projectionstore.DeadLetterRetry) {
			cp.Parked++
		}
	}
	return cp
}

// RequestRebuild implements [projectionstore.Storage].
func (m *ProjectionStore) RequestRebuild(ctx context.Context, name string, partitions int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := projection.ValidateName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	found := false
	for key, row := range m.rows {
		if key.Projection == name {
			found = true
			row.cp.RebuildRequested = true
		}
	}
	if partitions > 0 {
		if found {
			for key, row := range m.rows {
				if key.Projection == name && row.cp.Partitions != partitions {
					return &projection.PartitionsMismatchError{Projection: name, Stored: row.cp.Partitions, Configured: partitions}
				}
			}
		}
		for i := range partitions {
			key := projectionstore.Key{Projection: name, Partition: i}
			if m.rows[key] == nil {
				m.rows[key] = &projectionRow{cp: projectionstore.Checkpoint{Projection: name, Partition: i, Partitions: partitions, RebuildRequested: true, UpdatedAt: m.now()}}
			}
		}
		return nil
	}
	if !found {
		return fmt.Errorf("%w: %q has no checkpoints", projection.ErrUnknownProjection, name)
	}
	return nil
}

// DeadLetters implements [projectionstore.DeadLetterStore].
func (m *ProjectionStore) DeadLetters(ctx context.Context, filter projectionstore.DeadLetterFilter) ([]projectionstore.DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if filter.Status != "" && !filter.Status.Valid() {
		return nil, invalid("dead letter status", fmt.Sprintf("%q is not a status", filter.Status))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []projectionstore.DeadLetter
	for _, dl := range m.dls {
		if dl.ID <= filter.AfterID || (filter.Projection != "" && dl.Projection != filter.Projection) || (filter.Status != "" && dl.Status != filter.Status) {
			continue
		}
		out = append(out, *dl)
		if len(out) == filter.EffectiveLimit() {
			break
		}
	}
	return out, nil
}

// RetryDeadLetter implements [projectionstore.DeadLetterStore].
func (m *ProjectionStore) RetryDeadLetter(ctx context.Context, id int64) error {
	return m.transition(ctx, id, "retry", projectionstore.DeadLetterRetry, projectionstore.DeadLetterParked, projectionstore.DeadLetterRetry)
}

// SkipDeadLetter implements [projectionstore.DeadLetterStore].
func (m *ProjectionStore) SkipDeadLetter(ctx context.Context, id int64) error {
	return m.transition(ctx, id, "skip", projectionstore.DeadLetterSkipped, projectionstore.DeadLetterParked, projectionstore.DeadLetterRetry, projectionstore.DeadLetterSkipped)
}

func (m *ProjectionStore) transition(ctx context.Context, id int64, op string, to projectionstore.DeadLetterStatus, from ...projectionstore.DeadLetterStatus) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	dl := m.deadLetterLocked(id)
	if dl == nil {
		return fmt.Errorf("%w: %d", projection.ErrDeadLetterNotFound, id)
	}
	if !slices.Contains(from, dl.Status) {
		return &projection.DeadLetterStateError{ID: id, Status: dl.Status, Op: op}
	}
	dl.Status, dl.UpdatedAt = to, m.now()
	return nil
}

func (m *ProjectionStore) deadLetterLocked(id int64) *projectionstore.DeadLetter {
	i, ok := slices.BinarySearchFunc(m.dls, id, func(dl *projectionstore.DeadLetter, id int64) int { return cmp.Compare(dl.ID, id) })
	if !ok {
		return nil
	}
	return m.dls[i]
}

// projectionLease is a [projectionstore.Lease] of a [ProjectionStore].
type projectionLease struct {
	m      *ProjectionStore
	key    projectionstore.Key
	holder string
	done   chan struct{}
	once   sync.Once
}

// row returns the lease's row with m.mu held, or an error if the lease was
// released.
func (l *projectionLease) rowLocked() (*projectionRow, error) {
	row := l.m.rows[l.key]
	if row == nil || row.lease != l {
		return nil, projection.ErrLeaseLost
	}
	return row, nil
}

func (l *projectionLease) Checkpoint(ctx context.Context) (projectionstore.Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return projectionstore.Checkpoint{}, err
	}
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	row, err := l.rowLocked()
	if err != nil {
		return projectionstore.Checkpoint{}, err
	}
	return l.m.checkpointLocked(row), nil
}

// Commit implements [projectionstore.Lease]. On a transactional store the
// work runs with a [ProjectionTx] in its ctx, whose staged writes apply
// with the checkpoint's move, or not at all; a work that outlives ctx
// commits nothing, as a PostgreSQL transaction ended by its deadline.
func (l *projectionLease) Commit(ctx context.Context, c projectionstore.Commit) (projectionstore.Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return projectionstore.Checkpoint{}, err
	}
	if c.Settle != nil && !c.Settle.Status.Valid() {
		return projectionstore.Checkpoint{}, invalid("settlement status", fmt.Sprintf("%q is not a status", c.Settle.Status))
	}
	l.m.mu.Lock()
	_, err := l.checkLocked(c)
	l.m.mu.Unlock()
	if err != nil {
		return projectionstore.Checkpoint{}, err
	}
	var tx *ProjectionTx
	if c.Work != nil {
		wctx := ctx
		if l.m.transactional {
			tx = &ProjectionTx{}
			wctx = context.WithValue(ctx, projectionTxKey{}, tx)
		}
		if err := c.Work(wctx); err != nil {
			return projectionstore.Checkpoint{}, err
		}
		if err := ctx.Err(); err != nil && l.m.transactional {
			return projectionstore.Checkpoint{}, err
		}
	}
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	row, err := l.checkLocked(c)
	if err != nil {
		return projectionstore.Checkpoint{}, err
	}
	if tx != nil {
		tx.mu.Lock()
		for _, fn := range tx.onCommit {
			fn()
		}
		tx.onCommit = nil
		tx.mu.Unlock()
	}
	now := l.m.now()
	if c.Park != nil {
		l.m.parkLocked(*c.Park, now)
	}
	if s := c.Settle; s != nil {
		if dl := l.m.deadLetterLocked(s.ID); dl != nil && dl.Status == projectionstore.DeadLetterRetry {
			dl.Status, dl.Attempts, dl.UpdatedAt = s.Status, s.Attempts, now
			if s.Status == projectionstore.DeadLetterParked {
				dl.Error, dl.ParkedAt = s.Error, now
			}
		}
	}
	if c.Rebuilt {
		row.cp.RebuildRequested = false
		l.m.dls = slices.DeleteFunc(l.m.dls, func(dl *projectionstore.DeadLetter) bool {
			return dl.Projection == l.key.Projection && dl.Partition == l.key.Partition &&
				(dl.Status == projectionstore.DeadLetterParked || dl.Status == projectionstore.DeadLetterRetry)
		})
	}
	row.cp.Position, row.cp.Error = c.To, c.Error
	if c.To != c.From {
		row.cp.UpdatedAt = now
	}
	return l.m.checkpointLocked(row), nil
}

// checkLocked returns the lease's row if the lease holds and the
// checkpoint is at c.From.
func (l *projectionLease) checkLocked(c projectionstore.Commit) (*projectionRow, error) {
	row, err := l.rowLocked()
	if err != nil {
		return nil, err
	}
	if row.cp.Position != c.From {
		return nil, &projection.CheckpointConflictError{Key: l.key, Expected: c.From, Actual: row.cp.Position}
	}
	return row, nil
}

// parkLocked stores a dead letter, replacing (under the same ID) the
// projection's earlier one for the same event.
func (m *ProjectionStore) parkLocked(dl projectionstore.DeadLetter, now time.Time) {
	dl.Status, dl.ParkedAt, dl.UpdatedAt = projectionstore.DeadLetterParked, now, now
	for _, old := range m.dls {
		if old.Projection == dl.Projection && old.EventID == dl.EventID {
			dl.ID = old.ID
			*old = dl
			return
		}
	}
	m.nextID++
	dl.ID = m.nextID
	m.dls = append(m.dls, &dl)
}

func (l *projectionLease) RetryRequests(ctx context.Context) ([]projectionstore.DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if _, err := l.rowLocked(); err != nil {
		return nil, err
	}
	var out []projectionstore.DeadLetter
	for _, dl := range l.m.dls {
		if dl.Projection == l.key.Projection && dl.Partition == l.key.Partition && dl.Status == projectionstore.DeadLetterRetry {
			out = append(out, *dl)
		}
	}
	return out, nil
}

func (l *projectionLease) Transactional() bool { return l.m.transactional }

func (l *projectionLease) Done() <-chan struct{} { return l.done }

func (l *projectionLease) Release(context.Context) error {
	l.once.Do(func() {
		l.m.mu.Lock()
		if row := l.m.rows[l.key]; row != nil && row.lease == l {
			row.lease, row.cp.Holder = nil, ""
		}
		l.m.mu.Unlock()
		close(l.done)
	})
	return nil
}

// invalid returns a validation error for field.
func invalid(field, reason string) error {
	return &eventstore.ValidationError{Field: field, Reason: reason}
}
