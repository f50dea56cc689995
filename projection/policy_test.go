package projection_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	p := projection.RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	tests := []struct {
		retry    int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second},
		{60, 500 * time.Millisecond, time.Second},
		{1 << 30, 500 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		for range 200 {
			if d := p.Backoff(tt.retry); d < tt.min || d > tt.max {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", tt.retry, d, tt.min, tt.max)
			}
		}
	}
	if d := (projection.RetryPolicy{}).Backoff(3); d != 0 {
		t.Fatalf("zero policy Backoff = %v, want 0", d)
	}
}

func TestPartitionOf(t *testing.T) {
	t.Parallel()
	counts := make([]int, 8)
	for i := range 8000 {
		p := projection.PartitionOf("account-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune(i)), 8)
		if p < 0 || p >= 8 {
			t.Fatalf("partition %d out of range", p)
		}
		counts[p]++
	}
	for p, n := range counts {
		if n < 500 {
			t.Errorf("partition %d got %d of 8000 streams: badly spread %v", p, n, counts)
		}
	}
	for _, n := range []int{-1, 0, 1} {
		if p := projection.PartitionOf("s", n); p != 0 {
			t.Errorf("PartitionOf(s, %d) = %d, want 0", n, p)
		}
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ok   bool
	}{
		{"balances", true},
		{"read-model.v2 'quoted'; DROP TABLE x", true},
		{"ünïcode", true},
		{"", false},
		{strings.Repeat("n", 201), false},
		{"bad\x00nul", false},
		{"tab\there", false},
		{string([]byte{0xff}), false},
	}
	for _, tt := range tests {
		err := projection.ValidateName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidInput", tt.name, err)
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	tests := []struct {
		err    error
		target error
	}{
		{&projection.CheckpointConflictError{}, projection.ErrCheckpointConflict},
		{&projection.PartitionsMismatchError{Projection: "p", Stored: 2, Configured: 3}, projection.ErrPartitionsMismatch},
		{&projection.StoppedError{Err: cause}, projection.ErrStopped},
		{&projection.StoppedError{Err: cause}, cause},
		{&projection.DeadLetterStateError{ID: 1, Status: projectionstore.DeadLetterResolved, Op: "retry"}, projection.ErrDeadLetterState},
		{projection.Permanent(cause), projection.ErrPermanent},
		{projection.Permanent(cause), cause},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.target) {
			t.Errorf("%v does not match %v", tt.err, tt.target)
		}
		if msg := tt.err.Error(); msg == "" || msg[0] < 'a' || msg[0] > 'z' {
			t.Errorf("message %q is not lowercase", msg)
		}
	}
	if projection.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}
