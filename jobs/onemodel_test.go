package jobs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A run is a list of steps, whatever their number: no code of the use
// cases (jobs), the in-job side (injob) or the run's directory (rundir)
// asks whether a run is a production. The readers of a run's input
// (package input: production.go, the production file; input.go, which
// tells the two inputs apart and makes them steps) know productions;
// outside them, a run's shape is read from its settings in one place
// (rundir.StepDirs) and written in one (newRunJob). This test reads every other non-test file
// and fails for a reference to what tells a production from a pipeline
// anywhere else, and for a function that keeps a second code path for
// productions by name.
func TestOneRunModel(t *testing.T) {
	allowed := map[string][]string{ // what tells the two apart -> where it may be used
		"IsProduction":   nil,
		"LoadProduction": nil,
		"Production":     nil,                       // settings before they said PartOf
		"Pipelines":      {"StepDirs", "newRunJob"}, // the settings' list of steps in folders of their own
		"PartOf":         {"RunDir", "readWholeRun", "newRunJob"},
	}
	var files []string
	for _, dir := range []string{".", "../injob", "../rundir"} {
		fs, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(fset, f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			if fd.Recv == nil && strings.Contains(strings.ToLower(fd.Name.Name), "production") {
				t.Errorf("%s: func %s: a code path of its own for productions", fset.Position(fd.Pos()), fd.Name.Name)
			}
			ast.Inspect(fd, func(n ast.Node) bool {
				var name string
				switch x := n.(type) {
				case *ast.SelectorExpr:
					name = x.Sel.Name
					if id, ok := x.X.(*ast.Ident); ok && id.Name == "rs" && name == "Pipelines" {
						return true // a status's list of step statuses: summed in loops
					}
				case *ast.CallExpr:
					if id, ok := x.Fun.(*ast.Ident); ok {
						name = id.Name
					}
				}
				if where, ok := allowed[name]; ok && !slices.Contains(where, fd.Name.Name) {
					t.Errorf("%s: %s uses %s: a run's steps, not whether it is a production, decide (allowed here in: %s)",
						fset.Position(n.Pos()), fd.Name.Name, name, strings.Join(append(where, "the input readers"), ", "))
				}
				return true
			})
		}
	}
	if checked < 10 {
		t.Fatalf("checked %d files; the test runs in the wrong folder", checked)
	}
}
