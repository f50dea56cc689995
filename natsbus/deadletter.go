package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-go/chronicle/eventbus"
)

// DeadLetters lists dead letters, oldest first. A dead letter's ID is its
// sequence number in the dead-letter stream.
func (b *Bus) DeadLetters(ctx context.Context, f eventbus.DeadLetterFilter) ([]eventbus.DeadLetter, error) {
	subject := b.cfg.DeadLetterPrefix + ".dead.>"
	if f.Group != "" {
		subject = b.deadSubject(f.Group)
	}
	var out []eventbus.DeadLetter
	seq := uint64(1)
	for len(out) < f.EffectiveLimit() {
		raw, err := b.dlq.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, brokerError("read dead letters", err)
		}
		out = append(out, deadLetterOf(raw))
		seq = raw.Sequence + 1
	}
	return out, nil
}

func deadLetterOf(raw *jetstream.RawStreamMsg) eventbus.DeadLetter {
	h := raw.Header
	m, err := decode(raw.Data, h)
	if err != nil {
		m = eventbus.Message{Type: h.Get(HeaderType), Data: raw.Data}
	}
	reason, err := strconv.Unquote(h.Get(HeaderDeadReason))
	if err != nil {
		reason = h.Get(HeaderDeadReason)
	}
	attempts, _ := strconv.Atoi(h.Get(HeaderDeadAttempts))
	at, _ := time.Parse(time.RFC3339Nano, h.Get(HeaderDeadAt))
	headers := map[string][]string{}
	for k, vs := range h {
		if !strings.HasPrefix(k, "Chronicle-Dead-") {
			headers[k] = vs
		}
	}
	return eventbus.DeadLetter{
		ID: strconv.FormatUint(raw.Sequence, 10), Group: h.Get(HeaderDeadGroup), Message: m,
		Reason: reason, Attempts: attempts, Headers: headers, DeadAt: at,
	}
}

// deadLetter reads one dead letter by ID.
func (b *Bus) deadLetter(ctx context.Context, id string) (*jetstream.RawStreamMsg, error) {
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil || seq == 0 {
		return nil, fmt.Errorf("dead letter %q: %w", id, eventbus.ErrDeadLetterNotFound)
	}
	raw, err := b.dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && !strings.HasPrefix(raw.Subject, b.cfg.DeadLetterPrefix+".dead.")) {
		return nil, fmt.Errorf("dead letter %q: %w", id, eventbus.ErrDeadLetterNotFound)
	}
	if err != nil {
		return nil, brokerError("read dead letter "+id, err)
	}
	return raw, nil
}

// ReplayDeadLetter hands the message to its group again and removes the
// dead letter: it is published on the group's replay subject, which only
// that group consumes.
func (b *Bus) ReplayDeadLetter(ctx context.Context, id string) error {
	raw, err := b.deadLetter(ctx, id)
	if err != nil {
		return err
	}
	group := raw.Header.Get(HeaderDeadGroup)
	msg := nats.NewMsg(b.replaySubject(group))
	msg.Data = raw.Data
	for k, vs := range raw.Header {
		if strings.HasPrefix(k, "Chronicle-Dead-") || k == jetstream.MsgIDHeader {
			continue
		}
		msg.Header[k] = vs
	}
	msg.Header.Set(jetstream.MsgIDHeader, "replay:"+b.cfg.DeadLetterStream+":"+id)
	if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(b.cfg.DeadLetterStream)); err != nil {
		return fmt.Errorf("replay dead letter %s: %w: %w", id, eventbus.ErrPublishFailed, err)
	}
	return b.discard(ctx, raw.Sequence, id)
}

// DiscardDeadLetter removes a dead letter for good.
func (b *Bus) DiscardDeadLetter(ctx context.Context, id string) error {
	raw, err := b.deadLetter(ctx, id)
	if err != nil {
		return err
	}
	return b.discard(ctx, raw.Sequence, id)
}

func (b *Bus) discard(ctx context.Context, seq uint64, id string) error {
	if err := b.dlq.DeleteMsg(ctx, seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("dead letter %q: %w", id, eventbus.ErrDeadLetterNotFound)
		}
		return brokerError("delete dead letter "+id, err)
	}
	return nil
}
