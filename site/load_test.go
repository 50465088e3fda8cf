package site_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/site"
)

// goodSite uses every key. Test cases edit it; their expected messages
// name its line numbers, so keep them in step.
const goodSite = `cluster: dps
runs_root: runs
account: science
qos: normal
partitions:
  - name: debug
    default: true
    cpus_per_node: 4
    memory: 2000M
    node_list: n[1-4]
    max_time: infinite
  - name: long
    cpus_per_node: 16
    memory: 64G
    nodes: 2
    max_time: 2-00:00:00
    max_nodes: 1
sbatch_options:
  - --exclusive
  - --mem-per-cpu=2G
launcher:
  kind: srun
  flags: [--mpi=pmix_v4]
  comm: auto
setup:
  - module load openmpi
time_warning: 2m
template: sbatch.tmpl
broker:
  kind: external
  urls: [nats://nats.example.org:4222, tls://nats2.example.org:4443]
  token_env: NATS_TOKEN
`

// loadText writes text to site.yaml in a temporary folder that also holds
// sbatch.tmpl, loads it, and returns the site, the error and the folder.
func loadText(t *testing.T, text string) (*site.Site, error, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sbatch.tmpl"), []byte("#!/bin/bash\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := site.Load(path)
	return s, err, dir
}

// wantOneError checks that err is bad input made of exactly one
// conf.Error whose text contains every want.
func wantOneError(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("bad site file accepted")
	}
	if !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("error does not match conf.ErrInvalid: %v", err)
	}
	var errs conf.Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Errorf("want exactly one error, got:\n%v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error\n  %v\ndoes not contain\n  %s", err, w)
		}
	}
}

func TestGoodSite(t *testing.T) {
	s, err, dir := loadText(t, goodSite)
	if err != nil {
		t.Fatalf("valid site file rejected:\n%v", err)
	}
	want := &site.Site{
		Path:             filepath.Join(dir, "site.yaml"),
		Cluster:          "dps",
		RunsRoot:         filepath.Join(dir, "runs"),
		Account:          "science",
		QoS:              "normal",
		DefaultPartition: "debug",
		Partitions: []site.Partition{
			{Name: "debug", Default: true, CPUsPerNode: 4, MemoryMB: 2000, Nodes: 4, NodeList: "n[1-4]", MaxNodes: 4},
			{Name: "long", CPUsPerNode: 16, MemoryMB: 64 << 10, Nodes: 2, MaxTime: 48 * time.Hour, MaxNodes: 1},
		},
		Sbatch:      []string{"--exclusive", "--mem-per-cpu=2G"},
		Launcher:    site.Launcher{Kind: "srun", Flags: []string{"--mpi=pmix_v4"}, Comm: "mpi"},
		Setup:       []string{"module load openmpi"},
		Template:    filepath.Join(dir, "sbatch.tmpl"),
		TimeWarning: 2 * time.Minute,
		Broker: site.Broker{Kind: "external", TokenEnv: "NATS_TOKEN", StreamSizeMB: site.DefaultStreamSizeMB,
			URLs: []string{"nats://nats.example.org:4222", "tls://nats2.example.org:4443"}},
		Scheduler: site.Scheduler{Backend: site.BackendCLI},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("loaded\n %+v\nwant\n %+v", s, want)
	}
}

