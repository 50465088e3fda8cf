package scheduler

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
	"github.com/dpsbatch/dpsbatch/site"
)

// restAPI is the slurmrestd API version this backend speaks (Slurm 22.05).
const restAPI = "v0.0.38"

// RESTOptions configures the slurmrestd backend.
type RESTOptions struct {
	// Socket is the unix socket slurmrestd listens on with local
	// authentication (rest_auth/local): jobs run as slurmrestd's user,
	// whoever connects.
	Socket string
	// Env is the environment of every job. slurmrestd wants one; when
	// empty, the job gets this process's PATH.
	Env map[string]string
}

// REST is the Backend that speaks slurmrestd's OpenAPI v0.0.38 over a unix
// socket. slurmrestd v0.0.38 ignores a script's #SBATCH lines, so Submit
// reads them itself and sends them as job properties; an option it does
// not know is an error rather than silently dropped. History always
// returns ErrNoAccounting: this backend does not read slurmrestd's
// accounting (slurmdb) endpoints. Live partitions have no Cluster.
type REST struct {
	client *http.Client
	env    map[string]string
}

// NewREST returns a backend for the slurmrestd at o.Socket. It does not
// connect: the first call does.
func NewREST(o RESTOptions) (*REST, error) {
	if o.Socket == "" {
		return nil, errors.New("scheduler: rest: no slurmrestd socket given")
	}
	env := o.Env
	if len(env) == 0 {
		path := os.Getenv("PATH")
		if path == "" {
			path = "/usr/bin:/bin"
		}
		env = map[string]string{"PATH": path}
	}
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", o.Socket)
	}}
	return &REST{client: &http.Client{Transport: tr}, env: env}, nil
}

// restErrors is the errors array of every slurmrestd answer.
type restErrors struct {
	Errors []struct {
		Description string `json:"description"`
		Error       string `json:"error"`
		ErrorNumber int    `json:"error_number"`
	} `json:"errors"`
}

func (e restErrors) String() string {
	var msgs []string
	for _, x := range e.Errors {
		msg := x.Error
		if x.Description != "" && x.Description != x.Error {
			msg += " (" + x.Description + ")"
		}
		msgs = append(msgs, msg)
	}
	return strings.Join(msgs, "; ")
}

// do sends a request to slurmrestd and returns the body of a 200 answer
// without errors, and the HTTP status.
func (r *REST) do(ctx context.Context, method, path string, body any) ([]byte, int, error) {
	var in io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, 0, fmt.Errorf("scheduler: rest: %w", err)
		}
		in = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://slurmrestd"+path, in)
	if err != nil {
		return nil, 0, fmt.Errorf("scheduler: rest: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("scheduler: rest: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("scheduler: rest: %s %s: %w", method, path, err)
	}
	var e restErrors
	_ = json.Unmarshal(out, &e)
	if resp.StatusCode != http.StatusOK || len(e.Errors) > 0 {
		msg := e.String()
		if msg == "" {
			msg = strings.TrimSpace(string(out))
		}
		return out, resp.StatusCode, fmt.Errorf("scheduler: rest: %s %s: %s: %s", method, path, resp.Status, msg)
	}
	return out, resp.StatusCode, nil
}

// Submit sends the script with its #SBATCH options as job properties, the
// working directory and the dependency to /job/submit.
func (r *REST) Submit(ctx context.Context, s Submission) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	job, err := sbatchDirectives(s.Script)
	if err != nil {
		return "", err
	}
	job["current_working_directory"] = s.Dir
	if s.Dependency != "" {
		job["dependency"] = s.Dependency
	}
	job["environment"] = r.env
	out, _, err := r.do(ctx, http.MethodPost, "/slurm/"+restAPI+"/job/submit",
		map[string]any{"script": string(s.Script), "job": job})
	if err != nil {
		return "", err
	}
	var a struct {
		JobID *int64 `json:"job_id"`
	}
	if err := json.Unmarshal(out, &a); err != nil || a.JobID == nil {
		return "", fmt.Errorf("scheduler: rest: job/submit answered without a job_id: %s", out)
	}
	return strconv.FormatInt(*a.JobID, 10), nil
}

// Jobs gets /jobs, every job the controller knows, once, and keeps those
// asked for.
func (r *REST) Jobs(ctx context.Context, ids []string) (map[string]Job, error) {
	want, err := idSet(ids)
	if err != nil || len(want) == 0 {
		return map[string]Job{}, err
	}
	out, _, err := r.do(ctx, http.MethodGet, "/slurm/"+restAPI+"/jobs", nil)
	if err != nil {
		return nil, err
	}
	jobs, err := parseJobsJSON("slurmrestd /jobs", "slurmrestd", out)
	if err != nil {
		return nil, err
	}
	got := make(map[string]Job, len(want))
	for _, j := range jobs {
		if want[j.ID] {
			got[j.ID] = j
		}
	}
	return got, nil
}

