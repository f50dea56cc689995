package eventbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Publisher sends messages to a bus.
type Publisher interface {
	// Publish sends msgs in order and returns once the bus has stored
	// every one of them. A message whose event ID the bus has already
	// stored (within its deduplication window) is dropped as a
	// duplicate, without an error.
	Publish(ctx context.Context, msgs ...Message) error
}

// AsyncPublisher sends messages without waiting for each acknowledgement,
// with a bounded window of messages in flight. The [Relay] uses it.
type AsyncPublisher interface {
	// PublishAsync queues m behind the messages already queued, blocking
	// while the window is full. It returns errors that concern m alone at
	// once (an invalid or too large message: matching [ErrPermanent]),
	// [ErrUnavailable] when the broker cannot take messages now (m was not
	// queued; try again), and, once a queued message failed, an error
	// matching [ErrPublishFailed] until the next [AsyncPublisher.Flush].
	PublishAsync(ctx context.Context, m Message) error
	// Flush waits until every queued message is acknowledged and returns
	// the first failure since the previous Flush (matching
	// [ErrPublishFailed]), then starts afresh. After a failure, publish
	// again every message queued since the last successful Flush, in the
	// same order: the ones that were stored are dropped as duplicates.
	Flush(ctx context.Context) error
}

// Subscriber runs consumers.
type Subscriber interface {
	// Subscribe starts a member of the consumer group c.Group. Members of
	// one group share its messages: each message is handled by one member.
	// Each group receives every message, including those published before
	// the group first subscribed that the bus still retains. The member
	// stops when ctx ends or [Subscription.Close] is called.
	Subscribe(ctx context.Context, c Consumer) (Subscription, error)
}

// Subscription is one running member of a consumer group.
type Subscription interface {
	// Close stops fetching messages and waits for the handlers in flight
	// to return, until ctx ends: then their context is cancelled. A
	// message whose handler did not return successfully is not
	// acknowledged; the group receives it again.
	Close(ctx context.Context) error
}

// Bus is everything a bus implementation offers; the conformance suite
// (package bustest) checks it.
type Bus interface {
	Publisher
	AsyncPublisher
	Subscriber
	DeadLetters
}

// Consumer configures a member of a consumer group.
type Consumer struct {
	// Group names the consumer group: members with the same group share
	// the work; each group receives every message. Required.
	Group string
	// Handler handles each message. A nil error acknowledges the message;
	// an error retries it with backoff, up to MaxDeliveries deliveries,
	// then moves it to the dead letters; an error matching [ErrPermanent]
	// (see [Permanent]) moves it there at once. Required.
	Handler Handler
	// Types restricts the group to these event types: other messages are
	// never handed to it (a broker filters them on its side where it can).
	// Defaults to the types of the handler when it tells them (a
	// [Handlers] without a catch-all does), otherwise every type.
	Types []string
	// MaxDeliveries is how many times a message is delivered to the group
	// before it is dead-lettered. Defaults to 5.
	MaxDeliveries int
	// Backoff is the delay before a failed message is delivered again,
	// doubling from Backoff.Base up to Backoff.Max, with jitter. Defaults to
	// 100ms and 10s.
	Backoff Backoff
	// Unordered opts out of per-stream order: messages of one stream may
	// then be handled concurrently and out of order (a retried message
	// lets later ones pass), for more parallelism. Defaults to false:
	// the messages of one stream are handled one at a time, in order,
	// across all members of the group.
	Unordered bool
	// Concurrency is how many handlers this member runs at once. With
	// ordering, messages of different streams run concurrently (by
	// partition). Defaults to 1.
	Concurrency int
	// AckWait is how long a delivered message may stay unacknowledged
	// before the bus delivers it again (a member died mid-handler). The
	// member extends it while its handler runs. Defaults to 30s.
	AckWait time.Duration
}

// Backoff is an exponential backoff with jitter.
type Backoff struct {
	// Base is the first delay. Defaults to 100ms.
	Base time.Duration
	// Max caps the delay. Defaults to 10s.
	Max time.Duration
}

// Delay returns the delay before delivery attempt+1 after attempt failed
// deliveries: Base·2^(attempt-1), capped at Max, with ±25% jitter.
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Base
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if d <= 0 {
		return 0
	}
	return d*3/4 + rand.N(d/2+1)
}

const (
	defaultMaxDeliveries = 5
	defaultBackoffBase   = 100 * time.Millisecond
	defaultBackoffMax    = 10 * time.Second
	defaultAckWait       = 30 * time.Second
	maxGroupLength       = 200
)

