package memory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Config configures a [Store]. The zero value and a nil *Config mean
// defaults.
type Config struct {
	// MaxEventSize is the largest event accepted, counting its payload and
	// metadata in bytes, as [eventstore.ValidateAppend] measures it; zero
	// or less means the default. Defaults to [eventstore.DefaultMaxEventSize].
	MaxEventSize int
	// Now returns the time recorded on appended events (converted to UTC).
	// Tests set it to get deterministic timestamps. Defaults to [time.Now].
	Now func() time.Time
}

// Store is an in-memory [eventstore.Store]. Create one with [New]; it is
// safe for concurrent use. Everything is lost when the process exits.
type Store struct {
	maxEventSize int
	now          func() time.Time

	mu      sync.RWMutex
	chunks  [][]eventstore.Record // the global log; index i is chunks[i>>chunkBits][i&chunkMask]
	n       int                   // number of stored events
	tx      uint64                // last commit number
	streams map[string]*stream
	created []*stream                  // streams in creation order: created[i].seq == i+1
	ids     map[eventstore.EventID]int // event ID -> index in the log
	types   map[string]string          // interned event type names
	arena   []byte                     // free space for small payloads
	gone    map[int]struct{}           // log indexes of events out of the log (lifecycle.go)

	wmu      sync.Mutex
	watchers map[chan struct{}]struct{}
}

var (
	_ eventstore.Store        = (*Store)(nil)
	_ eventstore.StreamLister = (*Store)(nil)
	_ eventstore.Lifecycle    = (*Store)(nil)
)

// stream indexes one stream's events in the global log.
type stream struct {
	id     string // owned copy of the stream ID, shared by its records
	events []int  // events[v-1] is the log index of version v
	seq    int64  // creation order, see eventstore.StreamInfo.Seq
	status eventstore.StreamStatus
	first  int64 // first version that exists (truncation point)
}

const (
	chunkBits = 12
	chunkSize = 1 << chunkBits
	chunkMask = chunkSize - 1

	arenaSize     = 64 << 10 // payloads are copied into shared blocks of this size...
	arenaMaxEvent = 4 << 10  // ...when no larger than this; larger ones get their own allocation
)