// History returns ErrNoAccounting: see REST.
func (r *REST) History(ctx context.Context, ids []string) (map[string]Job, error) {
	if _, err := idSet(ids); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w through slurmrestd (this backend does not read its slurmdb endpoints)", ErrNoAccounting)
}

// Cancel sends DELETE /job/{id}, with ?signal= when signal is not "".
// Like scancel, a signal goes to the job's steps, not its batch script.
func (r *REST) Cancel(ctx context.Context, id string, signal string) error {
	if !jobID.MatchString(id) {
		return fmt.Errorf("scheduler: cancel: bad job id %q: %w", id, conf.ErrInvalid)
	}
	path := "/slurm/" + restAPI + "/job/" + id
	if signal != "" {
		if !signalName.MatchString(signal) {
			return fmt.Errorf("scheduler: cancel: bad signal %q (want a name such as USR1): %w", signal, conf.ErrInvalid)
		}
		path += "?signal=" + url.QueryEscape(strings.TrimPrefix(strings.ToUpper(signal), "SIG"))
	}
	_, _, err := r.do(ctx, http.MethodDelete, path, nil)
	return err
}

// restPartitions is the part of /partitions Partitions reads.
type restPartitions struct {
	Partitions []struct {
		Name        string   `json:"name"`
		Flags       []string `json:"flags"`
		State       string   `json:"state"`
		Nodes       string   `json:"nodes"`
		MaxTime     *int64   `json:"max_time_limit"`        // minutes; -1: unlimited
		MaxNodesJob *int64   `json:"maximum_nodes_per_job"` // -1: unlimited
	} `json:"partitions"`
}

// Partitions gets /partitions (limits, state, node list) and /nodes (each
// node's CPUs and memory).
func (r *REST) Partitions(ctx context.Context) ([]site.Live, error) {
	pout, _, err := r.do(ctx, http.MethodGet, "/slurm/"+restAPI+"/partitions", nil)
	if err != nil {
		return nil, err
	}
	nout, _, err := r.do(ctx, http.MethodGet, "/slurm/"+restAPI+"/nodes", nil)
	if err != nil {
		return nil, err
	}
	var ps restPartitions
	if err := json.Unmarshal(pout, &ps); err != nil {
		return nil, fmt.Errorf("scheduler: rest: cannot read /partitions: %w", err)
	}
	// Write the partitions in scontrol's one-line form and share its
	// parser with the CLI backend.
	var b strings.Builder
	for _, p := range ps.Partitions {
		def := "NO"
		for _, f := range p.Flags {
			if strings.EqualFold(f, "default") {
				def = "YES"
			}
		}
		maxTime, maxNodes := "UNLIMITED", "UNLIMITED"
		if p.MaxTime != nil && *p.MaxTime >= 0 {
			maxTime = strconv.FormatInt(*p.MaxTime, 10) // minutes
		}
		if p.MaxNodesJob != nil && *p.MaxNodesJob >= 0 {
			maxNodes = strconv.FormatInt(*p.MaxNodesJob, 10)
		}
		nodes := p.Nodes
		if nodes == "" {
			nodes = "(null)"
		}
		fmt.Fprintf(&b, "PartitionName=%s Default=%s State=%s MaxTime=%s MaxNodes=%s Nodes=%s\n",
			p.Name, def, strings.ToUpper(p.State), maxTime, maxNodes, nodes)
	}
	return parsePartitions("", []byte(b.String()), nout)
}

// sbatchOption is one sbatch option the REST backend can send: its short
// form, and the job property it sets.
type sbatchOption struct {
	short string
	flag  bool // takes no value
	set   func(job map[string]any, v string) error
}

func setString(key string) func(map[string]any, string) error {
	return func(job map[string]any, v string) error { job[key] = v; return nil }
}

func setInt(key string) func(map[string]any, string) error {
	return func(job map[string]any, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("want a whole number, got %q", v)
		}
		job[key] = n
		return nil
	}
}

func setMemory(key string) func(map[string]any, string) error {
	return func(job map[string]any, v string) error {
		mult := 1.0
		num := strings.TrimRight(v, "KkMmGgTt")
		switch strings.ToUpper(strings.TrimPrefix(v, num)) {
		case "K":
			mult = 1.0 / 1024
		case "", "M":
		case "G":
			mult = 1024
		case "T":
			mult = 1024 * 1024
		default:
			return fmt.Errorf("want a size such as 900M or 2G, got %q", v)
		}
		n, err := strconv.ParseFloat(num, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("want a size such as 900M or 2G, got %q", v)
		}
		job[key] = int(n*mult + 0.999999)
		return nil
	}
}

