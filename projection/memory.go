package projection

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MemoryStorage is a [Storage] in memory, for the in-memory event store,
// tests and single-process programs. Leadership holds between the runners
// sharing one MemoryStorage (one process). Everything is lost when the
// process exits, like the in-memory store's events and the read models
// built from them.
//
// It is not transactional ([Lease.Transactional] is false): a commit's
// work is not rolled back when the commit fails, so [Transactional]
// projections run as [AtLeastOnce] ones. Since a holder cannot lose its
// lease while its process lives, a commit can only fail on a handler error,
// and the runner never hands an event twice to a handler that succeeded on
// it, except after a failure of that very event.
type MemoryStorage struct {
	now func() time.Time

	mu     sync.Mutex
	rows   map[Key]*memRow
	dls    []*DeadLetter // in ID order
	nextID int64
}

type memRow struct {
	cp    Checkpoint
	lease *memLease
}

var (
	_ Storage = (*MemoryStorage)(nil)
	_ Lease   = (*memLease)(nil)
)

// NewMemoryStorage returns an empty MemoryStorage.
func NewMemoryStorage() *MemoryStorage {
	return &MemoryStorage{now: time.Now, rows: map[Key]*memRow{}}
}

// Acquire implements [Storage].
func (m *MemoryStorage) Acquire(ctx context.Context, key Key, partitions int, holder string) (Lease, error) {
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
			return nil, &PartitionsMismatchError{Projection: key.Projection, Stored: other.cp.Partitions, Configured: partitions}
		}
	}
	row := m.rows[key]
	if row == nil {
		row = &memRow{cp: Checkpoint{Projection: key.Projection, Partition: key.Partition, Partitions: partitions, UpdatedAt: m.now()}}
		m.rows[key] = row
	}
	if row.lease != nil {
		return nil, nil
	}
	row.lease = &memLease{m: m, key: key, holder: holder, done: make(chan struct{})}
	row.cp.Holder = holder
	return row.lease, nil
}

func validateKey(key Key, partitions int) error {
	if err := ValidateName(key.Projection); err != nil {
		return err
	}
	if partitions < 1 || partitions > maxPartitions {
		return invalid("partitions", fmt.Sprintf("%d is not between 1 and %d", partitions, maxPartitions))
	}
	if key.Partition < 0 || key.Partition >= partitions {
		return invalid("partition", fmt.Sprintf("%d is not between 0 and %d", key.Partition, partitions-1))
	}
	return nil
}

// Checkpoints implements [Storage].
func (m *MemoryStorage) Checkpoints(ctx context.Context, projection string) ([]Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Checkpoint
	for key, row := range m.rows {
		if projection == "" || key.Projection == projection {
			out = append(out, m.checkpointLocked(row))
		}
	}
	slices.SortFunc(out, func(a, b Checkpoint) int {
		return cmp.Or(cmp.Compare(a.Projection, b.Projection), cmp.Compare(a.Partition, b.Partition))
	})
	return out, nil
}

func (m *MemoryStorage) checkpointLocked(row *memRow) Checkpoint {
	cp := row.cp
	cp.Parked = 0
	for _, dl := range m.dls {
		if dl.Projection == cp.Projection && dl.Partition == cp.Partition && (dl.Status == DeadLetterParked || dl.Status == DeadLetterRetry) {
			cp.Parked++
		}
	}
	return cp
}

// RequestRebuild implements [Storage].
func (m *MemoryStorage) RequestRebuild(ctx context.Context, projection string, partitions int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidateName(projection); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	found := false
	for key, row := range m.rows {
		if key.Projection == projection {
			found = true
			row.cp.RebuildRequested = true
		}
	}
	if partitions > 0 {
		if found {
			for key, row := range m.rows {
				if key.Projection == projection && row.cp.Partitions != partitions {
					return &PartitionsMismatchError{Projection: projection, Stored: row.cp.Partitions, Configured: partitions}
				}
			}
		}
		for i := range partitions {
			key := Key{Projection: projection, Partition: i}
			if m.rows[key] == nil {
				m.rows[key] = &memRow{cp: Checkpoint{Projection: projection, Partition: i, Partitions: partitions, RebuildRequested: true, UpdatedAt: m.now()}}
			}
		}
		return nil
	}
	if !found {
		return fmt.Errorf("%w: %q has no checkpoints", ErrUnknownProjection, projection)
	}
	return nil
}

