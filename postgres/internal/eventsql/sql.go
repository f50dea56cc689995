package eventsql

import (
	_ "embed" // the statements are embedded .sql files
)

// The statements, as their .sql files in this folder say.
var (
	//go:embed append_one_event.sql
	AppendOneEventSQL string
	//go:embed append_one.sql
	AppendOneSQL string
	//go:embed append_streams.sql
	AppendStreamsSQL string
	//go:embed append_group.sql
	AppendGroupSQL string
	//go:embed current_versions.sql
	CurrentVersionsSQL string
	//go:embed lookup_events.sql
	LookupEventsSQL string

	//go:embed read_stream_forward.sql
	ReadStreamForwardSQL string
	//go:embed read_stream_backward.sql
	ReadStreamBackwardSQL string
	//go:embed read_payloads_forward.sql
	ReadPayloadsForwardSQL string
	//go:embed read_payloads_backward.sql
	ReadPayloadsBackwardSQL string
	//go:embed read_all.sql
	ReadAllSQL string
	//go:embed head.sql
	HeadSQL string
	//go:embed stream_version.sql
	StreamVersionSQL string
	//go:embed list_streams.sql
	ListStreamsSQL string
	//go:embed tail_lag.sql
	TailLagSQL string
)

// ReadAllMaxPage is the most rows one execution of ReadAllSQL returns: its
// literal inner LIMIT, which keeps the statement's generic plan cheap (and
// free of JIT) at any table size. A larger read takes several statements.
const ReadAllMaxPage = 10000

// ReadStreamMaxPage is the most rows one execution of a stream read
// (ReadStreamForwardSQL, ReadStreamBackwardSQL, ReadPayloadsForwardSQL,
// ReadPayloadsBackwardSQL) returns: their literal inner LIMIT, for the same
// reason. A longer read takes several statements.
const ReadStreamMaxPage = 1000

// SQLSTATE codes and constraint names the append path interprets.
const (
	CodeUniqueViolation      = "23505"
	CodeCheckViolation       = "23514"
	CodeDeadlock             = "40P01"
	CodeSerializationFailure = "40001"
	CodeInFailedTransaction  = "25P02"

	// StreamVersionKey is events' UNIQUE (stream_id, stream_version).
	StreamVersionKey = "events_stream_version_key"
	// EventIDKey is events' UNIQUE (event_id).
	EventIDKey = "events_event_id_key"
	// StreamVersionCheck is events' CHECK (stream_version > 0), which
	// append_streams.sql trips on purpose when an expectation fails.
	StreamVersionCheck = "events_stream_version_check"
)
