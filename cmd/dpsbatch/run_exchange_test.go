package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// Slice-to-slice exchange through `dpsbatch run`, on separate processes:
// a pipeline whose stages exchange over both topologies (ring, and the
// mapper's neighbours) writes what each clipboard received to output
// files, which must be byte-identical to those of `dpsbatch run --comm
// local` and hold exactly the neighbours' values.
//
// No built-in mapper names neighbours, so the ranks run this test binary
// as dpsbatch (asDpsbatch below), with the test-line mapper registered.

// asDpsbatch, set to 1 in a process's environment, makes this test binary
// run dpsbatch's main with its arguments instead of the tests: srun starts
// it so on every rank.
const asDpsbatch = "DPSBATCH_TEST_AS_DPSBATCH"

func init() {
	mapper.Register("test-line", mapper.Factory{
		Doc:      "test: ccd=1..ccds in contiguous blocks over the slices; neighbours are the slices before and after, without wrapping",
		Settings: []mapper.Setting{{Key: "ccds", Kind: mapper.Int, Required: true}},
		New: func(v mapper.Values) (mapper.DataMapper, error) {
			return lineMapper{ccds: v.Int("ccds")}, nil
		},
	})
	if os.Getenv(asDpsbatch) == "1" {
		stderr = os.Stderr // main_test.go discards it for the in-process tests
		main()             // exits
	}
}

// lineMapper places ccd=1..ccds in contiguous blocks, the first slices
// taking one more when they do not divide evenly, and names as neighbours
// the slices before and after each one on a line: unlike the ring, the
// first and last slices are not neighbours (with 3 or more slices).
type lineMapper struct{ ccds int }

func (m lineMapper) DataIDs() []mapper.DataID {
	ids := make([]mapper.DataID, m.ccds)
	for i := range ids {
		ids[i] = mapper.DataID{"ccd": strconv.Itoa(i + 1)}
	}
	return ids
}

func (m lineMapper) Keys() []string { return []string{"ccd"} }

func (m lineMapper) Assign(slices []mapper.HostInfo) ([][]mapper.DataID, error) {
	ids := m.DataIDs()
	out := make([][]mapper.DataID, len(slices))
	for i, s := range lineBlocks(len(ids), len(slices)) {
		for _, c := range s {
			out[i] = append(out[i], ids[c-1])
		}
	}
	return out, nil
}

func (m lineMapper) Neighbours(slices []mapper.HostInfo, _ [][]mapper.DataID) ([][]int, error) {
	out := make([][]int, len(slices))
	for i := range out {
		if i > 0 {
			out[i] = append(out[i], i-1)
		}
		if i < len(slices)-1 {
			out[i] = append(out[i], i+1)
		}
	}
	return out, nil
}

var _ mapper.NeighbourMapper = lineMapper{}

// lineBlocks returns the ccds (1..ccds) of each of n slices, by slice
// index: contiguous blocks, the first ones longer by one when needed.
func lineBlocks(ccds, n int) [][]int {
	out := make([][]int, n)
	q, r := ccds/n, ccds%n
	c := 1
	for i := range out {
		size := q
		if i < r {
			size++
		}
		for range size {
			out[i] = append(out[i], c)
			c++
		}
	}
	return out
}

const exchangePipeline = `# Exchange over both topologies; the output stage writes, per CCD, what
# the clipboard received from the neighbour slices.
pipeline: xchg
slices: 2
mapper: {type: test-line, settings: {ccds: %d}}
locations:
  output: "output/{visit}"
stages:
  - name: put
    type: exec
    settings:
      command: [sh, "{pipelinedir}/put.sh"]
      produces: [obj, tag]
    exchange: {topology: ring, keys: [obj]}
  - name: near
    type: noop
    exchange: {topology: mapper, keys: [tag]}
  - name: write
    type: output
    settings:
      files:
        obj.neighbours: "{output}/ring-ccd{ccd}.json"
        tag.neighbours: "{output}/line-ccd{ccd}.json"
`

// putScript prints the values a clipboard sends: they name the data ID,
// the slice and the visit, so a value from the wrong place shows. The
// ring's values carry a padding of objPad x's, so that a slice's message
// outgrows the MPI communicator's inline slot (248 bytes).
const putScript = `#!/bin/sh
pad=$(printf '%*s' 400 '' | tr ' ' x)
printf '{"obj": "obj-%s-slice%s-visit%s-%s", "tag": "tag-%s-visit%s"}\n' \
  "$DPSBATCH_DATAID" "$DPSBATCH_SLICE" "$DPSBATCH_VISIT" "$pad" "$DPSBATCH_DATAID" "$DPSBATCH_VISIT"
`

const objPad = 400

var exchangeVisits = []string{"11", "12"}

const exchangeCCDs = 5

// exchangeRunDir writes the exchange pipeline, its script and visit file
// into a new world-readable run directory.
func exchangeRunDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(worldReadableTemp(t), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	visits := "visitId\n" + strings.Join(exchangeVisits, "\n") + "\n"
	for name, text := range map[string]string{
		"pipeline.yaml": fmt.Sprintf(exchangePipeline, exchangeCCDs),
		"put.sh":        putScript,
		"visits.csv":    visits,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// worldReadableTemp is t.TempDir made readable, with its parents, by every
// node's tasks.
func worldReadableTemp(t *testing.T) string {
	t.Helper()
	parent := t.TempDir()
	for d := parent; d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
			os.Chmod(d, fi.Mode().Perm()|0o755)
		}
	}
	return parent
}