// DeadLetters implements [DeadLetterStore].
func (m *MemoryStorage) DeadLetters(ctx context.Context, filter DeadLetterFilter) ([]DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if filter.Status != "" && !filter.Status.Valid() {
		return nil, invalid("dead letter status", fmt.Sprintf("%q is not a status", filter.Status))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []DeadLetter
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

// RetryDeadLetter implements [DeadLetterStore].
func (m *MemoryStorage) RetryDeadLetter(ctx context.Context, id int64) error {
	return m.transition(ctx, id, "retry", DeadLetterRetry, DeadLetterParked, DeadLetterRetry)
}

// SkipDeadLetter implements [DeadLetterStore].
func (m *MemoryStorage) SkipDeadLetter(ctx context.Context, id int64) error {
	return m.transition(ctx, id, "skip", DeadLetterSkipped, DeadLetterParked, DeadLetterRetry, DeadLetterSkipped)
}

func (m *MemoryStorage) transition(ctx context.Context, id int64, op string, to DeadLetterStatus, from ...DeadLetterStatus) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	dl := m.deadLetterLocked(id)
	if dl == nil {
		return fmt.Errorf("%w: %d", ErrDeadLetterNotFound, id)
	}
	if !slices.Contains(from, dl.Status) {
		return &DeadLetterStateError{ID: id, Status: dl.Status, Op: op}
	}
	dl.Status, dl.UpdatedAt = to, m.now()
	return nil
}

func (m *MemoryStorage) deadLetterLocked(id int64) *DeadLetter {
	i, ok := slices.BinarySearchFunc(m.dls, id, func(dl *DeadLetter, id int64) int { return cmp.Compare(dl.ID, id) })
	if !ok {
		return nil
	}
	return m.dls[i]
}

// memLease is a [Lease] of a [MemoryStorage].
type memLease struct {
	m      *MemoryStorage
	key    Key
	holder string
	done   chan struct{}
	once   sync.Once
}

// row returns the lease's row with m.mu held, or an error if the lease was
// released.
func (l *memLease) rowLocked() (*memRow, error) {
	row := l.m.rows[l.key]
	if row == nil || row.lease != l {
		return nil, ErrLeaseLost
	}
	return row, nil
}

func (l *memLease) Checkpoint(ctx context.Context) (Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return Checkpoint{}, err
	}
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	row, err := l.rowLocked()
	if err != nil {
		return Checkpoint{}, err
	}
	return l.m.checkpointLocked(row), nil
}

func (l *memLease) Commit(ctx context.Context, c Commit) (Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return Checkpoint{}, err
	}
	check := func() (*memRow, error) {
		row, err := l.rowLocked()
		if err != nil {
			return nil, err
		}
		if row.cp.Position != c.From {
			return nil, &CheckpointConflictError{Key: l.key, Expected: c.From, Actual: row.cp.Position}
		}
		return row, nil
	}
	l.m.mu.Lock()
	_, err := check()
	l.m.mu.Unlock()
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Work != nil {
		if err := c.Work(ctx); err != nil {
			return Checkpoint{}, err
		}
	}
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	row, err := check()
	if err != nil {
		return Checkpoint{}, err
	}
	now := l.m.now()
	if c.Park != nil {
		l.m.parkLocked(*c.Park, now)
	}
	if s := c.Settle; s != nil {
		if dl := l.m.deadLetterLocked(s.ID); dl != nil && dl.Status == DeadLetterRetry {
			dl.Status, dl.Attempts, dl.UpdatedAt = s.Status, s.Attempts, now
			if s.Status == DeadLetterParked {
				dl.Error, dl.ParkedAt = s.Error, now
			}
		}
	}
	if c.Rebuilt {
		row.cp.RebuildRequested = false
		l.m.dls = slices.DeleteFunc(l.m.dls, func(dl *DeadLetter) bool {
			return dl.Projection == l.key.Projection && dl.Partition == l.key.Partition && (dl.Status == DeadLetterParked || dl.Status == DeadLetterRetry)
		})
	}
	row.cp.Position, row.cp.Error = c.To, c.Error
	if c.To != c.From {
		row.cp.UpdatedAt = now
	}
	return l.m.checkpointLocked(row), nil
}

// parkLocked stores a dead letter, replacing (under the same ID) the
// projection's earlier one for the same event.
func (m *MemoryStorage) parkLocked(dl DeadLetter, now time.Time) {
	dl.Status, dl.ParkedAt, dl.UpdatedAt = DeadLetterParked, now, now
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

func (l *memLease) RetryRequests(ctx context.Context) ([]DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	var out []DeadLetter
	for _, dl := range l.m.dls {
		if dl.Projection == l.key.Projection && dl.Partition == l.key.Partition && dl.Status == DeadLetterRetry {
			out = append(out, *dl)
		}
	}
	return out, nil
}

func (l *memLease) Transactional() bool { return false }

func (l *memLease) Done() <-chan struct{} { return l.done }

func (l *memLease) Release(context.Context) error {
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
