package natsbus

// DecodeForTest exposes decode to the tests.
var DecodeForTest = decode
