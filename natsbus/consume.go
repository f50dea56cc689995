package natsbus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-go/chronicle/eventbus"
)

// Subscribe starts a member of the consumer group c.Group. The group's
// durable consumers are created (or checked) first:
//
//   - ordered (the default): one consumer per partition, GROUP-pN, with
//     at most one unacknowledged message, so that the messages of one
//     stream are handled one at a time in order by whichever member pulls
//     the partition;
//   - unordered: one consumer, GROUP, shared by all members;
//   - and GROUP-replay on the dead-letter stream, for replayed dead
//     letters.
func (b *Bus) Subscribe(ctx context.Context, c eventbus.Consumer) (eventbus.Subscription, error) {
	c, err := c.WithDefaults()
	if err != nil {
		return nil, err
	}
	type spec struct {
		stream  string
		durable string
		filters []string
		pending int
		replay  bool
	}
	// filters returns the subjects of partition part ("*": all).
	filters := func(part string) []string {
		if len(c.Types) == 0 || !b.byType {
			return []string{b.cfg.SubjectPrefix + "." + part + ".>"}
		}
		var out []string
		for _, typ := range c.Types {
			out = append(out, b.cfg.SubjectPrefix+"."+part+"."+TypeToken(typ))
		}
		return out
	}
	var specs []spec
	if c.Unordered {
		specs = append(specs, spec{b.cfg.Stream, c.Group, filters("*"), max(1000, c.Concurrency), false})
	} else {
		for p := range b.cfg.Partitions {
			specs = append(specs, spec{b.cfg.Stream, fmt.Sprintf("%s-p%d", c.Group, p), filters(strconv.Itoa(p)), 1, false})
		}
	}
	specs = append(specs, spec{b.cfg.DeadLetterStream, c.Group + "-replay", []string{b.replaySubject(c.Group)}, max(100, c.Concurrency), true})

	handlerCtx, cancelHandlers := context.WithCancel(ctx)
	s := &natsSub{b: b, c: c, ctx: handlerCtx, cancel: cancelHandlers, sem: make(chan struct{}, c.Concurrency)}
	for _, sp := range specs {
		cons, err := b.js.CreateOrUpdateConsumer(ctx, sp.stream, jetstream.ConsumerConfig{
			Durable:        sp.durable,
			Description:    "chronicle consumer group " + c.Group,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        c.AckWait,
			MaxDeliver:     -1,
			FilterSubjects: sp.filters,
			MaxAckPending:  sp.pending,
			Replicas:       b.cfg.Replicas,
		})
		if err != nil {
			s.stopAll()
			cancelHandlers()
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, fmt.Errorf("consumer group %s: stream %s is missing (create the bus again to recreate it): %w: %w", c.Group, sp.stream, eventbus.ErrUnavailable, err)
			}
			return nil, brokerError("create consumer "+sp.durable, err)
		}
		replay := sp.replay
		batch := 1
		if !sp.replay && c.Unordered {
			batch = c.Concurrency
		}
		cc, err := cons.Consume(func(msg jetstream.Msg) { s.receive(msg, replay) },
			jetstream.PullMaxMessages(batch),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if !errors.Is(err, jetstream.ErrNoHeartbeat) {
					b.log.Debug("consumer pull", "group", c.Group, "error", err)
				}
			}))
		if err != nil {
			s.stopAll()
			cancelHandlers()
			return nil, brokerError("consume "+sp.durable, err)
		}
		s.ccs = append(s.ccs, cc)
	}
	go func() {
		<-handlerCtx.Done()
		s.drain()
	}()
	return s, nil
}

func (b *Bus) deadSubject(group string) string   { return b.cfg.DeadLetterPrefix + ".dead." + group }
func (b *Bus) replaySubject(group string) string { return b.cfg.DeadLetterPrefix + ".replay." + group }

type natsSub struct {
	b      *Bus
	c      eventbus.Consumer
	ctx    context.Context // the handlers'
	cancel context.CancelFunc
	sem    chan struct{}
	ccs    []jetstream.ConsumeContext

	closing  atomic.Bool
	inflight sync.WaitGroup
	stopOnce sync.Once
}

// receive handles one message; the Consume callback of each consumer runs
// serially.
func (s *natsSub) receive(msg jetstream.Msg, replay bool) {
	if s.closing.Load() {
		_ = msg.Nak() // leave it to another member at once
		return
	}
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		_ = msg.Nak()
		return
	}
	s.inflight.Add(1)
	run := func() {
		defer s.inflight.Done()
		defer func() { <-s.sem }()
		s.handle(msg, replay)
	}
	if s.c.Unordered || replay {
		go run()
	} else {
		run() // one message per partition at a time anyway
	}
}

