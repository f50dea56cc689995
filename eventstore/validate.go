package eventstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

const (
	// MaxStreamIDLength is the longest stream ID in bytes.
	MaxStreamIDLength = 255
	// MaxTypeNameLength is the longest event type name in bytes.
	MaxTypeNameLength = 255
	// MaxSchemaVersion is the highest schema version an event may carry
	// (stores keep it in a 32-bit integer).
	MaxSchemaVersion = 1<<31 - 1
	// DefaultMaxEventSize is the default limit on an event's payload plus
	// metadata, in bytes (1 MiB).
	DefaultMaxEventSize = 1 << 20
)

// ValidateStreamID checks a stream ID: non-empty, at most
// [MaxStreamIDLength] bytes, valid UTF-8 and free of control characters
// (C0 U+0000–U+001F, DEL U+007F and C1 U+0080–U+009F).
// Quotes, semicolons and any other printable characters are allowed: stores
// pass stream IDs as bind parameters, never as SQL text.
func ValidateStreamID(id string) error {
	return validateName("stream id", id, MaxStreamIDLength)
}

func validateName(field, s string, max int) error {
	if reason := nameProblem(s, max); reason != "" {
		return &ValidationError{Field: field, Reason: reason}
	}
	return nil
}

// nameProblem says what is wrong with a stream ID or type name, or "".
func nameProblem(s string, max int) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > max:
		return fmt.Sprintf("is %d bytes, longer than %d", len(s), max)
	case !utf8.ValidString(s):
		return "is not valid utf-8"
	}
	for _, r := range s {
		if r < 0x20 || (0x7f <= r && r <= 0x9f) { // C0, DEL, C1
			return fmt.Sprintf("contains control character %U", r)
		}
	}
	return ""
}

// ValidateAppend checks an append before it reaches storage: the stream ID,
// the expected version, and each event (type name, schema version, payload
// that is a JSON value PostgreSQL's jsonb accepts, metadata that is valid
// UTF-8, size within maxEventSize bytes when maxEventSize > 0), and that no
// non-zero event ID appears twice. Store implementations call it so that every store rejects the same input with
// the same typed errors.
func ValidateAppend(streamID string, expected ExpectedVersion, events []Event, maxEventSize int) error {
	if err := ValidateStreamID(streamID); err != nil {
		return err
	}
	if !expected.Valid() {
		return &ValidationError{Field: "expected version", Reason: fmt.Sprintf("%d is not a version or a defined expectation", int64(expected))}
	}
	if len(events) == 0 {
		return &ValidationError{Field: "events", Reason: "an append needs at least one event"}
	}
	for i := range events {
		if err := validateEvent(i, &events[i], maxEventSize); err != nil {
			return err
		}
	}
	return checkDistinctIDs(events)
}

// checkDistinctIDs refuses a non-zero event ID used twice in one append.
func checkDistinctIDs(events []Event) error {
	dup := func(i, j int) error {
		return &ValidationError{Field: fmt.Sprintf("events[%d].id", i), Reason: fmt.Sprintf("%s is also the id of events[%d]", events[i].ID, j)}
	}
	if len(events) <= 32 {
		for i := 1; i < len(events); i++ {
			for j := range i {
				if events[i].ID == events[j].ID && !events[i].ID.IsZero() {
					return dup(i, j)
				}
			}
		}
		return nil
	}
	seen := make(map[EventID]int, len(events))
	for i := range events {
		if events[i].ID.IsZero() {
			continue
		}
		if j, ok := seen[events[i].ID]; ok {
			return dup(i, j)
		}
		seen[events[i].ID] = i
	}
	return nil
}

func validateEvent(i int, e *Event, maxEventSize int) error {
	field := func(f string) string { return fmt.Sprintf("events[%d].%s", i, f) } // only on failure: appends are hot
	if reason := nameProblem(e.Type, MaxTypeNameLength); reason != "" {
		return &ValidationError{Field: field("type"), Reason: reason}
	}
	if e.SchemaVersion < 0 || e.SchemaVersion > MaxSchemaVersion {
		return &ValidationError{Field: field("schema version"), Reason: fmt.Sprintf("%d is outside 0..%d", e.SchemaVersion, MaxSchemaVersion)}
	}
	size := len(e.Data)
	if !utf8.ValidString(e.Metadata.CorrelationID) || !utf8.ValidString(e.Metadata.CausationID) {
		return &ValidationError{Field: field("metadata"), Reason: "is not valid utf-8"}
	}
	size += len(e.Metadata.CorrelationID) + len(e.Metadata.CausationID)
	for k, v := range e.Metadata.Headers {
		if !utf8.ValidString(k) || !utf8.ValidString(v) || containsNUL(k) || containsNUL(v) {
			return &ValidationError{Field: field("metadata"), Reason: fmt.Sprintf("header %q is not valid utf-8 text", k)}
		}
		size += len(k) + len(v)
	}
	if containsNUL(e.Metadata.CorrelationID) || containsNUL(e.Metadata.CausationID) {
		return &ValidationError{Field: field("metadata"), Reason: "contains a NUL character"}
	}
	if maxEventSize > 0 && size > maxEventSize {
		return &EventTooLargeError{Index: i, Size: size, Limit: maxEventSize}
	}
	if len(e.Data) == 0 {
		return &ValidationError{Field: field("data"), Reason: "must not be empty"}
	}
	if !json.Valid(e.Data) {
		return &ValidationError{Field: field("data"), Reason: "is not valid json"}
	}
	if !utf8.Valid(e.Data) {
		return &ValidationError{Field: field("data"), Reason: "is not valid utf-8"}
	}
	if reason := jsonbEscapeProblem(e.Data); reason != "" {
		return &ValidationError{Field: field("data"), Reason: reason}
	}
	if reason := jsonbNumberProblem(e.Data); reason != "" {
		return &ValidationError{Field: field("data"), Reason: reason}
	}
	return nil
}

