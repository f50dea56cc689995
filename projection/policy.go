package projection

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"
	"unicode/utf8"
)

// Mode says how a projection's handler calls commit with its checkpoint.
type Mode int

const (
	// Transactional runs each batch's handler calls and the checkpoint's
	// compare-and-set in one unit of work. On PostgreSQL that is one
	// transaction, given to the handler through its context: the read
	// model's writes through it take effect exactly once, even when the
	// process dies at any point. It is the default.
	//
	// On a storage without transactions (memory.ProjectionStore by default) batches are
	// delivered as in [AtLeastOnce].
	Transactional Mode = iota

	// AtLeastOnce runs the handler outside any transaction, then saves the
	// checkpoint: events whose batch was not checkpointed when the process
	// stopped are delivered again. Use it for outside effects (emails,
	// brokers, other databases) and deduplicate on the event ID. No
	// transaction is held open while the handler works.
	AtLeastOnce
)

// String returns "transactional" or "at-least-once".
func (m Mode) String() string {
	switch m {
	case Transactional:
		return "transactional"
	case AtLeastOnce:
		return "at-least-once"
	default:
		return fmt.Sprintf("Mode(%d)", int(m))
	}
}

// FailurePolicy says what a projection does with an event its handler
// still fails on after the retries of its [RetryPolicy].
type FailurePolicy int

const (
	// StopOnFailure stops the partition at the failing event: it keeps its
	// lease (so that another process does not take it over just to fail
	// again), reports the error in its status, and resumes on a rebuild
	// request or a restart of the process. Other projections and
	// partitions keep running. It is the default: it never lets a read
	// model silently miss an event.
	StopOnFailure FailurePolicy = iota

	// ParkOnFailure records the event in the dead-letter store, atomically
	// with moving the checkpoint past it, and continues. Parked events can
	// be listed, retried and skipped ([projectionstore.DeadLetterStore],
	// `chronicle projections dead-letters`).
	ParkOnFailure
)

// String returns "stop" or "park".
func (p FailurePolicy) String() string {
	switch p {
	case StopOnFailure:
		return "stop"
	case ParkOnFailure:
		return "park"
	default:
		return fmt.Sprintf("FailurePolicy(%d)", int(p))
	}
}

// RetryPolicy says how often and how patiently a failing event is retried
// before its projection's [FailurePolicy] applies. The delay before retry
// n (n ≥ 1) is BaseDelay·2^(n-1), capped at MaxDelay, with "equal jitter":
// a uniformly random value between half of it and all of it.
type RetryPolicy struct {
	// MaxAttempts is the number of attempts, the first delivery included; 1
	// means no retry. Defaults to 5.
	MaxAttempts int
	// BaseDelay is the delay before the first retry. Defaults to 100ms.
	BaseDelay time.Duration
	// MaxDelay caps the delay between two attempts. Defaults to 10s.
	MaxDelay time.Duration
}

// Defaults of [RetryPolicy].
const (
	defaultMaxAttempts = 5
	defaultBaseDelay   = 100 * time.Millisecond
	defaultMaxDelay    = 10 * time.Second
)

// withDefaults fills the zero fields of p from def.
func (p RetryPolicy) withDefaults(def RetryPolicy) RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = def.MaxAttempts
	}
	if p.BaseDelay == 0 {
		p.BaseDelay = def.BaseDelay
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = def.MaxDelay
	}
	return p
}

func (p RetryPolicy) validate(field string) error {
	switch {
	case p.MaxAttempts < 0:
		return invalid(field+".MaxAttempts", fmt.Sprintf("%d is negative", p.MaxAttempts))
	case p.BaseDelay < 0:
		return invalid(field+".BaseDelay", fmt.Sprintf("%s is negative", p.BaseDelay))
	case p.MaxDelay < 0:
		return invalid(field+".MaxDelay", fmt.Sprintf("%s is negative", p.MaxDelay))
	case p.MaxDelay > 0 && p.BaseDelay > p.MaxDelay:
		return invalid(field+".BaseDelay", fmt.Sprintf("%s is above MaxDelay %s", p.BaseDelay, p.MaxDelay))
	}
	return nil
}

// Backoff returns the delay before retry n (n ≥ 1), with jitter.
func (p RetryPolicy) Backoff(n int) time.Duration {
	d := p.BaseDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// maxPartitions bounds [Projection.Partitions].
const maxPartitions = 1024

// PartitionOf returns the partition, among partitions, of the events of a
// stream: FNV-1a of the stream ID modulo partitions. Every event of a
// stream goes to the same partition, so a partitioned projection keeps
// each stream's order. It returns 0 when partitions < 2.
func PartitionOf(streamID string, partitions int) int {
	if partitions < 2 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(streamID)) // never fails
	return int(h.Sum32() % uint32(partitions))
}

// maxNameLength bounds a projection's name.
const maxNameLength = 200

// ValidateName checks a projection name: non-empty, at most 200 bytes of
// valid UTF-8 without control characters. Storages call it; names are
// stored as values, never used as SQL identifiers.
func ValidateName(name string) error {
	switch {
	case name == "":
		return invalid("projection name", "must not be empty")
	case len(name) > maxNameLength:
		return invalid("projection name", fmt.Sprintf("is %d bytes, longer than %d", len(name), maxNameLength))
	case !utf8.ValidString(name):
		return invalid("projection name", "is not valid utf-8")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return invalid("projection name", fmt.Sprintf("contains control character %U", r))
		}
	}
	return nil
}
