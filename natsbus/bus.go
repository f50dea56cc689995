package natsbus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
)

// Config configures a [Bus]. The zero value is usable.
type Config struct {
	// Stream names the JetStream stream holding the events. Defaults to
	// "CHRONICLE".
	Stream string
	// SubjectPrefix starts every event subject: an event is published on
	// SubjectPrefix.PARTITION.TOKEN. Defaults to "chronicle.events".
	SubjectPrefix string
	// Partitions is how many partitions the subjects are split into by a
	// hash of the stream ID ([projection.PartitionOf]); ordered consumer
	// groups handle partitions in parallel. It is recorded in the stream's
	// metadata and cannot change while the stream exists. Defaults to 16.
	Partitions int
	// Subject returns the subject token(s) of a message after the
	// partition. Defaults to the event type, with characters that NATS
	// subjects do not allow escaped ([TypeToken]). Map by stream category,
	// for example, with a function returning "account.Deposited".
	Subject func(m eventbus.Message) string
	// DeadLetterStream names the stream of dead letters. Defaults to Stream
	// + "_DLQ".
	DeadLetterStream string
	// DeadLetterPrefix starts the dead-letter subjects. Defaults to
	// "chronicle.deadletters".
	DeadLetterPrefix string
	// Replicas is the streams' replica count in a cluster. Defaults to 1.
	Replicas int
	// MaxAge bounds how long the event stream keeps messages. Defaults to
	// 0: for ever (limited by MaxBytes).
	MaxAge time.Duration
	// MaxBytes bounds the event stream's size; the oldest messages go
	// first. Defaults to -1: unlimited.
	MaxBytes int64
	// MaxMsgSize bounds one message. Defaults to the server's limit.
	MaxMsgSize int32
	// Duplicates is the deduplication window: a message whose event ID was
	// stored less than this long ago is dropped. It must exceed the longest
	// relay downtime that you want to survive without duplicates (see
	// docs/eventbus.md). Defaults to 2 minutes.
	Duplicates time.Duration
	// MemoryStorage keeps the streams in memory instead of files. Defaults
	// to false.
	MemoryStorage bool
	// PublishWindow is how many asynchronous publications may await their
	// acknowledgement. Defaults to 1024.
	PublishWindow int
	// AckTimeout bounds the wait for a publication's acknowledgement.
	// Defaults to 5s.
	AckTimeout time.Duration
	// Logger receives consumer failures. Defaults to slog.Default().
	Logger *slog.Logger
	// Existing makes New use the streams as they are, failing if they are
	// missing, instead of creating or updating them: for tools such as the
	// CLI. Partitions and the subject prefixes are then read from the
	// streams. Defaults to false.
	Existing bool
}

const (
	defaultStream        = "CHRONICLE"
	defaultSubjectPrefix = "chronicle.events"
	defaultDLQPrefix     = "chronicle.deadletters"
	defaultPartitions    = 16
	defaultDuplicates    = 2 * time.Minute
	defaultWindow        = 1024
	defaultAckTimeout    = 5 * time.Second
	partitionsKey        = "chronicle-partitions"
)

// Message headers. The payload is the message body.
const (
	HeaderType     = "Chronicle-Type"
	HeaderEnvelope = "Chronicle-Envelope"
	// Dead-letter headers, added to the original ones.
	HeaderDeadGroup    = "Chronicle-Dead-Group"
	HeaderDeadReason   = "Chronicle-Dead-Reason"
	HeaderDeadAttempts = "Chronicle-Dead-Attempts"
	HeaderDeadAt       = "Chronicle-Dead-At"
)

