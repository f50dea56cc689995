package natsbus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-go/chronicle/eventbus"
)

// Asynchronous publishing speaks JetStream's publish protocol on the core
// connection: each message is published with a reply subject of the bus's
// own (a prefix and the publication's sequence number), and the server
// answers there with the acknowledgement (or an error) once it has stored
// the message. jetstream.PublishMsgAsync does the same with more per
// message (a future with its channels, a map entry, a timer, a reflective
// decoding of every acknowledgement), which the relay, publishing every
// stored event, cannot afford.

// acks receives the acknowledgements of a bus's asynchronous publications.
type acks struct {
	// prefix starts the reply subjects: prefix + the sequence number.
	prefix string
	// okPrefix starts a successful acknowledgement by the bus's stream.
	okPrefix []byte
	stream   string
	sub      *nats.Subscription
	// status reports the connection's disconnections and its closing:
	// acknowledgements in flight then may never come.
	status chan nats.Status
	// wake is signalled (without blocking) after each outcome.
	wake chan struct{}

	mu sync.Mutex
	// ring[seq%len(ring)] holds the outcome of publication seq; there are
	// never more publications pending than slots.
	ring []ackSlot
}

type ackSlot struct {
	seq  uint64
	done bool
	err  error
}

// newAcks subscribes to the bus's reply subjects.
func (b *Bus) newAcks() (*acks, error) {
	prefix := b.nc.NewInbox() + "."
	a := &acks{
		prefix:   prefix,
		okPrefix: []byte(`{"stream":` + strconv.Quote(b.cfg.Stream) + `,`),
		stream:   b.cfg.Stream,
		wake:     make(chan struct{}, 1),
		ring:     make([]ackSlot, b.cfg.PublishWindow),
	}
	sub, err := b.nc.Subscribe(prefix+"*", a.receive)
	if err != nil {
		return nil, err
	}
	a.sub = sub
	a.status = b.nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	return a, nil
}

// expect makes seq's slot await its acknowledgement.
func (a *acks) expect(seq uint64) {
	a.mu.Lock()
	a.ring[seq%uint64(len(a.ring))] = ackSlot{seq: seq}
	a.mu.Unlock()
}

// outcome reports whether publication seq was acknowledged or failed, and
// how.
func (a *acks) outcome(seq uint64) (done bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.ring[seq%uint64(len(a.ring))]
	if s.seq != seq {
		return false, nil
	}
	return s.done, s.err
}

// receive records the server's answer to a publication. An answer to a
// publication no longer awaited (given up after AckTimeout, its slot
// reused) is dropped.
func (a *acks) receive(m *nats.Msg) {
	seq, err := strconv.ParseUint(m.Subject[min(len(a.prefix), len(m.Subject)):], 10, 64)
	if err != nil {
		return
	}
	res := a.ackError(m)
	a.mu.Lock()
	s := &a.ring[seq%uint64(len(a.ring))]
	if s.seq == seq && !s.done {
		s.done, s.err = true, res
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// ackError decodes an answer: nil for an acknowledgement by the bus's
// stream (a duplicate included), the server's error otherwise. The server
// writes a successful acknowledgement from a template starting with the
// stream's name, which is checked without decoding the rest.
func (a *acks) ackError(m *nats.Msg) error {
	if bytes.HasPrefix(m.Data, a.okPrefix) {
		return nil
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return jetstream.ErrNoStreamResponse
	}
	var r struct {
		Error  *jetstream.APIError `json:"error"`
		Stream string              `json:"stream"`
	}
	switch err := json.Unmarshal(m.Data, &r); {
	case err != nil:
		return fmt.Errorf("%w: %q", jetstream.ErrInvalidJSAck, m.Data)
	case r.Error != nil:
		return r.Error
	case r.Stream != a.stream:
		return fmt.Errorf("%w: acknowledged by stream %q, not %q", jetstream.ErrInvalidJSAck, r.Stream, a.stream)
	}
	return nil
}

// PublishAsync queues m; see [eventbus.AsyncPublisher]. Each publication
// expects the previous one (since the last failed [Bus.Flush]) to be the
// stream's last message (Nats-Expected-Last-Msg-Id), so that no
// publication is stored ahead of an earlier one that failed: the relay
// republishing from its checkpoint then keeps every stream's order. The
// event stream must have no other writer while a relay publishes; one
// that writes breaks the chain once (a failed batch, republished).
//
// The acknowledgements come on a subscription to reply subjects of the
// bus's own, made by the first call and kept as long as the connection.
func (b *Bus) PublishAsync(ctx context.Context, m eventbus.Message) error {
	o, err := b.encode(m)
	if err != nil {
		return err
	}
	msg := &o.msg
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if b.failed != nil {
		return b.failed
	}
	for len(b.pending) >= b.cfg.PublishWindow {
		if err := b.waitOldestLocked(ctx); err != nil {
			return err
		}
	}
	if !b.nc.IsConnected() {
		return fmt.Errorf("publish event %s: nats is %s: %w", m.EventID, b.nc.Status(), eventbus.ErrUnavailable)
	}
	if b.acks == nil {
		a, err := b.newAcks()
		if err != nil {
			return fmt.Errorf("publish event %s: subscribe to acknowledgements: %w: %w", m.EventID, eventbus.ErrUnavailable, err)
		}
		b.acks = a
	}
	b.noteStatusLocked()
	// The headers of jetstream.WithExpectStream and WithExpectLastMsgID.
	o.vals[valStream] = b.cfg.Stream
	msg.Header[jetstream.ExpectedStreamHeader] = o.vals[valStream : valStream+1 : valStream+1]
	if b.chain != "" {
		o.vals[valLastID] = b.chain
		msg.Header[jetstream.ExpectedLastMsgIDHeader] = o.vals[valLastID : valLastID+1 : valLastID+1]
	}
	// The sequence number is taken only by a publication sent: the
	// pending ones are then consecutive, at most PublishWindow of them,
	// and never share a slot of the ring.
	seq := b.seq + 1
	msg.Reply = b.acks.prefix + strconv.FormatUint(seq, 10)
	b.acks.expect(seq)
	if err := b.nc.PublishMsg(msg); err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return &eventbus.MessageTooLargeError{EventID: m.EventID, Size: msgSize(msg), Limit: int(b.nc.MaxPayload())}
		}
		return fmt.Errorf("publish event %s: %w: %w", m.EventID, eventbus.ErrUnavailable, err)
	}
	b.seq = seq
	b.chain = o.vals[valID]
	b.pending = append(b.pending, pendingPub{id: m.EventID, seq: seq, sent: time.Now()})
	return nil
}

