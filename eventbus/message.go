package eventbus

import (
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Message is one stored event as it travels on a bus: everything a consumer
// needs to decode it, order it and deduplicate it, without reading the
// event store.
type Message struct {
	// EventID identifies the event. Brokers deduplicate publications on it
	// and idempotent consumers record it.
	EventID eventstore.EventID
	// Type is the registered event type name.
	Type string
	// SchemaVersion is the version of the payload's schema; consumers
	// upcast older versions through their [eventstore.Registry].
	SchemaVersion int
	// StreamID is the aggregate stream the event belongs to. Per-stream
	// order is kept by the stream ID.
	StreamID string
	// StreamVersion is the event's version in its stream (1, 2, 3...).
	StreamVersion int64
	// Position is the event's place in the store's global order.
	Position eventstore.Position
	// Data is the encoded payload.
	Data []byte
	// Metadata carries the correlation and causation IDs and free-form
	// headers.
	Metadata eventstore.Metadata
	// RecordedAt is when the store committed the event.
	RecordedAt time.Time
}

// FromRecord turns a stored event into a message.
func FromRecord(r eventstore.Record) Message {
	return Message{
		EventID:       r.EventID,
		Type:          r.Type,
		SchemaVersion: r.SchemaVersion,
		StreamID:      r.StreamID,
		StreamVersion: r.StreamVersion,
		Position:      r.Position,
		Data:          r.Data,
		Metadata:      r.Metadata,
		RecordedAt:    r.RecordedAt,
	}
}

// Record turns the message back into the stored event it came from, for
// [eventstore.Decode] and [eventstore.Registry.Decode].
func (m Message) Record() eventstore.Record {
	return eventstore.Record{
		EventID:       m.EventID,
		StreamID:      m.StreamID,
		StreamVersion: m.StreamVersion,
		Position:      m.Position,
		Type:          m.Type,
		SchemaVersion: m.SchemaVersion,
		Data:          m.Data,
		Metadata:      m.Metadata,
		RecordedAt:    m.RecordedAt,
	}
}

// validate reports a message that no bus can carry.
func (m Message) validate() error {
	switch {
	case m.EventID.IsZero():
		return invalid("message event id", "must not be zero")
	case m.Type == "":
		return invalid("message type", "must not be empty")
	case m.StreamID == "":
		return invalid("message stream id", "must not be empty")
	}
	return nil
}

// Validate reports a message that no bus can carry: a zero event ID, an
// empty type or stream ID. The error matches [eventstore.ErrInvalidInput].
// Bus implementations call it before publishing.
func (m Message) Validate() error { return m.validate() }

// Delivery is a message handed to a consumer's handler.
type Delivery struct {
	Message
	// Group is the consumer group receiving the message.
	Group string
	// Attempt counts deliveries of this message to the group, from 1.
	Attempt int
}
