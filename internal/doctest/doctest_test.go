package doctest_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/internal/doctest"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		md        string
		want      []doctest.Block
		wantErr   string
		wantWhole []bool
	}{
		{name: "no blocks", md: "# Title\n\ntext\n"},
		{name: "complete file", md: "x\n\n```go\npackage main\n\nfunc main() {}\n```\n",
			want: []doctest.Block{{File: "f.md", Line: 4, Code: "package main\n\nfunc main() {}"}}, wantWhole: []bool{true}},
		{name: "other languages are ignored", md: "```sh\ngo test\n```\n```text\nout\n```\n"},
		{name: "wrapped fragment", md: "<!-- doctest\npackage doc\n//doctest:fragment\n-->\n\n```go\nx := 1\n```\n",
			want:      []doctest.Block{{File: "f.md", Line: 7, Code: "x := 1", Directive: &doctest.Directive{Kind: doctest.KindWrap, Line: 2, Body: "package doc\n//doctest:fragment"}}},
			wantWhole: []bool{false}},
		{name: "output", md: "<!-- doctest output\n100 1\n-->\n```go\npackage main\n```\n",
			want:      []doctest.Block{{File: "f.md", Line: 5, Code: "package main", Directive: &doctest.Directive{Kind: doctest.KindOutput, Line: 2, Body: "100 1"}}},
			wantWhole: []bool{true}},
		{name: "one-line postgres", md: "<!-- doctest postgres -->\n```go\npackage main\n```\n",
			want:      []doctest.Block{{File: "f.md", Line: 3, Code: "package main", Directive: &doctest.Directive{Kind: doctest.KindPostgres, Line: 2}}},
			wantWhole: []bool{true}},
		{name: "indented block", md: "1. step\n\n   ```go\n   package main\n   ```\n",
			want: []doctest.Block{{File: "f.md", Line: 4, Code: "package main"}}, wantWhole: []bool{true}},
		{name: "comment before package clause", md: "```go\n// Command x.\npackage main\n```\n",
			want: []doctest.Block{{File: "f.md", Line: 2, Code: "// Command x.\npackage main"}}, wantWhole: []bool{true}},
		{name: "unknown directive", md: "<!-- doctest maybe -->\n```go\nx\n```\n", wantErr: "f.md:1: unknown doctest comment"},
		{name: "directive then text", md: "<!-- doctest postgres -->\nsome text\n```go\nx\n```\n", wantErr: "f.md:1: doctest comment not followed by a go block"},
		{name: "directive at the end", md: "text\n<!-- doctest postgres -->\n", wantErr: "f.md:2: doctest comment not followed"},
		{name: "directive before sh", md: "<!-- doctest postgres -->\n```sh\nx\n```\n", wantErr: `before a "sh" block`},
		{name: "unclosed comment", md: "<!-- doctest\npackage doc\n", wantErr: "without a closing -->"},
		{name: "unclosed block", md: "```go\npackage main\n", wantErr: "without a closing fence"},
		{name: "two directives", md: "<!-- doctest postgres -->\n<!-- doctest postgres -->\n```go\nx\n```\n", wantErr: "follows another one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := doctest.Parse("f.md", []byte(tt.md))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Parse = %d blocks, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.File != w.File || g.Line != w.Line || g.Code != w.Code || (g.Directive == nil) != (w.Directive == nil) ||
					(g.Directive != nil && *g.Directive != *w.Directive) {
					t.Errorf("block %d = %+v (directive %+v), want %+v (directive %+v)", i, g, g.Directive, w, w.Directive)
				}
				if g.Complete() != tt.wantWhole[i] {
					t.Errorf("block %d Complete = %v, want %v", i, g.Complete(), tt.wantWhole[i])
				}
			}
		})
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		md       string
		wantDirs []string
		wantRuns []bool
		wantIn   map[string]string // file path (dir/name) -> substring
		wantErr  string
	}{
		{name: "bare fragment", md: "```go\nx := 1\n```\n", wantErr: "f.md:1: go block is neither a complete file"},
		{name: "wrapper without marker", md: "<!-- doctest\npackage doc\n-->\n```go\nx := 1\n```\n", wantErr: "wrapper has no //doctest:fragment"},
		{name: "wrapper twice", md: "<!-- doctest\n//doctest:fragment\n//doctest:fragment\n-->\n```go\nx\n```\n", wantErr: "twice"},
		{name: "output on a library", md: "<!-- doctest output\nx\n-->\n```go\npackage lib\n```\n", wantErr: "only a package main can be run"},
		{name: "wrapper on a complete file", md: "<!-- doctest\n//doctest:fragment\n-->\n```go\npackage main\n```\n", wantErr: "not a wrapper"},
		{name: "fragments share a package, files get their own",
			md: "<!-- doctest\npackage doc\n\nfunc f() {\n//doctest:fragment\n}\n-->\n```go\nx := 1\n_ = x\n```\n" +
				"```go\npackage main\n\nfunc main() {}\n```\n" +
				"<!-- doctest output\nhi\n-->\n```go\npackage main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }\n```\n",
			wantDirs: []string{"f", "f_02", "f_03"},
			wantRuns: []bool{false, false, true},
			wantIn: map[string]string{
				"f/block01_test.go": "//line f.md:2\npackage doc\n\nfunc f() {\n//line f.md:9\nx := 1\n_ = x\n//line f.md:6\n}\n",
				"f_02/main.go":      "//line f.md:13\npackage main",
				"f_03/main_test.go": "\tmain()\n\t// Output:\n\t// hi\n",
				"f_03/main.go":      "import \"fmt\"",
			}},
		{name: "postgres run", md: "<!-- doctest postgres -->\n```go\npackage main\n\nfunc main() {}\n```\n",
			wantDirs: []string{"f_01"}, wantRuns: []bool{true},
			wantIn: map[string]string{"f_01/main_test.go": "postgrestest.DatabaseURL(t)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			blocks, err := doctest.Parse("f.md", []byte(tt.md))
			if err != nil {
				t.Fatal(err)
			}
			pkgs, err := doctest.Plan("f.md", blocks)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Plan error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var dirs []string
			var runs []bool
			files := map[string]string{}
			for _, p := range pkgs {
				dirs = append(dirs, p.Dir)
				runs = append(runs, p.Runs)
				for name, src := range p.Files {
					files[p.Dir+"/"+name] = src
				}
			}
			if !slices.Equal(dirs, tt.wantDirs) || !slices.Equal(runs, tt.wantRuns) {
				t.Fatalf("Plan dirs %v runs %v, want %v %v", dirs, runs, tt.wantDirs, tt.wantRuns)
			}
			for f, want := range tt.wantIn {
				if !strings.Contains(files[f], want) {
					t.Errorf("%s = %q, want it to contain %q", f, files[f], want)
				}
			}
		})
	}
}