// New returns an empty store. A nil cfg means defaults.
func New(cfg *Config) *Store {
	if cfg == nil {
		cfg = &Config{}
	}
	s := &Store{
		maxEventSize: cfg.MaxEventSize,
		now:          cfg.Now,
		streams:      map[string]*stream{},
		ids:          map[eventstore.EventID]int{},
		types:        map[string]string{},
		watchers:     map[chan struct{}]struct{}{},
	}
	if s.maxEventSize <= 0 {
		s.maxEventSize = eventstore.DefaultMaxEventSize
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Append implements [eventstore.Store.Append].
func (s *Store) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := eventstore.ValidateAppend(streamID, expected, events, s.maxEventSize); err != nil {
		return eventstore.AppendResult{}, err
	}
	res, stored, err := s.append(streamID, expected, events)
	if stored {
		s.notify()
	}
	return res, err
}

func (s *Store) append(streamID string, expected eventstore.ExpectedVersion, events []eventstore.Event) (res eventstore.AppendResult, stored bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, retry, err := s.check(streamID, expected, events)
	if err != nil || retry {
		return res, false, err
	}
	now := s.now().UTC()
	s.tx++
	return s.commit(streamID, events, now), true, nil
}

// AppendStreams implements [eventstore.Store.AppendStreams]. Retrying a
// whole earlier call with the same event IDs returns its original results;
// a call that retries some parts and adds new events in others fails with
// a [*eventstore.DuplicateEventError].
func (s *Store) AppendStreams(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(appends) == 0 {
		return nil, &eventstore.ValidationError{Field: "appends", Reason: "need at least one stream"}
	}
	seen := make(map[string]struct{}, len(appends))
	ids := map[eventstore.EventID]struct{}{}
	for i, a := range appends {
		if err := eventstore.ValidateAppend(a.StreamID, a.Expected, a.Events, s.maxEventSize); err != nil {
			return nil, fmt.Errorf("appends[%d]: %w", i, err)
		}
		if _, dup := seen[a.StreamID]; dup {
			return nil, &eventstore.ValidationError{Field: fmt.Sprintf("appends[%d].stream id", i), Reason: fmt.Sprintf("stream %q appears more than once", a.StreamID)}
		}
		seen[a.StreamID] = struct{}{}
		if len(appends) == 1 {
			continue
		}
		if err := checkUniqueIDs(a.Events, ids); err != nil {
			return nil, fmt.Errorf("appends[%d]: %w", i, err)
		}
	}

	results, stored, err := s.appendStreams(appends)
	if stored {
		s.notify()
	}
	return results, err
}

func (s *Store) appendStreams(appends []eventstore.StreamAppend) (results []eventstore.AppendResult, stored bool, err error) {
	results = make([]eventstore.AppendResult, len(appends))
	s.mu.Lock()
	defer s.mu.Unlock()
	retries, firstRetry := 0, -1
	for i, a := range appends {
		res, retry, err := s.check(a.StreamID, a.Expected, a.Events)
		if err != nil {
			return nil, false, err
		}
		if retry {
			retries++
			results[i] = res
			if firstRetry < 0 {
				firstRetry = i
			}
		}
	}
	if retries == len(appends) {
		return results, false, nil
	}
	if retries > 0 {
		a := appends[firstRetry]
		return nil, false, &eventstore.DuplicateEventError{EventID: a.Events[0].ID, StreamID: a.StreamID}
	}
	now := s.now().UTC()
	s.tx++
	for i, a := range appends {
		results[i] = s.commit(a.StreamID, a.Events, now)
	}
	return results, true, nil
}

// checkUniqueIDs reports a non-zero event ID of events that is already in
// seen (an earlier part of the same AppendStreams call), and adds them.
func checkUniqueIDs(events []eventstore.Event, seen map[eventstore.EventID]struct{}) error {
	for i := range events {
		if events[i].ID.IsZero() {
			continue
		}
		if _, ok := seen[events[i].ID]; ok {
			return &eventstore.ValidationError{Field: fmt.Sprintf("events[%d].id", i), Reason: fmt.Sprintf("%s is also used in another stream of the call", events[i].ID)}
		}
		seen[events[i].ID] = struct{}{}
	}
	return nil
}

func schemaVersion(v int) int { return max(v, 1) }

// check decides, with s.mu held, what appending events to streamID would
// do: retry reports an idempotent retry of an earlier append, whose result
// it returns; otherwise a nil error means the append may be committed.
func (s *Store) check(streamID string, expected eventstore.ExpectedVersion, events []eventstore.Event) (res eventstore.AppendResult, retry bool, err error) {
	found, first := 0, -1
	for i := range events {
		if events[i].ID.IsZero() {
			continue
		}
		if _, ok := s.ids[events[i].ID]; ok {
			found++
			if first < 0 {
				first = i
			}
		}
	}
	dup := func(i int) (eventstore.AppendResult, bool, error) {
		return eventstore.AppendResult{}, false, &eventstore.DuplicateEventError{EventID: events[i].ID, StreamID: streamID}
	}
	if found > 0 {
		// Every ID must already be stored, consecutively in this stream, in
		// this order, with the same content, and where expected put them.
		if found < len(events) {
			return dup(first)
		}
		rec0 := s.at(s.ids[events[0].ID])
		if err := s.state(s.streams[rec0.StreamID]).ClosedError(); err != nil && rec0.StreamID == streamID {
			return eventstore.AppendResult{}, false, err // its events are out of the log
		}
		if rec0.StreamID != streamID || (expected >= 0 && rec0.StreamVersion != int64(expected)+1) {
			return dup(0)
		}
		st := s.streams[streamID]
		var rec *eventstore.Record
		for k := range events {
			v := rec0.StreamVersion + int64(k)
			if v > int64(len(st.events)) {
				return dup(k)
			}
			rec = s.at(st.events[v-1])
			e := &events[k]
			if rec.EventID != e.ID || rec.Type != e.Type || rec.SchemaVersion != schemaVersion(e.SchemaVersion) || !sameJSON(rec.Data, e.Data) {
				return dup(k)
			}
		}
		return eventstore.AppendResult{StreamID: streamID, Version: rec.StreamVersion, Position: rec.Position}, true, nil
	}
	var current int64
	if st := s.streams[streamID]; st != nil {
		if err := s.state(st).ClosedError(); err != nil {
			return eventstore.AppendResult{}, false, err
		}
		current = int64(len(st.events))
	}
	if !expected.Check(current) {
		return eventstore.AppendResult{}, false, &eventstore.ConcurrencyError{StreamID: streamID, Expected: expected, Actual: current}
	}
	return eventstore.AppendResult{}, false, nil
}

// commit stores events at the end of streamID as part of commit s.tx, with
// s.mu held. The events have been checked.
func (s *Store) commit(streamID string, events []eventstore.Event, now time.Time) eventstore.AppendResult {
	st := s.streams[streamID]
	if st == nil {
		st = &stream{id: strings.Clone(streamID), seq: int64(len(s.created) + 1), status: eventstore.StreamLive, first: 1}
		s.streams[st.id] = st
		s.created = append(s.created, st)
	}
	for i := range events {
		e := &events[i]
		id := e.ID
		if id.IsZero() {
			id = eventstore.NewEventID()
		}
		typ, ok := s.types[e.Type]
		if !ok {
			typ = strings.Clone(e.Type)
			s.types[typ] = typ
		}
		md := e.Metadata
		md.Headers = cloneHeaders(md.Headers)
		idx := s.n
		s.push(eventstore.Record{
			EventID:       id,
			StreamID:      st.id,
			StreamVersion: int64(len(st.events)) + 1,
			Position:      eventstore.Position{Transaction: s.tx, Global: int64(idx) + 1},
			Type:          typ,
			SchemaVersion: schemaVersion(e.SchemaVersion),
			Data:          s.keep(e.Data),
			Metadata:      md,
			RecordedAt:    now,
		})
		st.events = append(st.events, idx)
		s.ids[id] = idx
	}
	last := s.at(s.n - 1)
	return eventstore.AppendResult{StreamID: st.id, Version: last.StreamVersion, Position: last.Position}
}

func cloneHeaders(h map[string]string) map[string]string {
	if len(h) == 0 {
		return nil
	}
	return maps.Clone(h)
}

// push appends rec to the log. The log grows by chunks so that a big store
// never copies all its records to grow.
func (s *Store) push(rec eventstore.Record) {
	c := s.n >> chunkBits
	if c == len(s.chunks) {
		var chunk []eventstore.Record
		if c > 0 {
			chunk = make([]eventstore.Record, 0, chunkSize)
		}
		s.chunks = append(s.chunks, chunk)
	}
	s.chunks[c] = append(s.chunks[c], rec)
	s.n++
}

func (s *Store) at(i int) *eventstore.Record { return &s.chunks[i>>chunkBits][i&chunkMask] }

// keep returns a private copy of b. Small payloads share arena blocks, so
// appending does not allocate per event; stored bytes are never modified.
func (s *Store) keep(b []byte) []byte {
	if len(b) > arenaMaxEvent {
		return bytes.Clone(b)
	}
	if len(b) > cap(s.arena)-len(s.arena) {
		s.arena = make([]byte, 0, arenaSize)
	}
	start := len(s.arena)
	s.arena = append(s.arena, b...)
	return s.arena[start:len(s.arena):len(s.arena)]
}

// copyOut returns copies of the records at the log indexes idx(0..n-1),
// with s.mu held. Payloads are copied into one buffer for the page.
func (s *Store) copyOut(n int, idx func(int) int) []eventstore.Record {
	if n == 0 {
		return nil
	}
	size := 0
	for k := range n {
		size += len(s.at(idx(k)).Data)
	}
	buf := make([]byte, size)
	out := make([]eventstore.Record, n)
	off := 0
	for k := range n {
		r := *s.at(idx(k))
		end := off + copy(buf[off:], r.Data)
		r.Data = buf[off:end:end]
		off = end
		r.Metadata.Headers = cloneHeaders(r.Metadata.Headers)
		out[k] = r
	}
	return out
}

// ReadStream implements [eventstore.Store.ReadStream]. A negative
// opts.Limit or an unknown direction fails with a
// [*eventstore.ValidationError].
func (s *Store) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if opts.Direction != eventstore.Forward && opts.Direction != eventstore.Backward {
		return nil, &eventstore.ValidationError{Field: "direction", Reason: fmt.Sprintf("%d is neither forward nor backward", opts.Direction)}
	}
	if opts.Limit < 0 {
		return nil, &eventstore.ValidationError{Field: "limit", Reason: "must not be negative"}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.streams[streamID]
	if st == nil {
		return nil, nil
	}
	if err := s.state(st).ClosedError(); err != nil {
		if st.status == eventstore.StreamDeleted {
			return nil, nil // a soft-deleted stream reads as not found
		}
		return nil, err
	}
	return s.readStream(st, opts), nil
}

// readStream reads a page of st's events that exist (from st.first), with
// s.mu held.
func (s *Store) readStream(st *stream, opts eventstore.ReadStreamOptions) []eventstore.Record {
	n := int64(len(st.events))
	if opts.Direction == eventstore.Forward {
		from := max(opts.From, st.first)
		if from > n {
			return nil
		}
		count := n - from + 1
		if opts.Limit > 0 {
			count = min(count, int64(opts.Limit))
		}
		events := st.events[from-1 : from-1+count]
		return s.copyOut(len(events), func(k int) int { return events[k] })
	}
	from := opts.From
	if from <= 0 || from > n {
		from = n
	}
	count := max(from-st.first+1, 0)
	if opts.Limit > 0 {
		count = min(count, int64(opts.Limit))
	}
	events := st.events[from-count : from]
	last := len(events) - 1
	return s.copyOut(len(events), func(k int) int { return events[last-k] })
}

// ReadAll implements [eventstore.Store.ReadAll]. Every stored event is
// readable at once (nothing commits late in memory). A limit below 1 fails
// with a [*eventstore.ValidationError].
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, &eventstore.ValidationError{Field: "limit", Reason: fmt.Sprintf("is %d, must be positive", limit)}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	start := s.searchAfter(after)
	if len(s.gone) == 0 {
		count := min(s.n-start, limit)
		return s.copyOut(count, func(k int) int { return start + k }), nil
	}
	idx := s.present(start, limit)
	return s.copyOut(len(idx), func(k int) int { return idx[k] }), nil
}

