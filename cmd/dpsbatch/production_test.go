package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/input"
)

// The production's integration tests: examples/nightly (detect -> mops,
// association; three pipelines as three srun steps of one job, talking
// through the run's broker) submitted to the local Slurm cluster, and
// productions refused before anything is created.

// prodStatusJSON is `dpsbatch status --json` of a production: the
// aggregated run and each pipeline's own status.
type prodStatusJSON struct {
	statusJSON
	Pipelines []pipeStatusJSON `json:"pipelines"`
}

type pipeStatusJSON struct {
	statusJSON
	Pipeline       string `json:"pipeline"`
	InputClosedWhy string `json:"inputClosedWhy"`
}

func (e *batchEnv) prodStatus(run string) prodStatusJSON {
	e.t.Helper()
	out := e.must(0, time.Minute, "status", "--json", run)
	var all []prodStatusJSON
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 1 {
		e.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return all[0]
}

// nightly copies examples/nightly next to the env's pipelines (a folder
// every simulated node can read) and returns the copy's production file.
func (e *batchEnv) nightly(name string) string {
	e.t.Helper()
	return copyNightly(e.t, filepath.Join(filepath.Dir(e.dir), name))
}

// copyNightly copies examples/nightly to dst and returns the copy's
// production file.
func copyNightly(t *testing.T, dst string) string {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("..", "..", "examples", "nightly"))
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, fi.Mode().Perm()|0o444)
	})
	if err != nil {
		t.Fatalf("copying the nightly example: %v", err)
	}
	return filepath.Join(dst, "production.yaml")
}

// readJSON decodes the JSON file at path into v, failing the test if it
// cannot.
func readJSON(t *testing.T, path string, v any) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
		t.Errorf("%v", err)
		return false
	}
	return true
}

// propFloat reads a visit's numeric column as the visit list holds it.
func propFloat(t *testing.T, v harness.Visit, key string) float64 {
	t.Helper()
	x, err := strconv.ParseFloat(strings.TrimSpace(fmt.Sprint(v.Props[key])), 64)
	if err != nil {
		t.Fatalf("visit %s: %s: %v", v.ID, key, err)
	}
	return x
}

var (
	planTasks  = regexp.MustCompile(`plan \(\w+\): partition \S+, \d+ nodes, (\d+) tasks`)
	stepExited = regexp.MustCompile(`dpsbatch: step \S+ exited `)
)

