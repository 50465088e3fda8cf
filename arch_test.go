package dpsbatch_test

// This file holds the project's import rules and the test that enforces
// them, after Go's own src/go/build/deps_test.go. ARCHITECTURE.md draws the
// same table; the test is what keeps the code to it.

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/dpsbatch/dpsbatch"

// importRules is POLICY: which of the module's packages may import which.
// Do not add an arrow to make a build pass; if a change needs a new one,
// change ARCHITECTURE.md in the same commit and say why.
//
// The table reads bottom up, as a layer diagram. Packages are named by
// their folder, relative to the module root. Only the module's own packages
// are ruled; the standard library and third-party modules are not.
//
//	a, b < c     c may import a and b, and everything a and b may import.
//	a < b < c    the same, chained: b may import a; c may import b and a.
//	a !< b       b must never depend on a, directly or through others.
//	NONE < a     a imports none of the module's packages.
//	UPPER        an upper-case name is a group, not a package.
//
// Every package must be on the right of a "<" exactly once, after the
// packages it uses: a new package without a rule fails the test.
//
// Test files (_test.go, internal or external test package) may import what
// their package may, the package itself, and the TESTHELPERS; no other
// file may import a test helper. Every file is read whatever its build
// tags (mpi, linux, ...).
const importRules = `
	# The root holds only this test.
	NONE < .;

	# Helpers with no domain of their own, importable by every package.
	NONE < internal/conf, internal/enum, internal/repeats, internal/retry, internal/slurmtime, internal/version;
	internal/conf, internal/enum, internal/repeats, internal/retry, internal/slurmtime, internal/version < INTERNAL;

	# Leaves: each owns one thing and knows nothing of those that use it.
	INTERNAL
	< events, mapper, state, site, templates, harness/comm, examples;

	# A stage call's freeze-dried input: the file format, its budget.
	INTERNAL < capture;

	# slurmrestd's REST API, typed: knows nothing of dpsbatch.
	INTERNAL < scheduler/slurmrest;

	# Slurm: plans allocations for a site's partitions, submits scripts.
	site, scheduler/slurmrest < scheduler;

	# The harness: Pipeline, Slices and the stage loop on a communicator.
	# It knows events and mapper, nothing of Slurm or the state file.
	events, mapper, harness/comm, capture < harness;

	# A few stages over one visit in this process, on given clipboards:
	# what the stage tester and replay share.
	harness < harness/stagerun;

	# A run's directory as submit makes it and its jobs use it: the
	# layout, the settings (typed, versioned), the steps, the run's broker,
	# the rank-0 lock, the job names.
	harness, scheduler, state < rundir;

	# A new run's input: a policy with its visits, or a production file,
	# read into steps.
	rundir < input;

	# Inside the allocation: rank 0's side of a batch job, the job's
	# broker, and local runs (every step in this process).
	input < injob;

	# The use cases of a batch run, where the batch packages meet.
	input, templates < jobs;

	# The run report: reads state files, nothing else.
	state < report;

	# The failure monitor: a use case over the runs' status, like the CLI.
	jobs < monitor;

	# Replay: a freeze-dried stage call run again in this process.
	harness/stagerun, capture < replay;

	# The programs.
	jobs, injob, examples, report, monitor, replay < cmd/dpsbatch;
	harness < bench/mpistages;

	# Test helpers: shared suites and real components, for _test.go files.
	NONE < internal/testenv;
	events < events/natstest;
	scheduler < scheduler/schedtest;
	harness/comm < harness/comm/commtest;
	harness/stagerun < harness/stagetest;
	INTERNAL < input/inputtest;
	rundir < rundir/runtest;
	internal/testenv, events/natstest, scheduler/schedtest, harness/comm/commtest, harness/stagetest,
	input/inputtest, rundir/runtest
	< TESTHELPERS;

	# Never.
	# The harness is what a stage author builds on: no batch side in it.
	jobs, scheduler, state, site, templates !< harness;
	# The communicators move bytes: no pipeline, no event, no state.
	harness, events, mapper, state !< harness/comm;
	# The leaves never import upwards.
	harness, scheduler !< events, mapper, state, site, templates, capture;
	# Nothing below the programs reaches the use cases, the in-job side
	# or the CLI; the use cases and the in-job side never reach each
	# other; the run's directory and input know neither.
	jobs, injob, monitor, cmd/dpsbatch, replay
	!< harness, harness/comm, scheduler, state, site, templates, events, mapper, report, rundir, input, capture, harness/stagerun;
	injob !< jobs;
	jobs !< injob;
	# The report shows what the state file holds: no use case, harness or Slurm.
	harness, scheduler, site !< report;
	# Production code never imports a test helper.
	TESTHELPERS !< cmd/dpsbatch, bench/mpistages, jobs, injob, input, rundir, harness, report, monitor, capture, harness/stagerun, replay;
`

