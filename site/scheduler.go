package site

import (
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// The backends a site file may choose (scheduler.backend).
const (
	BackendCLI  = "cli"  // Slurm's command line tools (sbatch, squeue, ...)
	BackendREST = "rest" // slurmrestd, Slurm's REST API
)

// Scheduler says how dpsbatch reaches Slurm: the site file's scheduler
// section.
type Scheduler struct {
	Backend string // BackendCLI (default) or BackendREST
	// URL is slurmrestd's address for BackendREST: unix:/path/to/socket
	// (local auth: jobs run as slurmrestd's user) or http(s)://host:port
	// (JWT: jobs run as the token's user).
	URL string
	// TokenFile or TokenEnv hold the JWT for a REST URL over HTTP(S)
	// (absolute path; the file is not opened by Load). Never logged,
	// never put in job scripts or the state file.
	TokenFile, TokenEnv string
	// User is the user name sent with the token; "" for the token's own.
	User string
	// RetryWait bounds the retries of a Slurm request that fails for a
	// reason that passes (slurmctld busy or restarting); 0 for the
	// backend's default, negative for none (retry_wait: 0s).
	RetryWait time.Duration
	// Grow is how much more a run with growth on asks for after a job
	// that ran short (scheduler.grow); zero factors grow nothing.
	Grow Grow
}

// Grow holds the factors by which a job's successor asks for more: Time
// for a job that ran out of time, Memory (per slice) for one whose steps
// were killed for memory. Each is more than 1, or 0 for no growth; the
// partition's limits cap what they give.
type Grow struct {
	Time, Memory float64
}

// On reports whether the site grows anything.
func (g Grow) On() bool { return g.Time > 0 || g.Memory > 0 }

// scheduler decodes the scheduler section.
func (r *reader) scheduler(n *yaml.Node, path string) {
	d, s := r.d, &r.s.Scheduler
	var urlNode, tokenNode *yaml.Node
	var tokenKey string
	token := func(key string, decode func(n *yaml.Node, path string)) conf.Field {
		return conf.Field{Decode: func(n *yaml.Node, path string) {
			if tokenNode != nil {
				d.Errorf(n, path, "give only one of token_file and token_env (%s is given too)", tokenKey)
				return
			}
			tokenNode, tokenKey = n, key
			decode(n, path)
		}}
	}
	ok := d.Map(n, path, map[string]conf.Field{
		"backend": {Decode: func(n *yaml.Node, path string) { s.Backend = r.oneOf(n, path, s.Backend, BackendCLI, BackendREST) }},
		"url": {Decode: func(n *yaml.Node, path string) {
			urlNode = n
			s.URL = r.schedulerURL(n, path)
		}},
		"token_file": token("token_file", func(n *yaml.Node, path string) { s.TokenFile = r.path(n, path) }),
		"token_env": token("token_env", func(n *yaml.Node, path string) {
			if v := d.NonEmpty(n, path); v != "" && !envName.MatchString(v) {
				d.Errorf(n, path, "expected the name of an environment variable (letters, digits, _), got %q", v)
			} else {
				s.TokenEnv = v
			}
		}),
		"token": {Decode: func(n *yaml.Node, path string) {
			d.Errorf(n, path, "a token is never written in the site file: use token_file or token_env")
		}},
		"user":       {Decode: func(n *yaml.Node, path string) { s.User = r.word(n, path) }},
		"retry_wait": {Decode: func(n *yaml.Node, path string) { s.RetryWait = r.retryWait(n, path) }},
		"grow": {Decode: func(n *yaml.Node, path string) {
			s.Grow.Time, s.Grow.Memory = d.Growth(n, path)
		}},
	})
	if !ok {
		return
	}
	switch {
	case s.Backend == BackendREST && urlNode == nil:
		d.Errorf(n, conf.Join(path, "url"), "the rest backend needs slurmrestd's url: unix:/path/to/socket or http://host:port")
	case s.Backend != BackendREST && urlNode != nil:
		d.Errorf(urlNode, conf.Join(path, "url"), "only the rest backend has a url (add backend: rest)")
	case s.Backend != BackendREST && tokenNode != nil:
		d.Errorf(tokenNode, conf.Join(path, tokenKey), "only the rest backend takes a token (add backend: rest)")
	case strings.HasPrefix(s.URL, "http") && tokenNode == nil:
		d.Errorf(urlNode, conf.Join(path, "url"), "slurmrestd over HTTP needs a JWT: add token_file or token_env")
	}
}

// schedulerURL decodes slurmrestd's address.
func (r *reader) schedulerURL(n *yaml.Node, path string) string {
	u := r.d.NonEmpty(n, path)
	rest, isUnix := strings.CutPrefix(u, "unix:")
	switch {
	case u == "":
		return ""
	case isUnix && !strings.HasPrefix(rest, "/"):
		r.d.Errorf(n, path, "expected unix:/absolute/path/to/socket, got %q", u)
	case !isUnix && checkURL(u, "http", "https") != "":
		r.d.Errorf(n, path, "%s", checkURL(u, "http", "https"))
	case !isUnix && !bareHost(u):
		r.d.Errorf(n, path, "expected http(s)://host:port with no path or query, got %q", u)
	default:
		return u
	}
	return ""
}

// bareHost reports whether the URL u names a host and nothing after it.
func bareHost(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Path == "" || p.Path == "/") && p.RawQuery == "" && p.Fragment == ""
}

// retryWait decodes retry_wait: a duration, 0 for no retries.
func (r *reader) retryWait(n *yaml.Node, path string) time.Duration {
	before := len(r.d.Errs)
	v := r.d.Duration(n, path)
	switch {
	case len(r.d.Errs) > before:
		return 0
	case v < 0:
		r.d.Errorf(n, path, "must not be negative, got %s", v)
		return 0
	case v == 0:
		return -1
	}
	return v
}