// TestBatchProductionChain runs examples/nightly on the cluster: detect
// works through its visit list and publishes diasources and pointings per
// visit; mops, triggered by pointings, publishes predictions; association,
// triggered by diasources, waits mid-pipeline for the predictions of the
// same visit and writes what they carry. The three run at once as steps
// of one job; the listening two end because detect ended (the after rule),
// and the job completes.
func TestBatchProductionChain(t *testing.T) {
	e := newBatchEnv(t)
	prodFile := e.nightly("nightly")
	prod, err := input.LoadProduction(prodFile)
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	names := make([]string, len(prod.Pipelines))
	wantTasks := 0
	var detect *input.ProductionPipeline
	for i := range prod.Pipelines {
		pp := &prod.Pipelines[i]
		names[i] = pp.Name
		n := pp.Slices
		if n == 0 {
			n = pp.Policy.Slices
		}
		wantTasks += n + 1
		if pp.Name == "detect" {
			detect = pp
		}
	}
	if !slices.Equal(names, []string{"detect", "mops", "association"}) || detect == nil || len(detect.Visits) == 0 {
		t.Fatalf("the example's pipelines are %v; the test expects detect (with visits), mops, association", names)
	}
	visits := detect.Visits
	for _, name := range names[1:] {
		if !prod.Listening(name) || !slices.Equal(prod.Pipelines[slices.Index(names, name)].After, []string{"detect"}) {
			t.Fatalf("%s should listen, after detect", name)
		}
	}

	// The dry run: one allocation for every step at once, nothing made.
	out := e.must(0, time.Minute, "submit", "--dry-run", prodFile, "--name", "nightly-dry")
	m := planTasks.FindStringSubmatch(out)
	if m == nil || m[1] != strconv.Itoa(wantTasks) {
		t.Errorf("dry run: plan of %v tasks, want %d (slices+1 per pipeline):\n%s", m, wantTasks, out)
	}
	if !strings.Contains(out, fmt.Sprintf("#SBATCH --ntasks=%d\n", wantTasks)) {
		t.Errorf("dry run: the script does not ask for %d tasks:\n%s", wantTasks, out)
	}
	if n := strings.Count(out, "dpsbatch: step %q starting"); n != len(names) {
		t.Errorf("dry run: the script starts %d steps, want %d:\n%s", n, len(names), out)
	}
	if _, err := os.Stat(filepath.Join(e.root, "nightly-dry")); !os.IsNotExist(err) {
		t.Errorf("the dry run created the run directory: %v", err)
	}

	out = e.must(0, time.Minute, "submit", prodFile, "--name", "nightly-1")
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// Leave no job behind on the shared cluster (t.Context, which
		// e.dps uses, has ended by now).
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, e.bin, "cancel", "nightly-1")
		cmd.Env = cleanEnv("DPSBATCH_SITE=" + e.site)
		out, err := cmd.CombinedOutput()
		t.Logf("cancel after the failure: %v\n%s", err, out)
	})
	if !strings.Contains(out, "run nightly-1: job ") {
		t.Errorf("submit output:\n%s", out)
	}
	e.must(0, 4*time.Minute, "wait", "nightly-1", "--interval", "1s")

	// One job, completed; every pipeline did every visit.
	st := e.prodStatus("nightly-1")
	if len(st.Jobs) != 1 {
		t.Fatalf("the production has %d jobs, want 1: %+v", len(st.Jobs), st.Jobs)
	}
	job := st.Jobs[0].ID
	if st.Jobs[0].Recorded != "COMPLETED" || st.Outcome != "done" {
		t.Errorf("the production's job %s: recorded %q, outcome %q; want COMPLETED, done", job, st.Jobs[0].Recorded, st.Outcome)
	}
	var got []string
	sumVisits, sumDone := 0, 0
	dirs := map[string]string{}
	for _, ps := range st.Pipelines {
		got = append(got, ps.Pipeline)
		dirs[ps.Pipeline] = ps.Dir
		if want := filepath.Join(st.Dir, "pipelines", ps.Pipeline); ps.Dir != want {
			t.Errorf("pipeline %s: run directory %s, want %s", ps.Pipeline, ps.Dir, want)
		}
		if ps.Visits != len(visits) || ps.Counts["done"] != len(visits) || ps.Outcome != "done" {
			t.Errorf("pipeline %s: %d visits, counts %v, outcome %q; want %d done", ps.Pipeline, ps.Visits, ps.Counts, ps.Outcome, len(visits))
		}
		if len(ps.Jobs) != 1 || ps.Jobs[0].ID != job {
			t.Errorf("pipeline %s: jobs %+v, want the production's one job %s", ps.Pipeline, ps.Jobs, job)
		}
		sumVisits += ps.Visits
		sumDone += ps.Counts["done"]
	}
	if !slices.Equal(got, names) {
		t.Fatalf("status lists pipelines %v, want %v", got, names)
	}
	if st.Visits != sumVisits || st.Counts["done"] != sumDone || sumDone != len(names)*len(visits) {
		t.Errorf("the production's visits %d, counts %v; want the pipelines' sums, %d done", st.Visits, st.Counts, len(names)*len(visits))
	}

	// The outputs: association's carry, for each visit, what detect
	// found and what mops's predictions event for that visit said.
	for _, v := range visits {
		var predicted []map[string]any
		if !readJSON(t, filepath.Join(dirs["mops"], "output", v.ID, "predicted.json"), &predicted) {
			continue
		}
		ra, dec := propFloat(t, v, "ra"), propFloat(t, v, "dec")
		for ccd := 1; ccd <= 2; ccd++ {
			var sources []map[string]any
			if !readJSON(t, filepath.Join(dirs["detect"], "output", v.ID, fmt.Sprintf("ccd%d-sources.json", ccd)), &sources) {
				continue
			}
			if len(sources) == 0 {
				t.Errorf("detect found no sources in visit %s ccd %d", v.ID, ccd)
			}
			for _, s := range sources {
				if id, _ := s["id"].(string); !strings.HasPrefix(id, fmt.Sprintf("%s-%d-", v.ID, ccd)) {
					t.Errorf("visit %s ccd %d: detect's catalogue holds source %v", v.ID, ccd, s["id"])
				}
			}
			var a struct {
				Visit      string
				CCD        int
				DIASources int
				Predicted  int
				Matched    int
				Field      struct{ RA, Dec float64 }
			}
			if !readJSON(t, filepath.Join(dirs["association"], "output", v.ID, fmt.Sprintf("ccd%d-associated.json", ccd)), &a) {
				continue
			}
			want := fmt.Sprintf("visit %s ccd %d: %d sources, %d predicted, %d matched, field %g %g",
				v.ID, ccd, len(sources), len(predicted), min(len(sources), len(predicted)), ra, dec)
			got := fmt.Sprintf("visit %s ccd %d: %d sources, %d predicted, %d matched, field %g %g",
				a.Visit, a.CCD, a.DIASources, a.Predicted, a.Matched, a.Field.RA, a.Field.Dec)
			if got != want || math.Abs(a.Field.RA-ra) > 1e-9 || math.Abs(a.Field.Dec-dec) > 1e-9 {
				t.Errorf("association's output for the visit:\n got %s\nwant %s", got, want)
			}
		}
	}

	// association ran three visits at once: every visit's result is its
	// own, its known objects from one worker per slice for the run.
	checkAssociation(t, filepath.Dir(prodFile), dirs["association"])
	t.Logf("from detect's output to association's, by visit: %v", nightlyLags(t, filepath.Join(st.Dir, "pipelines")))

	// The events each pipeline recorded.
	evs := e.events("nightly-1")
	type key struct{ receiver, dir, topic, kind, visit string }
	count := map[key]int{}
	closed := map[string][]eventJSON{} // no-more-data received on its trigger, by pipeline
	announced := map[string]time.Time{}
	for _, ev := range evs {
		if ev.Job != job {
			t.Errorf("event %+v recorded for another job than %s", ev, job)
		}
		visit, _ := ev.Props["visitId"].(string)
		count[key{ev.Receiver, ev.Dir, ev.Topic, ev.Kind, visit}]++
		if ev.Dir == "in" && ev.Kind == "no-more-data" {
			closed[ev.Receiver] = append(closed[ev.Receiver], ev)
		}
		if ev.Dir == "out" && ev.Topic == "dpsbatch.pipeline" && ev.Receiver == ev.Props["pipeline"] {
			announced[fmt.Sprintf("%s %v", ev.Receiver, ev.Props["state"])] = ev.At
		}
	}
	for _, v := range visits {
		for _, w := range []key{
			{"mops", "in", "pointings", "data", v.ID},
			{"association", "in", "diasources", "data", v.ID},
			{"association", "in", "predictions", "data", v.ID},
			{"detect", "out", "diasources", "data", v.ID},
			{"detect", "out", "pointings", "data", v.ID},
			{"mops", "out", "predictions", "data", v.ID},
			{"association", "out", "associated", "data", v.ID},
		} {
			if n := count[w]; n != 1 {
				t.Errorf("%s recorded %d events %q %s for visit %s, want 1", w.receiver, n, w.topic, w.dir, v.ID)
			}
		}
	}
	if t.Failed() {
		for _, ev := range evs {
			t.Logf("event: %s %s %s %q %v", ev.Receiver, ev.Dir, ev.Topic, ev.Kind, ev.Props)
		}
	}
	trigger := map[string]string{"mops": "pointings", "association": "diasources"}
	for _, name := range names[1:] {
		c := closed[name]
		if len(c) != 1 || c[0].Topic != trigger[name] || c[0].Props["after"] != "detect" || c[0].Pipeline != name {
			t.Errorf("%s: no-more-data received %+v; want one on %s, sent by the after rule (after=detect)", name, c, trigger[name])
		}
	}
	if len(closed["detect"]) != 0 {
		t.Errorf("detect received no-more-data events %+v; its visit list ends it", closed["detect"])
	}
	for _, ps := range st.Pipelines[1:] {
		if !strings.Contains(ps.InputClosedWhy, "no-more-data") {
			t.Errorf("pipeline %s: its input closed because %q, want a no-more-data", ps.Pipeline, ps.InputClosedWhy)
		}
	}

	// At once: the listening pipelines started before detect ended (its
	// six visits take 3 s and more: detect.sh's 0.5 s per CCD, while the
	// steps start within a fraction of a second of each other), and the
	// job's three steps ran in that one job.
	end, ok := announced["detect ended"]
	for _, name := range names {
		start, started := announced[name+" started"]
		if !ok || !started || !start.Before(end) {
			t.Errorf("%s started at %v, detect ended at %v: want every pipeline started before detect ended", name, start, end)
		}
	}
	// wait returns once the state files decide the run's outcome; the job
	// script writes its steps' ends to the log as Slurm ends the job.
	waitJobGone(t, job, time.Minute)
	logText, err := os.ReadFile(filepath.Join(st.Dir, "logs", "slurm-"+job+".out"))
	if err != nil {
		t.Fatal(err)
	}
	log := string(logText)
	firstExit := len(log)
	if loc := stepExited.FindStringIndex(log); loc != nil {
		firstExit = loc[0]
	}
	for _, name := range names {
		start := strings.Index(log, "dpsbatch: step "+name+" starting")
		if start < 0 || !strings.Contains(log, "dpsbatch: step "+name+" exited 0 ") {
			t.Errorf("the job's log does not show step %s starting and exiting 0", name)
		} else if start > firstExit {
			t.Errorf("the job's log shows step %s starting after a step ended", name)
		}
	}
	if t.Failed() {
		t.Logf("the job's log:\n%s", log)
	}
	if steps := jobSteps(t, job); len(steps) != len(names) {
		t.Errorf("Slurm accounting lists steps %v of job %s, want %d (one per pipeline)", steps, job, len(names))
	}
}

