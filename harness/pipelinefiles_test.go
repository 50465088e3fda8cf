package harness

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/input/inputtest"
)

const filesPolicy = `pipeline: t
slices: 1
mapper: {type: range, settings: {key: ccd, from: 1, to: 1}}
locations:
  input: "{pipelinedir}/data/{visit}"
stages:
  - name: measure
    type: exec
    settings:
      command: [sh, "{pipelinedir}/bin/measure.sh", "{input}/ccd{ccd}.txt"]
      env: {PYTHONPATH: "{pipelinedir}/python"}
  - name: tool
    type: exec
    settings:
      command: ["{pipelinedir}/bin/tools/{ccd}", "{pipelinedir}/lib/"]
`

// The files a run copies: every location's and setting's fixed part
// under {pipelinedir}, the folder above a {name}, nothing above the
// folder, each once and none inside another.
func TestPipelineFiles(t *testing.T) {
	dir := inputtest.Dir(t, map[string]string{"p.yaml": filesPolicy, "bin/measure.sh": "echo {}\n", "lib/x.py": ""})
	p, err := Load(filepath.Join(dir, "p.yaml"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bin/measure.sh", "bin/tools", "data", "lib", "python"}
	if got := p.PipelineFiles(); !slices.Equal(got, want) {
		t.Errorf("PipelineFiles = %q, want %q", got, want)
	}
}

// A program an exec stage's command names under {pipelinedir} that is not
// there is a validate error naming the file, line and setting, not a
// failure of every data ID at run time.
func TestMissingPipelineProgram(t *testing.T) {
	dir := inputtest.Dir(t, map[string]string{"p.yaml": filesPolicy})
	_, err := Load(filepath.Join(dir, "p.yaml"), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "p.yaml:7: stages[0].settings.command[1]: {pipelinedir}/bin/measure.sh: no such file in the pipeline's folder "+dir) {
		t.Fatalf("Load: %v; want the missing script named with its line and setting", err)
	}
	if strings.Contains(err.Error(), "tools") {
		t.Errorf("Load: %v; a command naming a file by {name}s cannot be checked before the run", err)
	}
}

// A location or setting naming a file above the policy's folder under
// {pipelinedir} is refused: a run's copy would not hold it.
func TestPipelineRefAboveTheFolder(t *testing.T) {
	dir := inputtest.Dir(t, map[string]string{"p.yaml": strings.Replace(filesPolicy, "{pipelinedir}/data/{visit}", "{pipelinedir}/../data/{visit}", 1),
		"bin/measure.sh": ""})
	_, err := Load(filepath.Join(dir, "p.yaml"), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "p.yaml:5: locations.input: {pipelinedir}/../data/{visit} climbs out of the pipeline's folder") {
		t.Fatalf("Load: %v; want the location refused with its line", err)
	}
}
