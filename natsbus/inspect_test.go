package natsbus_test

import (
	"testing"

	"github.com/chronicle-go/chronicle/eventbus/bustest"
)

func TestInspector(t *testing.T) {
	t.Parallel()
	bustest.RunInspector(t, func(t *testing.T) bustest.InspectorBus {
		bus, _ := setup(t, "", nil)
		return bus
	})
}
