package migrations_test

// The stock migrate CLI that TestStockMigrateTool builds (with -tags pgx5)
// links golang-migrate's pgx/v5 driver. Importing it here keeps that
// driver's dependencies in go.mod and go.sum as test dependencies, so the
// tool builds inside this module without touching them.
import _ "github.com/golang-migrate/migrate/v4/database/pgx/v5"
