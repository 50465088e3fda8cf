package harness

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// maxLoopFuncLines is how long a function of loop.go may be, its
// signature and closing brace included: the loops read as their protocol
// steps, each step a function of its own.
const maxLoopFuncLines = 60

// TestLoopFunctionsShort keeps the stage loop readable as the protocol:
// no function of loop.go (or inflight.go, its loops with visits in
// flight) is longer than maxLoopFuncLines, and every
// pipeline.X and rank.X that protocol.go names as a step is a method of
// the package, so a renamed step does not leave the protocol stale.
func TestLoopFunctionsShort(t *testing.T) {
	funcs, err := funcLengths("loop.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range longFuncs(funcs, maxLoopFuncLines) {
		t.Errorf("loop.go: %s: split it into named steps (protocol.go's Order)", p)
	}
	flying, err := funcLengths("inflight.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range longFuncs(flying, maxLoopFuncLines) {
		t.Errorf("inflight.go: %s: split it into named steps (protocol.go's Order)", p)
	}
	for _, f := range []string{"pipeline.loop", "pipeline.visit", "rank.sliceLoop"} {
		if _, ok := funcs[f]; !ok {
			t.Errorf("loop.go has no %s, which protocol.go and ARCHITECTURE.md name as a loop", f)
		}
	}
	methods := map[string]bool{}
	for _, path := range packageSources(t, ".") {
		lens, err := funcLengths(path)
		if err != nil {
			t.Fatal(err)
		}
		for name := range lens {
			methods[name] = true
		}
	}
	doc := protocolText(t, "protocol.go")
	for _, name := range stepNames(doc) {
		if !methods[name] {
			t.Errorf("protocol.go names %s, which is not a method of package harness", name)
		}
	}
}

// funcLengths parses the Go file at path and returns the length in lines
// of each function, by name: "Name" for a function, "recv.Name" for a
// method (recv without its *).
func funcLengths(path string) (map[string]int, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	lens := map[string]int{}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		name := fd.Name.Name
		if fd.Recv != nil && len(fd.Recv.List) == 1 {
			typ := fd.Recv.List[0].Type
			if s, ok := typ.(*ast.StarExpr); ok {
				typ = s.X
			}
			if id, ok := typ.(*ast.Ident); ok {
				name = id.Name + "." + name
			}
		}
		lens[name] = fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
	}
	return lens, nil
}

// longFuncs lists, in name order, the functions longer than max lines.
func longFuncs(lens map[string]int, max int) []string {
	var long []string
	for name, n := range lens {
		if n > max {
			long = append(long, fmt.Sprintf("%s is %d lines, more than %d", name, n, max))
		}
	}
	sort.Strings(long)
	return long
}

// stepNames returns the pipeline.X and rank.X names in the protocol's
// text, in order of first mention.
func stepNames(doc string) []string {
	var names []string
	seen := map[string]bool{}
	for _, n := range regexp.MustCompile(`\b(pipeline|rank)\.[A-Za-z]\w*`).FindAllString(doc, -1) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	return names
}

// TestLoopLengthCheckCatches checks the check on a small file: a function
// of 61 lines is reported, one of 60 is not, a method is named with its
// receiver, and a step name in the text is found.
func TestLoopLengthCheckCatches(t *testing.T) {
	body := func(lines int) string { return strings.Repeat("\t_ = 0\n", lines-2) }
	src := "package x\n\ntype rank struct{}\n\nfunc ok() {\n" + body(60) + "}\n\nfunc (r *rank) long() {\n" + body(61) + "}\n"
	path := filepath.Join(t.TempDir(), "loop.go")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	lens, err := funcLengths(path)
	if err != nil {
		t.Fatal(err)
	}
	if lens["ok"] != 60 || lens["rank.long"] != 61 {
		t.Fatalf("lengths %v, want ok 60 and rank.long 61", lens)
	}
	if got := longFuncs(lens, maxLoopFuncLines); len(got) != 1 || !strings.HasPrefix(got[0], "rank.long is 61 lines") {
		t.Errorf("long functions %q, want rank.long alone", got)
	}
	if got := stepNames("(pipeline.gather, pipeline.gather; rank.report.) the pipeline. rank."); fmt.Sprint(got) != "[pipeline.gather rank.report]" {
		t.Errorf("step names %q, want pipeline.gather and rank.report", got)
	}
}

// packageSources lists the package's Go files in dir, tests left out.
func packageSources(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(files, func(path string) bool { return strings.HasSuffix(path, "_test.go") })
}
