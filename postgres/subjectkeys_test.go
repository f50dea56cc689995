package postgres_test

import (
	"testing"

	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/shred"
	"github.com/chronicle-go/chronicle/shred/shredtest"
)

func TestSubjectKeyStoreConformance(t *testing.T) {
	t.Parallel()
	shredtest.Run(t, func(t *testing.T) shred.KeyStore {
		ks, err := postgres.NewSubjectKeyStore(postgrestest.Pool(t))
		if err != nil {
			t.Fatal(err)
		}
		return ks
	})
}
