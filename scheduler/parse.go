package scheduler

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
	"github.com/dpsbatch/dpsbatch/scheduler/slurmrest"
	"github.com/dpsbatch/dpsbatch/site"
)

// This file reads what Slurm 22.05's tools print. Each parser is tested on
// output captured from the local cluster (testdata/).

// jobID is a Slurm job ID: 123, an array task 123_4, a het component 123+1.
var jobID = regexp.MustCompile(`^[0-9]+(_[0-9]+)?(\+[0-9]+)?$`)

// idSet checks ids and returns them as a set.
func idSet(ids []string) (map[string]bool, error) {
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		if !jobID.MatchString(id) {
			return nil, fmt.Errorf("scheduler: bad job id %q (want digits such as 123, or 123_4): %w", id, conf.ErrInvalid)
		}
		set[id] = true
	}
	return set, nil
}

// parseSbatch reads the job ID that sbatch --parsable prints: "123", or
// "123;cluster" on a multi-cluster setup.
func parseSbatch(out []byte) (string, error) {
	line := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = strings.TrimSpace(line[i+1:])
	}
	id, _, _ := strings.Cut(line, ";")
	if !jobID.MatchString(id) {
		return "", fmt.Errorf("scheduler: sbatch --parsable printed %q, not a job ID", strings.TrimSpace(string(out)))
	}
	return id, nil
}

type metaJSON struct {
	Plugin struct {
		Type string `json:"type"`
	} `json:"plugin"`
	Slurm struct {
		Release string `json:"release"`
	} `json:"Slurm"`
}

// decodeJSON decodes JSON of OpenAPI v0.0.38 from what (such as
// "squeue --json") into v, saying which format was expected when it does
// not fit.
func decodeJSON(what string, out []byte, v any, errs *[]json.RawMessage) error {
	if err := json.Unmarshal(out, v); err != nil {
		return formatError(what, out, err)
	}
	if len(*errs) > 0 {
		msgs := make([]string, len(*errs))
		for i, e := range *errs {
			msgs[i] = string(e)
		}
		return fmt.Errorf("scheduler: %s reports errors: %s", what, strings.Join(msgs, "; "))
	}
	return nil
}

// formatError is err reading what's output, naming the format it has and
// the one expected.
func formatError(what string, out []byte, err error) error {
	var m struct {
		Meta metaJSON `json:"meta"`
	}
	_ = json.Unmarshal(out, &m)
	return fmt.Errorf("scheduler: %s: cannot read its output (format %q of Slurm %q; want openapi/v0.0.38, Slurm 22.05): %w",
		what, m.Meta.Plugin.Type, m.Meta.Slurm.Release, err)
}

// parseSqueue reads squeue --json.
func parseSqueue(out []byte) ([]Job, error) {
	var q struct {
		Errors []json.RawMessage `json:"errors"`
	}
	if err := decodeJSON("squeue --json", out, &q, &q.Errors); err != nil {
		return nil, err
	}
	rs, err := slurmrest.ParseJobs(out)
	if err != nil {
		return nil, formatError("squeue --json", out, err)
	}
	jobs := make([]Job, len(rs))
	for i, r := range rs {
		jobs[i] = fromREST(r, "squeue")
	}
	return jobs, nil
}

// sacctFormat is the --format of History's sacct. JobName comes last: it
// is the one free text field, and may hold the delimiter.
const sacctFormat = "JobID,State,ExitCode,Reason,Submit,Start,End,NodeList,Partition,JobName"

// parseSacct reads sacct --parsable2 --noheader --format=sacctFormat, with
// times as epoch seconds (SLURM_TIME_FORMAT=%s).
func parseSacct(out []byte) ([]Job, error) {
	var jobs []Job
	n := strings.Count(sacctFormat, ",") + 1
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		f := strings.SplitN(text, "|", n)
		if len(f) != n {
			return nil, fmt.Errorf("scheduler: sacct output line %d: want %d fields (%s), got %q", line, n, sacctFormat, text)
		}
		state, _, _ := strings.Cut(f[1], " ") // "CANCELLED by 1000"
		j := Job{
			ID:        f[0],
			State:     strings.ToUpper(state),
			Reason:    reason(f[3]),
			Submitted: sacctTime(f[4]),
			Started:   sacctTime(f[5]),
			Ended:     sacctTime(f[6]),
			Nodes:     f[7],
			Partition: f[8],
			Name:      f[9],
			Source:    "sacct",
		}
		if j.Nodes == "None assigned" {
			j.Nodes = ""
		}
		code, sig, ok := strings.Cut(f[2], ":")
		var err1, err2 error
		if ok {
			j.ExitCode, err1 = strconv.Atoi(code)
			j.Signal, err2 = strconv.Atoi(sig)
		}
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("scheduler: sacct output line %d: exit code %q is not CODE:SIGNAL", line, f[2])
		}
		jobs = append(jobs, j)
	}
	return jobs, sc.Err()
}

