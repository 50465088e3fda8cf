package slurmrest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// v0038 is API version v0.0.38 (Slurm 22.05; dropped in 23.11) with its
// accounting plugin dbv0.0.38: the field shapes below, recorded from the
// local cluster in testdata/ (record.sh).
var v0038 = &api{
	version:      "v0.0.38",
	submitBody:   submitBody0038,
	submitted:    submitted0038,
	pings:        pings0038,
	jobs:         jobs0038,
	nodes:        nodes0038,
	partitions:   partitions0038,
	dbJobs:       dbJobs0038,
	dbUsage:      dbUsage0038,
	associations: associations0038,
	accounts:     names0038("accounts"),
	qos:          names0038("QOS"),
}

// submission0038 is the body of POST /slurm/v0.0.38/job/submit. The
// script's own #SBATCH lines are not read by slurmrestd: the job's
// properties go in job.
type submission0038 struct {
	Script string    `json:"script"`
	Job    job0038In `json:"job"`
}

type job0038In struct {
	Name         string            `json:"name,omitempty"`
	Partition    string            `json:"partition,omitempty"`
	Account      string            `json:"account,omitempty"`
	QoS          string            `json:"qos,omitempty"`
	WorkDir      string            `json:"current_working_directory,omitempty"`
	Environment  map[string]string `json:"environment"`
	Output       string            `json:"standard_output,omitempty"`
	Error        string            `json:"standard_error,omitempty"`
	OpenMode     string            `json:"open_mode,omitempty"`
	Nodes        []int             `json:"nodes,omitempty"`
	Tasks        int               `json:"tasks,omitempty"`
	TasksPerNode int               `json:"tasks_per_node,omitempty"`
	CPUsPerTask  int               `json:"cpus_per_task,omitempty"`
	MemPerCPU    int               `json:"memory_per_cpu,omitempty"`
	MemPerNode   int               `json:"memory_per_node,omitempty"`
	TimeLimit    int               `json:"time_limit,omitempty"` // minutes
	Dependency   string            `json:"dependency,omitempty"`
	Constraints  string            `json:"constraints,omitempty"`
	Reservation  string            `json:"reservation,omitempty"`
	GRES         string            `json:"gres,omitempty"`
	GPUsPerTask  string            `json:"gpus_per_task,omitempty"`
	Signal       string            `json:"signal,omitempty"`
	Requeue      *bool             `json:"requeue,omitempty"`
	Exclusive    string            `json:"exclusive,omitempty"`
}

func submitBody0038(script []byte, d JobDesc) any {
	in := job0038In{
		Name: d.Name, Partition: d.Partition, Account: d.Account, QoS: d.QoS, WorkDir: d.WorkDir,
		Environment: d.Environment, Output: d.Output, Error: d.Error,
		Tasks: d.Tasks, TasksPerNode: d.TasksPerNode, CPUsPerTask: d.CPUsPerTask,
		MemPerCPU: d.MemPerCPUMB, MemPerNode: d.MemPerNodeMB, TimeLimit: minutes(d.TimeLimit),
		Dependency: d.Dependency, Constraints: d.Constraint, Reservation: d.Reservation,
		GRES: d.GRES, GPUsPerTask: d.GPUsPerTask, Signal: d.Signal, Requeue: d.Requeue, Exclusive: d.Exclusive,
	}
	if d.OpenAppend {
		in.OpenMode = "append"
	}
	if d.Nodes > 0 {
		in.Nodes = []int{d.Nodes, max(d.Nodes, d.MaxNodes)}
	}
	return submission0038{Script: string(script), Job: in}
}

// minutes is d in whole minutes, rounded up.
func minutes(d time.Duration) int {
	return int((d + time.Minute - 1) / time.Minute)
}