func TestSlug(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"README.md":               "readme",
		"docs/getting-started.md": "docs_getting_started",
		"docs/postgres.md":        "docs_postgres",
	} {
		if got := doctest.Slug(in); got != want {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDocs checks every go block of README.md and docs/*.md: go vet
// compiles all of them, go test runs the ones that show output (and those
// that need PostgreSQL, when it is available).
func TestDocs(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("compiles every doc snippet with the go command: not in -short mode")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append([]string{filepath.Join(root, "README.md")}, pages...)

	runDir, err := os.MkdirTemp(filepath.Join(root, "internal", "doctest"), "_run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })

	var dirs []string
	blocks, runs := 0, 0
	for _, page := range pages {
		rel, _ := filepath.Rel(root, page)
		rel = filepath.ToSlash(rel)
		src, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := doctest.Parse(rel, src)
		if err != nil {
			t.Fatal(err)
		}
		pkgs, err := doctest.Plan(rel, bs)
		if err != nil {
			t.Fatal(err)
		}
		blocks += len(bs)
		for _, p := range pkgs {
			dir := filepath.Join(runDir, p.Dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, content := range p.Files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r, _ := filepath.Rel(root, dir)
			dirs = append(dirs, "./"+filepath.ToSlash(r))
			if p.Runs {
				runs++
			}
		}
	}
	if blocks == 0 {
		t.Fatal("found no go blocks in README.md and docs/*.md")
	}
	t.Logf("%d go blocks in %d packages (%d with something to run)", blocks, len(dirs), runs)

	goTool(t, root, append([]string{"vet"}, dirs...)...)
	out := goTool(t, root, append([]string{"test", "-count=1", "-v"}, dirs...)...)
	t.Logf("go test:\n%s", out)
}

// goTool runs the go command in dir and fails t with its output.
func goTool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	// The go command that runs this test, when go test set GOROOT for it;
	// else the one on PATH.
	bin := "go"
	if root := os.Getenv("GOROOT"); root != "" {
		if b := filepath.Join(root, "bin", "go"); fileExists(b) {
			bin = b
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s: %v\n%s", args[0], err, out.String())
	}
	return out.String()
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