// WithDefaults validates c and fills its defaults. Bus implementations
// call it in Subscribe.
func (c Consumer) WithDefaults() (Consumer, error) {
	switch {
	case c.Group == "":
		return c, invalid("consumer Group", "must not be empty")
	case len(c.Group) > maxGroupLength:
		return c, invalid("consumer Group", fmt.Sprintf("is %d bytes, longer than %d", len(c.Group), maxGroupLength))
	case !validGroup(c.Group):
		return c, invalid("consumer Group", fmt.Sprintf("%q may hold only letters, digits, '-' and '_'", c.Group))
	case c.Handler == nil:
		return c, invalid("consumer Handler", "must not be nil")
	case c.MaxDeliveries < 0:
		return c, invalid("consumer MaxDeliveries", fmt.Sprintf("%d is negative", c.MaxDeliveries))
	case c.Backoff.Base < 0 || c.Backoff.Max < 0:
		return c, invalid("consumer Backoff", "must not be negative")
	case c.Concurrency < 0:
		return c, invalid("consumer Concurrency", fmt.Sprintf("%d is negative", c.Concurrency))
	case c.AckWait < 0:
		return c, invalid("consumer AckWait", fmt.Sprintf("%s is negative", c.AckWait))
	}
	if v, ok := c.Handler.(interface{ Err() error }); ok {
		if err := v.Err(); err != nil {
			return c, invalid("consumer Handler", err.Error())
		}
	}
	if c.Types == nil {
		if tt, ok := c.Handler.(interface{ Types() []string }); ok {
			c.Types = tt.Types()
		}
	}
	for i, typ := range c.Types {
		if typ == "" {
			return c, invalid(fmt.Sprintf("consumer Types[%d]", i), "must not be empty")
		}
	}
	c.MaxDeliveries = cmp.Or(c.MaxDeliveries, defaultMaxDeliveries)
	c.Backoff.Base = cmp.Or(c.Backoff.Base, defaultBackoffBase)
	c.Backoff.Max = cmp.Or(c.Backoff.Max, max(defaultBackoffMax, c.Backoff.Base))
	if c.Backoff.Base > c.Backoff.Max {
		return c, invalid("consumer Backoff", fmt.Sprintf("base %s is above max %s", c.Backoff.Base, c.Backoff.Max))
	}
	c.Concurrency = cmp.Or(c.Concurrency, 1)
	c.AckWait = cmp.Or(c.AckWait, defaultAckWait)
	return c, nil
}

// Wants reports whether the consumer takes messages of type typ.
func (c Consumer) Wants(typ string) bool {
	return len(c.Types) == 0 || slices.Contains(c.Types, typ)
}

// validGroup reports whether name is safe as a broker's consumer name.
func validGroup(name string) bool {
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// DeadLetter is a message that a consumer group gave up on.
type DeadLetter struct {
	// ID identifies the dead letter in its bus.
	ID string
	// Group is the consumer group that gave up.
	Group string
	// Message is the original message.
	Message Message
	// Reason is the last handler error, or why the message could not be
	// handled (e.g. an unknown event type).
	Reason string
	// Attempts is how many times the message was delivered.
	Attempts int
	// Headers are the original message's broker headers, if the bus has
	// any.
	Headers map[string][]string
	// DeadAt is when the message was dead-lettered.
	DeadAt time.Time
}

// DeadLetterFilter selects dead letters.
type DeadLetterFilter struct {
	// Group selects one consumer group's dead letters. Defaults to all.
	Group string
	// Limit caps the number returned. Defaults to 100.
	Limit int
}

// EffectiveLimit is the filter's limit with its default.
func (f DeadLetterFilter) EffectiveLimit() int {
	if f.Limit <= 0 {
		return 100
	}
	return f.Limit
}

// DeadLetters manages dead letters.
type DeadLetters interface {
	// DeadLetters lists dead letters, oldest first.
	DeadLetters(ctx context.Context, filter DeadLetterFilter) ([]DeadLetter, error)
	// ReplayDeadLetter hands the message to its group again, as a first
	// delivery, and removes the dead letter. Only that group receives it.
	ReplayDeadLetter(ctx context.Context, id string) error
	// DiscardDeadLetter removes the dead letter for good.
	DiscardDeadLetter(ctx context.Context, id string) error
}

// Sentinel errors; branch on them with [errors.Is].
var (
	// ErrClosed: the bus or subscription is closed.
	ErrClosed = errors.New("event bus closed")
	// ErrUnavailable: the broker cannot be reached or is not ready; nothing
	// was published. Retrying later is safe.
	ErrUnavailable = errors.New("event bus unavailable")
	// ErrPublishFailed: the broker did not acknowledge a published message.
	// It may or may not be stored: publish it again (duplicates are dropped
	// by event ID).
	ErrPublishFailed = errors.New("event bus publish failed")
	// ErrMessageTooLarge: a message exceeds what the broker accepts. It
	// also matches [ErrPermanent].
	ErrMessageTooLarge = errors.New("message too large")
	// ErrDeadLetterNotFound: no dead letter has that ID.
	ErrDeadLetterNotFound = errors.New("dead letter not found")
	// ErrPermanent: a failure that retrying cannot fix. A handler error
	// matching it dead-letters the message without retries. It is
	// [eventstore.ErrPermanent], shared with projection handlers.
	ErrPermanent = eventstore.ErrPermanent
)

// PermanentError marks a failure that retrying cannot fix: it is
// [eventstore.PermanentError], shared with projection handlers.
type PermanentError = eventstore.PermanentError

// Permanent wraps err so that it matches [ErrPermanent]: a handler
// returning it dead-letters the message at once. Permanent(nil) is nil.
func Permanent(err error) error { return eventstore.Permanent(err) }

// MessageTooLargeError reports a message above the broker's limit.
type MessageTooLargeError struct {
	EventID eventstore.EventID
	Size    int
	Limit   int
}

func (e *MessageTooLargeError) Error() string {
	return fmt.Sprintf("message of event %s is %d bytes, above the broker's limit of %d", e.EventID, e.Size, e.Limit)
}

// Is matches [ErrMessageTooLarge] and [ErrPermanent].
func (e *MessageTooLargeError) Is(target error) bool {
	return target == ErrMessageTooLarge || target == ErrPermanent
}

// IsPermanent reports whether a handler error means the message cannot be
// handled however often it is retried: errors matching [ErrPermanent],
// [eventstore.ErrDecode] or [eventstore.ErrUnknownEventType].
func IsPermanent(err error) bool {
	return errors.Is(err, ErrPermanent) || errors.Is(err, eventstore.ErrDecode) || errors.Is(err, eventstore.ErrUnknownEventType)
}

func invalid(field, reason string) error {
	return &eventstore.ValidationError{Field: field, Reason: reason}
}