// testArrows are arrows only a package's test files may follow. The
// tests of jobs run a submitted run's rank 0 end to end (submit, then the
// job's side, then status, wait and resume on what it recorded), and the
// job's side is injob.
var testArrows = map[string][]string{"jobs": {"injob"}}

// rules is importRules parsed: for each name, the set of names it may
// import (transitively allowed), and the "never" pairs.
type rules struct {
	allowed map[string]map[string]bool // name -> what it may import
	below   map[string][]string        // name -> the names left of its "<"
	order   []string                   // names in the order they were defined
	never   []neverRule
}

type neverRule struct {
	forbidden, pkg string
}

func isGroup(name string) bool { return name == strings.ToUpper(name) && name != "." }

// parseRules reads the rule text. It refuses a name used before it is
// defined, a name defined twice, and a "never" line the "<" lines break:
// the table itself must be consistent before the code is held to it.
func parseRules(text string) (*rules, error) {
	r := &rules{allowed: map[string]map[string]bool{"NONE": {}}, below: map[string][]string{}}
	var lines []string
	for _, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		lines = append(lines, line)
	}
	for _, rule := range strings.Split(strings.Join(lines, " "), ";") {
		if strings.TrimSpace(rule) == "" {
			continue
		}
		if before, after, ok := strings.Cut(rule, "!<"); ok {
			for _, f := range names(before) {
				for _, p := range names(after) {
					r.never = append(r.never, neverRule{f, p})
				}
			}
			continue
		}
		parts := strings.Split(rule, "<")
		for i := 1; i < len(parts); i++ {
			lower, upper := names(parts[i-1]), names(parts[i])
			for _, l := range lower {
				if r.allowed[l] == nil {
					return nil, fmt.Errorf("rule %q: %s is used before it has a rule of its own", strings.TrimSpace(rule), l)
				}
			}
			for _, u := range upper {
				if r.allowed[u] != nil {
					return nil, fmt.Errorf("rule %q: %s already has a rule", strings.TrimSpace(rule), u)
				}
				set := map[string]bool{}
				for _, l := range lower {
					if l != "NONE" {
						set[l] = true
					}
					for a := range r.allowed[l] {
						set[a] = true
					}
				}
				r.allowed[u] = set
				r.below[u] = lower
				r.order = append(r.order, u)
			}
		}
	}
	for _, n := range r.never {
		for _, name := range []string{n.forbidden, n.pkg} {
			if r.allowed[name] == nil {
				return nil, fmt.Errorf("rule %s !< %s: %s has no rule", n.forbidden, n.pkg, name)
			}
		}
		if r.mayDependOn(n.pkg, n.forbidden) {
			return nil, fmt.Errorf("rules contradict: %s !< %s, but the \"<\" lines let %s depend on %s", n.forbidden, n.pkg, n.pkg, n.forbidden)
		}
	}
	return r, nil
}

// mayDependOn says whether the "<" lines let pkg reach target, or any
// member of the group target.
func (r *rules) mayDependOn(pkg, target string) bool {
	if r.allowed[pkg][target] {
		return true
	}
	for member := range r.members(target) {
		if r.allowed[pkg][member] {
			return true
		}
	}
	return false
}

