package slurmrest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// api is one version of slurmrestd's API: how to write a submission and
// read each answer. Adding a version (v0.0.39, ...) is a file with its
// field shapes and one of these, listed in apis.
type api struct {
	version      string // v0.0.38: paths /slurm/v0.0.38/..., accounting /slurmdb/v0.0.38/...
	submitBody   func(script []byte, d JobDesc) any
	submitted    func(body []byte) (jobID string, err error)
	pings        func(body []byte) ([]Ping, error)
	jobs         func(body []byte) ([]Job, error)
	nodes        func(body []byte) ([]Node, error)
	partitions   func(body []byte) ([]Partition, error)
	dbJobs       func(body []byte) ([]Job, error)
	dbUsage      func(body []byte) ([]Usage, error)
	associations func(body []byte) ([]Association, error)
	accounts     func(body []byte) ([]string, error)
	qos          func(body []byte) ([]string, error)
}

// apis are the versions this client speaks, the one it prefers first.
var apis = []*api{v0038}

// Versions lists the API versions this client speaks.
func Versions() []string {
	out := make([]string, len(apis))
	for i, a := range apis {
		out[i] = a.version
	}
	return out
}

// apiPath matches the paths of the OpenAPI listing: /slurm/VERSION/... and
// /slurmdb/VERSION/....
var apiPath = regexp.MustCompile(`^/(slurm|slurmdb)/(v[0-9]+\.[0-9]+\.[0-9]+)/`)

// negotiate reads the server's OpenAPI listing and picks the version to
// speak, once it has succeeded (a server that could not be asked is asked
// again next time); an error names the versions the server offers.
func (c *Client) negotiate(ctx context.Context) (*api, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api != nil {
		return c.api, nil
	}
	a, db, err := c.pick(ctx)
	if err == nil {
		c.api, c.db = a, db
	}
	return a, err
}

func (c *Client) pick(ctx context.Context) (*api, bool, error) {
	body, err := c.do(ctx, call{method: "GET", path: "/openapi/v3", idempotent: true})
	if err != nil {
		return nil, false, fmt.Errorf("%w (asking the server which API versions it offers)", err)
	}
	var listing struct {
		Paths map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &listing); err != nil {
		return nil, false, fmt.Errorf("slurmrest: the server's OpenAPI listing (/openapi/v3) is not JSON: %s", excerpt(body))
	}
	slurm, db := map[string]bool{}, map[string]bool{}
	for p := range listing.Paths {
		if m := apiPath.FindStringSubmatch(p); m != nil && m[1] == "slurm" {
			slurm[m[2]] = true
		} else if m != nil {
			db[m[2]] = true
		}
	}
	var offered []string
	for v := range slurm {
		offered = append(offered, v)
	}
	slices.Sort(offered)
	for _, a := range apis {
		if slurm[a.version] {
			return a, db[a.version], nil
		}
	}
	if len(offered) == 0 {
		return nil, false, fmt.Errorf("%w: the server offers no /slurm/ API at all; this client speaks %s",
			ErrNoVersion, strings.Join(Versions(), ", "))
	}
	return nil, false, fmt.Errorf("%w: the server offers %s; this client speaks %s",
		ErrNoVersion, strings.Join(offered, ", "), strings.Join(Versions(), ", "))
}

// Version is the API version the client speaks with the server, asking
// the server on first use.
func (c *Client) Version(ctx context.Context) (string, error) {
	a, err := c.negotiate(ctx)
	if err != nil {
		return "", err
	}
	return a.version, nil
}

// get makes a read request of path under /slurm/VERSION (or /slurmdb/
// VERSION when db) and decodes the answer with decode.
func get[T any](ctx context.Context, c *Client, db bool, path string, query url.Values, decode func(*api) func([]byte) (T, error)) (T, error) {
	var zero T
	a, err := c.negotiate(ctx)
	if err != nil {
		return zero, err
	}
	root := "/slurm/"
	if db {
		if !c.db {
			return zero, fmt.Errorf("%w (db%s): start slurmrestd with -s openapi/%s,openapi/db%s", ErrNoAccounting, a.version, a.version, a.version)
		}
		root = "/slurmdb/"
	}
	full := root + a.version + path
	if len(query) > 0 {
		full += "?" + query.Encode()
	}
	body, err := c.do(ctx, call{method: "GET", path: full, idempotent: true})
	if err != nil {
		return zero, err
	}
	v, err := decode(a)(body)
	if err != nil {
		return zero, fmt.Errorf("slurmrest: GET %s: cannot read the answer (API %s): %w", cut(full), a.version, err)
	}
	return v, nil
}

// Ping asks every controller whether it is up.
func (c *Client) Ping(ctx context.Context) ([]Ping, error) {
	return get(ctx, c, false, "/ping", nil, func(a *api) func([]byte) ([]Ping, error) { return a.pings })
}

// Submit queues script with the job description d and returns the new
// job's ID. slurmrestd ignores the script's #SBATCH lines: d says it all.
// It is sent again only after an error proving slurmctld did not take it
// (the server or slurmctld could not be reached, or refused for now).
func (c *Client) Submit(ctx context.Context, script []byte, d JobDesc) (string, error) {
	a, err := c.negotiate(ctx)
	if err != nil {
		return "", err
	}
	if len(strings.TrimSpace(string(script))) == 0 {
		return "", fmt.Errorf("slurmrest: submit: empty script")
	}
	if d.WorkDir != "" && !strings.HasPrefix(d.WorkDir, "/") {
		return "", fmt.Errorf("slurmrest: submit: the working directory %q is not absolute", d.WorkDir)
	}
	if _, ok := d.Environment["PATH"]; !ok {
		env := map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin"}
		for k, v := range d.Environment {
			env[k] = v
		}
		d.Environment = env
	}
	path := "/slurm/" + a.version + "/job/submit"
	body, err := c.do(ctx, call{method: "POST", path: path, body: a.submitBody(script, d)})
	if err != nil {
		return "", err
	}
	id, err := a.submitted(body)
	if err != nil {
		return "", fmt.Errorf("slurmrest: POST %s: %w", path, err)
	}
	return id, nil
}

