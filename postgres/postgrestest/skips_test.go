package postgrestest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestDockerUnreachable(t *testing.T) {
	t.Parallel()
	rootless := errors.New("rootless Docker not found")
	tests := []struct {
		name       string
		dockerHost string
		socket     bool
		err        error
		want       []string
		notWant    string
	}{
		{name: "daemon not running", err: rootless,
			want:    []string{"docker daemon not reachable", "not running", "no socket at /var/run/docker.sock", "DOCKER_HOST is not set"},
			notWant: "rootless"},
		{name: "socket without answer", socket: true, err: rootless,
			want: []string{"docker daemon not reachable", "no answer on unix:///var/run/docker.sock"}, notWant: "rootless"},
		{name: "socket with another error", socket: true, err: errors.New("permission denied"),
			want: []string{"docker daemon not reachable", "permission denied"}},
		{name: "DOCKER_HOST set", dockerHost: "tcp://10.0.0.1:2375", err: errors.New("connection refused"),
			want: []string{"DOCKER_HOST=tcp://10.0.0.1:2375", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			exists := func(path string) bool { return tt.socket && path == defaultDockerSocket }
			got := dockerUnreachable(tt.dockerHost, exists, tt.err).Error()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("reason %q does not contain %q", got, w)
				}
			}
			if tt.notWant != "" && strings.Contains(got, tt.notWant) {
				t.Errorf("reason %q mentions %q", got, tt.notWant)
			}
		})
	}
}

type fakeM struct {
	run func() int
}

func (m fakeM) Run() int { return m.run() }

func TestReportSkips(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		reasons []string
		want    string
	}{
		{name: "nothing skipped", want: ""},
		{name: "one", reasons: []string{"no PostgreSQL"}, want: "postgrestest: 1 test skipped: no PostgreSQL\n"},
		{name: "many, one reason", reasons: []string{"no PostgreSQL", "no PostgreSQL", "no PostgreSQL"},
			want: "postgrestest: 3 tests skipped: no PostgreSQL\n"},
		{name: "two reasons", reasons: []string{"a", "b", "a"}, want: "postgrestest: 3 tests skipped: a; b\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c skipCounter
			var out bytes.Buffer
			r := &SkipReporter{out: &out, counter: &c, m: fakeM{run: func() int {
				for _, reason := range tt.reasons {
					c.add(reason)
				}
				return 3
			}}}
			if code := r.Run(); code != 3 {
				t.Errorf("Run = %d, want the tests' code 3", code)
			}
			if out.String() != tt.want {
				t.Errorf("printed %q, want %q", out.String(), tt.want)
			}
		})
	}
}