// jobSteps waits until Slurm's accounting lists the numbered steps of
// job (those srun started) as ended, and returns them with their state.
func jobSteps(t *testing.T, job string) []string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := exec.Command("sacct", "-n", "-P", "-j", job, "-o", "JobID,State").Output()
		if err != nil {
			t.Fatalf("sacct -j %s: %v", job, err)
		}
		var steps []string
		ended := true
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			id, state, _ := strings.Cut(line, "|")
			step, ok := strings.CutPrefix(id, job+".")
			if !ok {
				continue
			}
			if _, err := strconv.Atoi(step); err != nil {
				continue // batch, extern
			}
			steps = append(steps, id+" "+state)
			ended = ended && state != "RUNNING" && state != "PENDING"
		}
		if (len(steps) > 0 && ended) || time.Now().After(deadline) {
			return steps
		}
		time.Sleep(time.Second)
	}
}

// TestBatchProductionBadInput submits productions that cannot run and
// flags that do not apply to one: each exits 2 with an error naming the
// production file and what is wrong, and no run directory appears.
func TestBatchProductionBadInput(t *testing.T) {
	e := newBatchEnv(t)
	prodFile := e.nightly("nightly-bad")
	visits := filepath.Join(filepath.Dir(prodFile), "detect", "visits.csv")

	// mops listens on a topic no pipeline publishes.
	unheard := e.nightly("nightly-unheard")
	mops := filepath.Join(filepath.Dir(unheard), "mops", "pipeline.yaml")
	data, err := os.ReadFile(mops)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "topic: pointings", "topic: pointing", 1)
	if bad == string(data) {
		t.Fatal("the mops policy has no line topic: pointings to break")
	}
	writeFile(t, mops, bad)

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"submit", prodFile, "--visits", visits}, []string{prodFile, "--visits"}},
		{[]string{"submit", prodFile, "--listen"}, []string{prodFile, "--listen"}},
		{[]string{"submit", prodFile, "--slices", "3"}, []string{prodFile, "--slices"}},
		{[]string{"submit", unheard, "--name", "unheard"}, []string{unheard + ":", `"mops"`, `"pointing"`, `did you mean "pointings"?`}},
		{[]string{"submit", "--dry-run", unheard}, []string{unheard + ":", `"pointing"`}},
	} {
		_, errOut, code := e.dps(time.Minute, tc.args...)
		if code != exitBadInput {
			t.Errorf("dpsbatch %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), code, exitBadInput, errOut)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("dpsbatch %s: the error does not mention %q:\n%s", strings.Join(tc.args, " "), w, errOut)
			}
		}
	}
	if ents, err := os.ReadDir(e.root); err != nil && !os.IsNotExist(err) || len(ents) != 0 {
		t.Errorf("bad input left %d entries in the runs root (%v)", len(ents), err)
	}
}

