package natsbus

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/chronicle-go/chronicle/eventbus"
)

// appendEnvelope appends the JSON of m's envelope (the HeaderEnvelope
// header) to dst, id being m.EventID.String(). It writes what json.Marshal writes for the envelope
// struct, field for field, without reflection: the relay encodes every
// event it publishes, and json.Marshal was a tenth of its CPU time.
// decode reads it back with json.Unmarshal.
func appendEnvelope(dst []byte, id string, m eventbus.Message) ([]byte, error) {
	dst = append(dst, `{"id":"`...)
	dst = append(dst, id...)
	dst = append(dst, `","v":`...)
	dst = strconv.AppendInt(dst, int64(m.SchemaVersion), 10)
	dst = append(dst, `,"stream":`...)
	dst = appendJSONString(dst, m.StreamID)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, m.StreamVersion, 10)
	dst = append(dst, `,"position":`...)
	dst = appendJSONString(dst, m.Position.String())
	dst = append(dst, `,"recorded_at":`...)
	t, err := m.RecordedAt.MarshalJSON() // refuses years outside 0-9999, as json.Marshal does
	if err != nil {
		return nil, err
	}
	dst = append(dst, t...)
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
