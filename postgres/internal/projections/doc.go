// Package projections is the PostgreSQL projection storage behind
// postgres.ProjectionStore: checkpoints, leases (session advisory locks
// held by dedicated connections), the live instances of each projection,
// and dead letters. Its statements are in sql.go, each whole.
//
// It implements [projectionstore.Storage]; package postgres exposes it
// unchanged and passes in how to translate driver errors.
package projections
