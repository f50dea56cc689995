package eventbus_test

import (
	"testing"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventbus/bustest"
)

func TestMemoryBusConformance(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T) eventbus.Bus {
		return eventbus.NewMemoryBus(nil)
	}, nil)
}
