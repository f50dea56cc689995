package postgres

import (
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/eventstore/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	t.Run("listen", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) eventstore.Store {
			s, _ := setupStore(t, &Config{PollInterval: 50 * time.Millisecond})
			return s
		}, nil)
	})
	t.Run("poll-only", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) eventstore.Store {
			s, _ := setupStore(t, &Config{PollOnly: true, PollInterval: 50 * time.Millisecond})
			return s
		}, nil)
	})
	t.Run("small-limit", func(t *testing.T) {
		t.Parallel()
		// A store with a small size limit, so that the suite checks both
		// sides of it.
		storetest.Run(t, func(t *testing.T) eventstore.Store {
			s, _ := setupStore(t, &Config{MaxEventSize: 4096})
			return s
		}, &storetest.Options{MaxEventSize: 4096})
	})
}
