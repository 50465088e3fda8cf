package site_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/site"
)

// schedulerSite is a site file whose scheduler section is section.
func schedulerSite(section string) string {
	return "runs_root: /runs\npartitions:\n  - name: debug\n    cpus_per_node: 4\n    nodes: 2\n" + section
}

func TestSchedulerSection(t *testing.T) {
	s, err := site.Parse("/etc/site.yaml", []byte(schedulerSite("")))
	if err != nil || s.Scheduler != (site.Scheduler{Backend: site.BackendCLI}) {
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("no scheduler section: %+v, %v; want the cli backend", s.Scheduler, err)
	}
	s, err = site.Parse("/etc/site.yaml", []byte(schedulerSite("scheduler:\n  backend: rest\n  url: http://127.0.0.1:6820\n  token_file: jwt\n  user: alice\n  retry_wait: 2m\n")))
	want := site.Scheduler{Backend: site.BackendREST, URL: "http://127.0.0.1:6820", TokenFile: "/etc/jwt", User: "alice", RetryWait: 2 * time.Minute}
	if err != nil || s.Scheduler != want {
		t.Errorf("rest over HTTP: %+v, %v; want %+v", s.Scheduler, err, want)
	}
	s, err = site.Parse("/etc/site.yaml", []byte(schedulerSite("scheduler:\n  backend: rest\n  url: unix:/run/slurmrestd.sock\n  retry_wait: 0s\n")))
	want = site.Scheduler{Backend: site.BackendREST, URL: "unix:/run/slurmrestd.sock", RetryWait: -1}
	if err != nil || s.Scheduler != want {
		t.Errorf("rest on a socket: %+v, %v; want %+v", s.Scheduler, err, want)
	}

	for _, tc := range []struct{ section, want string }{
		{"scheduler:\n  backend: rets\n", `site.yaml:7: scheduler.backend: expected cli or rest, got "rets" (did you mean "rest"?)`},
		{"scheduler:\n  backend: rest\n", "site.yaml:7: scheduler.url: the rest backend needs slurmrestd's url"},
		{"scheduler:\n  url: unix:/x.sock\n", "site.yaml:7: scheduler.url: only the rest backend has a url (add backend: rest)"},
		{"scheduler:\n  backend: rest\n  url: http://h:1\n", "site.yaml:8: scheduler.url: slurmrestd over HTTP needs a JWT: add token_file or token_env"},
		{"scheduler:\n  backend: rest\n  url: unix:x.sock\n", `site.yaml:8: scheduler.url: expected unix:/absolute/path/to/socket, got "unix:x.sock"`},
		{"scheduler:\n  backend: rest\n  url: ftp://h:1\n  token_env: T\n", `site.yaml:8: scheduler.url: "ftp://h:1": expected a URL starting http:// or https://`},
		{"scheduler:\n  backend: rest\n  url: http://h:1/slurm\n  token_env: T\n", `site.yaml:8: scheduler.url: expected http(s)://host:port with no path or query, got "http://h:1/slurm"`},
		{"scheduler:\n  backend: rest\n  url: http://h:1\n  token_env: T\n  token_file: f\n", "site.yaml:10: scheduler.token_file: give only one of token_file and token_env (token_env is given too)"},
		{"scheduler:\n  backend: rest\n  url: http://h:1\n  token: eyJhbGciOi.x.y\n", "site.yaml:9: scheduler.token: a token is never written in the site file"},
		{"scheduler:\n  token_env: T\n", "site.yaml:7: scheduler.token_env: only the rest backend takes a token (add backend: rest)"},
		{"scheduler:\n  retry_wait: -1m\n", "site.yaml:7: scheduler.retry_wait: must not be negative"},
	} {
		_, err := site.Parse("site.yaml", []byte(schedulerSite(tc.section)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v\nwant %s", tc.section, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "eyJhbGciOi") {
			t.Errorf("%q: the error shows the token: %v", tc.section, err)
		}
	}
}

// scheduler.grow gives the factors a run with growth on grows by: each
// above 1, a number, under a known key.
func TestSchedulerGrow(t *testing.T) {
	s, err := site.Parse("/etc/site.yaml", []byte(schedulerSite("scheduler:\n  grow: {time: 2, memory: 1.5}\n")))
	if err != nil || s.Scheduler.Grow != (site.Grow{Time: 2, Memory: 1.5}) || !s.Scheduler.Grow.On() {
		t.Fatalf("grow: %+v, %v; want time 2, memory 1.5", s.Scheduler.Grow, err)
	}
	s, err = site.Parse("/etc/site.yaml", []byte(schedulerSite("scheduler:\n  grow: {memory: 3}\n")))
	if err != nil || s.Scheduler.Grow != (site.Grow{Memory: 3}) {
		t.Errorf("memory alone: %+v, %v", s.Scheduler.Grow, err)
	}
	for _, tc := range []struct{ section, want string }{
		{"scheduler:\n  grow: {time: 1}\n", "site.yaml:7: scheduler.grow.time: expected a factor above 1 and at most 100, such as 2 or 1.5, got 1"},
		{"scheduler:\n  grow: {memory: 0.5}\n", "site.yaml:7: scheduler.grow.memory: expected a factor above 1"},
		{"scheduler:\n  grow: {time: 1000}\n", "site.yaml:7: scheduler.grow.time: expected a factor above 1 and at most 100"},
		{"scheduler:\n  grow: {time: twice}\n", `site.yaml:7: scheduler.grow.time: expected a number, got "twice"`},
		{"scheduler:\n  grow:\n    mem: 2\n", "site.yaml:8: scheduler.grow.mem: unknown key"},
		{"scheduler:\n  grow: 2\n", "site.yaml:7: scheduler.grow: expected a mapping"},
	} {
		_, err := site.Parse("site.yaml", []byte(schedulerSite(tc.section)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v\nwant %s", tc.section, err, tc.want)
		}
	}
}
