package natsbus

import (
	"strconv"

	"github.com/nats-io/nats.go"
)

// DecodeForTest exposes decode to the tests.
var DecodeForTest = decode

// AckErrorForTest decodes a JetStream publish answer as the asynchronous
// publisher of a bus on stream does.
func AckErrorForTest(stream string, m *nats.Msg) error {
	a := &acks{stream: stream, okPrefix: []byte(`{"stream":` + strconv.Quote(stream) + `,`)}
	return a.ackError(m)
}
