package memory_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection/projectionstore/storagetest"
)

func TestProjectionStoreConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, storagetest.Config{New: func(t *testing.T) storagetest.Subject {
		s, err := memory.NewProjectionStore(nil)
		if err != nil {
			t.Fatal(err)
		}
		return storagetest.Subject{Storage: s}
	}})
}

func TestTransactionalProjectionStoreConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, storagetest.Config{Transactional: true, New: func(t *testing.T) storagetest.Subject {
		s, err := memory.NewProjectionStore(&memory.ProjectionStoreConfig{Transactional: true})
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu      sync.Mutex
			written = map[string]bool{}
		)
		return storagetest.Subject{
			Storage: s,
			Write: func(ctx context.Context, marker string) error {
				tx, ok := memory.ProjectionTxFrom(ctx)
				if !ok {
					return errors.New("no transaction in the work's context")
				}
				tx.OnCommit(func() {
					mu.Lock()
					written[marker] = true
					mu.Unlock()
				})
				return nil
			},
			Written: func(_ context.Context, marker string) (bool, error) {
				mu.Lock()
				defer mu.Unlock()
				return written[marker], nil
			},
		}
	}})
}