// TestBatchProductionStopResume stops examples/nightly (with a longer
// visit list) while detect is half way: every pipeline stops at a visit
// boundary, the job ends unfinished; resume runs what is left in a new
// job, the listening pipelines get the triggers they had not read, and
// every visit of every pipeline runs exactly once across the two jobs.
func TestBatchProductionStopResume(t *testing.T) {
	e := newBatchEnv(t)
	prodFile := e.nightly("nightly-stop")
	const visits = 16
	var csv strings.Builder
	csv.WriteString("visitId,filter,ra,dec\n")
	for i := range visits {
		fmt.Fprintf(&csv, "%d,r,%.2f,2.5\n", 4001+i, 150+0.5*float64(i))
	}
	writeFile(t, filepath.Join(filepath.Dir(prodFile), "detect", "visits.csv"), csv.String())

	e.must(0, time.Minute, "submit", prodFile, "--name", "stop-prod")
	e.cancelAtEnd("stop-prod")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := e.prodStatus("stop-prod")
		if len(st.Pipelines) == 3 && st.Pipelines[0].Counts["done"] >= 3 {
			break
		}
		if time.Now().After(deadline) || !st.Live && len(st.Jobs) > 0 && st.Outcome != "pending" {
			t.Fatalf("detect did not get going: %+v", st)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if out := e.must(0, time.Minute, "stop", "stop-prod"); !strings.Contains(out, "shutdown event on dpsbatch.control sent to job") {
		t.Fatalf("stop:\n%s", out)
	}
	e.must(1, 3*time.Minute, "wait", "stop-prod", "--interval", "1s")
	st := e.prodStatus("stop-prod")
	det := st.Pipelines[0]
	if det.Counts["done"] == visits || det.Counts["pending"] == 0 || len(st.Jobs) != 1 || st.Outcome != "unfinished" {
		t.Fatalf("after stop: detect %v, outcome %s, %d jobs; want detect stopped half way, unfinished", det.Counts, st.Outcome, len(st.Jobs))
	}
	if j := st.Jobs[0]; j.Died || !strings.Contains(j.Reason, "detect stopped: shutdown event") {
		t.Errorf("the stopped job: %+v; want it recorded as detect stopped by the shutdown event", j)
	}

	out := e.must(0, time.Minute, "resume", "stop-prod")
	if !strings.Contains(out, "attempt 2") {
		t.Fatalf("resume:\n%s", out)
	}
	e.must(0, 3*time.Minute, "wait", "stop-prod", "--interval", "1s")
	st = e.prodStatus("stop-prod")
	if len(st.Jobs) != 2 || st.Outcome != "done" || st.Visits != 3*visits || st.Counts["done"] != 3*visits {
		t.Fatalf("after resume: %d jobs, %s, %d visits %v; want 2 jobs, done, %d visits done", len(st.Jobs), st.Outcome, st.Visits, st.Counts, 3*visits)
	}
	// Each pipeline published its event once per visit, across both jobs:
	// no visit ran twice, none was lost.
	published := map[string]map[string]int{}
	jobsOf := map[string]map[string]bool{}
	for _, ev := range e.events("stop-prod") {
		if ev.Dir != "out" || ev.Kind != "data" || ev.Topic == "dpsbatch.pipeline" {
			continue
		}
		v := fmt.Sprint(ev.Props["visitId"])
		if published[ev.Topic] == nil {
			published[ev.Topic], jobsOf[ev.Topic] = map[string]int{}, map[string]bool{}
		}
		published[ev.Topic][v]++
		jobsOf[ev.Topic][ev.Job] = true
	}
	for _, topic := range []string{"diasources", "pointings", "predictions", "associated"} {
		if n := len(published[topic]); n != visits {
			t.Errorf("%s published for %d visits, want %d", topic, n, visits)
		}
		for v, n := range published[topic] {
			if n != 1 {
				t.Errorf("%s published %d times for visit %s, want once", topic, n, v)
			}
		}
	}
	if len(jobsOf["diasources"]) != 2 {
		t.Errorf("detect published in jobs %v; want both jobs", jobsOf["diasources"])
	}
}

// TestBatchProductionEntryNames runs a production whose entries are named
// apart from their policies' pipeline names: source (policy src) feeds
// wa and wb, whose two policies are both named worker and select apart on
// one trigger topic, and which run after source. One name per pipeline,
// the entry's, holds throughout the run: the after rule hears source's
// end, so both inputs close and the job completes, and wa and wb keep
// their own subscriptions, so each runs its own ten visits, once.
func TestBatchProductionEntryNames(t *testing.T) {
	e := newBatchEnv(t)
	dir := filepath.Join(filepath.Dir(e.dir), "entry-names")
	writeFile(t, filepath.Join(dir, "src.yaml"), `pipeline: src
slices: 1
mapper: {type: rank}
events: {trigger: {topic: visits, properties: {band: string}}}
stages:
  - name: announce
    type: event
    settings: {topic: work, properties: {band: "{band}"}}
`)
	for _, band := range []string{"a", "b"} {
		writeFile(t, filepath.Join(dir, "worker-"+band+".yaml"), fmt.Sprintf(`pipeline: worker
slices: 1
mapper: {type: rank}
locations: {output: "output/{visit}"}
events: {trigger: {topic: work, properties: {band: string}, select: {band: %s}}}
stages:
  - name: work
    type: exec
    settings:
      command: [sh, -c, 'mkdir -p "$1" && echo "$2" >> "$1/ran.log"', sh, "{output}", "{visit}"]
`, band))
	}
	const visits = 20
	var csv strings.Builder
	csv.WriteString("visitId,band\n")
	for i := range visits {
		fmt.Fprintf(&csv, "v%02d,%s\n", i, []string{"a", "b"}[i%2])
	}
	writeFile(t, filepath.Join(dir, "visits.csv"), csv.String())
	prodFile := filepath.Join(dir, "production.yaml")
	writeFile(t, prodFile, `production: entries
pipelines:
  - {name: source, policy: src.yaml, visits: visits.csv, slices: 1}
  - {name: wa, policy: worker-a.yaml, slices: 1, after: [source]}
  - {name: wb, policy: worker-b.yaml, slices: 1, after: [source]}
`)

	e.must(0, time.Minute, "submit", prodFile, "--name", "entry-names")
	e.cancelAtEnd("entry-names")
	if out, errOut, code := e.dps(2*time.Minute, "wait", "entry-names", "--interval", "1s"); code != 0 {
		t.Fatalf("wait: exit %d, want 0 (every input closed, every visit done)\n%s%s\nstatus: %+v", code, out, errOut, e.prodStatus("entry-names"))
	}
	st := e.prodStatus("entry-names")
	want := map[string]int{"source": visits, "wa": visits / 2, "wb": visits / 2}
	for _, ps := range st.Pipelines {
		if ps.Counts["done"] != want[ps.Pipeline] || ps.Visits != want[ps.Pipeline] {
			t.Errorf("pipeline %s: %d visits %v, want %d done", ps.Pipeline, ps.Visits, ps.Counts, want[ps.Pipeline])
		}
		if ps.Pipeline != "source" && !strings.Contains(ps.InputClosedWhy, "source") {
			t.Errorf("pipeline %s: input closed %q; want it closed after source", ps.Pipeline, ps.InputClosedWhy)
		}
	}
	// Each worker ran each of its visits once, on its own band only.
	runDir := filepath.Join(e.root, "entry-names")
	for i := range visits {
		v, band := fmt.Sprintf("v%02d", i), []string{"a", "b"}[i%2]
		for _, w := range []string{"a", "b"} {
			data, _ := os.ReadFile(filepath.Join(runDir, "pipelines", "w"+w, "output", v, "ran.log"))
			n := strings.Count(string(data), v)
			if (w == band) != (n == 1) || n > 1 {
				t.Errorf("visit %s (band %s) ran %d times in w%s", v, band, n, w)
			}
		}
	}
	// Every event of a pipeline carries its entry's name.
	for _, ev := range e.events("entry-names") {
		if ev.Dir == "out" && ev.Topic == "dpsbatch.pipeline" && !slices.Contains([]string{"source", "wa", "wb"}, ev.Pipeline) {
			t.Errorf("announcement from pipeline %q: want an entry's name", ev.Pipeline)
		}
	}
}
