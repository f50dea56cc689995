package telemetry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// Metric names of [Gauges].
const (
	// MetricProjectionLagEvents is the number of events after a
	// partition's checkpoint, up to the store's head (gauge; attributes
	// projection, partition).
	MetricProjectionLagEvents = "chronicle.projection.lag.events"
	// MetricProjectionLagAge is the age of the oldest event a partition
	// has not handled yet, in seconds; 0 when it has caught up (gauge;
	// attributes projection, partition).
	MetricProjectionLagAge = "chronicle.projection.lag.age"
	// MetricProjectionStopped is 1 for a partition stopped by a failure,
	// 0 otherwise (gauge; attributes projection, partition).
	MetricProjectionStopped = "chronicle.projection.stopped"
	// MetricProjectionHeld is 1 for a partition that a runner holds, 0
	// otherwise (gauge; attributes projection, partition).
	MetricProjectionHeld = "chronicle.projection.held"
	// MetricDeadLetters is the number of a partition's dead letters that
	// wait for an operator (parked) or for a retry (gauge; attributes
	// projection, partition).
	MetricDeadLetters = "chronicle.projection.dead_letters"
	// MetricReadHorizonAge is how long the read horizon of the PostgreSQL
	// store has been held back by the oldest open writing transaction of
	// the cluster, in seconds (gauge; see postgres.Store.TailLag).
	MetricReadHorizonAge = "chronicle.read_horizon.age"
)

// TailLagger is what the read horizon gauge observes: postgres.Store has
// it.
type TailLagger interface {
	TailLag(ctx context.Context) (time.Duration, error)
}

// Gauges observes the state of projections and of the store at each
// collection of the meter provider's readers: projection lag (events and
// age), stopped and held partitions, dead letters, and the read horizon's
// age. Create it with [NewGauges] and unregister it with [Gauges.Close].
//
// Each collection reads the checkpoints, the head, and for each partition
// that lags, counts its events and reads its oldest unhandled one: the
// cost of `chronicle projections status`, once per collection interval
// (60s by default with a periodic reader).
type Gauges struct {
	store   eventstore.Store
	storage projectionstore.Storage
	horizon TailLagger

	lagEvents, stopped, held, deadLetters metric.Int64ObservableGauge
	lagAge, horizonAge                    metric.Float64ObservableGauge
	reg                                   metric.Registration
}

// NewGauges registers the gauges of projections stored in storage (when
// not nil) over the events of store, and the read horizon's age when
// store (or the store it wraps, for a [*Store]) has a TailLag method, as
// postgres.Store does. A nil cfg means the defaults.
//
// An error while observing (the database is down) fails that collection's
// gauges only, through the SDK's error handler; it never reaches the
// store.
func NewGauges(store eventstore.Store, storage projectionstore.Storage, cfg *Config) (*Gauges, error) {
	if store == nil {
		return nil, &eventstore.ValidationError{Field: "store", Reason: "must not be nil"}
	}
	// Observing through a telemetry Store would trace every collection.
	store = unwrapStore(store)
	g := &Gauges{store: store, storage: storage}
	g.horizon, _ = store.(TailLagger)
	if storage == nil && g.horizon == nil {
		return nil, &eventstore.ValidationError{Field: "storage", Reason: "is nil and the store has no TailLag: nothing to observe"}
	}
	meter := cfg.withDefaults().MeterProvider.Meter(ScopeName)
	var (
		errs        []error
		instruments []metric.Observable
	)
	intGauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		i, err := meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		instruments = append(instruments, i)
		return i
	}
	floatGauge := func(name, unit, desc string) metric.Float64ObservableGauge {
		i, err := meter.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		instruments = append(instruments, i)
		return i
	}
	if storage != nil {
		g.lagEvents = intGauge(MetricProjectionLagEvents, "{event}", "Events after the partition's checkpoint.")
		g.lagAge = floatGauge(MetricProjectionLagAge, "s", "Age of the oldest event the partition has not handled.")
		g.stopped = intGauge(MetricProjectionStopped, "1", "1 when the partition is stopped by a failure.")
		g.held = intGauge(MetricProjectionHeld, "1", "1 when a runner holds the partition.")
		g.deadLetters = intGauge(MetricDeadLetters, "{event}", "Dead letters parked or waiting for a retry.")
	}
	if g.horizon != nil {
		g.horizonAge = floatGauge(MetricReadHorizonAge, "s", "Age of the oldest open writing transaction holding the read horizon.")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	reg, err := meter.RegisterCallback(g.observe, instruments...)
	if err != nil {
		return nil, err
	}
	g.reg = reg
	return g, nil
}

// Close unregisters the gauges: later collections no longer observe them.
func (g *Gauges) Close() error { return g.reg.Unregister() }

func (g *Gauges) observe(ctx context.Context, o metric.Observer) error {
	var errs []error
	if g.horizon != nil {
		if lag, err := g.horizon.TailLag(ctx); err != nil {
			errs = append(errs, fmt.Errorf("observe read horizon: %w", err))
		} else {
			o.ObserveFloat64(g.horizonAge, lag.Seconds())
		}
	}
	if g.storage != nil {
		sts, err := projection.Statuses(ctx, g.store, g.storage, "")
		if err != nil {
			// Partial statuses would report a lag of 0: observe none.
			errs = append(errs, fmt.Errorf("observe projections: %w", err))
			sts = nil
		}
		for _, st := range sts {
			set := metric.WithAttributeSet(attribute.NewSet(AttrProjection.String(st.Projection), AttrPartition.Int(st.Partition)))
			o.ObserveInt64(g.lagEvents, st.LagEvents, set)
			o.ObserveFloat64(g.lagAge, st.LagTime.Seconds(), set)
			o.ObserveInt64(g.stopped, boolInt(st.Error != ""), set)
			o.ObserveInt64(g.held, boolInt(st.Holder != ""), set)
			o.ObserveInt64(g.deadLetters, int64(st.Parked), set)
		}
	}
	return errors.Join(errs...)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
