package harness

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// harness names what stage authors use itself: no exported name is an
// alias of an internal package's (a type alias, or a constant or variable
// that merely renames one). ErrInvalid is the one exception: it must be
// conf.ErrInvalid itself, so errors.Is matches every conf error. Nor is a
// type called Template, the name of the job script's type.
func TestNoAliasesOfInternalNames(t *testing.T) {
	files, err := filepath.Glob("*.go")
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