// Bus is the event bus on NATS JetStream. It implements [eventbus.Bus].
type Bus struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	cfg     Config
	log     *slog.Logger
	stream  jetstream.Stream
	dlq     jetstream.Stream
	maxSize int
	byType  bool // subjects end with the type token: consumers filter on it

	pubMu   sync.Mutex
	pending []pendingPub
	failed  error
	// chain is the message ID of the last asynchronous publication sent
	// since the chain began (empty: the next one starts a chain). Each
	// publication expects it as the stream's last message ID, so that the
	// stream stores a publication only right after its predecessor: a
	// lost one makes every later one fail instead of overtaking it.
	chain string
	// acks receives the acknowledgements (created by the first
	// PublishAsync), seq numbers the asynchronous publications.
	acks *acks
	seq  uint64
	// lostBefore is the last publication sent before the latest
	// disconnection the bus took note of: those up to it that have no
	// answer are given up.
	lostBefore uint64
	// tick paces waitOldestLocked's checks for an acknowledgement overdue
	// and a closed connection (created at the first wait, under pubMu:
	// one ticker for the bus, not one per wait).
	tick *time.Ticker
}

var _ eventbus.Bus = (*Bus)(nil)

// pendingPub is an asynchronous publication awaiting its
// acknowledgement.
type pendingPub struct {
	id   eventstore.EventID
	seq  uint64
	sent time.Time
}

// Connect connects to a NATS server with the options the bus relies on:
// no reconnect buffer (a publication during a disconnection fails at once
// instead of being sent after publications that follow it), endless
// reconnection attempts. name identifies the client to the server.
func Connect(url, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.Name(name), nats.ReconnectBufSize(-1), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(false))
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w: %w", url, eventbus.ErrUnavailable, err)
	}
	return nc, nil
}

// New creates or checks the event and dead-letter streams and returns the
// bus. nc should come from [Connect] (or have a disabled reconnect buffer);
// the caller closes it after the bus is no longer used.
func New(ctx context.Context, nc *nats.Conn, cfg *Config) (*Bus, error) {
	if nc == nil {
		return nil, invalid("nats connection", "must not be nil")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c.Stream = cmp.Or(c.Stream, defaultStream)
	c.SubjectPrefix = cmp.Or(c.SubjectPrefix, defaultSubjectPrefix)
	c.DeadLetterStream = cmp.Or(c.DeadLetterStream, c.Stream+"_DLQ")
	c.DeadLetterPrefix = cmp.Or(c.DeadLetterPrefix, defaultDLQPrefix)
	switch {
	case !validName(c.Stream):
		return nil, invalid("config Stream", fmt.Sprintf("%q may hold only letters, digits, '-' and '_'", c.Stream))
	case !validName(c.DeadLetterStream):
		return nil, invalid("config DeadLetterStream", fmt.Sprintf("%q may hold only letters, digits, '-' and '_'", c.DeadLetterStream))
	case !validSubject(c.SubjectPrefix):
		return nil, invalid("config SubjectPrefix", fmt.Sprintf("%q is not a literal subject", c.SubjectPrefix))
	case !validSubject(c.DeadLetterPrefix):
		return nil, invalid("config DeadLetterPrefix", fmt.Sprintf("%q is not a literal subject", c.DeadLetterPrefix))
	case c.DeadLetterPrefix == c.SubjectPrefix || strings.HasPrefix(c.DeadLetterPrefix, c.SubjectPrefix+".") || strings.HasPrefix(c.SubjectPrefix, c.DeadLetterPrefix+"."):
		return nil, invalid("config DeadLetterPrefix", "overlaps SubjectPrefix")
	case c.Partitions < 0 || c.Partitions > 1024:
		return nil, invalid("config Partitions", fmt.Sprintf("%d is not between 1 and 1024", c.Partitions))
	case c.Replicas < 0 || c.Duplicates < 0 || c.MaxAge < 0 || c.MaxMsgSize < 0 || c.PublishWindow < 0 || c.AckTimeout < 0:
		return nil, invalid("config", "Replicas, Duplicates, MaxAge, MaxMsgSize, PublishWindow and AckTimeout must not be negative")
	}
	c.Partitions = cmp.Or(c.Partitions, defaultPartitions)
	c.Replicas = cmp.Or(c.Replicas, 1)
	c.Duplicates = cmp.Or(c.Duplicates, defaultDuplicates)
	c.MaxBytes = cmp.Or(c.MaxBytes, -1)
	c.PublishWindow = cmp.Or(c.PublishWindow, defaultWindow)
	c.AckTimeout = cmp.Or(c.AckTimeout, defaultAckTimeout)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	defaultSubject := c.Subject == nil
	if c.Subject == nil {
		c.Subject = func(m eventbus.Message) string { return TypeToken(m.Type) }
	}

	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b := &Bus{nc: nc, js: js, cfg: c, byType: defaultSubject, log: c.Logger.With("component", "chronicle/natsbus")}
	if nc.Opts.ReconnectBufSize >= 0 {
		b.log.Warn("the nats connection buffers publications while reconnecting: per-stream order on the broker may break after a disconnection; connect with natsbus.Connect or nats.ReconnectBufSize(-1)")
	}
	storage := jetstream.FileStorage
	if c.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	if c.Existing {
		return b.open(ctx)
	}
	parts := strconv.Itoa(c.Partitions)
	if s, err := js.Stream(ctx, c.Stream); err == nil {
		if got := s.CachedInfo().Config.Metadata[partitionsKey]; got != "" && got != parts {
			return nil, invalid("config Partitions", fmt.Sprintf("stream %s was created with %s partitions, not %s: keep the number, or create another stream", c.Stream, got, parts))
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, brokerError("look up stream "+c.Stream, err)
	}
	b.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "Chronicle events, published by the relay",
		Subjects:    []string{c.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		MaxBytes:    c.MaxBytes,
		MaxAge:      c.MaxAge,
		MaxMsgSize:  c.MaxMsgSize,
		Storage:     storage,
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
		Discard:     jetstream.DiscardOld,
		Metadata:    map[string]string{partitionsKey: parts},
	})
	if err != nil {
		return nil, brokerError("create stream "+c.Stream, err)
	}
	b.dlq, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.DeadLetterStream,
		Description: "Chronicle dead letters and their replays",
		Subjects:    []string{c.DeadLetterPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		MaxBytes:    -1,
		Storage:     storage,
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
	})
	if err != nil {
		return nil, brokerError("create stream "+c.DeadLetterStream, err)
	}
	b.maxSize = int(nc.MaxPayload())
	if c.MaxMsgSize > 0 {
		b.maxSize = min(b.maxSize, int(c.MaxMsgSize))
	}
	return b, nil
}