// sacctTime reads a time printed as epoch seconds; "Unknown", "None" and
// 0 are the zero time.
func sacctTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return epoch(n)
}

func epoch(s int64) time.Time {
	if s <= 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

func reason(s string) string {
	if s == "None" || s == "(null)" {
		return ""
	}
	return s
}

// parseClusterName finds ClusterName in scontrol show config.
func parseClusterName(out []byte) string {
	for line := range strings.Lines(string(out)) {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "ClusterName" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// sinfoJSON is the part of sinfo --json's output (v0.0.38) Partitions reads.
type sinfoJSON struct {
	Meta   metaJSON          `json:"meta"`
	Errors []json.RawMessage `json:"errors"`
	Nodes  []struct {
		Name       string   `json:"name"`
		CPUs       int      `json:"cpus"`
		RealMemory int      `json:"real_memory"`
		Partitions []string `json:"partitions"`
		Features   string   `json:"features"` // comma-separated
		GRES       string   `json:"gres"`     // such as gpu:2 or gpu:a100:2(S:0-1),mps:100
	} `json:"nodes"`
}

// gpuCount is the number of GPUs a node's GRES (sinfo's gres, slurm.conf's
// Gres) lists: the counts of its gpu entries, of any type, summed; 0 when
// it lists none or is unreadable.
func gpuCount(gres string) int {
	total := 0
	for _, entry := range strings.Split(gres, ",") {
		entry, _, _ = strings.Cut(entry, "(") // socket binding, such as (S:0-1)
		fields := strings.Split(strings.TrimSpace(entry), ":")
		if len(fields) < 2 || fields[0] != "gpu" {
			continue
		}
		if n, err := strconv.Atoi(fields[len(fields)-1]); err == nil && n > 0 {
			total += n
		}
	}
	return total
}

// parsePartitions builds the live partitions from scontrol --oneliner
// show partition (one partition a line, Key=Value fields) and the nodes of
// sinfo --json (or slurmrestd's /nodes, the same format).
func parsePartitions(cluster string, scontrol, sinfo []byte) ([]site.Live, error) {
	var s sinfoJSON
	if err := decodeJSON("sinfo --json", sinfo, &s, &s.Errors); err != nil {
		return nil, err
	}
	var lives []site.Live
	for line := range strings.Lines(string(scontrol)) {
		kv := keyValues(line)
		if len(kv) == 0 {
			continue
		}
		name := kv["PartitionName"]
		if name == "" {
			return nil, fmt.Errorf("scheduler: scontrol show partition: no PartitionName in %q", strings.TrimSpace(line))
		}
		l := site.Live{
			Name:     name,
			Up:       kv["State"] == "UP",
			Default:  kv["Default"] == "YES",
			NodeList: nullable(kv["Nodes"]),
			Cluster:  cluster,

			AllowedAccounts: allowList(list(kv["AllowAccounts"])),
			AllowedQoS:      allowList(list(kv["AllowQos"])),
		}
		if v := kv["MaxTime"]; v != "" {
			d, err := slurmtime.Parse(v)
			if err != nil {
				return nil, fmt.Errorf("scheduler: scontrol show partition %s: MaxTime: %w", name, err)
			}
			l.MaxTime = d
		}
		if v := kv["MaxNodes"]; v != "" && v != "UNLIMITED" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("scheduler: scontrol show partition %s: MaxNodes %q is not a number", name, v)
			}
			l.MaxNodes = n
		}
		for _, node := range s.Nodes {
			for _, p := range node.Partitions {
				if p != name {
					continue
				}
				if len(l.Nodes) == 0 || node.CPUs < l.CPUsPerNode {
					l.CPUsPerNode = node.CPUs
				}
				if len(l.Nodes) == 0 || node.RealMemory < l.MemoryMB {
					l.MemoryMB = node.RealMemory
				}
				l.Nodes = append(l.Nodes, node.Name)
				l.AddFeatures(strings.Split(node.Features, ",")...)
				l.AddGPUs(node.Name, gpuCount(node.GRES))
			}
		}
		lives = append(lives, l)
	}
	return lives, nil
}