// TestSiteErrors checks that each kind of bad site file gets one clear
// error naming the file, the line and the key.
func TestSiteErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit []string // pairs of old, new text applied to goodSite
		want []string // substrings of the one error expected
	}{
		{"unknown top-level key", []string{"qos: normal\n", "qos: normal\nqso: x\n"},
			[]string{"site.yaml:5: qso: unknown key", `did you mean "qos"?`}},
		{"misspelt partition key", []string{"memory: 2000M", "memroy: 2000M"},
			[]string{"site.yaml:9: partitions[0].memroy: unknown key", `did you mean "memory"?`}},
		{"missing runs_root", []string{"runs_root: runs\n", ""}, []string{"site.yaml:1: runs_root: required key is missing"}},
		{"empty runs_root", []string{"runs_root: runs", `runs_root: ""`}, []string{"site.yaml:2: runs_root: must not be empty"}},
		{"runs_root with a backslash", []string{"runs_root: runs", `runs_root: 'runs\x'`}, []string{"site.yaml:2: runs_root: must not contain a backslash"}},
		{"missing partitions", []string{goodSite[strings.Index(goodSite, "partitions:"):strings.Index(goodSite, "sbatch_options:")], ""},
			[]string{"site.yaml:1: partitions: required key is missing"}},
		{"no partitions", []string{goodSite[strings.Index(goodSite, "partitions:"):strings.Index(goodSite, "sbatch_options:")], "partitions: []\n"},
			[]string{"site.yaml:5: partitions: a site needs at least one partition"}},
		{"partitions not a list", []string{goodSite[strings.Index(goodSite, "partitions:"):strings.Index(goodSite, "sbatch_options:")], "partitions: debug\n"},
			[]string{"site.yaml:5: partitions: expected a list"}},
		{"cluster with a space", []string{"cluster: dps", "cluster: dps 2"}, []string{`site.yaml:1: cluster: expected a single word without spaces, got "dps 2"`}},
		{"missing cpus_per_node", []string{"    cpus_per_node: 16\n", ""}, []string{"site.yaml:12: partitions[1].cpus_per_node: required key is missing"}},
		{"missing name", []string{"  - name: long\n    cpus_per_node: 16\n", "  - cpus_per_node: 16\n"}, []string{"site.yaml:12: partitions[1].name: required key is missing"}},
		{"zero cpus", []string{"cpus_per_node: 4", "cpus_per_node: 0"}, []string{"site.yaml:8: partitions[0].cpus_per_node: must be at least 1, got 0"}},
		{"cpus not a number", []string{"cpus_per_node: 4", "cpus_per_node: four"}, []string{`site.yaml:8: partitions[0].cpus_per_node: expected an integer, got "four"`}},
		{"bad memory unit", []string{"memory: 2000M", "memory: 2GB"},
			[]string{`site.yaml:9: partitions[0].memory: expected a size such as 2000M, 16G, 1T or a number of megabytes, got "2GB"`}},
		{"zero memory", []string{"memory: 2000M", "memory: 0"}, []string{"site.yaml:9: partitions[0].memory: must be at least 1M"}},
		{"memory too large", []string{"memory: 64G", "memory: 99999999T"}, []string{"site.yaml:14: partitions[1].memory:", "too large"}},
		{"unclosed host list", []string{"n[1-4]", "n[1-4"},
			[]string{"site.yaml:10: partitions[0].node_list: bad host list", "'[' without ']'", "such as n[1-4],gpu[01-02]"}},
		{"host range going down", []string{"n[1-4]", "n[4-1]"}, []string{"site.yaml:10: partitions[0].node_list:", `range "4-1" goes down`}},
		{"nodes and node_list disagree", []string{"    node_list: n[1-4]\n", "    nodes: 3\n    node_list: n[1-4]\n"},
			[]string{"site.yaml:10: partitions[0].nodes: 3, but node_list n[1-4] names 4 nodes"}},
		{"neither nodes nor node_list", []string{"    nodes: 2\n", ""},
			[]string{"site.yaml:12: partitions[1]: needs nodes (a count) or node_list"}},
		{"negative nodes", []string{"nodes: 2", "nodes: -2"}, []string{"site.yaml:15: partitions[1].nodes: must be at least 1, got -2"}},
		{"bad max_time", []string{"2-00:00:00", "2 days"}, []string{`site.yaml:16: partitions[1].max_time: bad time "2 days"`}},
		{"max_nodes above nodes", []string{"max_nodes: 1", "max_nodes: 3"},
			[]string{"site.yaml:17: partitions[1].max_nodes: 3 is more than the partition's 2 nodes"}},
		{"duplicate partition", []string{"name: long", "name: debug"},
			[]string{`site.yaml:12: partitions[1].name: duplicate partition name "debug" (also partitions[0])`}},
		{"two defaults", []string{"  - name: long\n", "  - name: long\n    default: true\n"},
			[]string{`site.yaml:13: partitions[1].default: only one partition may be the default (partitions[0] "debug" is already)`}},
		{"partition name with a space", []string{"name: long", "name: long queue"}, []string{"site.yaml:12: partitions[1].name: expected a single word"}},
		{"sbatch option dpsbatch sets", []string{"--exclusive", "--time=10"},
			[]string{"site.yaml:19: sbatch_options[0]: --time is set by dpsbatch itself: the time limit comes from the submission, else the partition's max_time"}},
		{"sbatch option with a space", []string{"--exclusive", "--partition debug"},
			[]string{"site.yaml:19: sbatch_options[0]: --partition is set by dpsbatch itself"}},
		{"sbatch account", []string{"--exclusive", "--account=x"}, []string{"sbatch_options[0]: --account is set by dpsbatch itself: use the site file's account key"}},
		{"sbatch short option", []string{"--exclusive", "-x n1"},
			[]string{`site.yaml:19: sbatch_options[0]: "-x n1": expected a long sbatch option such as --mem-per-cpu=2G`}},
		{"sbatch option with a newline", []string{"- --exclusive", `- "--exclusive\n#SBATCH --x"`},
			[]string{"site.yaml:19: sbatch_options[0]: must not contain a newline"}},
		{"sbatch options not a list", []string{"sbatch_options:\n  - --exclusive\n  - --mem-per-cpu=2G\n", "sbatch_options: {a: b}\n"},
			[]string{"site.yaml:18: sbatch_options: expected a list, got a mapping"}},
		{"launcher kind", []string{"kind: srun", "kind: srn"}, []string{`site.yaml:22: launcher.kind: expected srun or mpirun, got "srn" (did you mean "srun"?)`}},
		{"launcher comm", []string{"comm: auto", "comm: nccl"}, []string{`site.yaml:24: launcher.comm: expected auto, tcp or mpi, got "nccl"`}},
		{"launcher flag with a newline", []string{"[--mpi=pmix_v4]", `["--mpi=pmix\nrm -rf /"]`}, []string{"site.yaml:23: launcher.flags[0]: must be one line"}},
		{"unknown launcher key", []string{"  comm: auto\n", "  comms: auto\n"}, []string{"site.yaml:24: launcher.comms: unknown key", `did you mean "comm"?`}},
		{"setup line with a newline", []string{"  - module load openmpi\n", "  - \"module load openmpi\\nrm -rf /\"\n"},
			[]string{"site.yaml:26: setup[0]: must be one line, without a newline"}},
		{"missing template", []string{"template: sbatch.tmpl", "template: nosuch.tmpl"}, []string{"site.yaml:28: template: no such file: ", "nosuch.tmpl"}},
		{"template is a folder", []string{"template: sbatch.tmpl", "template: ."}, []string{"site.yaml:28: template: ", "is a folder, expected a template file"}},
		{"zero time_warning", []string{"time_warning: 2m", "time_warning: 0s"}, []string{"site.yaml:27: time_warning: must be positive"}},
		{"time_warning without unit", []string{"time_warning: 2m", "time_warning: 2"}, []string{"site.yaml:27: time_warning: expected a duration such as 30s or 5m"}},
		{"time_warning beyond a max_time", []string{"time_warning: 2m", "time_warning: 49h"},
			[]string{`site.yaml:27: time_warning: 49h0m0s must be shorter than the max_time of partition "long" (2-00:00:00)`}},
		{"default time_warning beyond a max_time", []string{"time_warning: 2m\n", "", "2-00:00:00", "00:04:00"},
			[]string{"site.yaml:16: partitions[1].max_time: 00:04:00 is not longer than time_warning (5m0s, the default): set time_warning below it"}},
		{"external broker without urls", []string{"  urls: [nats://nats.example.org:4222, tls://nats2.example.org:4443]\n", ""},
			[]string{"site.yaml:30: broker.urls: an external broker needs urls"}},
		{"broker url scheme", []string{"nats://nats.example.org:4222", "http://nats.example.org:4222"},
			[]string{`site.yaml:31: broker.urls[0]: "http://nats.example.org:4222": expected a URL starting nats://, tls://, ws:// or wss://`}},
		{"broker url without host", []string{"tls://nats2.example.org:4443", "tls:///x"}, []string{`site.yaml:31: broker.urls[1]: "tls:///x" names no host`}},
		{"broker kind", []string{"kind: external", "kind: extrenal"}, []string{`site.yaml:30: broker.kind: expected embedded or external, got "extrenal" (did you mean "external"?)`}},
		{"embedded broker with urls", []string{"kind: external", "kind: embedded", "  token_env: NATS_TOKEN\n", ""},
			[]string{"site.yaml:31: broker.urls: only an external broker has urls (add kind: external)"}},
		{"embedded broker with credentials", []string{"kind: external", "kind: embedded", "  urls: [nats://nats.example.org:4222, tls://nats2.example.org:4443]\n", ""},
			[]string{"site.yaml:31: broker.token_env: only an external broker takes credentials"}},
		{"two credentials", []string{"  token_env: NATS_TOKEN\n", "  token_env: NATS_TOKEN\n  credentials_file: nats.creds\n"},
			[]string{"site.yaml:33: broker.credentials_file: give only one of credentials_file, token_file and token_env (token_env is given too)"}},
		{"bad token_env", []string{"NATS_TOKEN", "NATS-TOKEN"}, []string{`site.yaml:32: broker.token_env: expected the name of an environment variable (letters, digits, _), got "NATS-TOKEN"`}},
		{"bad stream_size", []string{"  token_env: NATS_TOKEN\n", "  token_env: NATS_TOKEN\n  stream_size: 2GB\n"},
			[]string{`site.yaml:33: broker.stream_size: expected a size such as 2000M, 16G, 1T or a number of megabytes, got "2GB"`}},
		{"not YAML", []string{"qos: normal\n", "qos: [normal\n"}, []string{"site.yaml", "not valid YAML"}},
		// The line of the offending text, not the one before it.
		{"not YAML: a list item among keys", []string{"account: science\n", "account: science\n- x\n"}, []string{"site.yaml:4: not valid YAML: did not find expected key"}},
		{"not YAML: a partition key dedented", []string{"    default: true\n", "   default: true\n"}, []string{"site.yaml:7: not valid YAML:"}},
		{"misspelt required key", []string{"runs_root: runs\n", "runs_rot: runs\n"}, []string{`site.yaml:2: runs_rot: unknown key (did you mean "runs_root"?)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := goodSite
			for i := 0; i+1 < len(tc.edit); i += 2 {
				if !strings.Contains(text, tc.edit[i]) {
					t.Fatalf("test case edits %q, which is not in the site file", tc.edit[i])
				}
				text = strings.Replace(text, tc.edit[i], tc.edit[i+1], 1)
			}
			_, err, _ := loadText(t, text)
			wantOneError(t, err, tc.want...)
		})
	}
}

// TestSecretsStayOut checks that a secret written where it does not
// belong is refused without being repeated in the error.
func TestSecretsStayOut(t *testing.T) {
	for name, edit := range map[string][2]string{
		"literal token":       {"  token_env: NATS_TOKEN\n", "  token: s3cret-t0ken\n"},
		"password in the url": {"nats://nats.example.org", "nats://me:s3cret-t0ken@nats.example.org"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err, _ := loadText(t, strings.Replace(goodSite, edit[0], edit[1], 1))
			want := "a token is never written in the site file: use token_file or token_env"
			if name != "literal token" {
				want = "carries credentials: use credentials_file, token_file or token_env"
			}
			wantOneError(t, err, want)
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error repeats the secret: %v", err)
			}
		})
	}
}

func TestSiteReportsEveryProblem(t *testing.T) {
	bad := strings.NewReplacer("qos: normal", "qos: normal\nbogus: 1", "cpus_per_node: 4", "cpus_per_node: -4",
		"--exclusive", "--nodes=2", "comm: auto", "comm: nccl").Replace(goodSite)
	_, err, _ := loadText(t, bad)
	var errs conf.Errors
	if !errors.As(err, &errs) || len(errs) != 4 {
		t.Fatalf("want 4 errors, got:\n%v", err)
	}
	for i, w := range []string{"bogus", "partitions[0].cpus_per_node", "sbatch_options[0]", "launcher.comm"} {
		if errs[i].Path != w {
			t.Errorf("error %d is at %q, want %q", i, errs[i].Path, w)
		}
	}
}

func TestDefaults(t *testing.T) {
	s, err := site.Parse("", []byte("runs_root: /tmp/runs\npartitions:\n  - {name: debug, cpus_per_node: 4, nodes: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &site.Site{
		RunsRoot:         "/tmp/runs",
		DefaultPartition: "debug",
		Partitions:       []site.Partition{{Name: "debug", CPUsPerNode: 4, Nodes: 2, MaxNodes: 2}},
		Launcher:         site.Launcher{Kind: "srun", Comm: "tcp"},
		TimeWarning:      5 * time.Minute,
		Broker:           site.Broker{Kind: "embedded", StreamSizeMB: site.DefaultStreamSizeMB},
		Scheduler:        site.Scheduler{Backend: site.BackendCLI},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("parsed\n %+v\nwant\n %+v", s, want)
	}

	// Several partitions, none marked: no default.
	s, err = site.Parse("", []byte("runs_root: r\npartitions:\n  - {name: a, cpus_per_node: 4, nodes: 2}\n  - {name: b, cpus_per_node: 4, nodes: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.DefaultPartition != "" {
		t.Errorf("DefaultPartition = %q, want none", s.DefaultPartition)
	}
	cwd, _ := os.Getwd()
	if want := filepath.Join(cwd, "r"); s.RunsRoot != want {
		t.Errorf("RunsRoot = %q, want %q (relative to the current folder for a nameless file)", s.RunsRoot, want)
	}
	// Relative to the file's folder when it has a name.
	s, err = site.Parse("/etc/dpsbatch/site.yaml", []byte("runs_root: ../runs\npartitions:\n  - {name: a, cpus_per_node: 4, nodes: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.RunsRoot != "/etc/runs" || s.Path != "" {
		t.Errorf("RunsRoot = %q, Path = %q; want /etc/runs and no path", s.RunsRoot, s.Path)
	}
}

func TestMemorySizes(t *testing.T) {
	for in, want := range map[string]int{"2000": 2000, "2000M": 2000, "2000m": 2000, "16G": 16384, "1T": 1 << 20} {
		s, err := site.Parse("s.yaml", []byte("runs_root: /r\npartitions:\n  - {name: a, cpus_per_node: 4, nodes: 2, memory: "+in+"}\n"))
		if err != nil {
			t.Errorf("memory %s: %v", in, err)
			continue
		}
		if got := s.Partitions[0].MemoryMB; got != want {
			t.Errorf("memory %s = %d MB, want %d", in, got, want)
		}
	}
}

func TestCommResolved(t *testing.T) {
	for _, tc := range []struct{ launcher, want string }{
		{"{}", "tcp"},
		{"{kind: srun}", "tcp"},
		{"{kind: srun, flags: [--mpi=none]}", "tcp"},
		{"{kind: srun, flags: [--mpi=pmix]}", "mpi"},
		{"{kind: srun, flags: [--mpi=pmix_v4, --cpu-bind=cores]}", "mpi"},
		{"{kind: srun, flags: [--mpi, pmix]}", "mpi"},
		{"{kind: mpirun}", "mpi"},
		{"{kind: mpirun, comm: auto}", "mpi"},
		{"{kind: mpirun, comm: tcp}", "tcp"},
		{"{kind: srun, comm: mpi}", "mpi"},
	} {
		s, err := site.Parse("s.yaml", []byte("runs_root: /r\npartitions: [{name: a, cpus_per_node: 4, nodes: 2}]\nlauncher: "+tc.launcher+"\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.launcher, err)
			continue
		}
		if s.Launcher.Comm != tc.want {
			t.Errorf("launcher %s: comm %q, want %q", tc.launcher, s.Launcher.Comm, tc.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := site.Load(filepath.Join(t.TempDir(), "nosuch.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("err = %v, want one matching fs.ErrNotExist and conf.ErrInvalid", err)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "site: ") {
		t.Errorf("err = %v, want the package prefix", err)
	}
}

func TestPartitionLookup(t *testing.T) {
	s, err, _ := loadText(t, goodSite)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "debug", "long"} {
		p, err := s.Partition(name)
		want := name
		if name == "" {
			want = "debug"
		}
		if err != nil || p.Name != want {
			t.Errorf("Partition(%q) = %v, %v; want %s", name, p, err, want)
		}
	}
	p, _ := s.Partition("long")
	if p != &s.Partitions[1] {
		t.Error("Partition does not return the site's own partition")
	}

	_, err = s.Partition("debgu")
	if !errors.Is(err, site.ErrUnknownPartition) || !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("unknown partition: %v, want ErrUnknownPartition and conf.ErrInvalid", err)
	}
	if want := `site: unknown partition "debgu" (did you mean "debug"?) (have: debug, long)`; err == nil || err.Error() != want {
		t.Errorf("unknown partition: %v, want %s", err, want)
	}
	_, err = s.Partition("gpu")
	if want := `site: unknown partition "gpu" (have: debug, long)`; err == nil || err.Error() != want {
		t.Errorf("unknown partition: %v, want %s", err, want)
	}

	s.DefaultPartition = ""
	_, err = s.Partition("")
	if !errors.Is(err, site.ErrNoDefaultPartition) || !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("no default: %v, want ErrNoDefaultPartition and conf.ErrInvalid", err)
	}
	if want := "site: no default partition: name one (have: debug, long), or mark one default: true in the site file"; err == nil || err.Error() != want {
		t.Errorf("no default: %v, want %s", err, want)
	}
}

// TestExampleLocal loads the example site file of the local cluster.
func TestExampleLocal(t *testing.T) {
	s, err := site.Load("../examples/sites/local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Partition("")
	if err != nil {
		t.Fatal(err)
	}
	want := site.Partition{Name: "debug", Default: true, CPUsPerNode: 4, MemoryMB: 2000, Nodes: 4, NodeList: "n[1-4]", MaxNodes: 4,
		GPUsPerNode: 2, GPUNodes: "n[3-4]"}
	if !reflect.DeepEqual(*p, want) {
		t.Errorf("partition %+v, want %+v", *p, want)
	}
	if s.Cluster != "dps" || s.RunsRoot != "/var/tmp/dpsbatch/runs" || s.Launcher.Kind != "srun" || s.Launcher.Comm != "tcp" ||
		s.Broker.Kind != "embedded" || s.TimeWarning != time.Minute {
		t.Errorf("site %+v", s)
	}
	if ms := site.Check(s, []site.Live{localLive()}); len(ms) > 0 {
		t.Errorf("the example does not describe the local cluster: %v", ms)
	}
}

// localLive is the local cluster of scripts/cluster.sh as the scheduler
// package reports it: n3 and n4 have two GPUs each.
func localLive() site.Live {
	return site.Live{Name: "debug", Up: true, Default: true, NodeList: "n[1-4]", Nodes: []string{"n1", "n2", "n3", "n4"},
		CPUsPerNode: 4, MemoryMB: 2000, Cluster: "dps", GPUs: map[string]int{"n3": 2, "n4": 2}}
}

// TestLauncherAndSbatchOptionsRefused checks that every spelling of an
// option that would redirect a job's output or set what dpsbatch sets is
// refused, in sbatch_options and in launcher.flags: abbreviations of long
// options (sbatch and srun take any unambiguous prefix), short options
// with attached values and in bundles, and mpirun's own names; and that
// ordinary flags pass.
func TestLauncherAndSbatchOptionsRefused(t *testing.T) {
	siteFile := func(kind, key string, items ...string) string {
		quoted := make([]string, len(items))
		for i, s := range items {
			quoted[i] = strconv.Quote(s)
		}
		list := "[" + strings.Join(quoted, ", ") + "]"
		text := "runs_root: /r\npartitions: [{name: a, cpus_per_node: 4, nodes: 2}]\n"
		if key == "sbatch" {
			return text + "sbatch_options: " + list + "\n"
		}
		return text + "launcher: {kind: " + kind + ", flags: " + list + "}\n"
	}
	for _, tc := range []struct {
		kind, key string
		items     []string
		want      string // "" when the items are accepted
	}{
		{"srun", "sbatch", []string{"--exclusive", "--outp=/tmp/x"}, `sbatch_options[1]: --outp abbreviates --output for sbatch, which dpsbatch sets itself: the job's output goes to its log`},
		{"srun", "sbatch", []string{"--part=debug"}, "sbatch_options[0]: --part abbreviates --partition for sbatch"},
		{"srun", "sbatch", []string{"--e=/tmp/x"}, "sbatch_options[0]: --e abbreviates --error for sbatch"},
		{"srun", "sbatch", []string{"--chd /tmp"}, "sbatch_options[0]: --chd abbreviates --chdir"},
		{"srun", "sbatch", []string{"--input=/etc/passwd"}, "sbatch_options[0]: --input is set by dpsbatch itself"},
		{"srun", "sbatch", []string{"--exclusive", "--mem-per-cpu=2G", "--time-min=10", "--ntasks-per-core=1", "--exclude=n1"}, ""},
		{"srun", "flags", []string{"--mpi=pmix", "-o/tmp/x"}, `launcher.flags[1]: "-o/tmp/x": -o is srun's --output, which dpsbatch sets itself`},
		{"srun", "flags", []string{"-o", "/tmp/x"}, `launcher.flags[0]: "-o": -o is srun's --output`},
		{"srun", "flags", []string{"-lo/tmp/x"}, `launcher.flags[0]: "-lo/tmp/x": -o is srun's --output`},
		{"srun", "flags", []string{"-e/tmp/x"}, `"-e/tmp/x": -e is srun's --error`},
		{"srun", "flags", []string{"-D/tmp"}, `"-D/tmp": -D is srun's --chdir`},
		{"srun", "flags", []string{"-n4"}, `"-n4": -n is srun's --ntasks`},
		{"srun", "flags", []string{"--outp=/tmp/x"}, `launcher.flags[0]: "--outp=/tmp/x": --outp abbreviates --output for srun`},
		{"srun", "flags", []string{"--output", "/tmp/x"}, `launcher.flags[0]: "--output": --output is set by dpsbatch itself`},
		{"srun", "flags", []string{"--err=/tmp/x"}, `--err abbreviates --error for srun`},
		{"srun", "flags", []string{"--kill-on=0"}, `--kill-on abbreviates --kill-on-bad-exit for srun`},
		{"srun", "flags", []string{"--mpi=pmix", "-l", "-u", "--label", "--cpu-bind=cores", "-mblock", "-Q", "--exclusive", "--overlap"}, ""},
		{"mpirun", "flags", []string{"--output-filename", "/tmp/x"}, `launcher.flags[0]: "--output-filename": --output-filename is set by dpsbatch itself: the job's output goes to its log`},
		{"mpirun", "flags", []string{"-output-filename=/tmp/x"}, `"-output-filename=/tmp/x": -output-filename is set by dpsbatch itself`},
		{"mpirun", "flags", []string{"-wdir", "/tmp"}, `"-wdir": -wdir is set by dpsbatch itself: jobs run in the run's folder`},
		{"mpirun", "flags", []string{"-np", "4"}, `"-np": -np is set by dpsbatch itself`},
		{"mpirun", "flags", []string{"--mca", "btl", "self,tcp", "--bind-to", "none", "-x", "OMPI_MCA_mpi_yield_when_idle=1", "--oversubscribe"}, ""},
	} {
		_, err := site.Parse("s.yaml", []byte(siteFile(tc.kind, tc.key, tc.items...)))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %q: %v", tc.kind, tc.items, err)
		case tc.want != "":
			wantOneError(t, err, "s.yaml:", tc.want)
		}
	}
}

func TestStreamSize(t *testing.T) {
	for text, want := range map[string]int{"": site.DefaultStreamSizeMB, "broker: {stream_size: 32M}\n": 32, "broker: {stream_size: 2G}\n": 2048} {
		s, err := site.Parse("s.yaml", []byte("runs_root: /r\npartitions: [{name: a, cpus_per_node: 4, nodes: 2}]\n"+text))
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if s.Broker.StreamSizeMB != want {
			t.Errorf("%q: stream size %d MB, want %d", text, s.Broker.StreamSizeMB, want)
		}
	}
}
