package memory_test

import (
	"testing"

	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/shred"
	"github.com/chronicle-go/chronicle/shred/shredtest"
)

func TestSubjectKeyStoreConformance(t *testing.T) {
	t.Parallel()
	shredtest.Run(t, func(*testing.T) shred.KeyStore { return memory.NewSubjectKeyStore() })
}
