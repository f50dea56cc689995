package eventbus

import (
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// PublishFailure is a publication of the relay that failed: it was retried
// (the broker was unavailable or did not acknowledge) or, when the broker
// can never take the message, parked in the relay's dead letters.
type PublishFailure struct {
	// EventID is the event whose publication failed.
	EventID eventstore.EventID
	// StreamID is its stream.
	StreamID string
	// Err is the publisher's error.
	Err error
	// At is when the publication failed.
	At time.Time
}

// LastPublishError returns the relay's last failed publication since the
// process started, and false if none failed. A failure stays reported after
// the relay recovers: compare its time with the relay's progress.
func (r *Relay) LastPublishError() (PublishFailure, bool) { return r.failed.last() }

// failureRecord keeps the last publish failure.
type failureRecord struct {
	mu   sync.Mutex
	f    PublishFailure
	seen bool
}

func (f *failureRecord) record(m Message, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.f = PublishFailure{EventID: m.EventID, StreamID: m.StreamID, Err: err, At: time.Now()}
	f.seen = true
}

func (f *failureRecord) last() (PublishFailure, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f, f.seen
}