// open looks the existing streams up.
func (b *Bus) open(ctx context.Context) (*Bus, error) {
	var err error
	if b.stream, err = b.lookup(ctx, b.cfg.Stream); err != nil {
		return nil, err
	}
	if b.dlq, err = b.lookup(ctx, b.cfg.DeadLetterStream); err != nil {
		return nil, err
	}
	// The subjects are the streams' own.
	if subj := b.stream.CachedInfo().Config.Subjects; len(subj) == 1 && strings.HasSuffix(subj[0], ".>") {
		b.cfg.SubjectPrefix = strings.TrimSuffix(subj[0], ".>")
	}
	if subj := b.dlq.CachedInfo().Config.Subjects; len(subj) == 1 && strings.HasSuffix(subj[0], ".>") {
		b.cfg.DeadLetterPrefix = strings.TrimSuffix(subj[0], ".>")
	}
	if n, err := strconv.Atoi(b.stream.CachedInfo().Config.Metadata[partitionsKey]); err == nil && n > 0 {
		b.cfg.Partitions = n
	}
	// Publications validate only their subject's last token: the prefix,
	// taken from the stream, must be a literal subject itself.
	if !validSubject(b.cfg.SubjectPrefix) {
		return nil, invalid("stream "+b.cfg.Stream, fmt.Sprintf("its subject prefix %q is not a literal subject", b.cfg.SubjectPrefix))
	}
	b.maxSize = int(b.nc.MaxPayload())
	if m := b.stream.CachedInfo().Config.MaxMsgSize; m > 0 {
		b.maxSize = min(b.maxSize, int(m))
	}
	return b, nil
}