func submitted0038(body []byte) (string, error) {
	var r struct {
		JobID *int64 `json:"job_id"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.JobID == nil {
		return "", fmt.Errorf("no job_id in the answer %s", excerpt(body))
	}
	return strconv.FormatInt(*r.JobID, 10), nil
}

func pings0038(body []byte) ([]Ping, error) {
	var r struct {
		Pings []struct {
			Hostname string `json:"hostname"`
			Ping     string `json:"ping"`
			Mode     string `json:"mode"`
		} `json:"pings"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	out := make([]Ping, len(r.Pings))
	for i, p := range r.Pings {
		out[i] = Ping{Host: p.Hostname, Up: p.Ping == "UP", Mode: p.Mode}
	}
	return out, nil
}

// job0038 is a job of GET /slurm/v0.0.38/jobs and /job/{id}.
type job0038 struct {
	JobID       int64  `json:"job_id"`
	ArrayJobID  int64  `json:"array_job_id"`
	ArrayTaskID *int64 `json:"array_task_id"`
	Name        string `json:"name"`
	User        string `json:"user_name"`
	Account     string `json:"account"`
	Partition   string `json:"partition"`
	QoS         string `json:"qos"`
	JobState    string `json:"job_state"`
	StateReason string `json:"state_reason"`
	ExitCode    *int64 `json:"exit_code"` // a wait status: exit code << 8 | signal
	SubmitTime  int64  `json:"submit_time"`
	StartTime   int64  `json:"start_time"`
	EndTime     int64  `json:"end_time"`
	TimeLimit   *int64 `json:"time_limit"` // minutes; null: none
	Nodes       string `json:"nodes"`
	RestartCnt  int    `json:"restart_cnt"`
	WorkDir     string `json:"current_working_directory"`
}

// ParseJobs reads jobs in API v0.0.38's format: the answer of
// /slurm/v0.0.38/jobs, which is also what Slurm 22.05's squeue --json
// prints. It does not read the errors array.
func ParseJobs(body []byte) ([]Job, error) { return jobs0038(body) }

func jobs0038(body []byte) ([]Job, error) {
	var r struct {
		Jobs []job0038 `json:"jobs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	out := make([]Job, len(r.Jobs))
	for i, w := range r.Jobs {
		out[i] = w.job()
	}
	return out, nil
}

func (w job0038) job() Job {
	j := Job{
		ID: strconv.FormatInt(w.JobID, 10), Name: w.Name, User: w.User, Account: w.Account,
		Partition: w.Partition, QoS: w.QoS, State: strings.ToUpper(w.JobState), Reason: reason(w.StateReason),
		Submitted: epoch(w.SubmitTime), Nodes: w.Nodes, Restarts: w.RestartCnt, WorkDir: w.WorkDir,
	}
	if w.ArrayTaskID != nil && w.ArrayJobID > 0 {
		j.ID = fmt.Sprintf("%d_%d", w.ArrayJobID, *w.ArrayTaskID)
	}
	if w.ExitCode != nil {
		j.ExitCode, j.Signal, j.ExitKnown = int(*w.ExitCode>>8&0xff), int(*w.ExitCode&0x7f), true
	}
	if w.TimeLimit != nil {
		j.TimeLimit = time.Duration(*w.TimeLimit) * time.Minute
	}
	// Slurm fills the start and end with its expectations before they
	// happen: keep only what did.
	if j.State == "PENDING" {
		j.Expected = epoch(w.StartTime)
	} else {
		j.Started = epoch(w.StartTime)
	}
	if !live(j.State) {
		j.Ended = epoch(w.EndTime)
	}
	return j
}

func nodes0038(body []byte) ([]Node, error) {
	var r struct {
		Nodes []struct {
			Name       string   `json:"name"`
			State      string   `json:"state"`
			StateFlags []string `json:"state_flags"`
			CPUs       int      `json:"cpus"`
			RealMemory int      `json:"real_memory"`
			Partitions []string `json:"partitions"`
			Features   string   `json:"features"`
			GRES       string   `json:"gres"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	out := make([]Node, len(r.Nodes))
	for i, n := range r.Nodes {
		out[i] = Node{Name: n.Name, State: strings.ToLower(n.State), Flags: n.StateFlags, CPUs: n.CPUs,
			MemoryMB: n.RealMemory, Partitions: n.Partitions, Features: list(n.Features), GRES: n.GRES}
	}
	return out, nil
}

func partitions0038(body []byte) ([]Partition, error) {
	var r struct {
		Partitions []struct {
			Name            string   `json:"name"`
			Flags           []string `json:"flags"`
			State           string   `json:"state"`
			Nodes           string   `json:"nodes"`
			MaxTime         int64    `json:"max_time_limit"`        // minutes; -1: unlimited
			MaxNodes        int64    `json:"maximum_nodes_per_job"` // -1: unlimited
			AllowedAccounts string   `json:"allowed_accounts"`
			AllowedQoS      string   `json:"allowed_qos"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	out := make([]Partition, len(r.Partitions))
	for i, p := range r.Partitions {
		out[i] = Partition{Name: p.Name, Up: p.State == "UP", Default: slices.Contains(p.Flags, "default"), NodeList: p.Nodes,
			AllowedAccounts: list(p.AllowedAccounts), AllowedQoS: list(p.AllowedQoS)}
		if p.MaxTime > 0 {
			out[i].MaxTime = time.Duration(p.MaxTime) * time.Minute
		}
		if p.MaxNodes > 0 {
			out[i].MaxNodes = int(p.MaxNodes)
		}
	}
	return out, nil
}

// dbJob0038 is a job of GET /slurmdb/v0.0.38/jobs.
type dbJob0038 struct {
	JobID   int64  `json:"job_id"`
	Name    string `json:"name"`
	User    string `json:"user"`
	Account string `json:"account"`
	Array   struct {
		JobID  int64  `json:"job_id"`
		TaskID *int64 `json:"task_id"`
	} `json:"array"`
	Partition string `json:"partition"`
	QoS       string `json:"qos"`
	Nodes     string `json:"nodes"`
	WorkDir   string `json:"working_directory"`
	State     struct {
		Current string `json:"current"`
		Reason  string `json:"reason"`
	} `json:"state"`
	ExitCode struct {
		Status     string `json:"status"` // SUCCESS, FAILED, SIGNALED, ...
		ReturnCode int    `json:"return_code"`
		Signal     struct {
			ID int `json:"signal_id"`
		} `json:"signal"`
	} `json:"exit_code"`
	Time struct {
		Submission int64  `json:"submission"`
		Start      int64  `json:"start"`
		End        int64  `json:"end"`
		Limit      *int64 `json:"limit"` // minutes
	} `json:"time"`
}

func dbJobs0038(body []byte) ([]Job, error) {
	var r struct {
		Jobs []dbJob0038 `json:"jobs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	out := make([]Job, len(r.Jobs))
	for i, w := range r.Jobs {
		j := Job{
			ID: strconv.FormatInt(w.JobID, 10), Name: w.Name, User: w.User, Account: w.Account,
			Partition: w.Partition, QoS: w.QoS, State: strings.ToUpper(w.State.Current), Reason: reason(w.State.Reason),
			Submitted: epoch(w.Time.Submission), Started: epoch(w.Time.Start), Ended: epoch(w.Time.End),
			Nodes: w.Nodes, WorkDir: w.WorkDir,
		}
		if w.Array.TaskID != nil && w.Array.JobID > 0 {
			j.ID = fmt.Sprintf("%d_%d", w.Array.JobID, *w.Array.TaskID)
		}
		if w.Time.Limit != nil {
			j.TimeLimit = time.Duration(*w.Time.Limit) * time.Minute
		}
		if j.Nodes == "None assigned" {
			j.Nodes = ""
		}
		j.ExitCode, j.Signal = w.ExitCode.ReturnCode, w.ExitCode.Signal.ID
		// Slurm 22.05 reports SUCCESS and 0 for a job whose script
		// exited 3 (state FAILED): believe a success only of a job that
		// completed.
		j.ExitKnown = w.ExitCode.Status != "SUCCESS" || j.State == "COMPLETED"
		out[i] = j
	}
	return out, nil
}

func associations0038(body []byte) ([]Association, error) {
	var r struct {
		Associations []struct {
			Cluster   string   `json:"cluster"`
			Account   string   `json:"account"`
			Partition *string  `json:"partition"`
			User      string   `json:"user"`
			QoS       []string `json:"qos"`
			IsDefault int      `json:"is_default"`
		} `json:"associations"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	out := make([]Association, len(r.Associations))
	for i, a := range r.Associations {
		out[i] = Association{Cluster: a.Cluster, Account: a.Account, User: a.User, QoS: a.QoS, Default: a.IsDefault != 0}
		if a.Partition != nil {
			out[i].Partition = *a.Partition
		}
	}
	return out, nil
}

// names0038 reads the name of each entry of the list key: accounts
// ("accounts") and QoS ("QOS") of /slurmdb/v0.0.38.
func names0038(key string) func(body []byte) ([]string, error) {
	return func(body []byte) ([]string, error) {
		var r map[string]json.RawMessage
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, err
		}
		var entries []struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(r[key], &entries); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name
		}
		return names, nil
	}
}

// epoch is Unix seconds as a time; 0 (and less) is the zero time.
func epoch(s int64) time.Time {
	if s <= 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

// reason is a job's state reason, "" for Slurm's "None".
func reason(r string) string {
	if r == "None" {
		return ""
	}
	return r
}

// list splits a comma-separated list; "" is none.
func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// ended holds the states of a job that has ended for good.
var ended = map[string]bool{
	"COMPLETED": true, "FAILED": true, "CANCELLED": true, "TIMEOUT": true, "NODE_FAIL": true,
	"OUT_OF_MEMORY": true, "PREEMPTED": true, "BOOT_FAIL": true, "DEADLINE": true, "REVOKED": true,
}

// live reports whether a job in state may still run.
func live(state string) bool { return state != "" && !ended[state] }