// searchAfter returns the index of the first event after pos, with s.mu held.
func (s *Store) searchAfter(pos eventstore.Position) int {
	if pos.IsZero() {
		return 0
	}
	// A checkpoint from this store names an event: Global is its index + 1.
	if g := pos.Global; g >= 1 && g <= int64(s.n) && s.at(int(g-1)).Position == pos {
		return int(g)
	}
	return sort.Search(s.n, func(i int) bool { return s.at(i).Position.Compare(pos) > 0 })
}

// StreamVersion implements [eventstore.Store.StreamVersion].
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return 0, err
	}
	s.mu.RLock()
	st := s.streams[streamID]
	var (
		v      int64
		closed error
	)
	if st != nil {
		v, closed = int64(len(st.events)), s.state(st).ClosedError()
	}
	s.mu.RUnlock()
	if st == nil {
		return 0, fmt.Errorf("stream %q: %w", streamID, eventstore.ErrStreamNotFound)
	}
	if closed != nil {
		return 0, closed
	}
	return v, nil
}

// Head implements [eventstore.Store.Head].
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Position{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := s.n - 1; i >= 0; i-- {
		if _, gone := s.gone[i]; !gone {
			return s.at(i).Position, nil
		}
	}
	return eventstore.Position{}, nil
}

