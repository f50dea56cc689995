package aggregate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/snapshot"
)

// Snapshotter is implemented by aggregates that encode their snapshot
// state themselves. Without it the repository encodes the aggregate struct
// as JSON, which keeps exported fields only; implement Snapshotter when the
// state lives in unexported fields or needs another encoding.
//
// UnmarshalSnapshot is called on a new aggregate (as returned by
// [Repository.New]) with data that MarshalSnapshot returned, possibly by
// an older build: bump [Config.SnapshotSchemaVersion] whenever the encoding
// changes. It must return an error, not a partial state, when data is not
// what it expects; the repository then ignores the snapshot and replays
// the events.
type Snapshotter interface {
	// MarshalSnapshot encodes the aggregate's state.
	MarshalSnapshot() ([]byte, error)
	// UnmarshalSnapshot restores the state MarshalSnapshot encoded.
	UnmarshalSnapshot(data []byte) error
}

// SnapshotVersion returns the version of the snapshot the aggregate was
// loaded from or that the repository last took of it, or 0 when there is
// none. [snapshot.EveryN] decides from it.
func (b *Base) SnapshotVersion() int64 { return b.snapshot }

// Snapshot stores a snapshot of agg's current state now, whatever the
// snapshot policy says, and returns any error (unlike the snapshots a save
// takes, which are only logged). agg must have been loaded or saved, with
// no unsaved events. It fails with an error matching
// [eventstore.ErrInvalidInput] when the repository has no
// [Config.Snapshots] store.
func (r *Repository[T, PT]) Snapshot(ctx context.Context, agg PT) error {
	if r.err != nil {
		return r.err
	}
	if r.unbound {
		return &eventstore.ValidationError{Field: "Config.Snapshots", Reason: "cannot join the transaction of the store given to With (see snapshot.TxBinder)"}
	}
	if r.snapshots == nil {
		return &eventstore.ValidationError{Field: "Config.Snapshots", Reason: "is nil: snapshots are disabled"}
	}
	if agg == nil {
		return &eventstore.ValidationError{Field: "aggregate", Reason: "must not be nil"}
	}
	b := agg.aggregateBase()
	switch {
	case len(b.pending) > 0:
		return &eventstore.ValidationError{Field: "aggregate", Reason: fmt.Sprintf("%q has %d unsaved events: save it first", b.id, len(b.pending))}
	case b.version == 0:
		return &eventstore.ValidationError{Field: "aggregate", Reason: fmt.Sprintf("%q has no stored events", b.id)}
	}
	return r.saveSnapshot(ctx, agg)
}

// trySnapshot takes a snapshot of agg within the snapshot timeout and logs
// a failure instead of returning it. Inside a transaction (see
// [Repository.With]) it takes no timeout: with pgx, a cancelled statement
// closes the connection, which would end the caller's transaction.
func (r *Repository[T, PT]) trySnapshot(ctx context.Context, agg PT, why string) {
	if !r.inTx {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.snapTimeout)
		defer cancel()
	}
	if err := r.saveSnapshot(ctx, agg); err != nil {
		r.logger.WarnContext(ctx, "chronicle: snapshot not taken", "stream", agg.ID(), "version", agg.Version(), "when", why, "error", err)
	}
}

func (r *Repository[T, PT]) saveSnapshot(ctx context.Context, agg PT) error {
	b := agg.aggregateBase()
	data, err := encodeSnapshot(agg)
	if err != nil {
		return fmt.Errorf("snapshot %q at version %d: encode: %w", b.id, b.version, err)
	}
	s := snapshot.Snapshot{StreamID: b.id, Type: r.snapType, Version: b.version, SchemaVersion: r.snapSchema, Data: data}
	if err := r.snapshots.Save(ctx, s); err != nil {
		return fmt.Errorf("snapshot %q at version %d: %w", b.id, b.version, err)
	}
	b.snapshot = b.version
	return nil
}