// ErrStreamNotFound: a stream the bus needs does not exist.
var ErrStreamNotFound = errors.New("nats stream not found")

func (b *Bus) lookup(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := b.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s: %w", name, ErrStreamNotFound)
	}
	if err != nil {
		return nil, brokerError("look up stream "+name, err)
	}
	return s, nil
}

// Config returns the bus's configuration, with its defaults.
func (b *Bus) Config() Config { return b.cfg }

// Subject returns the subject a message is published on.
func (b *Bus) Subject(m eventbus.Message) string {
	return b.subject(m, b.cfg.Subject(m))
}

// subject is Subject with the token of m already mapped.
func (b *Bus) subject(m eventbus.Message, token string) string {
	return string(b.appendSubject(nil, m, token))
}

// appendSubject appends the subject of m, whose token is mapped already,
// to dst: the prefix, m's partition and the token.
func (b *Bus) appendSubject(dst []byte, m eventbus.Message, token string) []byte {
	dst = append(dst, b.cfg.SubjectPrefix...)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(projection.PartitionOf(m.StreamID, b.cfg.Partitions)), 10)
	dst = append(dst, '.')
	return append(dst, token...)
}

// TypeToken turns an event type name into one subject token: letters,
// digits, '-' and '_' stay, every other byte becomes "~XX" (hex).
func TypeToken(typ string) string {
	if typ != "" && !strings.ContainsFunc(typ, func(r rune) bool { return !tokenByte(r) }) {
		return typ // the usual case: nothing to escape
	}
	var sb strings.Builder
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		if tokenByte(rune(c)) {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "~%02X", c)
		}
	}
	if sb.Len() == 0 {
		return "~"
	}
	return sb.String()
}

