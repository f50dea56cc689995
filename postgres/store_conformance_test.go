package postgres

import (
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/eventstore/storetest"
)

// TestConformance runs the conformance suite under each configuration,
// with group commit (Config.GroupCommit, off by default) on and off.
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		opts *storetest.Options
	}{
		{name: "listen", cfg: Config{PollInterval: 50 * time.Millisecond}},
		{name: "poll-only", cfg: Config{PollOnly: true, PollInterval: 50 * time.Millisecond}},
		// A store with a small size limit, so that the suite checks both
		// sides of it.
		{name: "small-limit", cfg: Config{MaxEventSize: 4096}, opts: &storetest.Options{MaxEventSize: 4096}},
	} {
		for _, group := range []string{"group", "no-group"} {
			t.Run(tc.name+"/"+group, func(t *testing.T) {
				t.Parallel()
				cfg := tc.cfg
				cfg.GroupCommit = group != "no-group"
				storetest.Run(t, func(t *testing.T) eventstore.Store {
					s, _ := setupStore(t, &cfg)
					return s
				}, tc.opts)
			})
		}
	}
}
