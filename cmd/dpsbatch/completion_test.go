package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The bash completion script, sourced in a real bash with this binary on
// the PATH, completes commands, a command's flags after a dash, and run
// names under the site's runs root (given with --site before or after the
// words typed, or by $DPSBATCH_SITE).
func TestBashCompletion(t *testing.T) {
	bin := buildBinary(t, "")
	dir := t.TempDir()
	root := filepath.Join(dir, "runs")
	for _, run := range []string{"night-1", "night-2", "other"} {
		if err := os.MkdirAll(filepath.Join(root, run), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, run, "state.db"), "")
	}
	// A submission's unfinished folder and a folder without a state file
	// are no runs.
	os.MkdirAll(filepath.Join(root, ".night-3.new-1"), 0o755)
	os.MkdirAll(filepath.Join(root, "night-empty"), 0o755)
	siteFile := filepath.Join(dir, "site.yaml")
	writeFile(t, siteFile, "runs_root: "+root+`
partitions:
  - {name: debug, default: true, cpus_per_node: 4, memory: 2000M, node_list: "n[1-4]", max_time: infinite}
`)
	script, err := run(t, "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	complete := func(env string, line ...string) []string {
		t.Helper()
		// COMP_WORDS as bash splits the line; the cursor is on the last word.
		var words []string
		for _, w := range line {
			words = append(words, "'"+w+"'")
		}
		sh := script + "\nCOMP_WORDS=(" + strings.Join(words, " ") + ")\nCOMP_CWORD=" + strconv.Itoa(len(line)-1) +
			"\n_dpsbatch_complete\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		cmd := exec.Command("bash", "-c", sh)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "DPSBATCH_SITE="+env)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	for _, tc := range []struct {
		env  string
		line []string
		want string
	}{
		{"", []string{"dpsbatch", "sta"}, "stages status"},
		{"", []string{"dpsbatch", "status", "--wa"}, "--watch"},
		{siteFile, []string{"dpsbatch", "status", "night"}, "night-1 night-2"},
		{"", []string{"dpsbatch", "resume", "--site", siteFile, ""}, "night-1 night-2 other"},
		{"", []string{"dpsbatch", "status", "night-1", "--site", siteFile, "o"}, "other"},
		{"", []string{"dpsbatch", "completion", ""}, "bash zsh"},
	} {
		if got := strings.Join(complete(tc.env, tc.line...), " "); got != tc.want {
			t.Errorf("%q: completed %q; want %q", strings.Join(tc.line, " "), got, tc.want)
		}
	}
}

// completion refuses an unknown shell as bad input, and prints a zsh
// script that registers the same binary-driven completion.
func TestCompletionScripts(t *testing.T) {
	if _, err := run(t, "completion", "fish"); err == nil || exitCode(err) != 2 {
		t.Errorf("completion fish: %v; want bad input", err)
	}
	out, err := run(t, "completion", "zsh")
	if err != nil || !strings.Contains(out, "compdef _dpsbatch_complete dpsbatch") || !strings.Contains(out, "--generate-bash-completion") {
		t.Errorf("completion zsh: %v\n%s", err, out)
	}
}
