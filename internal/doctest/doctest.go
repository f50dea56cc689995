package doctest

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"
)

// Block is one fenced go block of a Markdown file.
type Block struct {
	// File is the Markdown file's path, as given to [Parse].
	File string
	// Line is the line of the block's first code line (1-based).
	Line int
	// Code is the block's content, without the fences.
	Code string
	// Directive is the doctest comment right before the block, or nil.
	Directive *Directive
}

// Complete reports whether the block is a whole Go file (it starts with a
// package clause).
func (b Block) Complete() bool {
	for _, line := range strings.Split(b.Code, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "" || strings.HasPrefix(t, "//"):
			continue
		case strings.HasPrefix(t, "package "):
			return true
		}
		return false
	}
	return false
}

// Directive kinds.
const (
	KindWrap     = "wrap"     // <!-- doctest: a wrapper for a fragment
	KindOutput   = "output"   // <!-- doctest output: expected stdout of a complete program
	KindPostgres = "postgres" // <!-- doctest postgres: run a complete program on a database
)

// Directive is a <!-- doctest ... --> comment.
type Directive struct {
	// Kind is KindWrap, KindOutput or KindPostgres.
	Kind string
	// Line is the line of the first body line (the one after <!-- doctest).
	Line int
	// Body is the text between the first line and -->.
	Body string
}

// FragmentMarker is the wrapper line that a fragment replaces.
const FragmentMarker = "//doctest:fragment"

// Parse returns the go blocks of a Markdown file, each with the doctest
// directive before it. It fails on a directive that no go block follows,
// an unknown directive, or an unterminated block or comment.
func Parse(file string, src []byte) ([]Block, error) {
	var (
		blocks  []Block
		pending *Directive
		lines   []string
	)
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "<!-- doctest"):
			if pending != nil {
				return nil, fmt.Errorf("%s:%d: doctest comment follows another one with no go block between", file, i+1)
			}
			head := strings.TrimSpace(strings.TrimPrefix(trimmed, "<!-- doctest"))
			oneLine := strings.HasSuffix(head, "-->")
			head = strings.TrimSpace(strings.TrimSuffix(head, "-->"))
			d := &Directive{Line: i + 2}
			switch head {
			case "":
				d.Kind = KindWrap
			case KindOutput, KindPostgres:
				d.Kind = head
			default:
				return nil, fmt.Errorf("%s:%d: unknown doctest comment %q (want <!-- doctest, <!-- doctest output or <!-- doctest postgres -->)", file, i+1, head)
			}
			if !oneLine {
				var body []string
				j := i + 1
				for ; j < len(lines) && strings.TrimSpace(lines[j]) != "-->"; j++ {
					body = append(body, lines[j])
				}
				if j == len(lines) {
					return nil, fmt.Errorf("%s:%d: doctest comment without a closing --> line", file, i+1)
				}
				d.Body = strings.Join(body, "\n")
				i = j
			}
			pending = d
		case strings.HasPrefix(trimmed, "```"):
			lang := strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))
			indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
			var code []string
			j := i + 1
			for ; j < len(lines) && strings.TrimSpace(lines[j]) != "```"; j++ {
				code = append(code, strings.TrimPrefix(lines[j], indent))
			}
			if j == len(lines) {
				return nil, fmt.Errorf("%s:%d: code block without a closing fence", file, i+1)
			}
			if lang == "go" {
				blocks = append(blocks, Block{File: file, Line: i + 2, Code: strings.Join(code, "\n"), Directive: pending})
			} else if pending != nil {
				return nil, fmt.Errorf("%s:%d: doctest comment before a %q block, not a go block", file, i+1, lang)
			}
			pending = nil
			i = j
		case trimmed == "":
		default:
			if pending != nil {
				return nil, fmt.Errorf("%s:%d: doctest comment not followed by a go block", file, pending.Line-1)
			}
		}
	}
	if pending != nil {
		return nil, fmt.Errorf("%s:%d: doctest comment not followed by a go block", file, pending.Line-1)
	}
	return blocks, nil
}

// Package is a Go package to write and check: its directory (relative to
// the run directory) and its files by name.
type Package struct {
	Dir   string
	Files map[string]string
	// Runs reports whether go test runs something in it (an example or a
	// test), as opposed to compiling only.
	Runs bool
}

