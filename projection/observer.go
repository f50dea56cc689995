package projection

import (
	"context"

	"github.com/chronicle-go/chronicle/eventstore"
)

// BatchObserver is told about every batch a [Runner] handles, for
// telemetry: package telemetry's BatchObserver traces and measures them,
// so that this package needs no telemetry library. Set it in
// [Config.Observer].
type BatchObserver interface {
	// StartBatch is called before a batch read after a partition's
	// checkpoint is handled. The runner handles it, retries, parks and
	// commits it under the returned context, which must be ctx or derived
	// from it (with a span, for example), then calls end with the outcome:
	// nil once the batch is checkpointed (an event parked in the dead
	// letters included), or what stopped it (a storage failure, a lost
	// lease, a stopped partition, shutdown). end is called exactly once,
	// from the partition's goroutine.
	StartBatch(ctx context.Context, b Batch) (_ context.Context, end func(err error))
}

// Batch describes a batch for a [BatchObserver].
type Batch struct {
	// Projection and Partition name the partition handling the batch.
	Projection string
	Partition  int
	// Partitions is the projection's number of partitions.
	Partitions int
	// Events counts the events read; those of other partitions are
	// skipped (the checkpoint moves past them).
	Events int
	// From is the checkpoint before the batch, To the position of its
	// last event, where the checkpoint moves once it is handled.
	From, To eventstore.Position
}

// observed processes a batch, telling the runner's observer.
func (l *leading) observed(ctx context.Context, b batch) error {
	obs := l.w.r.cfg.Observer
	if obs == nil {
		return l.process(ctx, b)
	}
	octx, end := obs.StartBatch(ctx, Batch{
		Projection: l.w.p.Name, Partition: l.w.key.Partition, Partitions: l.w.p.Partitions,
		Events: b.read, From: l.pos(), To: b.last,
	})
	err := l.process(octx, b)
	end(err)
	return err
}
