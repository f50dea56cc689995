package shred_test

import (
	"bytes"
	"context"
	"fmt"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/shred"
)

type UserRegistered struct {
	eventstore.Redactions
	UserID string `json:"user_id" chronicle:"subject"`
	Email  string `json:"email" chronicle:"personal"`
	Plan   string `json:"plan"`
}

// Personal fields are sealed on append and read back in the clear, until
// the subject is forgotten: then they read as redacted, and the rest of
// the event stays.
func Example() {
	ctx := context.Background()
	masterKey := bytes.Repeat([]byte{1}, 32) // in production: from a secret manager, never from the database
	kek, err := shred.NewAESKeyEncryptionKey(masterKey)
	if err != nil {
		panic(err)
	}
	shredder, err := shred.New(memory.NewSubjectKeyStore(), &shred.Config{KeyEncryptionKey: kek})
	if err != nil {
		panic(err)
	}
	reg := eventstore.NewRegistry(&eventstore.RegistryConfig{Cipher: shredder})
	eventstore.MustRegister[UserRegistered](reg, "UserRegistered")
	store := memory.New(nil)

	ev, err := reg.EncodeContext(ctx, UserRegistered{UserID: "u-42", Email: "ada@example.com", Plan: "gold"})
	if err != nil {
		panic(err)
	}
	if _, err := store.Append(ctx, "user-u-42", eventstore.NoStream, ev); err != nil {
		panic(err)
	}
	read := func() UserRegistered {
		recs, err := store.ReadStream(ctx, "user-u-42", eventstore.ReadStreamOptions{})
		if err != nil {
			panic(err)
		}
		fmt.Println("stored in the clear:", bytes.Contains(recs[0].Data, []byte("ada@example.com")))
		e, err := eventstore.DecodeContext[UserRegistered](ctx, reg, recs[0])
		if err != nil {
			panic(err)
		}
		return e
	}
	e := read()
	fmt.Printf("email %q, plan %q, redacted %v\n", e.Email, e.Plan, e.Redacted())

	if err := shredder.Forget(ctx, "u-42"); err != nil {
		panic(err)
	}
	e = read()
	fmt.Printf("email %q, plan %q, redacted %v\n", e.Email, e.Plan, e.Redacted())
	// Output:
	// stored in the clear: false
	// email "ada@example.com", plan "gold", redacted []
	// stored in the clear: false
	// email "", plan "gold", redacted [email]
}
