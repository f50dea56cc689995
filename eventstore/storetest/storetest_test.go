package storetest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/eventstore/storetest"
	"github.com/chronicle-go/chronicle/memory"
)

// A mutant is the memory store with one deliberate bug. The suite is only
// worth something if it fails each of them.
type mutant struct {
	*memory.Store
	name string

	mu    sync.Mutex
	cache map[eventstore.EventID][]byte // for shares-payloads
}

const mutantEnv = "STORETEST_MUTANT"

// mutants maps each bug to subtests that must catch it.
var mutants = map[string][]string{
	"ignore-expected-version":    {"ExpectedVersionNoStream", "ExpectedVersionExact", "RaceExactExpectedVersion"},
	"wrong-actual-version":       {"ExpectedVersionNoStream", "ExpectedVersionStreamExists", "ExpectedVersionExact"},
	"check-then-act":             {"RaceExactExpectedVersion"},
	"untyped-validation-errors":  {"InvalidInput", "EventTooLarge", "InvalidReadArguments"},
	"no-retry-recognition":       {"IdempotentRetry", "AppendStreamsRetry"},
	"read-all-skips":             {"ReadAllPaging", "ReadAllSeq", "ConcurrentTailing"},
	"read-all-repeats":           {"ReadAllPaging", "ConcurrentTailing"},
	"backward-reads-forward":     {"ReadStreamBackward", "ReadStreamSeq"},
	"limit-ignored":              {"ReadStreamForward", "ReadStreamBackward"},
	"append-streams-not-atomic":  {"AppendStreamsAtomic", "AppendStreamsInvalid"},
	"head-is-first":              {"Head"},
	"local-recorded-at":          {"MetadataAndRecordedAt"},
	"drops-headers":              {"MetadataAndRecordedAt"},
	"not-found-is-empty-version": {"StreamVersion", "ReadStreamEmpty"},
	"watch-never-wakes":          {"Watch"},
	"watch-never-closes":         {"Watch", "WatchClosesOnCancel"},
	"shares-payloads":            {"CallerCannotMutateStoredEvents"},
	"case-insensitive-streams":   {"StreamIDsRoundTrip"},
	"schema-version-not-stored":  {"AppendAndReadBack", "PayloadRoundTrip"},
	"closed-streams-reopen":      {"LifecycleSoftDelete", "LifecycleArchive"},
	"truncate-does-nothing":      {"LifecycleTruncate"},
	"archived-reads-empty":       {"LifecycleArchive"},
}

// TestMutant runs the suite on the mutant named by $STORETEST_MUTANT; it
// is the child process of TestSuiteCatchesBugs.
func TestMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("run by TestSuiteCatchesBugs")
	}
	storetest.SetWaitTimeout(2 * time.Second) // the mutants that hang would take 30s
	storetest.Run(t, func(t *testing.T) eventstore.Store {
		return &mutant{Store: memory.New(nil), name: name}
	}, nil)
}

func TestSuiteCatchesBugs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite once per mutant")
	}
	t.Parallel()
	for name, mustFail := range mutants {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMutant$", "-test.v", "-test.count=1", "-test.parallel=64")
			cmd.Env = append(os.Environ(), mutantEnv+"="+name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the suite passed on mutant %s (err %v); output:\n%s", name, err, tail(out))
			}
			failed := map[string]bool{}
			for _, m := range regexp.MustCompile(`--- FAIL: TestMutant/(\w+)`).FindAllSubmatch(out, -1) {
				failed[string(m[1])] = true
			}
			for _, sub := range mustFail {
				if !failed[sub] {
					t.Errorf("subtest %s did not catch mutant %s", sub, name)
				}
			}
			if t.Failed() {
				t.Logf("failed subtests: %v; output:\n%s", failed, tail(out))
			}
		})
	}
}

func tail(out []byte) string {
	s := string(out)
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

func (m *mutant) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if m.name == "closed-streams-reopen" {
		// Appending to a deleted or archived stream silently restores it.
		if st, err := m.Store.StreamState(ctx, streamID); err == nil && (st.Status == eventstore.StreamDeleted || st.Status == eventstore.StreamArchived) {
			if _, err := m.Store.RestoreStream(ctx, streamID); err != nil {
				return eventstore.AppendResult{}, err
			}
		}
	}
	if m.name == "case-insensitive-streams" {
		streamID = strings.ToLower(streamID)
	}
	switch m.name {
	case "ignore-expected-version":
		if expected.Valid() {
			expected = eventstore.Any
		}
	case "check-then-act":
		if expected >= 0 {
			v, err := m.Store.StreamVersion(ctx, streamID)
			if errors.Is(err, eventstore.ErrStreamNotFound) {
				v, err = 0, nil
			}
			time.Sleep(time.Millisecond) // a database store would make a round trip here
			if err == nil && v != int64(expected) {
				return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: streamID, Expected: expected, Actual: v}
			}
			if err == nil {
				expected = eventstore.Any
			}
		}
	case "no-retry-recognition":
		events = append([]eventstore.Event(nil), events...)
		for i := range events {
			events[i].ID = eventstore.NewEventID()
		}
	}
	res, err := m.Store.Append(ctx, streamID, expected, events...)
	return res, m.mangle(err)
}

