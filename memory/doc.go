// Package memory holds Chronicle's in-memory implementations, the
// siblings of package postgres's: they keep everything in the process,
// for tests, examples and single-process programs, and behave as the
// PostgreSQL ones do (each passes the same conformance suite).
//
// [ProjectionStore] keeps the projection runner's state (checkpoints,
// leases, instances, dead letters), optionally with transactions
// ([ProjectionStoreConfig.Transactional]).
package memory
