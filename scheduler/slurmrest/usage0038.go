package slurmrest

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// The usage in dbv0.0.38's jobs: a job's time, TRES and steps. Slurm
// 22.05 (checked on the local cluster) swaps a step's TRES: the peak
// memory sacct calls MaxRSS is under tres.requested.max, not
// tres.consumed.max; both are read, the larger kept.

type usage0038 struct {
	JobID int64 `json:"job_id"`
	Array struct {
		JobID  int64  `json:"job_id"`
		TaskID *int64 `json:"task_id"`
	} `json:"array"`
	State struct {
		Current string `json:"current"`
	} `json:"state"`
	Time struct {
		Elapsed int64 `json:"elapsed"` // seconds
		Start   int64 `json:"start"`
		End     int64 `json:"end"`
	} `json:"time"`
	TRES struct {
		Allocated []tres0038 `json:"allocated"`
		Requested []tres0038 `json:"requested"`
	} `json:"tres"`
	Steps []step0038 `json:"steps"`
}

type tres0038 struct {
	Type  string `json:"type"`
	Count *int64 `json:"count"`
	Node  string `json:"node"`
}

type step0038 struct {
	Step struct {
		ID   json.RawMessage `json:"id"` // "batch", "extern", or a number
		Name string          `json:"name"`
	} `json:"step"`
	State string `json:"state"`
	Time  struct {
		Elapsed int64     `json:"elapsed"`
		Total   cpuTime38 `json:"total"`
	} `json:"time"`
	Tasks struct {
		Count int `json:"count"`
	} `json:"tasks"`
	TRES struct {
		Requested struct {
			Max []tres0038 `json:"max"`
		} `json:"requested"`
		Consumed struct {
			Max []tres0038 `json:"max"`
		} `json:"consumed"`
	} `json:"tres"`
}

type cpuTime38 struct {
	Seconds      int64 `json:"seconds"`
	Microseconds int64 `json:"microseconds"`
}

func dbUsage0038(body []byte) ([]Usage, error) {
	var r struct {
		Jobs []usage0038 `json:"jobs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	out := make([]Usage, len(r.Jobs))
	for i, w := range r.Jobs {
		out[i] = w.usage()
	}
	return out, nil
}

func (w usage0038) usage() Usage {
	u := Usage{JobID: strconv.FormatInt(w.JobID, 10), State: strings.ToUpper(w.State.Current),
		Started: epoch(w.Time.Start), Ended: epoch(w.Time.End), Elapsed: time.Duration(w.Time.Elapsed) * time.Second}
	if w.Array.TaskID != nil && w.Array.JobID > 0 {
		u.JobID = strconv.FormatInt(w.Array.JobID, 10) + "_" + strconv.FormatInt(*w.Array.TaskID, 10)
	}
	if cpu, ok := tresOf(w.TRES.Allocated, "cpu"); ok {
		u.CPUs = int(cpu.count())
	}
	if mem, ok := tresOf(w.TRES.Requested, "mem"); ok {
		u.ReqMemMB = mem.count()
	}
	for _, s := range w.Steps {
		u.Steps = append(u.Steps, s.usage())
	}
	return u
}

func (s step0038) usage() StepUsage {
	id := strings.Trim(string(s.Step.ID), `"`)
	su := StepUsage{ID: id, Name: s.Step.Name, State: strings.ToUpper(s.State), Tasks: s.Tasks.Count,
		Elapsed: time.Duration(s.Time.Elapsed) * time.Second,
		CPU:     time.Duration(s.Time.Total.Seconds)*time.Second + time.Duration(s.Time.Total.Microseconds)*time.Microsecond}
	for _, list := range [][]tres0038{s.TRES.Requested.Max, s.TRES.Consumed.Max} {
		if mem, ok := tresOf(list, "mem"); ok && mem.count() > su.MaxRSS {
			su.MaxRSS, su.MaxRSSNode = mem.count(), mem.Node
		}
	}
	return su
}

// tresOf finds the TRES of type kind in list.
func tresOf(list []tres0038, kind string) (tres0038, bool) {
	for _, t := range list {
		if t.Type == kind {
			return t, true
		}
	}
	return tres0038{}, false
}

func (t tres0038) count() int64 {
	if t.Count == nil {
		return 0
	}
	return *t.Count
}
