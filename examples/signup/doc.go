// Signup is a user registration service whose events reach two other
// services through the event bus: a welcome e-mail sender and a points
// service, each its own consumer group.
//
//	go run ./examples/signup                      # in-memory store and bus
//	go run ./examples/signup -dsn postgres://... -nats nats://127.0.0.1:4222
//
// The service appends UserRegistered events to the store and never
// publishes: a relay publishes what committed. One registration was stored
// by an older version of the service with schema version 1 (a single
// name field); the registry upcasts it to version 2 (first and last
// names) for every consumer. On PostgreSQL the points service records the
// events it handled in the same transaction as the points
// (postgres.Idempotent), so a redelivered message awards nothing twice.
package main
