package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// On the local cluster (nodes of 4 CPUs), a run of 4 slices plans 5
// tasks packed 4+1: the job's ranks land 4 on one node and 1 on another,
// as planned, and srun does not warn that it cannot honour
// --ntasks-per-node (it did, and spread them 3+2).
func TestBatchUnevenLayout(t *testing.T) {
	e := newBatchEnv(t)
	policy, visits := e.slowPipeline("uneven", 2, "0")
	data, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, policy, strings.Replace(string(data), "to: 2", "to: 4", 1))
	e.cancelAtEnd("uneven")
	e.must(0, time.Minute, "submit", policy, "--visits", visits, "--slices", "4", "--name", "uneven")
	e.must(0, 3*time.Minute, "wait", "uneven")
	st := e.status("uneven")
	log, err := os.ReadFile(filepath.Join(st.Dir, "logs", "slurm-"+st.Jobs[0].ID+".out"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "can't honor") {
		t.Errorf("the job's log has srun's warning:\n%s", log)
	}
	perNode := map[string]int{}
	for _, m := range regexp.MustCompile(`msg="rank started".* node=(\S+)`).FindAllStringSubmatch(string(log), -1) {
		perNode[m[1]]++
	}
	var counts []int
	for _, n := range perNode {
		counts = append(counts, n)
	}
	slices.Sort(counts)
	if !slices.Equal(counts, []int{1, 4}) {
		t.Errorf("ranks per node %v; want the plan's 4+1\n%s", perNode, log)
	}
}
