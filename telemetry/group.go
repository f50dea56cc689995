package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// Metric names of [GroupCommitMetrics].
const (
	// MetricGroupCommitAppends is the number of appends that one flush of
	// the PostgreSQL store's group commit sent together, as one statement
	// and one commit (histogram; 1 for an append sent alone).
	MetricGroupCommitAppends = "chronicle.group_commit.appends"
	// MetricGroupCommitEvents is the number of events of one flush of the
	// PostgreSQL store's group commit (histogram).
	MetricGroupCommitEvents = "chronicle.group_commit.events"
)

// groupBuckets are the histogram boundaries of the group sizes.
var groupBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

// GroupCommitMetrics records the size of each flush of the PostgreSQL
// store's group commit: [MetricGroupCommitAppends] and
// [MetricGroupCommitEvents]. Give its Observe method to the store:
//
//	m, err := telemetry.NewGroupCommitMetrics(cfg)
//	...
//	store, err := postgres.New(pool, &postgres.Config{GroupCommit: true, GroupObserver: m.Observe})
//
// Appends per flush near 1 under load mean the writers rarely overlap
// (group commit then costs nothing and gains nothing); large groups mean
// the commits are shared.
type GroupCommitMetrics struct {
	appends metric.Int64Histogram
	events  metric.Int64Histogram
}

// NewGroupCommitMetrics returns the group commit metrics, created with the
// meter provider of cfg. A nil cfg means the defaults.
func NewGroupCommitMetrics(cfg *Config) (*GroupCommitMetrics, error) {
	c := cfg.withDefaults()
	meter := c.MeterProvider.Meter(ScopeName)
	m := &GroupCommitMetrics{}
	var errs [2]error
	m.appends, errs[0] = meter.Int64Histogram(MetricGroupCommitAppends, metric.WithUnit("{append}"),
		metric.WithDescription("Appends sent together by one group commit flush."), metric.WithExplicitBucketBoundaries(groupBuckets...))
	m.events, errs[1] = meter.Int64Histogram(MetricGroupCommitEvents, metric.WithUnit("{event}"),
		metric.WithDescription("Events sent together by one group commit flush."), metric.WithExplicitBucketBoundaries(groupBuckets...))
	if err := firstError(errs[:]); err != nil {
		return nil, err
	}
	return m, nil
}

// Observe records one flush of appends appends holding events events. Its
// signature is that of the PostgreSQL store's Config.GroupObserver.
func (m *GroupCommitMetrics) Observe(appends, events int) {
	ctx := context.Background()
	m.appends.Record(ctx, int64(appends))
	m.events.Record(ctx, int64(events))
}