// sbatchOptions are the options Submit translates, by long name.
var sbatchOptions = map[string]sbatchOption{
	"account":         {short: "A", set: setString("account")},
	"chdir":           {short: "D", set: setString("current_working_directory")},
	"comment":         {set: setString("comment")},
	"constraint":      {short: "C", set: setString("constraints")},
	"cpus-per-task":   {short: "c", set: setInt("cpus_per_task")},
	"dependency":      {short: "d", set: setString("dependency")},
	"error":           {short: "e", set: setString("standard_error")},
	"exclusive":       {flag: true, set: func(job map[string]any, _ string) error { job["exclusive"] = "true"; return nil }},
	"input":           {short: "i", set: setString("standard_input")},
	"job-name":        {short: "J", set: setString("name")},
	"mem":             {set: setMemory("memory_per_node")},
	"mem-per-cpu":     {set: setMemory("memory_per_cpu")},
	"no-requeue":      {flag: true, set: func(job map[string]any, _ string) error { job["requeue"] = false; return nil }},
	"ntasks":          {short: "n", set: setInt("tasks")},
	"ntasks-per-node": {set: setInt("tasks_per_node")},
	"open-mode":       {set: setString("open_mode")},
	"output":          {short: "o", set: setString("standard_output")},
	"partition":       {short: "p", set: setString("partition")},
	"qos":             {short: "q", set: setString("qos")},
	"requeue":         {flag: true, set: func(job map[string]any, _ string) error { job["requeue"] = true; return nil }},
	"reservation":     {set: setString("reservation")},
	"signal":          {set: setString("signal")},
	"wckey":           {set: setString("wckey")},
	"nodes": {short: "N", set: func(job map[string]any, v string) error {
		lo, hi, isRange := strings.Cut(v, "-")
		a, err1 := strconv.Atoi(lo)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 1 || b < a {
			return fmt.Errorf("want a node count such as 2 or 1-3, got %q", v)
		}
		job["nodes"] = []int{a, b}
		return nil
	}},
	"time": {short: "t", set: func(job map[string]any, v string) error {
		d, err := slurmtime.Parse(v)
		if err != nil {
			return err
		}
		if d > 0 { // infinite: leave the partition's limit
			job["time_limit"] = int((d + 59e9) / 60e9) // minutes, rounded up
		}
		return nil
	}},
}

// sbatchDirectives reads the #SBATCH lines of a script the way sbatch
// does (from the top, up to the first line that is neither blank nor a
// comment) and returns them as v0.0.38 job properties. Options with
// values that hold spaces (quoted) and options it does not know are
// errors matching conf.ErrInvalid.
func sbatchDirectives(script []byte) (map[string]any, error) {
	job := map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(script))
	sc.Buffer(nil, 1<<20)
	shorts := map[string]string{}
	for long, o := range sbatchOptions {
		if o.short != "" {
			shorts[o.short] = long
		}
	}
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("scheduler: rest: job script line %d: %s: %w", line, fmt.Sprintf(format, args...), conf.ErrInvalid)
	}
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || (strings.HasPrefix(text, "#") && !strings.HasPrefix(text, "#SBATCH")) {
			continue
		}
		if !strings.HasPrefix(text, "#SBATCH") {
			break
		}
		fields := strings.Fields(strings.TrimPrefix(text, "#SBATCH"))
		for i := 0; i < len(fields); i++ {
			f := fields[i]
			if strings.ContainsAny(f, `"'`) {
				return nil, bad(line, "quoted #SBATCH values are not supported by the slurmrestd backend: %s", text)
			}
			var name, value string
			hasValue := false
			switch {
			case strings.HasPrefix(f, "--"):
				name, value, hasValue = strings.Cut(f[2:], "=")
			case strings.HasPrefix(f, "-") && len(f) >= 2:
				long, ok := shorts[f[1:2]]
				if !ok {
					return nil, bad(line, "sbatch option %s is not supported by the slurmrestd backend", f)
				}
				name = long
				if len(f) > 2 {
					value, hasValue = f[2:], true
				}
			default:
				return nil, bad(line, "%q is not an sbatch option", f)
			}
			o, ok := sbatchOptions[name]
			if !ok {
				return nil, bad(line, "sbatch option --%s is not supported by the slurmrestd backend%s %s",
					name, conf.Suggest(name, optionNames()), conf.Have(optionNames()))
			}
			if !o.flag && !hasValue {
				if i+1 >= len(fields) {
					return nil, bad(line, "--%s needs a value", name)
				}
				i++
				value = fields[i]
			}
			if err := o.set(job, value); err != nil {
				return nil, bad(line, "--%s: %v", name, err)
			}
		}
	}
	return job, sc.Err()
}

func optionNames() []string {
	names := make([]string, 0, len(sbatchOptions))
	for n := range sbatchOptions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var _ Backend = (*REST)(nil)
