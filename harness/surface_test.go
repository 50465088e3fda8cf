package harness

import (
	"go/ast"
	"go/build"
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxSurface bounds the lines `go doc -short` prints for the package: a
// newcomer should be able to hold the package in their head. ARCHITECTURE.md
// ("The harness's public surface") says why each group that remains does.
const maxSurface = 55

// TestSurfaceSmall counts the package's exported entries as `go doc
// -short` lists them (go/doc is what go doc reads): one line per exported
// const or var group, function and type, and under each type the const and
// var groups of that type and the functions that return it. Methods and
// fields are not counted, as go doc -short does not list them.
func TestSurfaceSmall(t *testing.T) {
	entries := surfaceEntries(t, ".")
	if len(entries) > maxSurface {
		t.Errorf("go doc -short lists %d entries, more than %d: unexport what only harness uses, "+
			"move a name one other package uses there, group constants:\n  %s",
			len(entries), maxSurface, strings.Join(entries, "\n  "))
	}
}

// surfaceEntries lists the exported entries of the package in dir that
// go doc -short prints, one string each, for this build's files.
func surfaceEntries(t *testing.T, dir string) []string {
	t.Helper()
	bp, err := build.Default.ImportDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range bp.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	pkg, err := doc.NewFromFiles(fset, files, bp.ImportPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	values := func(kind string, vs []*doc.Value) {
		for _, v := range vs {
			out = append(out, kind+" "+strings.Join(v.Names, ", "))
		}
	}
	funcs := func(fs []*doc.Func) {
		for _, f := range fs {
			out = append(out, "func "+f.Name)
		}
	}
	values("const", pkg.Consts)
	values("var", pkg.Vars)
	funcs(pkg.Funcs)
	for _, ty := range pkg.Types {
		out = append(out, "type "+ty.Name)
		values("  const", ty.Consts)
		values("  var", ty.Vars)
		funcs(ty.Funcs)
	}
	return out
}

// harness, and mapper beside it, name what stage and mapper authors use
// themselves: no exported name is an alias of an internal package's (a
// type alias, or a constant or variable that merely renames one).
// ErrInvalid is the one exception: it must be conf.ErrInvalid itself, so
// errors.Is matches every conf error. Nor is a type called Template, the
// name of the job script's type.
func TestNoAliasesOfInternalNames(t *testing.T) {
	for _, dir := range []string{".", "../mapper"} {
		checkNoAliases(t, dir)
	}
}

func checkNoAliases(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		internal := map[string]bool{}
		for _, im := range f.Imports {
			path := strings.Trim(im.Path.Value, `"`)
			if strings.Contains(path, "/internal/") {
				local := filepath.Base(path)
				if im.Name != nil {
					local = im.Name.Name
				}
				internal[local] = true
			}
		}
		fromInternal := func(e ast.Expr) bool {
			sel, ok := e.(*ast.SelectorExpr)
			if !ok {
				return false
			}
			x, ok := sel.X.(*ast.Ident)
			return ok && internal[x.Name]
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, s := range g.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					if s.Name.Name == "Template" {
						t.Errorf("%s: type Template: the job script's type is templates.Template; call this one something else", fset.Position(s.Pos()))
					}
					if s.Name.IsExported() && s.Assign.IsValid() && fromInternal(s.Type) {
						t.Errorf("%s: type %s is an alias of an internal type", fset.Position(s.Pos()), s.Name.Name)
					}
				case *ast.ValueSpec:
					for i, n := range s.Names {
						if n.IsExported() && n.Name != "ErrInvalid" && i < len(s.Values) && fromInternal(s.Values[i]) {
							t.Errorf("%s: %s renames an internal name", fset.Position(n.Pos()), n.Name)
						}
					}
				}
			}
		}
	}
}

// README.md's Go stage example is readme_stage_test.go, which the tests
// compile (and whose init registers the stage), and its test of that
// stage is readme_stagetest_test.go, which they run: the README shows each
// file from its imports on, so the examples cannot drift from the API.
func TestReadmeStageExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range []struct{ heading, file string }{
		{"\n### Writing a stage in Go\n", "readme_stage_test.go"},
		{"\n#### Testing a stage\n", "readme_stagetest_test.go"},
	} {
		file, err := os.ReadFile(ex.file)
		if err != nil {
			t.Fatal(err)
		}
		block, ok := firstGoBlock(string(readme), ex.heading)
		if !ok {
			t.Fatalf("README.md has no %q section with a go code block", strings.TrimSpace(ex.heading))
		}
		if got, want := fromImports(block), fromImports(string(file)); got == "" || got != want {
			t.Errorf("README.md's example under %q differs from %s (from the imports on):\n--- README\n%s\n--- file\n%s",
				strings.TrimSpace(ex.heading), ex.file, got, want)
		}
	}
	ty, err := LookupStage("scale")
	if err != nil {
		t.Fatalf("the example's stage is not registered: %v", err)
	}
	st, err := ty.New(Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.(Processor); !ok {
		t.Error("the example's stage has no Process")
	}
}

// firstGoBlock is the first go code block after heading in a Markdown text.
func firstGoBlock(text, heading string) (string, bool) {
	_, section, ok := strings.Cut(text, heading)
	_, block, ok2 := strings.Cut(section, "\n```go\n")
	block, _, ok3 := strings.Cut(block, "\n```\n")
	return block, ok && ok2 && ok3
}

// fromImports is src from its import block on.
func fromImports(src string) string {
	if i := strings.Index(src, "\nimport ("); i >= 0 {
		return strings.TrimSpace(src[i:])
	}
	return ""
}