// Limits of PostgreSQL's numeric type, which jsonb uses for every JSON
// number (measured on PostgreSQL 15; see numeric.c):
const (
	// numericMaxDigitsBefore: a non-zero value must be below 1e131072
	// (32768 base-10000 digits before the decimal point).
	numericMaxDigitsBefore = 131072
	// numericMaxScale: at most 16383 digits after the decimal point, as
	// written (trailing zeros count, and so does 0e-16384).
	numericMaxScale = 16383
	// numericMaxExponent: numeric input refuses an exponent whose absolute
	// value reaches INT_MAX/2, even on zero.
	numericMaxExponent = 1<<30 - 1
)

// jsonbNumberProblem says why PostgreSQL's jsonb would refuse a number in
// valid JSON data ("value overflows numeric format"), or returns "". JSON
// allows any magnitude and precision; numeric does not. data must be valid
// JSON.
func jsonbNumberProblem(data []byte) string {
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			// Skip the string: in valid JSON a backslash always starts an
			// escape, so skipping the escaped byte is enough.
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		case c == '-' || ('0' <= c && c <= '9'):
			j := i
			for j < len(data) && isNumberByte(data[j]) {
				j++
			}
			if reason := numericProblem(data[i:j]); reason != "" {
				return reason
			}
			i = j - 1
		}
	}
	return ""
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// numericProblem checks one JSON number token against numeric's limits.
func numericProblem(num []byte) string {
	const overflow = "contains the number %.40s, outside the range postgresql jsonb can store (numeric: below 1e131072, at most 16383 digits after the decimal point)"
	if len(num) <= 32 && !bytes.ContainsAny(num, "eE") {
		return "" // the common case: short, no exponent
	}
	mant, exp := num, int64(0)
	if k := bytes.IndexAny(num, "eE"); k >= 0 {
		mant = num[:k]
		digits := num[k+1:]
		neg := false
		if len(digits) > 0 && (digits[0] == '+' || digits[0] == '-') {
			neg = digits[0] == '-'
			digits = digits[1:]
		}
		for _, d := range digits {
			exp = exp*10 + int64(d-'0')
			if exp >= numericMaxExponent {
				return fmt.Sprintf(overflow, num)
			}
		}
		if neg {
			exp = -exp
		}
	}
	if len(mant) > 0 && mant[0] == '-' {
		mant = mant[1:]
	}
	intPart, frac := mant, []byte(nil)
	if k := bytes.IndexByte(mant, '.'); k >= 0 {
		intPart, frac = mant[:k], mant[k+1:]
	}
	if scale := int64(len(frac)) - exp; scale > numericMaxScale {
		return fmt.Sprintf(overflow, num)
	}
	// The decimal exponent of the first significant digit.
	lead, nonzero := int64(len(intPart)-1), false
	for _, d := range intPart {
		if d != '0' {
			nonzero = true
			break
		}
		lead--
	}
	if !nonzero {
		lead = -1
		for _, d := range frac {
			if d != '0' {
				nonzero = true
				break
			}
			lead--
		}
	}
	if nonzero && lead+exp >= numericMaxDigitsBefore {
		return fmt.Sprintf(overflow, num)
	}
	return ""
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// jsonbEscapeProblem says why PostgreSQL's jsonb would refuse a \u escape
// in valid JSON data: the escape \u0000, or a UTF-16 surrogate escape that
// is not part of a high-low pair. It returns "" when there is none. In
// valid JSON a backslash only appears in strings and always starts an
// escape, so skipping each escape's first character is enough.
func jsonbEscapeProblem(data []byte) string {
	const unpaired = "contains an unpaired utf-16 surrogate escape, which postgresql jsonb cannot store"
	for i := 0; i+1 < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		r, ok := hex4(data, i+2)
		if data[i+1] != 'u' || !ok {
			i++ // skip the escaped character
			continue
		}
		next := i + 6 // just after the escape
		switch {
		case r == 0:
			return `contains the escape \u0000, which postgresql jsonb cannot store`
		case 0xd800 <= r && r < 0xdc00:
			lo, ok := rune(0), false
			if next+1 < len(data) && data[next] == '\\' && data[next+1] == 'u' {
				lo, ok = hex4(data, next+2)
			}
			if !ok || lo < 0xdc00 || lo >= 0xe000 {
				return unpaired
			}
			next += 6 // the low surrogate
		case 0xdc00 <= r && r < 0xe000:
			return unpaired
		}
		i = next - 1
	}
	return ""
}

// hex4 decodes the four hex digits at data[at:at+4].
func hex4(data []byte, at int) (rune, bool) {
	if at < 0 || at+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[at : at+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
