package telemetry

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

func TestOutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{&eventstore.ConcurrencyError{StreamID: "s"}, "conflict"},
		{&eventstore.TransactionConflictError{StreamID: "s", Reason: "deadlock"}, "conflict"},
		{&eventstore.DuplicateEventError{}, "duplicate"},
		{fmt.Errorf("stream version: %w", eventstore.ErrStreamNotFound), "not_found"},
		{&eventstore.ValidationError{Field: "stream id", Reason: "empty"}, "invalid"},
		{&eventstore.EventTooLargeError{}, "invalid"},
		{&eventstore.UnknownEventTypeError{Type: "X"}, "invalid"},
		{&eventstore.OutcomeUnknownError{Op: "append", Err: context.Canceled}, "unknown"},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), "canceled"},
		{errors.New("connection refused"), "error"},
	}
	for _, tt := range tests {
		if got := outcome(tt.err); got != tt.want {
			t.Errorf("outcome(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