// Job asks the controller about one job; ErrNoJob when it does not know
// it.
func (c *Client) Job(ctx context.Context, id string) (Job, error) {
	if err := checkID(id); err != nil {
		return Job{}, err
	}
	jobs, err := get(ctx, c, false, "/job/"+id, nil, func(a *api) func([]byte) ([]Job, error) { return a.jobs })
	if err != nil {
		return Job{}, err
	}
	if len(jobs) == 0 {
		return Job{}, fmt.Errorf("%w: %s", ErrNoJob, id)
	}
	return jobs[0], nil
}

// Jobs lists every job the controller remembers, in one request.
func (c *Client) Jobs(ctx context.Context) ([]Job, error) {
	return get(ctx, c, false, "/jobs", nil, func(a *api) func([]byte) ([]Job, error) { return a.jobs })
}

// Cancel cancels job id (as scancel does). There is no signal: with one,
// slurmrestd's DELETE signals the batch script too, not only the steps as
// scancel --signal does.
func (c *Client) Cancel(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	a, err := c.negotiate(ctx)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, call{method: "DELETE", path: "/slurm/" + a.version + "/job/" + id})
	return err
}

// Nodes lists the cluster's nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	return get(ctx, c, false, "/nodes", nil, func(a *api) func([]byte) ([]Node, error) { return a.nodes })
}

// Partitions lists the cluster's partitions.
func (c *Client) Partitions(ctx context.Context) ([]Partition, error) {
	return get(ctx, c, false, "/partitions", nil, func(a *api) func([]byte) ([]Partition, error) { return a.partitions })
}

// FinishedJobs asks accounting for the jobs f selects (none is not an
// error). ErrNoAccounting when the server does not serve accounting.
func (c *Client) FinishedJobs(ctx context.Context, f JobFilter) ([]Job, error) {
	q := url.Values{}
	if f.Name != "" {
		q.Set("job_name", f.Name)
	}
	if !f.Since.IsZero() {
		q.Set("start_time", f.Since.Local().Format("2006-01-02T15:04:05"))
	}
	if len(q) == 0 {
		return nil, fmt.Errorf("slurmrest: finished jobs: give a name or a start time")
	}
	return c.dbJobs(ctx, "/jobs", q)
}

// FinishedJob asks accounting about job id; ErrNoJob when it has none.
func (c *Client) FinishedJob(ctx context.Context, id string) (Job, error) {
	if err := checkID(id); err != nil {
		return Job{}, err
	}
	jobs, err := c.dbJobs(ctx, "/job/"+id, nil)
	if err != nil {
		return Job{}, err
	}
	if len(jobs) == 0 {
		return Job{}, fmt.Errorf("%w: %s", ErrNoJob, id)
	}
	return jobs[0], nil
}

// dbJobs reads accounting's jobs at path; its "nothing found" is none.
func (c *Client) dbJobs(ctx context.Context, path string, q url.Values) ([]Job, error) {
	jobs, err := get(ctx, c, true, path, q, func(a *api) func([]byte) ([]Job, error) { return a.dbJobs })
	if isNothingFound(err) {
		return nil, nil
	}
	return jobs, err
}

// Associations lists accounting's associations of user ("" for every
// user's).
func (c *Client) Associations(ctx context.Context, user string) ([]Association, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	as, err := get(ctx, c, true, "/associations", q, func(a *api) func([]byte) ([]Association, error) { return a.associations })
	if isNothingFound(err) {
		return nil, nil
	}
	return as, err
}

// Accounts lists the names of accounting's accounts.
func (c *Client) Accounts(ctx context.Context) ([]string, error) {
	return get(ctx, c, true, "/accounts", nil, func(a *api) func([]byte) ([]string, error) { return a.accounts })
}

// QoS lists the names of accounting's QoS.
func (c *Client) QoS(ctx context.Context) ([]string, error) {
	return get(ctx, c, true, "/qos", nil, func(a *api) func([]byte) ([]string, error) { return a.qos })
}

// User is the user the client's requests act as: the token's (or the
// one given with it); "" over local auth, where slurmrestd acts as its
// own user, which the client cannot name.
func (c *Client) User() (string, error) {
	if !c.jwt() {
		return "", nil
	}
	user, _, err := c.credentials()
	return user, err
}

// isNothingFound reports whether err says only that the query found
// nothing.
func isNothingFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == 200 && len(e.Items) > 0 && !slices.ContainsFunc(e.Items, func(i ErrorItem) bool { return i.Number != errnoNothingFound })
}

// jobIDChars is a job ID: 123, or 12_3 for an array task.
var jobIDChars = regexp.MustCompile(`^[0-9]+(_[0-9]+)?$`)

func checkID(id string) error {
	if !jobIDChars.MatchString(id) {
		return fmt.Errorf("slurmrest: bad job id %q", id)
	}
	return nil
}

// Deadline is when a running job reaches its time limit: its start
// plus the limit; zero when it has none, has not started or has ended.
func (j Job) Deadline() time.Time {
	if j.Started.IsZero() || j.TimeLimit == 0 || !j.Ended.IsZero() {
		return time.Time{}
	}
	return j.Started.Add(j.TimeLimit)
}