func (m *mutant) mangle(err error) error {
	var ce *eventstore.ConcurrencyError
	switch {
	case err == nil:
		return nil
	case m.name == "wrong-actual-version" && errors.As(err, &ce):
		ce.Actual++
	case m.name == "untyped-validation-errors" && errors.Is(err, eventstore.ErrInvalidInput):
		return errors.New(err.Error())
	}
	return err
}

func (m *mutant) AppendStreams(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	switch m.name {
	case "append-streams-not-atomic":
		var results []eventstore.AppendResult
		for _, a := range appends {
			res, err := m.Store.Append(ctx, a.StreamID, a.Expected, a.Events...)
			if err != nil {
				return nil, err
			}
			results = append(results, res)
		}
		return results, nil
	case "no-retry-recognition":
		appends = append([]eventstore.StreamAppend(nil), appends...)
		for i := range appends {
			appends[i].Events = append([]eventstore.Event(nil), appends[i].Events...)
			for k := range appends[i].Events {
				appends[i].Events[k].ID = eventstore.NewEventID()
			}
		}
	}
	res, err := m.Store.AppendStreams(ctx, appends...)
	return res, m.mangle(err)
}

func (m *mutant) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	switch m.name {
	case "backward-reads-forward":
		if opts.Direction == eventstore.Backward {
			opts = eventstore.ReadStreamOptions{Limit: opts.Limit}
		}
	case "limit-ignored":
		if opts.Limit > 0 {
			opts.Limit = 0
		}
	}
	if m.name == "case-insensitive-streams" {
		streamID = strings.ToLower(streamID)
	}
	recs, err := m.Store.ReadStream(ctx, streamID, opts)
	if m.name == "archived-reads-empty" && errors.Is(err, eventstore.ErrStreamArchived) {
		return nil, nil
	}
	for i := range recs {
		switch m.name {
		case "local-recorded-at":
			recs[i].RecordedAt = recs[i].RecordedAt.Local()
		case "drops-headers":
			recs[i].Metadata.Headers = nil
		case "shares-payloads":
			m.mu.Lock()
			if m.cache == nil {
				m.cache = map[eventstore.EventID][]byte{}
			}
			if data, ok := m.cache[recs[i].EventID]; ok {
				recs[i].Data = data
			} else {
				m.cache[recs[i].EventID] = recs[i].Data
			}
			m.mu.Unlock()
		case "schema-version-not-stored":
			recs[i].SchemaVersion = 1
		}
	}
	return recs, m.mangle(err)
}

func (m *mutant) Watch(ctx context.Context) <-chan struct{} {
	switch m.name {
	case "watch-never-wakes":
		ch := make(chan struct{})
		context.AfterFunc(ctx, func() { close(ch) })
		return ch
	case "watch-never-closes":
		return m.Store.Watch(context.WithoutCancel(ctx))
	}
	return m.Store.Watch(ctx)
}

func (m *mutant) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.Record, error) {
	if m.name == "read-all-repeats" && !after.IsZero() {
		// Resume at the checkpoint's event instead of after it.
		if limit > 0 {
			all, err := m.Store.ReadAll(ctx, eventstore.Position{}, 1<<30)
			if err != nil {
				return nil, err
			}
			for i, r := range all {
				if r.Position == after {
					return all[i:min(len(all), i+limit)], nil
				}
			}
		}
	}
	recs, err := m.Store.ReadAll(ctx, after, limit)
	if m.name == "read-all-skips" && len(recs) > 1 {
		recs = recs[1:]
	}
	return recs, m.mangle(err)
}

func (m *mutant) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	if m.name == "case-insensitive-streams" {
		streamID = strings.ToLower(streamID)
	}
	v, err := m.Store.StreamVersion(ctx, streamID)
	if m.name == "not-found-is-empty-version" && errors.Is(err, eventstore.ErrStreamNotFound) {
		return 0, nil
	}
	return v, m.mangle(err)
}

func (m *mutant) Head(ctx context.Context) (eventstore.Position, error) {
	if m.name == "head-is-first" {
		recs, err := m.Store.ReadAll(ctx, eventstore.Position{}, 1)
		if err != nil || len(recs) == 0 {
			return eventstore.Position{}, err
		}
		return recs[0].Position, nil
	}
	return m.Store.Head(ctx)
}

func (m *mutant) TruncateStream(ctx context.Context, streamID string, before int64) (eventstore.StreamState, error) {
	if m.name == "truncate-does-nothing" {
		st, err := m.Store.StreamState(ctx, streamID)
		if err == nil && before <= st.Version {
			st.FirstVersion = max(st.FirstVersion, before)
		}
		return st, err
	}
	return m.Store.TruncateStream(ctx, streamID, before)
}
