package snapshot_test

import (
	"strings"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/snapshot"
)

func TestEveryN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		n    int
		info snapshot.Info
		want bool
	}{
		{"BelowN", 100, snapshot.Info{Version: 99, PreviousVersion: 98}, false},
		{"AtN", 100, snapshot.Info{Version: 100, PreviousVersion: 99}, true},
		{"CrossingN", 100, snapshot.Info{Version: 105, PreviousVersion: 95}, true},
		{"SinceSnapshotBelowN", 100, snapshot.Info{Version: 199, PreviousVersion: 198, SnapshotVersion: 100}, false},
		{"SinceSnapshotAtN", 100, snapshot.Info{Version: 200, PreviousVersion: 199, SnapshotVersion: 100}, true},
		{"LongStreamWithoutSnapshot", 100, snapshot.Info{Version: 10001, PreviousVersion: 10000}, true},
		{"OneIsEverySave", 1, snapshot.Info{Version: 2, PreviousVersion: 1, SnapshotVersion: 1}, true},
		{"ZeroMeansOne", 0, snapshot.Info{Version: 2, PreviousVersion: 1, SnapshotVersion: 1}, true},
		{"NegativeMeansOne", -5, snapshot.Info{Version: 1}, true},
	} {
		if got := snapshot.EveryN(tc.n).ShouldSnapshot(tc.info); got != tc.want {
			t.Errorf("%s: EveryN(%d).ShouldSnapshot(%+v) = %v, want %v", tc.name, tc.n, tc.info, got, tc.want)
		}
	}
}

func TestNeverAndPolicyFunc(t *testing.T) {
	t.Parallel()
	if snapshot.Never().ShouldSnapshot(snapshot.Info{Version: 1 << 40}) {
		t.Fatal("Never() asked for a snapshot")
	}
	var got snapshot.Info
	p := snapshot.PolicyFunc(func(info snapshot.Info) bool { got = info; return info.StreamID == "yes" })
	if !p.ShouldSnapshot(snapshot.Info{StreamID: "yes", Version: 3}) || p.ShouldSnapshot(snapshot.Info{StreamID: "no"}) {
		t.Fatal("PolicyFunc did not return the function's answer")
	}
	if got.StreamID != "no" {
		t.Fatalf("PolicyFunc passed %+v", got)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	valid := snapshot.Snapshot{StreamID: "account-1", Type: "Account", Version: 1, SchemaVersion: 1, Data: []byte("{}")}
	for _, tc := range []struct {
		name    string
		mutate  func(*snapshot.Snapshot)
		maxSize int
		field   string // "" when valid
	}{
		{"Valid", func(*snapshot.Snapshot) {}, 0, ""},
		{"ValidAtMaxSize", func(*snapshot.Snapshot) {}, 2, ""},
		{"TooLarge", func(*snapshot.Snapshot) {}, 1, "snapshot data"},
		{"EmptyStreamID", func(s *snapshot.Snapshot) { s.StreamID = "" }, 0, "stream id"},
		{"EmptyType", func(s *snapshot.Snapshot) { s.Type = "" }, 0, "snapshot type"},
		{"LongType", func(s *snapshot.Snapshot) { s.Type = strings.Repeat("t", 256) }, 0, "snapshot type"},
		{"InvalidUTF8Type", func(s *snapshot.Snapshot) { s.Type = "\xff" }, 0, "snapshot type"},
		{"ControlType", func(s *snapshot.Snapshot) { s.Type = "a\x7f" }, 0, "snapshot type"},
		{"ZeroVersion", func(s *snapshot.Snapshot) { s.Version = 0 }, 0, "snapshot version"},
		{"ZeroSchemaVersion", func(s *snapshot.Snapshot) { s.SchemaVersion = 0 }, 0, "snapshot schema version"},
		{"NoData", func(s *snapshot.Snapshot) { s.Data = []byte{} }, 0, "snapshot data"},
	} {
		s := valid
		tc.mutate(&s)
		err := snapshot.Validate(s, tc.maxSize)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: Validate = %v, want nil", tc.name, err)
			}
			continue
		}
		ve, ok := err.(*eventstore.ValidationError)
		if !ok || ve.Field != tc.field {
			t.Errorf("%s: Validate = %v, want a ValidationError on %q", tc.name, err, tc.field)
		}
	}
}