func (s *natsSub) handle(msg jetstream.Msg, replay bool) {
	log := s.b.log.With("group", s.c.Group, "subject", msg.Subject())
	meta, err := msg.Metadata()
	if err != nil {
		log.Error("message without jetstream metadata; terminated", "error", err)
		_ = msg.Term()
		return
	}
	attempt := int(meta.NumDelivered)
	m, err := decode(msg.Data(), msg.Headers())
	if err != nil {
		s.deadLetter(msg, eventbus.Message{Type: msg.Headers().Get(HeaderType)}, attempt, eventbus.Permanent(err), replay)
		return
	}
	if !s.c.Wants(m.Type) {
		_ = msg.Ack() // not for this group (a custom subject mapping cannot filter)
		return
	}
	if attempt > s.c.MaxDeliveries {
		s.deadLetter(msg, m, attempt, fmt.Errorf("delivered %d times without an acknowledgement (a member died or timed out mid-handler)", attempt-1), replay)
		return
	}

	// Keep the message ours while the handler runs.
	hbDone := make(chan struct{})
	go func() {
		t := time.NewTicker(max(s.c.AckWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-hbDone:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	herr := safeHandle(s.ctx, s.c.Handler, eventbus.Delivery{Message: m, Group: s.c.Group, Attempt: attempt})
	close(hbDone)

	switch {
	case herr == nil:
		if err := msg.DoubleAck(context.WithoutCancel(s.ctx)); err != nil {
			log.Warn("cannot acknowledge a handled message; it will be delivered again", "event_id", m.EventID.String(), "error", err)
			return
		}
		if replay {
			s.removeReplayed(msg, meta)
		}
	case s.ctx.Err() != nil:
		_ = msg.Nak() // shutting down: another member takes it now
	case eventbus.IsPermanent(herr) || attempt >= s.c.MaxDeliveries:
		s.deadLetter(msg, m, attempt, herr, replay)
	default:
		d := s.c.Backoff.Delay(attempt)
		log.Warn("handler failed; retrying", "event_id", m.EventID.String(), "type", m.Type, "attempt", attempt, "retry_in", d, "error", herr)
		_ = msg.NakWithDelay(d)
	}
}

// removeReplayed deletes a replay request once handled.
func (s *natsSub) removeReplayed(msg jetstream.Msg, meta *jetstream.MsgMetadata) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
	defer cancel()
	_ = s.b.dlq.DeleteMsg(ctx, meta.Sequence.Stream)
}

// deadLetter moves msg to the dead-letter stream, then terminates it. If
// the dead letter cannot be stored, the message is delivered again later.
func (s *natsSub) deadLetter(msg jetstream.Msg, m eventbus.Message, attempts int, reason error, replay bool) {
	log := s.b.log.With("group", s.c.Group, "event_id", m.EventID.String(), "type", m.Type)
	meta, _ := msg.Metadata()
	dl := nats.NewMsg(s.b.deadSubject(s.c.Group))
	dl.Data = msg.Data()
	for k, vs := range msg.Headers() {
		if k == jetstream.MsgIDHeader || k == "Nats-Expected-Stream" {
			continue
		}
		for _, v := range vs {
			dl.Header.Add(k, v)
		}
	}
	text := reason.Error()
	if len(text) > 2000 {
		text = text[:2000]
	}
	dl.Header.Set(HeaderDeadGroup, s.c.Group)
	dl.Header.Set(HeaderDeadReason, strconv.Quote(text))
	dl.Header.Set(HeaderDeadAttempts, strconv.Itoa(attempts))
	dl.Header.Set(HeaderDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	id := fmt.Sprintf("dead:%s:%s", s.c.Group, m.EventID)
	if meta != nil {
		id = fmt.Sprintf("%s:%s:%d", id, meta.Stream, meta.Sequence.Stream)
	}
	dl.Header.Set(jetstream.MsgIDHeader, id)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
	defer cancel()
	if _, err := s.b.js.PublishMsg(ctx, dl, jetstream.WithExpectStream(s.b.cfg.DeadLetterStream)); err != nil {
		log.Error("cannot store a dead letter; the message will be delivered again", "error", err)
		_ = msg.NakWithDelay(s.c.Backoff.Max)
		return
	}
	log.Error("message dead-lettered", "attempts", attempts, "reason", text)
	_ = msg.Term()
	if replay && meta != nil {
		s.removeReplayed(msg, meta)
	}
}

func safeHandle(ctx context.Context, h eventbus.Handler, d eventbus.Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return h.Handle(ctx, d)
}

// stopAll stops pulling.
func (s *natsSub) stopAll() {
	s.stopOnce.Do(func() {
		s.closing.Store(true)
		for _, cc := range s.ccs {
			cc.Drain()
		}
	})
}

// drain stops pulling and waits for the consumers to be closed.
func (s *natsSub) drain() {
	s.stopAll()
	for _, cc := range s.ccs {
		select {
		case <-cc.Closed():
		case <-time.After(5 * time.Second):
		}
	}
}

// Close stops the member; see [eventbus.Subscription].
func (s *natsSub) Close(ctx context.Context) error {
	s.stopAll()
	done := make(chan struct{})
	go func() {
		s.inflight.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.cancel()
	<-done
	s.drain()
	return err
}
