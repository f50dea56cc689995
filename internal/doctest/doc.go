// Package doctest compiles, and where they show output runs, every Go code
// block of README.md and docs/*.md, so that a snippet cannot rot.
//
// # The convention
//
// Every fenced block marked go is checked; there are two kinds.
//
// A block whose first line is a package clause is a complete file. It is
// compiled alone, as its own package. A comment placed right before it
// (only blank lines between) can ask to run it:
//
//	<!-- doctest output
//	100 1
//	-->
//
// runs the program (package main) and compares its standard output with
// the lines of the comment, and
//
//	<!-- doctest postgres -->
//
// runs it with DATABASE_URL set to a fresh migrated database when
// CHRONICLE_TEST_DATABASE_URL is set (or Docker runs), and only compiles
// it otherwise. The program must exit 0.
//
// Any other block is a fragment, and must be preceded by a wrapper: a
// comment that holds a Go test file with one line //doctest:fragment where
// the block goes:
//
//	<!-- doctest
//	package doc
//
//	import "github.com/chronicle-go/chronicle/migrations"
//
//	func migrate(ctx context.Context, databaseURL string) error {
//		//doctest:fragment
//		return nil
//	}
//	-->
//
// Markdown renders neither comment, so readers see only the block. All the
// wrapped fragments of one page are files of one package (each wrapper
// must use the same package name), so a page can declare types in one
// block and use them in later ones, as a reader expects. The wrapped files
// are _test.go files: a wrapper can declare an Example function with an
// // Output: comment (run and compared by go test) or a Test function
// (using postgrestest for a database, skipped without one).
//
// Compiler and vet messages name the Markdown file and line, through
// //line directives.
//
// TestDocs writes the packages into a temporary directory inside the
// module (named _run-*, ignored by ./... patterns, removed afterwards) and
// runs go vet and go test on them.
package doctest