// loadSnapshot starts a load from the stream's snapshot when it has a
// usable one: it returns the aggregate restored from the snapshot with the
// first page of events after it applied, and done when that page reached
// the end of the stream (or version upTo). It returns a nil aggregate when
// the load must start from the first event, and stale when the stream's
// snapshot is unusable (another type or schema version, undecodable) and
// should be replaced. Snapshot problems are logged, never returned: only
// errors reading or applying events are.
func (r *Repository[T, PT]) loadSnapshot(ctx context.Context, id string, upTo int64) (agg PT, done, stale bool, err error) {
	limit := r.pageSize
	if loader, ok := r.snapshots.(snapshot.StreamLoader); ok && upTo == 0 {
		res, err := loader.LoadStream(ctx, r.store, id, r.snapType, r.snapSchema, limit)
		switch {
		case err == nil:
			return r.fromStreamLoad(ctx, id, res, limit)
		case errors.Is(err, errors.ErrUnsupported):
		case ctx.Err() != nil || r.inTx:
			// Inside a transaction a failed statement may have aborted it:
			// going on would fail later with a less useful error.
			return nil, false, false, fmt.Errorf("load %q: %w", id, err)
		default:
			r.logger.WarnContext(ctx, "chronicle: cannot read the snapshot and the events together; reading them apart", "stream", id, "error", err)
		}
	}

	snap, err := r.snapshots.Load(ctx, id)
	switch {
	case errors.Is(err, snapshot.ErrNotFound):
		return nil, false, false, nil
	case err != nil && (ctx.Err() != nil || r.inTx):
		return nil, false, false, fmt.Errorf("load %q: %w", id, err)
	case err != nil:
		r.logger.WarnContext(ctx, "chronicle: cannot load the snapshot; loading from events", "stream", id, "error", err)
		return nil, false, false, nil
	case !r.usable(ctx, id, snap):
		return nil, false, true, nil
	case upTo > 0 && snap.Version > upTo:
		return nil, false, false, nil // time travel to before the snapshot
	}
	agg, err = r.decodeSnapshot(id, snap)
	if err != nil {
		r.logger.WarnContext(ctx, "chronicle: cannot decode the snapshot; loading from events", "stream", id, "snapshot_version", snap.Version, "error", err)
		return nil, false, true, nil
	}
	// Read from the event the snapshot covers, to check the stream has it.
	opts := eventstore.ReadStreamOptions{From: snap.Version, Limit: limit}
	if upTo > 0 {
		opts.Limit = min(limit, int(upTo-snap.Version)+1)
	}
	recs, err := r.store.ReadStream(ctx, id, opts)
	if err != nil {
		return nil, false, false, fmt.Errorf("load %q: %w", id, err)
	}
	if ok, err := r.continueFrom(ctx, agg, snap, recs, upTo); !ok || err != nil {
		return nil, false, false, err
	}
	return agg, len(recs) < opts.Limit, false, nil
}

// fromStreamLoad is loadSnapshot's second half for a [snapshot.StreamLoader].
func (r *Repository[T, PT]) fromStreamLoad(ctx context.Context, id string, res snapshot.StreamLoad, limit int) (agg PT, done, stale bool, err error) {
	done = len(res.Records) < limit
	if res.Usable() {
		if !r.usable(ctx, id, res.Snapshot) {
			return nil, false, true, nil // not what was asked for: the records do not start at 1
		}
		agg, err := r.decodeSnapshot(id, res.Snapshot)
		if err != nil {
			r.logger.WarnContext(ctx, "chronicle: cannot decode the snapshot; loading from events", "stream", id, "snapshot_version", res.Snapshot.Version, "error", err)
			return nil, false, true, nil
		}
		if ok, err := r.continueFrom(ctx, agg, res.Snapshot, res.Records, 0); !ok || err != nil {
			return nil, false, false, err
		}
		return agg, done, false, nil
	}
	if res.Found {
		r.usable(ctx, id, res.Snapshot) // logs why not
		stale = true
	}
	agg = r.New(id)
	for _, rec := range res.Records {
		if err := r.apply(ctx, agg, rec); err != nil {
			return nil, false, false, err
		}
	}
	return agg, done, stale, nil
}

