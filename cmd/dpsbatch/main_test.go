package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func init() { stderr = io.Discard }

// run runs the app in-process and returns what it wrote and its error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	err := app.Run(interspersed(app, append([]string{"dpsbatch"}, args...)))
	return out.String(), err
}

// meanOf computes the mean of the numbers in a file, independently of the
// example's exec program.
func meanOf(t *testing.T, path string) float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum, n := 0.0, 0
	sc := bufio.NewScanner(f)
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		v, err := strconv.ParseFloat(sc.Text(), 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
		n++
	}
	return sum / float64(n)
}

func TestLocalRunsEmbeddedExample(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if _, err := run(t, "local", "--run-dir", dir, "--run-id", "ex1"); err != nil {
		t.Fatal(err)
	}
	filters := map[string]string{"1001": "r", "1002": "g", "1003": "i"}
	exptime := map[string]float64{"1001": 30, "1002": 30, "1003": 15}
	for visit, filter := range filters {
		for ccd := 1; ccd <= 4; ccd++ {
			c := strconv.Itoa(ccd)
			data, err := os.ReadFile(filepath.Join(dir, "output", visit, "ccd"+c+"-"+filter+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var stats struct {
				Npix       int
				Mean, Rate float64
			}
			if err := json.Unmarshal(data, &stats); err != nil {
				t.Fatalf("%s: %v", data, err)
			}
			want := meanOf(t, filepath.Join(dir, "pipeline", "data", visit, "ccd"+c+".txt"))
			if stats.Npix != 32 || math.Abs(stats.Mean-want) > 1e-3 || math.Abs(stats.Rate-want/exptime[visit]) > 1e-3 {
				t.Errorf("visit %s ccd %d: %+v, want npix 32, mean %.4f", visit, ccd, stats, want)
			}
		}
	}
	// The symlinks point at the last visit's files.
	target, err := os.Readlink(filepath.Join(dir, "work", "latest", "ccd2.json"))
	if err != nil || !strings.HasSuffix(target, filepath.Join("output", "1003", "ccd2-i.json")) {
		t.Errorf("latest link: %q %v", target, err)
	}
}

func TestLocalExitCodes(t *testing.T) {
	dir := t.TempDir()
	ex := filepath.Join(dir, "ex")
	if _, err := run(t, "local", "--run-dir", ex); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(ex, "pipeline", "pipeline.yaml")
	badPolicy := filepath.Join(dir, "bad.yaml")
	data, _ := os.ReadFile(policy)
	os.WriteFile(badPolicy, bytes.Replace(data, []byte("type: exec"), []byte("type: exce"), 1), 0o644)
	badVisits := filepath.Join(dir, "bad.csv")
	os.WriteFile(badVisits, []byte("visitId,filter,exptime\n1,r,3\n1,g,4\n"), 0o644)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"some visits failed", []string{"local", policy, "--visits", filepath.Join(ex, "pipeline", "visits-with-failure.csv"), "--run-dir", filepath.Join(dir, "f")}, 3, "1 of 4 visits"},
		{"bad policy", []string{"local", badPolicy, "--visits", filepath.Join(ex, "pipeline", "visits.csv")}, 2, `bad.yaml:33: stages[1].type: unknown stage type "exce"`},
		{"duplicate visit", []string{"local", policy, "--visits", badVisits, "--run-dir", filepath.Join(dir, "d")}, 2, `bad.csv:3: visit "1" repeats line 2`},
		{"no visit file", []string{"local", policy}, 2, "--visits is required"},
		{"bad log format", []string{"--log-format", "xml", "local"}, 2, "--log-format: expected text or json"},
		{"unknown flag", []string{"local", "--visit", "x"}, 2, "flag provided but not defined"},
		{"validate bad", []string{"validate", badPolicy}, 2, "did you mean \"exec\"?"},
		{"validate good", []string{"validate", policy, "--visits", filepath.Join(ex, "pipeline", "visits.csv")}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, tc.args...)
			if got := exitCode(err); got != tc.code {
				t.Errorf("exit code %d, want %d (err: %v)", got, tc.code, err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("error %v does not contain %q", err, tc.want)
			}
		})
	}
	// Nothing was written for bad input.
	if _, err := os.Stat(filepath.Join(dir, "d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a run directory was made for a bad visit file: %v", err)
	}
}