// members lists the packages a name stands for: a package itself; for a
// group, the names left of its "<", with the groups among them expanded.
func (r *rules) members(name string) map[string]bool {
	set := map[string]bool{}
	if !isGroup(name) {
		set[name] = true
		return set
	}
	for _, l := range r.below[name] {
		for m := range r.members(l) {
			set[m] = true
		}
	}
	return set
}

func names(list string) []string {
	var out []string
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// anImport is one import of one of the module's packages, in one file.
type anImport struct {
	file string // relative to the module root
	line int
	path string // the imported package, relative to the module root
	test bool   // the file is a _test.go file
}

// readTree parses the imports of every .go file under root, whatever its
// build tags, and groups the module's own imports by package (folder). It
// skips testdata, hidden and _ folders, and nested modules.
func readTree(root string) (map[string][]anImport, error) {
	pkgs := map[string][]anImport{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); path != root && err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		pkg := filepath.ToSlash(filepath.Dir(rel))
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		if _, ok := pkgs[pkg]; !ok {
			pkgs[pkg] = nil
		}
		for _, spec := range f.Imports {
			imp, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				return err
			}
			var own string
			switch {
			case imp == module:
				own = "."
			case strings.HasPrefix(imp, module+"/"):
				own = strings.TrimPrefix(imp, module+"/")
			default:
				continue
			}
			pkgs[pkg] = append(pkgs[pkg], anImport{
				file: rel,
				line: fset.Position(spec.Pos()).Line,
				path: own,
				test: strings.HasSuffix(rel, "_test.go"),
			})
		}
		return nil
	})
	return pkgs, err
}

func TestImportRules(t *testing.T) {
	r, err := parseRules(importRules)
	if err != nil {
		t.Fatalf("importRules: %v", err)
	}
	pkgs, err := readTree(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, problem := range r.check(pkgs) {
		t.Error(problem)
	}
}

// check returns every way the tree's packages break the rules.
func (r *rules) check(pkgs map[string][]anImport) []string {
	return slices.Concat(r.unruled(pkgs), r.badImports(pkgs), r.brokenNevers(pkgs))
}

// unruled lists the packages with no rule and the rules with no package.
func (r *rules) unruled(pkgs map[string][]anImport) []string {
	var out []string
	for _, pkg := range sortedKeys(pkgs) {
		if r.allowed[pkg] == nil {
			out = append(out, fmt.Sprintf("package %s has no rule: add it to importRules in arch_test.go, below what it imports, and to ARCHITECTURE.md", pkg))
		}
	}
	for _, name := range r.order {
		if _, ok := pkgs[name]; !ok && !isGroup(name) {
			out = append(out, fmt.Sprintf("importRules has a rule for %s, but there is no such package", name))
		}
	}
	return out
}

// badImports lists every file that imports a package its package's rule
// does not allow.
func (r *rules) badImports(pkgs map[string][]anImport) []string {
	var out []string
	testHelpers := r.members("TESTHELPERS")
	for _, pkg := range sortedKeys(pkgs) {
		allowed := r.allowed[pkg]
		if allowed == nil {
			continue // an unruled package
		}
		for _, imp := range pkgs[pkg] {
			switch {
			case allowed[imp.path]:
			case imp.test && (imp.path == pkg || testHelpers[imp.path] || slices.Contains(testArrows[pkg], imp.path)):
			case imp.test:
				out = append(out, fmt.Sprintf("%s:%d: a test of %s imports %s: the rules let %s import %s, and its tests also the test helpers", imp.file, imp.line, pkg, imp.path, pkg, list(allowed)))
			default:
				out = append(out, fmt.Sprintf("%s:%d: %s imports %s: no rule in importRules (arch_test.go, ARCHITECTURE.md) allows it; %s may import %s", imp.file, imp.line, pkg, imp.path, pkg, list(allowed)))
			}
		}
	}
	return out
}

// brokenNevers lists every "never" rule the code breaks, with the chain
// of imports, each with the file that makes it, from the package to what
// it must not depend on. Test files do not count: no package depends on
// another's tests.
func (r *rules) brokenNevers(pkgs map[string][]anImport) []string {
	var out []string
	for _, n := range r.never {
		forbidden := r.members(n.forbidden)
		for _, pkg := range sortedKeys(r.members(n.pkg)) {
			if chain := findChain(pkgs, pkg, forbidden); chain != nil {
				out = append(out, fmt.Sprintf("%s must never depend on %s, but does:\n\t%s", pkg, n.forbidden, strings.Join(chain, "\n\t")))
			}
		}
	}
	return out
}

// findChain searches breadth first from pkg through non-test imports for
// a package in targets, and returns the path as lines "a -> b (file:line)",
// or nil if there is none.
func findChain(pkgs map[string][]anImport, pkg string, targets map[string]bool) []string {
	type step struct {
		from string
		imp  anImport
	}
	via := map[string]step{pkg: {}}
	queue := []string{pkg}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, imp := range pkgs[cur] {
			if imp.test {
				continue
			}
			if _, seen := via[imp.path]; seen {
				continue
			}
			via[imp.path] = step{cur, imp}
			if targets[imp.path] {
				var chain []string
				for p := imp.path; p != pkg; p = via[p].from {
					s := via[p]
					chain = append(chain, fmt.Sprintf("%s -> %s (%s:%d)", s.from, p, s.imp.file, s.imp.line))
				}
				slices.Reverse(chain)
				return chain
			}
			queue = append(queue, imp.path)
		}
	}
	return nil
}