// selfAsDpsbatch returns this test binary's path, for srun to start as
// dpsbatch (with asDpsbatch=1 in the environment).
func selfAsDpsbatch(t *testing.T) string {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// checkExchangeOutputs checks the files the exchange pipeline wrote in
// dir on size ranks: one ring and one line file per CCD and visit, each
// holding exactly the values of the CCDs on the neighbour slices (worked
// out here from the topologies' definitions), and the same files as a
// local run (`dpsbatch run --comm local --size size`) of the same
// pipeline.
func checkExchangeOutputs(t *testing.T, dir string, size int) {
	t.Helper()
	slices := size - 1
	blocks := lineBlocks(exchangeCCDs, slices)
	// Neighbours by slice index (0-based), as exchange.go defines the
	// ring and lineMapper the line.
	ring := func(i int) []int {
		switch slices {
		case 1:
			return nil
		case 2:
			return []int{1 - i}
		}
		return []int{(i + slices - 1) % slices, (i + 1) % slices}
	}
	line := func(i int) []int {
		var out []int
		if i > 0 {
			out = append(out, i-1)
		}
		if i < slices-1 {
			out = append(out, i+1)
		}
		return out
	}
	files := 0
	for _, v := range exchangeVisits {
		for i, ccds := range blocks {
			for _, c := range ccds {
				for _, x := range []struct {
					file  string
					nbrs  []int
					value func(ccd, slice int) string
				}{
					{"ring", ring(i), func(ccd, s int) string {
						return fmt.Sprintf("obj-ccd=%d-slice%d-visit%s-%s", ccd, s+1, v, strings.Repeat("x", objPad))
					}},
					{"line", line(i), func(ccd, _ int) string { return fmt.Sprintf("tag-ccd=%d-visit%s", ccd, v) }},
				} {
					want := map[string]string{}
					for _, n := range x.nbrs {
						for _, nc := range blocks[n] {
							want["ccd="+strconv.Itoa(nc)] = x.value(nc, n)
						}
					}
					path := filepath.Join(dir, "output", v, fmt.Sprintf("%s-ccd%d.json", x.file, c))
					data, err := os.ReadFile(path)
					if err != nil {
						t.Errorf("visit %s ccd %d: %v", v, c, err)
						continue
					}
					files++
					var got map[string]string
					if err := json.Unmarshal(data, &got); err != nil {
						t.Errorf("%s: %v\n%s", path, err, data)
						continue
					}
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("visit %s, ccd %d on slice %d, %s neighbours sent %v, want %v", v, c, i+1, x.file, got, want)
					}
				}
			}
		}
	}
	if want := 2 * exchangeCCDs * len(exchangeVisits); files != want {
		t.Errorf("read %d exchange files, want %d", files, want)
	}

	ref := exchangeRunDir(t, "ref")
	if out, err := run(t, "run", "--comm", "local", "--size", strconv.Itoa(size), "--run-dir", ref); err != nil {
		t.Fatalf("local run: %v\n%s", err, out)
	}
	if n := sameOutputs(t, ref, dir); n != files {
		t.Errorf("compared %d output files with the local run's, want %d", n, files)
	}
}

// The check itself, on the local communicator: the expected neighbours
// are right, and the local run matches itself.
func TestRunExchangeLocal(t *testing.T) {
	for _, size := range []int{3, 4} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			dir := exchangeRunDir(t, "loc")
			out, err := run(t, "run", "--comm", "local", "--size", strconv.Itoa(size), "--run-dir", dir)
			want := fmt.Sprintf("visits: %d run, %d done, 0 failed", len(exchangeVisits), len(exchangeVisits))
			if err != nil || !strings.Contains(out, want) {
				t.Fatalf("%v\n%s", err, out)
			}
			checkExchangeOutputs(t, dir, size)
		})
	}
}

// TestRunExchangeSrunTCP runs the exchange pipeline with one rank per
// simulated node over tcp: `srun -N3 -n3 --mpi=none`, 2 slices (the ring
// and the line coincide), then `srun -N3 -n4`, 3 slices (they differ: on
// the line, slices 1 and 3 are not neighbours).
func TestRunExchangeSrunTCP(t *testing.T) {
	needCluster(t, 3)
	bin := selfAsDpsbatch(t)
	for _, size := range []int{3, 4} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			dir := exchangeRunDir(t, "xtcp")
			stdout, stderr, code := runCmd(t, 3*time.Minute, cleanEnv(asDpsbatch+"=1"), "srun", "-N3", "-n"+strconv.Itoa(size),
				"--mpi=none", "--time=3", "-J", "dpsbatch-test-xtcp", bin, "run", "--comm", "tcp", "--run-dir", dir)
			t.Logf("stdout:\n%s", stdout)
			want := fmt.Sprintf("visits: %d run, %d done, 0 failed", len(exchangeVisits), len(exchangeVisits))
			if code != 0 || !strings.Contains(stdout, want) {
				t.Fatalf("srun: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if nodes := distinct(rankNodes(t, stderr, size)); len(nodes) != 3 {
				t.Errorf("ranks ran on %v, want three simulated nodes", nodes)
			}
			checkExchangeOutputs(t, dir, size)
		})
	}
}