func TestValidateAndStagesOutput(t *testing.T) {
	out, err := run(t, "validate", "../../examples/ccdproc/pipeline.yaml")
	if err != nil || !strings.Contains(out, "valid: pipeline ccdproc, 5 stages, 2 slices, mapper range") {
		t.Errorf("validate: %q %v", out, err)
	}
	out, err = run(t, "stages")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"  exec: runs an external program", "command (list of strings, required)", "timeout (duration, default 10m0s)",
		"  input:", "  output:", "  symlink:", "  event:", "  range:", "  list:", "  rank:", "auto, json, raw, text"} {
		if !strings.Contains(out, w) {
			t.Errorf("stages output lacks %q", w)
		}
	}
}

func TestInterspersed(t *testing.T) {
	app := newApp()
	for _, tc := range []struct{ in, want string }{
		{"dpsbatch local p.yaml --visits v.csv", "dpsbatch local --visits v.csv p.yaml"},
		{"dpsbatch --log-format json local p.yaml --slices=3", "dpsbatch --log-format json local --slices=3 p.yaml"},
		{"dpsbatch local p.yaml -- --odd", "dpsbatch local p.yaml -- --odd"},
		{"dpsbatch nosuch a --b", "dpsbatch nosuch a --b"},
	} {
		got := interspersed(app, strings.Fields(tc.in))
		if !reflect.DeepEqual(got, strings.Fields(tc.want)) {
			t.Errorf("%q -> %q, want %q", tc.in, strings.Join(got, " "), tc.want)
		}
	}
}

// TestBinaryExitStatus checks the real process exit status and message.
func TestBinaryExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "dpsbatch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "local", "--run-dir", filepath.Join(dir, "r"))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "visits: 3 run, 3 done, 0 failed") {
		t.Fatalf("example: %v\n%s", err, out)
	}
	cmd = exec.Command(bin, "validate", filepath.Join(dir, "nope.yaml"))
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "nope.yaml") {
		t.Errorf("missing policy: status %d, output %s", cmd.ProcessState.ExitCode(), out)
	}
}

// validate counts a visit file's comment lines, and refuses visit IDs
// that could leave the run directory, naming the line (exit 2).
func TestValidateVisitFile(t *testing.T) {
	dir := t.TempDir()
	policy := "../../examples/ccdproc/pipeline.yaml"
	good := filepath.Join(dir, "good.csv")
	os.WriteFile(good, []byte("# tonight's visits\nvisitId,filter,exptime\n1001,r,30\n  # 1002 later\n1003,i,15\n"), 0o644)
	out, err := run(t, "validate", policy, "--visits", good)
	if want := good + ": valid (2 visits; 2 comment lines skipped)"; err != nil || !strings.Contains(out, want) {
		t.Errorf("validate = %q, %v; want %q", out, err, want)
	}
	for name, text := range map[string]string{
		"bad.csv":   "visitId,filter,exptime\n1001,r,30\n../../..,g,30\n",
		"bad.jsonl": `{"visitId": 1001, "filter": "r", "exptime": 30}` + "\n" + `{"visitId": "../../..", "filter": "g", "exptime": 30}` + "\n",
	} {
		bad := filepath.Join(dir, name)
		os.WriteFile(bad, []byte(text), 0o644)
		out, err := run(t, "validate", policy, "--visits", bad)
		want := bad + `:3: visitId: visit ID "../../.." contains '/'`
		if name == "bad.jsonl" {
			want = bad + `:2: visitId: visit ID "../../.." contains '/'`
		}
		if exitCode(err) != 2 || !strings.Contains(err.Error(), want) {
			t.Errorf("validate %s = %q, %v (exit %d); want exit 2 and %q", name, out, err, exitCode(err), want)
		}
	}
}