func list(set map[string]bool) string {
	var out []string
	for name := range set {
		if !isGroup(name) {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return "nothing of the module"
	}
	slices.Sort(out)
	return "only " + strings.Join(out, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestImportRulesCatch runs the checks on a small tree that breaks the
// rules in every way they catch, and on rule tables that contradict
// themselves.
func TestImportRulesCatch(t *testing.T) {
	r, err := parseRules(`
		NONE < low, helper;
		low < high;
		helper < TESTHELPERS;
		high !< low;
		TESTHELPERS !< high;
		NONE < gone;
	`)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	files := map[string]string{
		"low/a.go":          "package low\n\nimport _ \"" + module + "/high\"\n",
		"low/c_test.go":     "package low\n\nimport _ \"" + module + "/high\"\n",
		"high/a.go":         "//go:build never\n\npackage high\n\nimport _ \"" + module + "/low\"\n",
		"high/b_test.go":    "package high_test\n\nimport (\n\t_ \"" + module + "/helper\"\n\t_ \"" + module + "/high\"\n)\n",
		"helper/a.go":       "package helper\n",
		"extra/a.go":        "package extra\n",
		"low/testdata/x.go": "package x\n\nimport _ \"" + module + "/extra\"\n",
	}
	for name, text := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pkgs, err := readTree(root)
	if err != nil {
		t.Fatal(err)
	}
	got := r.check(pkgs)
	want := []string{
		"package extra has no rule",
		"importRules has a rule for gone, but there is no such package",
		"low/a.go:3: low imports high: no rule",
		"low/c_test.go:3: a test of low imports high",
		"low must never depend on high, but does:\n\tlow -> high (low/a.go:3)",
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
			t.Errorf("no problem starts %q; got:\n%s", w, strings.Join(got, "\n"))
		}
	}

	for _, bad := range []struct{ rules, err string }{
		{"a < b;", "a is used before it has a rule"},
		{"NONE < a; NONE < a;", "a already has a rule"},
		{"NONE < a; a < b; a !< b;", "rules contradict: a !< b"},
		{"NONE < a; a !< c;", "c has no rule"},
	} {
		if _, err := parseRules(bad.rules); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("parseRules(%q) = %v, want an error saying %q", bad.rules, err, bad.err)
		}
	}
}