// tokenByte reports whether TypeToken keeps r as it is.
func tokenByte(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// envelope is what the headers carry besides the type.
type envelope struct {
	EventID       eventstore.EventID  `json:"id"`
	SchemaVersion int                 `json:"v"`
	StreamID      string              `json:"stream"`
	StreamVersion int64               `json:"version"`
	Position      string              `json:"position"`
	RecordedAt    time.Time           `json:"recorded_at"`
	Metadata      eventstore.Metadata `json:"metadata,omitzero"`
}

// outMsg is a NATS message under construction together with its header
// values: one allocation instead of one per header.
type outMsg struct {
	msg nats.Msg
	// vals holds the values of the headers encode sets, and of the
	// expected stream and last message ID that PublishAsync sets.
	vals [5]string
}

// The indexes of outMsg.vals.
const (
	valType = iota
	valEnvelope
	valID
	valStream
	valLastID
)

// publishHeadersSize is what the headers PublishAsync adds to a message
// (the expected stream, and the expected last message ID: an event ID)
// count against the size limits, for a stream named stream.
func publishHeadersSize(stream string) int {
	return len(jetstream.ExpectedStreamHeader) + len(stream) + 4 + len(jetstream.ExpectedLastMsgIDHeader) + eventIDLen + 4
}

// encode builds the NATS message of m. The event ID, the envelope and the
// subject share one string, and the message and its header values one
// allocation: the relay encodes every event it publishes.
func (b *Bus) encode(m eventbus.Message) (*outMsg, error) {
	if err := m.Validate(); err != nil {
		return nil, eventbus.Permanent(err)
	}
	// The prefix was checked by New and the partition is a number: the
	// subject is valid when the mapped token is.
	token := b.cfg.Subject(m)
	if !validSubject(token) {
		return nil, eventbus.Permanent(invalid("message subject", fmt.Sprintf("%q is not a valid subject (check Config.Subject)", b.subject(m, token))))
	}
	var scratch [512]byte
	buf, err := appendEnvelope(scratch[:0], m)
	if err != nil {
		return nil, eventbus.Permanent(fmt.Errorf("encode message headers: %w", err))
	}
	envEnd := len(buf)
	buf = b.appendSubject(buf, m, token)
	all := string(buf)
	env := all[:envEnd]

	o := &outMsg{msg: nats.Msg{Subject: all[envEnd:], Data: m.Data, Header: make(nats.Header, 5)}}
	o.vals[valType] = m.Type
	o.vals[valEnvelope] = env
	o.vals[valID] = env[envelopeIDStart : envelopeIDStart+eventIDLen]
	o.msg.Header[HeaderType] = o.vals[valType : valType+1 : valType+1]
	o.msg.Header[HeaderEnvelope] = o.vals[valEnvelope : valEnvelope+1 : valEnvelope+1]
	o.msg.Header[jetstream.MsgIDHeader] = o.vals[valID : valID+1 : valID+1]
	if size := msgSize(&o.msg) + publishHeadersSize(b.cfg.Stream); size > b.maxSize {
		return nil, &eventbus.MessageTooLargeError{EventID: m.EventID, Size: size, Limit: b.maxSize}
	}
	return o, nil
}

// msgSize approximates what the server counts against its limits: the
// payload and the encoded headers.
func msgSize(msg *nats.Msg) int {
	n := len(msg.Data) + len("NATS/1.0\r\n\r\n")
	for k, vs := range msg.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// decode rebuilds the message from its NATS form.
func decode(data []byte, h nats.Header) (eventbus.Message, error) {
	var env envelope
	if err := json.Unmarshal([]byte(h.Get(HeaderEnvelope)), &env); err != nil {
		return eventbus.Message{}, fmt.Errorf("message has no valid %s header: %w", HeaderEnvelope, err)
	}
	pos, err := eventstore.ParsePosition(env.Position)
	if err != nil {
		return eventbus.Message{}, fmt.Errorf("message envelope: %w", err)
	}
	return eventbus.Message{
		EventID: env.EventID, Type: h.Get(HeaderType), SchemaVersion: env.SchemaVersion, StreamID: env.StreamID,
		StreamVersion: env.StreamVersion, Position: pos, Data: data, Metadata: env.Metadata, RecordedAt: env.RecordedAt,
	}, nil
}

// Publish publishes msgs in order, each awaiting its acknowledgement.
func (b *Bus) Publish(ctx context.Context, msgs ...eventbus.Message) error {
	for _, m := range msgs {
		o, err := b.encode(m)
		if err != nil {
			return err
		}
		if _, err := b.js.PublishMsg(ctx, &o.msg, jetstream.WithExpectStream(b.cfg.Stream)); err != nil {
			return publishError(m.EventID, err)
		}
	}
	return nil
}

// publishError classifies a publication failure.
func publishError(id eventstore.EventID, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
		return &eventbus.MessageTooLargeError{EventID: id, Size: -1, Limit: -1}
	}
	if errors.Is(err, nats.ErrMaxPayload) {
		return &eventbus.MessageTooLargeError{EventID: id, Size: -1, Limit: -1}
	}
	return fmt.Errorf("publish event %s: %w: %w", id, eventbus.ErrPublishFailed, err)
}

// brokerError wraps a failed JetStream API call.
func brokerError(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, eventbus.ErrUnavailable, err)
}

func validName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// validSubject reports a literal subject: non-empty tokens, no wildcards,
// no whitespace.
func validSubject(s string) bool {
	if s == "" {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
		for _, r := range tok {
			if r <= ' ' || r == 0x7f || r == '*' || r == '>' {
				return false
			}
		}
	}
	return true
}

func invalid(field, reason string) error {
	return &eventstore.ValidationError{Field: field, Reason: reason}
}

// DeleteStreams deletes the event and dead-letter streams with their
// consumers: everything the bus holds. For tests and tear-downs.
func (b *Bus) DeleteStreams(ctx context.Context) error {
	return errors.Join(b.js.DeleteStream(ctx, b.cfg.Stream), b.js.DeleteStream(ctx, b.cfg.DeadLetterStream))
}
