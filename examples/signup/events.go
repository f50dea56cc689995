package main

import (
	"strings"

	"github.com/chronicle-go/chronicle/eventstore"
)

// UserRegisteredV1 is the first schema of UserRegistered: one name.
type UserRegisteredV1 struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// UserRegistered is the current schema (version 2).
type UserRegistered struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Email     string `json:"email"`
}

// newRegistry registers the event types with the V1→V2 upcaster.
func newRegistry() (*eventstore.Registry, error) {
	reg := eventstore.NewRegistry(nil)
	err := eventstore.Register[UserRegistered](reg, "UserRegistered",
		eventstore.Upcast(1, func(v1 UserRegisteredV1) (UserRegistered, error) {
			first, last, _ := strings.Cut(v1.Name, " ")
			return UserRegistered{FirstName: first, LastName: last, Email: v1.Email}, nil
		}))
	return reg, err
}