// Watch implements [eventstore.Store.Watch]: the channel receives a value
// after each append (coalesced) and is closed when ctx is done. It starts
// no goroutine until ctx is done.
func (s *Store) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	if ctx.Err() != nil {
		close(ch)
		return ch
	}
	s.wmu.Lock()
	s.watchers[ch] = struct{}{}
	s.wmu.Unlock()
	context.AfterFunc(ctx, func() {
		s.wmu.Lock()
		delete(s.watchers, ch)
		close(ch)
		s.wmu.Unlock()
	})
	return ch
}

func (s *Store) notify() {
	s.wmu.Lock()
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	s.wmu.Unlock()
}

// sameJSON reports whether two valid JSON documents hold the same value, as
// PostgreSQL's jsonb equality does: key order and white space do not
// matter, numbers compare by value. It is only used on the retry path.
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	va, errA := decodeJSONValue(a)
	vb, errB := decodeJSONValue(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

func decodeJSONValue(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return normalizeNumbers(v), nil
}

// jsonNumber is a number's canonical text, a type of its own so that it
// never equals a JSON string.
type jsonNumber string

// normalizeNumbers replaces json.Number values by a canonical text, so
// that 1.0 and 1 and 1e0 compare equal as they do in jsonb.
func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if r, ok := new(big.Rat).SetString(string(x)); ok {
			return jsonNumber(r.RatString())
		}
		return jsonNumber(x)
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalizeNumbers(e)
		}
	}
	return v
}

// ListStreams lists streams newest-created first; see
// [eventstore.StreamLister].
func (s *Store) ListStreams(ctx context.Context, opts eventstore.ListStreamsOptions) ([]eventstore.StreamInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	limit := opts.EffectiveLimit()
	s.mu.RLock()
	defer s.mu.RUnlock()
	end := len(s.created)
	if opts.Before > 0 {
		end = min(end, int(opts.Before-1))
	}
	var out []eventstore.StreamInfo
	for i := end - 1; i >= 0 && len(out) < limit; i-- {
		st := s.created[i]
		if !strings.HasPrefix(st.id, opts.Prefix) {
			continue
		}
		first, last := s.at(st.events[0]), s.at(st.events[len(st.events)-1])
		out = append(out, eventstore.StreamInfo{
			StreamID:  st.id,
			Version:   int64(len(st.events)),
			Seq:       st.seq,
			CreatedAt: first.RecordedAt,
			UpdatedAt: last.RecordedAt,
			Status:    st.status,
		})
	}
	return out, nil
}