// usable reports whether s is a snapshot of stream id, of this
// repository's aggregate type and schema version, logging why not.
func (r *Repository[T, PT]) usable(ctx context.Context, id string, s snapshot.Snapshot) bool {
	if s.StreamID == id && s.Type == r.snapType && s.SchemaVersion == r.snapSchema {
		return true
	}
	r.logger.InfoContext(ctx, "chronicle: ignoring a snapshot of another type or schema version; loading from events and replacing it",
		"stream", s.StreamID, "snapshot_version", s.Version, "type", s.Type, "want_type", r.snapType,
		"schema_version", s.SchemaVersion, "want_schema_version", r.snapSchema)
	return false
}

// continueFrom applies recs, which start at the version the snapshot
// covers, to agg restored from snap, up to version upTo (0: no bound). It
// reports false (and logs) when the stream does not have the covered
// event: the snapshot is then ignored. A stream truncated right after the
// snapshot's version (see [eventstore.Lifecycle.TruncateStream]) starts
// one version later: the snapshot covers everything before it.
func (r *Repository[T, PT]) continueFrom(ctx context.Context, agg PT, snap snapshot.Snapshot, recs []eventstore.Record, upTo int64) (bool, error) {
	switch {
	case len(recs) > 0 && recs[0].StreamVersion == snap.Version:
		recs = recs[1:]
	case len(recs) > 0 && recs[0].StreamVersion == snap.Version+1:
		// Truncated before snap.Version+1: nothing is missing.
	default:
		r.logger.WarnContext(ctx, "chronicle: ignoring a snapshot ahead of its stream (or behind its truncation point); loading from events", "stream", snap.StreamID, "snapshot_version", snap.Version)
		return false, nil
	}
	for _, rec := range recs {
		if upTo > 0 && rec.StreamVersion > upTo {
			break
		}
		if err := r.apply(ctx, agg, rec); err != nil {
			return false, err
		}
	}
	return true, nil
}

// decodeSnapshot returns a new aggregate restored from snap.
func (r *Repository[T, PT]) decodeSnapshot(id string, snap snapshot.Snapshot) (agg PT, err error) {
	agg = r.New(id)
	defer func() {
		if p := recover(); p != nil {
			agg, err = nil, fmt.Errorf("panic while decoding: %v", p)
		}
	}()
	if s, ok := any(agg).(Snapshotter); ok {
		if err := s.UnmarshalSnapshot(snap.Data); err != nil {
			return nil, err
		}
	} else {
		if bytes.Equal(bytes.TrimSpace(snap.Data), []byte("null")) {
			return nil, errors.New("state is null")
		}
		dec := json.NewDecoder(bytes.NewReader(snap.Data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(agg); err != nil {
			return nil, err
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("trailing data after the state")
		}
	}
	b := agg.aggregateBase()
	b.id, b.version, b.stored, b.snapshot = id, snap.Version, snap.Version, snap.Version
	return agg, nil
}

func encodeSnapshot(agg Root) (data []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			data, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	if s, ok := agg.(Snapshotter); ok {
		return s.MarshalSnapshot()
	}
	return json.Marshal(agg)
}

// checkSnapshotEncoding refuses, for the default JSON snapshots, aggregate
// types with top-level fields that JSON does not keep: a snapshot would
// silently lose them.
func checkSnapshotEncoding[T any, PT interface {
	*T
	Root
}]() error {
	if _, ok := any(PT(new(T))).(Snapshotter); ok {
		return nil
	}
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		return nil
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type == reflect.TypeFor[Base]() {
			continue
		}
		reason := ""
		switch {
		case !f.IsExported() && !(f.Anonymous && f.Type.Kind() == reflect.Struct):
			reason = "is unexported"
		case f.Tag.Get("json") == "-":
			reason = `is tagged json:"-"`
		}
		if reason != "" {
			return &eventstore.ValidationError{
				Field:  fmt.Sprintf("aggregate type %s field %s", t, f.Name),
				Reason: reason + ", so JSON snapshots would lose it: export it or implement aggregate.Snapshotter",
			}
		}
	}
	return nil
}
