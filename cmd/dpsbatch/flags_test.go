package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/internal/version"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

// commandPaths lists every command of the app with the words that name
// it (["event", "send"]) and its flags; the app's own flags come first,
// with no words.
func commandPaths(app *cli.App) (paths [][]string, flags [][]cli.Flag) {
	paths, flags = append(paths, nil), append(flags, app.Flags)
	var walk func(prefix []string, cs []*cli.Command)
	walk = func(prefix []string, cs []*cli.Command) {
		for _, c := range cs {
			p := append(append([]string(nil), prefix...), c.Name)
			paths, flags = append(paths, p), append(flags, c.Flags)
			walk(p, c.Subcommands)
		}
	}
	walk(nil, app.Commands)
	return paths, flags
}

// urfave/cli takes the first `quoted` word of a flag's usage as the
// placeholder of its value: `--hold scontrol release JOBID`. Every flag's
// help must show its usage as written.
func TestFlagHelpShowsUsageAsWritten(t *testing.T) {
	paths, flags := commandPaths(newApp())
	n := 0
	for i, fs := range flags {
		for _, f := range fs {
			df, ok := f.(cli.DocGenerationFlag)
			if !ok {
				continue
			}
			n++
			usage, help := df.GetUsage(), cli.FlagStringer(f)
			where := strings.Join(append([]string{"dpsbatch"}, paths[i]...), " ") + " --" + f.Names()[0]
			if strings.Contains(usage, "`") || !strings.Contains(help, usage) {
				t.Errorf("%s: help reads %q, which does not show its usage %q as written (a `quoted` word becomes the value's placeholder)", where, help, usage)
			}
		}
	}
	if n < 50 {
		t.Errorf("checked %d flags; the app has more", n)
	}
}

// Every flag given an empty text, a count of 0 or less, or a duration of
// 0, where leaving it out means a default, is bad input (exit 2) naming
// the flag: none falls back silently to the default.
func TestEmptyOrZeroFlagsRefused(t *testing.T) {
	os.Unsetenv("DPSBATCH_SITE")
	dir := t.TempDir()
	t.Chdir(dir)
	paths, flags := commandPaths(newApp())
	n := 0
	for i, fs := range flags {
		for _, f := range fs {
			name := f.Names()[0]
			var arg string
			switch f.(type) {
			case *cli.StringFlag:
				arg = "--" + name + "="
			case *cli.IntFlag:
				arg = "--" + name + "=-1"
				if mustBePositive[name] {
					arg = "--" + name + "=0"
				}
			case *cli.DurationFlag:
				arg = "--" + name + "=0s"
			default:
				continue
			}
			args := append(append([]string(nil), paths[i]...), arg)
			if i == 0 {
				args = append(args, "runs") // a global flag, before a command
			}
			n++
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				_, err := run(t, args...)
				if code := exitCode(err); code != exitBadInput || !strings.Contains(err.Error(), "--"+name) {
					t.Errorf("exit %d, err %v; want exit 2 naming --%s", code, err, name)
				}
			})
		}
	}
	if n < 40 {
		t.Errorf("tried %d flags; the app has more", n)
	}
	// The cases of the report, and nothing made for them.
	for _, args := range [][]string{
		{"local", "--slices", "0"},
		{"local", "--run-id", ""},
		{"submit", "--name", "", "p.yaml"},
		{"submit", "--slices", "0", "p.yaml"},
		{"events", "--last", "0", "r"},
	} {
		if _, err := run(t, args...); exitCode(err) != exitBadInput {
			t.Errorf("%q: %v; want bad input", args, err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		t.Errorf("bad flags left %v behind", ents)
	}
	// Flags given well still run: 0 follow-on jobs is a value of its own.
	if _, err := run(t, "local", "--slices", "2", "--run-id", "ok", "--run-dir", filepath.Join(dir, "ok")); err != nil {
		t.Errorf("good flags: %v", err)
	}
}

// `event send` without --topic is bad input (exit 2), found before the
// run is looked at.
func TestEventSendWithoutTopic(t *testing.T) {
	_, err := run(t, "event", "send", "some-run", "visitId=1")
	if code := exitCode(err); code != exitBadInput || !strings.Contains(err.Error(), "--topic") {
		t.Errorf("exit %d, err %v; want exit 2 naming --topic", code, err)
	}
}

func TestVersion(t *testing.T) {
	out, err := run(t, "--version")
	if err != nil || strings.TrimSpace(out) != version.Get().String() || !strings.HasPrefix(out, "dpsbatch dev (commit ") {
		t.Errorf("--version: %q %v; want %q", out, err, version.Get())
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "dpsbatch")
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X github.com/dpsbatch/dpsbatch/internal/version.Version=9.9.9", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	o, _, code := runCmd(t, time.Minute, cleanEnv(), bin, "--version")
	if code != 0 || !strings.HasPrefix(o, "dpsbatch 9.9.9 (commit ") {
		t.Errorf("a release build's --version: %q, exit %d", o, code)
	}
	if i, err := version.Parse(o); err != nil || i.Version != "9.9.9" {
		t.Errorf("Parse(%q) = %+v, %v", o, i, err)
	}
}

// submit --binary refuses a binary that is not a dpsbatch, or not this
// one's version, before anything is planned or made; a dpsbatch of this
// version is taken.
func TestSubmitChecksBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "runs")
	siteFile := filepath.Join(dir, "site.yaml")
	writeFile(t, siteFile, "runs_root: "+root+`
partitions:
  - {name: debug, default: true, cpus_per_node: 4, memory: 2000M, node_list: "n[1-4]", max_time: infinite}
launcher: {kind: srun, flags: [--mpi=none], comm: tcp}
`)
	visits := "../../examples/ccdproc/visits.csv"
	policy := "../../examples/ccdproc/pipeline.yaml"
	other := filepath.Join(dir, "other")
	build := exec.Command("go", "build", "-o", other, "-ldflags", "-X github.com/dpsbatch/dpsbatch/internal/version.Version=0.0.1", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	script, silent := filepath.Join(dir, "chatty"), filepath.Join(dir, "silent")
	writeFile(t, script, "#!/bin/sh\necho hello\n")
	writeFile(t, silent, "#!/bin/sh\nexit 0\n")
	os.Chmod(script, 0o755)
	os.Chmod(silent, 0o755)
	for _, tc := range []struct{ bin, says string }{
		{"/bin/true", `"true (GNU coreutils)`},
		{"/bin/false", "exit status 1"},
		{silent, "--version printed nothing"},
		{script, `"hello" is not a dpsbatch version line`},
		{other, "it is version 0.0.1, this dpsbatch is dev"},
	} {
		_, err := run(t, "submit", "--site", siteFile, "--visits", visits, "--binary", tc.bin, "--dry-run", policy)
		if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "--binary "+tc.bin) {
			t.Errorf("--binary %s: %v; want bad input saying %q", tc.bin, err, tc.says)
		}
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("refused submissions made the runs root: %v", err)
	}
	if out, err := run(t, "submit", "--site", siteFile, "--visits", visits, "--binary", buildBinary(t, ""), "--dry-run", policy); err != nil {
		t.Errorf("a dpsbatch of this version: %v\n%s", err, out)
	}
}

