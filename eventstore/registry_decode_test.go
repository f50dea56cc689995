package eventstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

// benchDeposit is the benchmark's payload shape (see BENCH.md).
type benchDeposit struct {
	AccountID string  `json:"account_id"`
	Amount    float64 `json:"amount"`
	Currency  string  `json:"currency"`
	Note      string  `json:"note"`
}

const benchDepositJSON = `{"account_id":"acc-000123","amount":125.5,"currency":"EUR","note":"deposit via ATM 42"}`

// Decode[T] decodes with the decoder built when T was registered: it
// allocates no more than json.Unmarshal into a T does (no reflect.New and
// copy out of it, no boxing), while Registry.Decode boxes the value.
func TestDecodeTypedAllocations(t *testing.T) {
	r := eventstore.NewRegistry(nil)
	eventstore.MustRegister[benchDeposit](r, "Deposited")
	rec := record("Deposited", 1, benchDepositJSON)
	floor := testing.AllocsPerRun(200, func() {
		var d benchDeposit
		if err := json.Unmarshal(rec.Data, &d); err != nil || d.Amount != 125.5 {
			t.Fatal(d, err)
		}
	})
	typed := testing.AllocsPerRun(200, func() {
		d, err := eventstore.Decode[benchDeposit](r, rec)
		if err != nil || d.Amount != 125.5 {
			t.Fatal(d, err)
		}
	})
	boxed := testing.AllocsPerRun(200, func() {
		v, err := r.Decode(rec)
		if err != nil || v.(benchDeposit).Amount != 125.5 {
			t.Fatal(v, err)
		}
	})
	if typed > floor {
		t.Errorf("Decode[T] allocates %v times per event, json.Unmarshal into a T %v", typed, floor)
	}
	if boxed > floor+1 {
		t.Errorf("Registry.Decode allocates %v times per event, json.Unmarshal into a T %v (+1 for the box)", boxed, floor)
	}
}

// Decode[T] with T other than the registered type: an interface the
// value implements gets the value, another type is a decode error, and a
// corrupt payload is reported as such before the mismatch.
func TestDecodeOtherType(t *testing.T) {
	t.Parallel()
	r := setupRegistry(t)
	rec := record("UserRegistered", 2, `{"user_id":"u2","name":"Bo","email":"bo@x"}`)
	v, err := eventstore.Decode[any](r, rec)
	if u, ok := v.(UserRegistered); err != nil || !ok || u.Email != "bo@x" {
		t.Fatalf("Decode[any] = %#v, %v; want the UserRegistered", v, err)
	}
	_, err = eventstore.Decode[fmt.Stringer](r, rec)
	var de *eventstore.DecodeError
	if !errors.As(err, &de) || de.EventID != rec.EventID {
		t.Fatalf("Decode[fmt.Stringer] of a UserRegistered: %v, want a DecodeError of the record", err)
	}
	bad := record("UserRegistered", 2, `{"user_id":`)
	_, err = eventstore.Decode[AccountOpened](r, bad)
	var syntax *json.SyntaxError
	if !errors.As(err, &syntax) {
		t.Fatalf("Decode[AccountOpened] of a corrupt UserRegistered: %v, want the JSON syntax error", err)
	}
	if _, err := eventstore.Decode[UserRegistered](r, bad); !errors.As(err, &de) || !errors.As(err, &syntax) {
		t.Fatalf("Decode[UserRegistered] of a corrupt payload: %v, want a DecodeError wrapping the syntax error", err)
	}
}

// BenchmarkDecode compares decoding one event with Decode[T], with
// Registry.Decode, and json.Unmarshal into the type (the floor).
func BenchmarkDecode(b *testing.B) {
	r := eventstore.NewRegistry(nil)
	eventstore.MustRegister[benchDeposit](r, "Deposited")
	rec := record("Deposited", 1, benchDepositJSON)
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var d benchDeposit
			if err := json.Unmarshal(rec.Data, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decode[T]", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := eventstore.Decode[benchDeposit](r, rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Registry.Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Decode(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