// waitOldestLocked waits for the oldest pending acknowledgement. A failed
// publication is recorded; only ctx's end is returned.
func (b *Bus) waitOldestLocked(ctx context.Context) error {
	p := b.pending[0]
	for {
		if done, err := b.acks.outcome(p.seq); done { // at once, usually, while catching up
			return b.popLocked(err)
		}
		if p.seq <= b.lostBefore {
			// Sent before a disconnection (or the connection's closing)
			// and not answered: the answer, or the message, may be lost.
			// Fail it now rather than after the ack timeout.
			if b.nc.IsClosed() {
				return b.popLocked(nats.ErrConnectionClosed)
			}
			return b.popLocked(nats.ErrDisconnected)
		}
		if b.tick == nil {
			b.tick = time.NewTicker(50 * time.Millisecond)
		}
		select {
		case <-b.acks.wake:
		case <-b.acks.status:
			b.lostBefore = b.seq
		case <-b.tick.C:
			if b.nc.IsClosed() { // closed before the status listener was made
				b.lostBefore = b.seq
				continue
			}
			if time.Since(p.sent) > b.cfg.AckTimeout {
				if done, err := b.acks.outcome(p.seq); done {
					return b.popLocked(err)
				}
				return b.popLocked(jetstream.ErrAsyncPublishTimeout)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// noteStatusLocked takes note of the connection's disconnections (and its
// closing) since the last look: every publication sent before that has no
// answer yet is given up when waited for (see waitOldestLocked). Those
// sent later wait as usual.
func (b *Bus) noteStatusLocked() {
	for {
		select {
		case <-b.acks.status:
			b.lostBefore = b.seq
		default:
			return
		}
	}
}

// popLocked removes the oldest pending publication, whose outcome is err,
// and returns the first failure recorded.
func (b *Bus) popLocked(err error) error {
	if err != nil && b.failed == nil {
		b.failed = publishError(b.pending[0].id, err)
	}
	b.pending = b.pending[1:]
	return b.failed
}

// Flush waits for every queued publication; see [eventbus.AsyncPublisher].
func (b *Bus) Flush(ctx context.Context) error {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	for len(b.pending) > 0 {
		if err := b.waitOldestLocked(ctx); err != nil && ctx.Err() != nil {
			return err
		}
	}
	err := b.failed
	b.failed = nil
	if err != nil {
		// The caller publishes again from its last success: the stream's
		// last message may be anything that the failure left, so a new
		// chain starts (republished messages that were stored are
		// dropped as duplicates before the expectation is checked).
		b.chain = ""
	}
	return err
}
