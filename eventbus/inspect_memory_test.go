package eventbus_test

import (
	"testing"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventbus/bustest"
)

func TestMemoryBusInspector(t *testing.T) {
	t.Parallel()
	bustest.RunInspector(t, func(t *testing.T) bustest.InspectorBus {
		return eventbus.NewMemoryBus(nil)
	})
}