// Plan turns the blocks of one Markdown file into packages: one for all
// its wrapped fragments, one per complete file.
func Plan(file string, blocks []Block) ([]Package, error) {
	slug := Slug(file)
	frag := Package{Dir: slug, Files: map[string]string{}}
	var pkgs []Package
	for n, b := range blocks {
		name := fmt.Sprintf("block%02d", n+1)
		if b.Complete() {
			p, err := planComplete(b, fmt.Sprintf("%s_%02d", slug, n+1))
			if err != nil {
				return nil, err
			}
			pkgs = append(pkgs, p)
			continue
		}
		if b.Directive == nil || b.Directive.Kind != KindWrap {
			return nil, fmt.Errorf("%s:%d: go block is neither a complete file (starting with a package clause) nor preceded by a <!-- doctest wrapper (see internal/doctest)", b.File, b.Line-1)
		}
		src, err := wrap(b)
		if err != nil {
			return nil, err
		}
		if body := b.Directive.Body + b.Code; strings.Contains(body, "// Output:") || strings.Contains(body, "func Test") || strings.Contains(body, "func Example") {
			frag.Runs = true
		}
		frag.Files[name+"_test.go"] = src
	}
	if len(frag.Files) > 0 {
		pkgs = append([]Package{frag}, pkgs...)
	}
	return pkgs, nil
}

func lineDirective(file string, line int) string {
	return fmt.Sprintf("//line %s:%d\n", file, line)
}

// wrap puts a fragment into its wrapper, with //line directives so that
// every line maps back to the Markdown file.
func wrap(b Block) (string, error) {
	d := b.Directive
	lines := strings.Split(d.Body, "\n")
	at := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == FragmentMarker {
			if at >= 0 {
				return "", fmt.Errorf("%s:%d: wrapper has %s twice", b.File, d.Line+i, FragmentMarker)
			}
			at = i
		}
	}
	if at < 0 {
		return "", fmt.Errorf("%s:%d: wrapper has no %s line", b.File, d.Line-1, FragmentMarker)
	}
	var s strings.Builder
	s.WriteString(lineDirective(b.File, d.Line))
	s.WriteString(strings.Join(lines[:at], "\n"))
	s.WriteString("\n" + lineDirective(b.File, b.Line))
	s.WriteString(b.Code)
	s.WriteString("\n" + lineDirective(b.File, d.Line+at+1))
	s.WriteString(strings.Join(lines[at+1:], "\n"))
	s.WriteString("\n")
	return s.String(), nil
}

func planComplete(b Block, dir string) (Package, error) {
	p := Package{Dir: dir, Files: map[string]string{"main.go": lineDirective(b.File, b.Line) + b.Code + "\n"}}
	if b.Directive == nil {
		return p, nil
	}
	if !strings.HasPrefix(strings.TrimSpace(packageLine(b.Code)), "package main") {
		return Package{}, fmt.Errorf("%s:%d: only a package main can be run (doctest %s)", b.File, b.Line-1, b.Directive.Kind)
	}
	p.Runs = true
	switch b.Directive.Kind {
	case KindOutput:
		var s strings.Builder
		s.WriteString("package main\n\nfunc Example_main() {\n\tmain()\n\t// Output:\n")
		for _, l := range strings.Split(strings.TrimRight(b.Directive.Body, "\n"), "\n") {
			s.WriteString("\t// " + l + "\n")
		}
		s.WriteString("}\n")
		p.Files["main_test.go"] = s.String()
	case KindPostgres:
		p.Files["main_test.go"] = postgresRun
	default:
		return Package{}, fmt.Errorf("%s:%d: a complete file takes <!-- doctest output or <!-- doctest postgres -->, not a wrapper", b.File, b.Line-1)
	}
	return p, nil
}

// postgresRun runs a complete program on a fresh migrated database, or
// skips (loudly) without PostgreSQL.
const postgresRun = `package main

import (
	"os"
	"testing"

	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestMain(m *testing.M) {
	os.Exit(postgrestest.ReportSkips(m).Run())
}

func TestRunOnPostgres(t *testing.T) {
	t.Setenv("DATABASE_URL", postgrestest.DatabaseURL(t))
	main() // exits the test binary with a failure on log.Fatal
}
`

func packageLine(code string) string {
	for _, l := range strings.Split(code, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "//") {
			return t
		}
	}
	return ""
}

// Slug names a Markdown file's package directory: docs/getting-started.md
// becomes docs_getting_started.
func Slug(file string) string {
	s := strings.TrimSuffix(path.Clean(strings.ReplaceAll(file, "\\", "/")), ".md")
	s = strings.ToLower(s)
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			return r
		}
		return '_'
	}, s)
}