// local --run-id follows the run-name rules before anything is printed
// or made: a 300-character ID is bad input, not "file name too long"
// after the banner with an empty runs folder left behind.
func TestLocalRunIDRules(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, id := range []string{strings.Repeat("a", 300), "../up", "-dash", "a/b"} {
		out, err := run(t, "local", "--run-id", id)
		if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), "--run-id") || !strings.Contains(err.Error(), "at most 128") {
			t.Errorf("--run-id %.20s...: %v; want bad input naming the run-name rules", id, err)
		}
		if out != "" {
			t.Errorf("--run-id %.20s...: printed %q before refusing", id, out)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		t.Errorf("refused run IDs left %v behind", ents)
	}
}

// submit --dry-run --json prints one JSON object, with the plan and the
// job scripts in it, and nothing else on stdout.
func TestSubmitDryRunJSON(t *testing.T) {
	dir := t.TempDir()
	siteFile := filepath.Join(dir, "site.yaml")
	writeFile(t, siteFile, "runs_root: "+filepath.Join(dir, "runs")+`
partitions:
  - {name: debug, default: true, cpus_per_node: 4, memory: 2000M, node_list: "n[1-4]", max_time: infinite}
launcher: {kind: srun, flags: [--mpi=none], comm: tcp}
`)
	if testing.Short() {
		t.Skip("builds the binary")
	}
	out, err := run(t, "submit", "--site", siteFile, "--binary", buildBinary(t, ""), "--visits", "../../examples/ccdproc/visits.csv", "--dry-run", "--json",
		"--auto-resume", "1", "--name", "dry-json", "../../examples/ccdproc/pipeline.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got struct {
		Run    string `json:"run"`
		DryRun bool   `json:"dryRun"`
		Plan   struct {
			Partition string `json:"partition"`
			Tasks     int    `json:"tasks"`
		} `json:"plan"`
		Scripts []struct{ File, Text string } `json:"scripts"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
	}
	if got.Run != "dry-json" || !got.DryRun || got.Plan.Partition != "debug" || got.Plan.Tasks != 3 {
		t.Errorf("got %+v; want run dry-json, a dry run on debug of 3 tasks", got)
	}
	if len(got.Scripts) != 2 || !strings.HasPrefix(got.Scripts[0].Text, "#!") || !strings.Contains(got.Scripts[0].Text, "#SBATCH") ||
		!strings.HasSuffix(got.Scripts[1].File, "attempt-2.sbatch") {
		t.Errorf("scripts %+v; want the job's and its follow-on's", got.Scripts)
	}
	if _, err := os.Stat(filepath.Join(dir, "runs")); !os.IsNotExist(err) {
		t.Errorf("a dry run made the runs root: %v", err)
	}
}

// dpsbatch events lists the events the Pipeline dropped, with why, and
// status counts them.
func TestEventsListsDropped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "r1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := state.Create(filepath.Join(dir, rundir.StateFile), state.Run{ID: "r1", Name: "r1", Dir: dir, Pipeline: "p", Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []state.EventRecord{
		{Dir: state.DirIn, Topic: "visits", Props: map[string]any{"visitId": "v1"}},
		{Dir: state.DirIn, Topic: "visits", Dropped: "undecodable: events: malformed event: not a JSON object (oops)"},
	} {
		if err := st.RecordEvent(r); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	out, err := run(t, "events", dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Contains(lines[0], "DROPPED") || !strings.Contains(lines[1], "DROPPED") ||
		!strings.Contains(lines[1], "(undecodable: events: malformed event: not a JSON object (oops))") {
		t.Errorf("events:\n%s\nwant the second listed as DROPPED with why", out)
	}
	out, err = run(t, "events", "--json", dir)
	if err != nil || !strings.Contains(out, `"dropped":"undecodable: events`) {
		t.Errorf("events --json: %v\n%s", err, out)
	}
}
