package main

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLocalNightlyKeepsUp runs examples/nightly with dpsbatch local, its
// association pipeline with one visit in flight and then with three (as
// the example ships). An association visit takes longer than detect takes
// to publish the next, so with one the backlog grows visit by visit (the
// time from detect's output of a visit to association's grows), and with
// three it stays flat. Either way every visit's result is its own: the
// field of its predictions event, detect's and mops's counts for it, the
// known objects of its slice's catalogue, from one worker process per
// slice for the whole run.
func TestLocalNightlyKeepsUp(t *testing.T) {
	growth := map[int]time.Duration{}
	for _, k := range []int{1, 3} {
		dir := t.TempDir()
		prod := copyNightly(t, filepath.Join(dir, "nightly"))
		setInFlight(t, filepath.Join(filepath.Dir(prod), "association", "pipeline.yaml"), k)
		runDir := filepath.Join(dir, "run")
		out, err := run(t, "local", prod, "--run-dir", runDir, "--run-id", fmt.Sprintf("night-k%d", k))
		if err != nil || !strings.Contains(out, "pipeline association: visits: 6 run, 6 done, 0 failed") {
			t.Fatalf("in_flight %d: %v\n%s", k, err, out)
		}
		lags := nightlyLags(t, filepath.Join(runDir, "pipelines"))
		t.Logf("in_flight %d: from detect's output to association's, by visit: %v", k, lags)
		growth[k] = lags[len(lags)-1] - lags[0]
		checkAssociation(t, filepath.Dir(prod), filepath.Join(runDir, "pipelines", "association"))
	}
	if growth[1] < 2*time.Second {
		t.Errorf("with one visit in flight the lag grew by %s over the night, want a growing backlog (2 s or more)", growth[1])
	}
	if growth[3] > time.Second {
		t.Errorf("with three visits in flight the lag grew by %s over the night, want it to keep up (under 1 s)", growth[3])
	}
}

// setInFlight rewrites the in_flight line of the policy at path.
func setInFlight(t *testing.T, path string, k int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	n := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "in_flight:") {
			lines[i], n = fmt.Sprintf("in_flight: %d", k), n+1
		}
	}
	if n != 1 {
		t.Fatalf("%s has %d in_flight lines, want 1", path, n)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// nightlyLags is, for each visit in order, the time from the last of
// detect's outputs of the visit to the last of association's.
func nightlyLags(t *testing.T, pipelines string) []time.Duration {
	t.Helper()
	last := func(pattern string) time.Time {
		var at time.Time
		for ccd := 1; ccd <= 2; ccd++ {
			fi, err := os.Stat(filepath.Join(pipelines, fmt.Sprintf(pattern, ccd)))
			if err != nil {
				t.Fatal(err)
			}
			if fi.ModTime().After(at) {
				at = fi.ModTime()
			}
		}
		return at
	}
	var lags []time.Duration
	for _, v := range nightlyVisits {
		lags = append(lags, last("association/output/"+v+"/ccd%d-associated.json").Sub(last("detect/output/"+v+"/ccd%d-sources.json")))
	}
	return lags
}

// checkAssociation checks association's output of every visit and CCD
// against what detect, mops and the slice's catalogue say for the visit,
// worked out here independently of the example's programs.
func checkAssociation(t *testing.T, example, dir string) {
	t.Helper()
	fields := visitFields(t, filepath.Join(example, "detect", "visits.csv"))
	for ccd := 1; ccd <= 2; ccd++ {
		catalog := readCatalog(t, filepath.Join(example, "association", "catalog", fmt.Sprintf("slice%d.csv", ccd)))
		workers := map[int]bool{}
		for _, v := range nightlyVisits {
			var a struct {
				Visit                                     string
				CCD, DIASources, Predicted, Known, Worker int
				Field                                     struct{ RA, Dec float64 }
			}
			if !readJSON(t, filepath.Join(dir, "output", v, fmt.Sprintf("ccd%d-associated.json", ccd)), &a) {
				continue
			}
			n, _ := strconv.Atoi(v)
			f := fields[v]
			want := fmt.Sprintf("visit %s ccd %d: %d sources, %d predicted, %d known, field %g %g",
				v, ccd, (n+2*ccd)%4+2, n%4+1, knownNear(catalog, f[0], f[1]), f[0], f[1])
			got := fmt.Sprintf("visit %s ccd %d: %d sources, %d predicted, %d known, field %g %g",
				a.Visit, a.CCD, a.DIASources, a.Predicted, a.Known, a.Field.RA, a.Field.Dec)
			if got != want {
				t.Errorf("association's output:\n got %s\nwant %s", got, want)
			}
			workers[a.Worker] = true
		}
		if len(workers) != 1 {
			t.Errorf("ccd %d: the known objects came from worker processes %v, want one for the whole run", ccd, workers)
		}
	}
}

// visitFields reads each visit's field (ra, dec) from the visit list.
func visitFields(t *testing.T, path string) map[string][2]float64 {
	t.Helper()
	out := map[string][2]float64{}
	for _, r := range readCSV(t, path)[1:] {
		ra, err1 := strconv.ParseFloat(r[2], 64)
		dec, err2 := strconv.ParseFloat(r[3], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v", path, r)
		}
		out[r[0]] = [2]float64{ra, dec}
	}
	return out
}

func readCatalog(t *testing.T, path string) [][2]float64 {
	t.Helper()
	var out [][2]float64
	for _, r := range readCSV(t, path)[1:] {
		ra, err1 := strconv.ParseFloat(r[1], 64)
		dec, err2 := strconv.ParseFloat(r[2], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v", path, r)
		}
		out = append(out, [2]float64{ra, dec})
	}
	return out
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("%s: %v (%d rows)", path, err, len(rows))
	}
	return rows
}

// knownNear counts the catalogue's objects within half a degree of the
// field, as the association's worker is to.
func knownNear(catalog [][2]float64, ra, dec float64) int {
	n := 0
	for _, o := range catalog {
		if math.Hypot(o[0]-ra, o[1]-dec) <= 0.5 {
			n++
		}
	}
	return n
}
