package postgrestest

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// TestingM is what [ReportSkips] wraps: a *testing.M, or anything with its
// Run method.
type TestingM interface {
	Run() int
}

// SkipReporter runs a package's tests and then prints one line when some
// of them skipped for want of PostgreSQL. Make one with [ReportSkips].
type SkipReporter struct {
	m       TestingM
	out     io.Writer
	counter *skipCounter
}

// ReportSkips wraps m so that, once the package's tests have run, one line
// says how many tests skipped because no PostgreSQL was available, and
// why:
//
//	postgrestest: 35 tests skipped: no PostgreSQL: set CHRONICLE_TEST_DATABASE_URL or start Docker (docker daemon not reachable: ...)
//
// Use it in TestMain, alone or inside goleak:
//
//	func TestMain(m *testing.M) {
//		goleak.VerifyTestMain(postgrestest.ReportSkips(m))
//	}
//
// The line goes to standard output. go test shows it with -v, when it runs
// the package's directory (go test with no package arguments), in -json
// output, and whenever the package fails; with package arguments (go test
// ./...) the go command discards the output of packages that pass, so the
// line is not shown there. Set CI=true to turn these skips into failures.
func ReportSkips(m TestingM) *SkipReporter {
	return &SkipReporter{m: m, out: os.Stdout, counter: &skips}
}

// Run runs the tests, prints the skip line when tests skipped, and returns
// the tests' exit code.
func (r *SkipReporter) Run() int {
	code := r.m.Run()
	if line := r.counter.summary(); line != "" {
		fmt.Fprintln(r.out, line)
	}
	return code
}

// skipCounter counts the tests that this package skipped, per reason.
type skipCounter struct {
	mu      sync.Mutex
	n       int
	reasons []string // distinct, in order of first use
}

var skips skipCounter

func (c *skipCounter) add(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	for _, r := range c.reasons {
		if r == reason {
			return
		}
	}
	c.reasons = append(c.reasons, reason)
}

// summary is the line to print, or "" when nothing skipped.
func (c *skipCounter) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.n {
	case 0:
		return ""
	case 1:
		return "postgrestest: 1 test skipped: " + strings.Join(c.reasons, "; ")
	}
	return fmt.Sprintf("postgrestest: %d tests skipped: %s", c.n, strings.Join(c.reasons, "; "))
}
