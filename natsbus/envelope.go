package natsbus

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/chronicle-go/chronicle/eventbus"
)

// The event ID's place in an envelope written by appendEnvelope.
const (
	envelopeIDStart = len(`{"id":"`)
	eventIDLen      = 36
)

// appendEnvelope appends the JSON of m's envelope (the HeaderEnvelope
// header) to dst; the event ID's canonical form is at envelopeIDStart
// in what it appends. It writes what json.Marshal writes for the envelope
// struct, field for field, without reflection: the relay encodes every
// event it publishes, and json.Marshal was a tenth of its CPU time.
// decode reads it back with json.Unmarshal.
func appendEnvelope(dst []byte, m eventbus.Message) ([]byte, error) {
	dst = append(dst, `{"id":"`...)
	dst = m.EventID.AppendTo(dst)
	dst = append(dst, `","v":`...)
	dst = strconv.AppendInt(dst, int64(m.SchemaVersion), 10)
	dst = append(dst, `,"stream":`...)
	dst = appendJSONString(dst, m.StreamID)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, m.StreamVersion, 10)
	dst = append(dst, `,"position":"`...) // digits and a slash: nothing to escape
	dst = strconv.AppendUint(dst, m.Position.Transaction, 10)
	dst = append(dst, '/')
	dst = strconv.AppendInt(dst, m.Position.Global, 10)
	dst = append(dst, `","recorded_at":`...)
	dst, err := appendTime(dst, m.RecordedAt)
	if err != nil {
		return nil, err
	}
	if !m.Metadata.IsZero() {
		md, err := json.Marshal(m.Metadata)
		if err != nil {
			return nil, err
		}
		dst = append(dst, `,"metadata":`...)
		dst = append(dst, md...)
	}
	return append(dst, '}'), nil
}

// appendTime appends t as json.Marshal writes it. A time in UTC within
// years 0-9999 (the store's times) is appended in place; any other goes
// through MarshalJSON, which refuses what encoding/json refuses.
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); t.Location() == time.UTC && y >= 0 && y <= 9999 {
		dst = append(dst, '"')
		dst = t.AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"'), nil
	}
	b, err := t.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return append(dst, b...), nil
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML characters aside, which need no escaping here): quotes,
// backslashes and control characters escaped, invalid UTF-8 replaced by
// U+FFFD, and U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
