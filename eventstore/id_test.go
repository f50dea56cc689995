package eventstore_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

func TestParseEventID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		ok bool
	}{
		{"0190a5c4-8f3e-7b12-9c4d-1e2f3a4b5c6d", true},
		{"0190A5C4-8F3E-7B12-9C4D-1E2F3A4B5C6D", true},
		{"0190a5C4-8f3E-7b12-9C4d-1e2F3a4B5c6D", true},
		{"00000000-0000-0000-0000-000000000000", true},
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", true},
		{"", false},
		{"0190a5c4-8f3e-7b12-9c4d-1e2f3a4b5c6", false},    // 35 characters
		{"0190a5c4-8f3e-7b12-9c4d-1e2f3a4b5c6d0", false},  // 37
		{"0190a5c48f3e7b129c4d1e2f3a4b5c6d", false},       // no hyphens
		{"0190a5c4-8f3e-7b12-9c4d1-e2f3a4b5c6d", false},   // hyphen misplaced
		{"0190a5c4-8f3e-7b12-9c4g-1e2f3a4b5c6d", false},   // g
		{"0190a5c4-8f3e-7b12-9c4d-1e2f3a4b5c6 ", false},   // space
		{"{0190a5c4-8f3e-7b12-9c4d-1e2f3a4b5c6d}", false}, // braces
		{"urn:uuid:0190a5c4-8f3e-7b12-9c4d-1e2f3a4b5", false},
		{"0190a5c4-8f3e-7b12-9c4d-1e2f3a4b5cé", false}, // 36 bytes, not hex
		{"+190a5c4-8f3e-7b12-9c4d-1e2f3a4b5c6d", false},
	}
	for _, tt := range tests {
		id, err := eventstore.ParseEventID(tt.in)
		if !tt.ok {
			var ve *eventstore.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, eventstore.ErrInvalidInput) || ve.Field != "event id" {
				t.Errorf("ParseEventID(%q) = %v, %v; want a ValidationError for field \"event id\"", tt.in, id, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseEventID(%q): %v", tt.in, err)
			continue
		}
		if got := id.String(); got != strings.ToLower(tt.in) {
			t.Errorf("ParseEventID(%q).String() = %q, want the lower-case input", tt.in, got)
		}
	}
	if !(eventstore.EventID{}).IsZero() {
		t.Error("the zero EventID is not IsZero")
	}
}

func TestEventIDText(t *testing.T) {
	t.Parallel()
	type doc struct {
		ID eventstore.EventID `json:"id"`
	}
	in := doc{ID: eventstore.NewEventID()}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"` + in.ID.String() + `"}`; string(b) != want {
		t.Fatalf("json.Marshal = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("json.Unmarshal(%s) = %+v, %v; want %+v", b, out, err, in)
	}
	err = json.Unmarshal([]byte(`{"id":"not-a-uuid"}`), &out)
	if !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("unmarshal of a bad id: error %v, want one matching ErrInvalidInput", err)
	}
}

func TestNewEventIDFormat(t *testing.T) {
	t.Parallel()
	before := time.Now().UnixMilli()
	ids := make([]eventstore.EventID, 20000)
	for i := range ids {
		ids[i] = eventstore.NewEventID()
	}
	after := time.Now().UnixMilli()
	for i, id := range ids {
		if v := id[6] >> 4; v != 7 {
			t.Fatalf("%s: version %d, want 7", id, v)
		}
		if variant := id[8] >> 6; variant != 0b10 {
			t.Fatalf("%s: variant bits %02b, want 10", id, variant)
		}
		ms := int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 | int64(id[3])<<16 | int64(id[4])<<8 | int64(id[5])
		// A burst may borrow a few future milliseconds when the 12-bit
		// counter runs out; never past ones.
		if ms < before || ms > after+1000 {
			t.Fatalf("%s: timestamp %d ms outside [%d, %d]", id, ms, before, after+1000)
		}
		if i > 0 && bytes.Compare(ids[i-1][:], id[:]) >= 0 {
			t.Fatalf("ids not strictly increasing: %s then %s", ids[i-1], id)
		}
		if back, err := eventstore.ParseEventID(id.String()); err != nil || back != id {
			t.Fatalf("ParseEventID(%s) = %s, %v", id, back, err)
		}
	}
}

func TestNewEventIDUnique(t *testing.T) {
	t.Parallel()
	const goroutines, each = 8, 5000
	var mu sync.Mutex
	seen := make(map[eventstore.EventID]bool, goroutines*each)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			local := make([]eventstore.EventID, each)
			for i := range local {
				local[i] = eventstore.NewEventID()
				if i > 0 && bytes.Compare(local[i-1][:], local[i][:]) >= 0 {
					t.Errorf("ids of one goroutine not increasing: %s then %s", local[i-1], local[i])
					return
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range local {
				if seen[id] {
					t.Errorf("id %s generated twice", id)
					return
				}
				seen[id] = true
			}
		})
	}
	wg.Wait()
	if len(seen) != goroutines*each {
		t.Fatalf("%d distinct ids, want %d", len(seen), goroutines*each)
	}
}

func TestEventIDAppendTo(t *testing.T) {
	t.Parallel()
	id, err := eventstore.ParseEventID("0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B")
	if err != nil {
		t.Fatal(err)
	}
	got := id.AppendTo([]byte("id="))
	if want := "id=0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"; string(got) != want {
		t.Fatalf("AppendTo = %q, want %q", got, want)
	}
	if s := id.String(); s != string(got[3:]) {
		t.Fatalf("String = %q, AppendTo wrote %q", s, got[3:])
	}
}
