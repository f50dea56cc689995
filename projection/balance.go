package projection

import (
	"context"
	"slices"
	"sync"
)

// Sharing partitions between runners
//
// Every runner running a projection records itself as a live instance of
// it (projectionstore.Storage.Heartbeat) every acquire interval; the
// instances expire after [instanceTTL] acquire intervals without a
// heartbeat, and leave at once on a clean shutdown. From the sorted list
// of instances each runner computes everyone's share of the n partitions
// (n/k, the first n%k instances one more) and:
//
//   - a runner holding its share or more waits [patience] acquire
//     intervals between attempts to acquire a free partition, instead of
//     one, so that a runner under its share gets the free partitions
//     first (yet a partition freed by a dead instance is taken within a
//     few intervals even before the instance expires);
//   - a runner holding more than its share while another holds less
//     gives partitions up (the highest it holds, at most the difference),
//     each at its next batch boundary, without losing anything: the next
//     holder resumes from the committed checkpoint.
//
// The bounds are documented in docs/projections.md.

const (
	// patience is how many acquire intervals a runner at its share waits
	// between attempts to acquire a free partition.
	patience = 3
	// instanceTTL is how many acquire intervals an instance stays live
	// after its last heartbeat.
	instanceTTL = 3
)

// share is this runner's share of a projection's partitions, as last
// computed by [Runner.balance].
type share struct {
	mu     sync.Mutex
	target int // the partitions this runner should hold; -1 until known
}

func newShare() *share { return &share{target: -1} }

func (s *share) set(target int) {
	s.mu.Lock()
	s.target = target
	s.mu.Unlock()
}

// atOrAbove reports whether a runner holding held partitions holds its
// share. It is false while the share is unknown.
func (s *share) atOrAbove(held int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.target >= 0 && held >= s.target
}

// held counts the partitions of p this runner holds.
func (p *proj) held() int {
	n := 0
	for _, st := range p.parts {
		if holding, _, _ := st.get(); holding {
			n++
		}
	}
	return n
}

// shares returns each instance's share of n partitions: n/k, and one more
// for the first n%k instances in sorted order.
func shares(n int, instances []string) map[string]int {
	sorted := slices.Clone(instances)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	out := make(map[string]int, len(sorted))
	for i, h := range sorted {
		out[h] = n / len(sorted)
		if i < n%len(sorted) {
			out[h]++
		}
	}
	return out
}

// balance keeps this runner's share of p's partitions up to date until
// ctx is done, then leaves p's instances.
func (r *Runner) balance(ctx context.Context, p *proj) {
	defer func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		if err := r.storage.Leave(lctx, p.Name, r.cfg.Holder); err != nil {
			r.log.Warn("cannot leave the projection's instances; the others take over its share when it expires", "projection", p.Name, "error", err)
		}
	}()
	for {
		r.rebalance(ctx, p)
		if !sleep(ctx, jitter(r.cfg.AcquireInterval)) {
			return
		}
	}
}

// rebalance records this runner as an instance of p, computes its share,
// and gives up the partitions it holds beyond its share while another
// instance holds less than its own.
func (r *Runner) rebalance(ctx context.Context, p *proj) {
	log := r.log.With("projection", p.Name)
	instances, err := r.storage.Heartbeat(ctx, p.Name, r.cfg.Holder, instanceTTL*r.cfg.AcquireInterval)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("cannot record this runner as an instance of the projection; partitions are not shared until it can", "error", err)
			p.share.set(-1)
		}
		return
	}
	if !slices.Contains(instances, r.cfg.Holder) {
		instances = append(instances, r.cfg.Holder)
	}
	cps, err := r.storage.Checkpoints(ctx, p.Name)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("cannot read the projection's holders", "error", err)
		}
		return
	}
	holding := map[string]int{}
	for _, cp := range cps {
		if cp.Holder != "" {
			holding[cp.Holder]++
		}
	}
	targets := shares(p.Partitions, instances)
	mine := targets[r.cfg.Holder]
	p.share.set(mine)
	deficit := 0
	for h, t := range targets {
		if h != r.cfg.Holder {
			deficit += max(t-holding[h], 0)
		}
	}
	excess := min(p.held()-mine, deficit)
	for i := len(p.parts) - 1; i >= 0 && excess > 0; i-- {
		if holding, _, _ := p.parts[i].get(); holding {
			log.Debug("giving a partition up to share the projection", "partition", i, "share", mine, "instances", len(instances))
			p.parts[i].requestShed()
			excess--
		}
	}
}

// requestShed asks the partition's worker to give the partition up at its
// next batch boundary.
func (s *partState) requestShed() {
	select {
	case s.shed <- struct{}{}:
	default: // already requested
	}
}

// shedRequested consumes a pending request to give the partition up.
func (s *partState) shedRequested() bool {
	select {
	case <-s.shed:
		return true
	default:
		return false
	}
}

// shedWait returns the channel a request to give the partition up arrives
// on.
func (s *partState) shedWait() <-chan struct{} { return s.shed }

// drainShed forgets a request made before the partition was acquired.
func (s *partState) drainShed() { s.shedRequested() }

// balancerNeeded reports whether p's partitions are shared by balancing:
// a single partition needs no sharing (another runner stands by).
func (p *proj) balancerNeeded() bool { return p.Partitions > 1 }
