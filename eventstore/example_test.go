package eventstore_test

import (
	"fmt"
	"strings"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Register an event type whose shape changed: old events stored as
// schema version 1 decode as the current type through an upcaster.
func ExampleRegister() {
	// The old shape stays in the code under a new name.
	type CustomerRenamedV1 struct {
		Name string `json:"name"`
	}
	type CustomerRenamed struct {
		First string `json:"first"`
		Last  string `json:"last"`
	}

	r := eventstore.NewRegistry(nil)
	err := eventstore.Register[CustomerRenamed](r, "CustomerRenamed",
		eventstore.Upcast(1, func(old CustomerRenamedV1) (CustomerRenamed, error) {
			first, last, _ := strings.Cut(old.Name, " ")
			return CustomerRenamed{First: first, Last: last}, nil
		}),
	)
	if err != nil {
		panic(err)
	}

	// New events are encoded at the current schema version.
	e, err := r.Encode(CustomerRenamed{First: "Grace", Last: "Hopper"})
	if err != nil {
		panic(err)
	}
	fmt.Printf("encoded %s v%d: %s\n", e.Type, e.SchemaVersion, e.Data)

	// An event stored years ago, as version 1, decodes as the current type.
	old := eventstore.Record{Type: "CustomerRenamed", SchemaVersion: 1, Data: []byte(`{"name":"Ada Lovelace"}`)}
	v, err := eventstore.Decode[CustomerRenamed](r, old)
	if err != nil {
		panic(err)
	}
	fmt.Printf("decoded v1: %+v\n", v)

	// Unknown types fail clearly.
	_, err = r.Decode(eventstore.Record{Type: "CustomerDeleted", Data: []byte(`{}`)})
	fmt.Println(err)
	// Output:
	// encoded CustomerRenamed v2: {"first":"Grace","last":"Hopper"}
	// decoded v1: {First:Ada Last:Lovelace}
	// unknown event type "CustomerDeleted"
}
