package storetest

import "time"

// SetWaitTimeout shortens the suite's waits, for running it against broken
// stores that would otherwise make each failing subtest wait 30 seconds.
func SetWaitTimeout(d time.Duration) { waitTimeout = d }
