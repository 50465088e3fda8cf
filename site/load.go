package site

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
)

// DefaultTimeWarning is the time_warning of a site file that gives none.
const DefaultTimeWarning = 5 * time.Minute

// The launcher kinds, communicators and broker kinds a site file may name.
const (
	LauncherSrun   = "srun"
	LauncherMpirun = "mpirun"

	CommAuto = "auto"
	CommTCP  = "tcp"
	CommMPI  = "mpi"

	BrokerEmbedded = "embedded"
	BrokerExternal = "external"
)

// Load reads and validates the site file at path. Relative paths in it
// (runs_root, template, broker files) are taken from the file's folder.
// Every problem is reported, each naming the file, line and key, as
// conf.Errors matching conf.ErrInvalid. A file that cannot be read is an
// error matching conf.ErrInvalid too (and fs.ErrNotExist when missing).
func Load(path string) (*Site, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &inputError{msg: "site: " + err.Error(), kinds: []error{conf.ErrInvalid, err}}
	}
	s, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	s.Path = path
	return s, nil
}

// Parse is Load for a site file already in memory: name is used in error
// messages and its folder anchors relative paths (the current folder when
// name has none). The returned Site's Path is "".
func Parse(name string, data []byte) (*Site, error) {
	d := &conf.Decoder{File: name}
	root, err := d.Parse(data)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(name))
	if err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	r := &reader{d: d, dir: dir, s: &Site{
		TimeWarning: DefaultTimeWarning,
		Launcher:    Launcher{Kind: LauncherSrun, Comm: CommAuto},
		Broker:      Broker{Kind: BrokerEmbedded, StreamSizeMB: DefaultStreamSizeMB},
		Scheduler:   Scheduler{Backend: BackendCLI},
	}}
	r.site(root)
	if err := d.Errs.Err(); err != nil {
		d.Errs.Sort()
		return nil, d.Errs
	}
	return r.s, nil
}

// reader decodes one site file, keeping the nodes that checks spanning
// several keys point their errors at.
type reader struct {
	d   *conf.Decoder
	dir string // absolute folder of the file
	s   *Site

	parts       []partNodes
	timeWarning *yaml.Node // nil when defaulted or invalid
	badWarning  bool       // time_warning is given but invalid
}

// partNodes holds, for partitions[i], the nodes of its keys (nil when
// absent or invalid).
type partNodes struct {
	item, name, def, nodes, nodeList, maxTime, maxNodes, gpus, gpuNodes *yaml.Node
}

func (r *reader) site(root *yaml.Node) {
	d, s := r.d, r.s
	ok := d.Map(root, "", map[string]conf.Field{
		"cluster": {Decode: func(n *yaml.Node, path string) { s.Cluster = r.word(n, path) }},
		"runs_root": {Required: true, Decode: func(n *yaml.Node, path string) {
			if strings.ContainsRune(d.String(n, path), '\\') {
				// Slurm's log file patterns cannot hold one.
				d.Errorf(n, path, "must not contain a backslash: Slurm cannot write a job's log under such a folder")
				return
			}
			s.RunsRoot = r.path(n, path)
		}},
		"account":        {Decode: func(n *yaml.Node, path string) { s.Account = r.word(n, path) }},
		"qos":            {Decode: func(n *yaml.Node, path string) { s.QoS = r.word(n, path) }},
		"constraint":     {Decode: func(n *yaml.Node, path string) { s.Constraint = r.constraint(n, path) }},
		"reservation":    {Decode: func(n *yaml.Node, path string) { s.Reservation = r.reservation(n, path) }},
		"env":            {Decode: func(n *yaml.Node, path string) { s.Env = r.env(n, path) }},
		"partitions":     {Required: true, Decode: r.partitions},
		"sbatch_options": {Decode: r.sbatchOptions},
		"launcher":       {Decode: r.launcher},
		"setup": {Decode: func(n *yaml.Node, path string) {
			s.Setup = r.lines(n, path)
		}},
		"template": {Decode: func(n *yaml.Node, path string) {
			before := len(d.Errs)
			p := r.path(n, path)
			if len(d.Errs) > before {
				return
			}
			switch fi, err := os.Stat(p); {
			case os.IsNotExist(err):
				d.Errorf(n, path, "no such file: %s", p)
			case err != nil:
				d.Errorf(n, path, "%v", err)
			case fi.IsDir():
				d.Errorf(n, path, "%s is a folder, expected a template file", p)
			default:
				s.Template = p
			}
		}},
		"time_warning": {Decode: func(n *yaml.Node, path string) {
			before := len(d.Errs)
			v := d.Duration(n, path)
			switch {
			case len(d.Errs) > before:
				r.badWarning = true
			case v == 0:
				r.badWarning = true
				d.Errorf(n, path, "must be positive, such as 5m")
			default:
				s.TimeWarning, r.timeWarning = v, n
			}
		}},
		"broker":    {Decode: r.broker},
		"scheduler": {Decode: r.scheduler},
	})
	if !ok {
		return
	}
	r.crossChecks()
	r.defaults()
}

// crossChecks reports what spans several keys: duplicate partition names,
// several defaults, a time_warning not below a max_time.
func (r *reader) crossChecks() {
	d, s := r.d, r.s
	firstName := map[string]int{}
	firstDefault := -1
	for i, p := range s.Partitions {
		pn := r.parts[i]
		if pn.name != nil {
			if j, dup := firstName[p.Name]; dup {
				d.Errorf(pn.name, conf.Join(conf.Index("partitions", i), "name"), "duplicate partition name %q (also partitions[%d])", p.Name, j)
			} else {
				firstName[p.Name] = i
			}
		}
		if p.Default {
			if firstDefault >= 0 {
				d.Errorf(pn.def, conf.Join(conf.Index("partitions", i), "default"),
					"only one partition may be the default (partitions[%d] %q is already)", firstDefault, s.Partitions[firstDefault].Name)
			} else {
				firstDefault = i
			}
		}
	}
	// A time_warning that is not below a max_time: blame time_warning
	// when the file sets it (once, naming the shortest max_time), else
	// each max_time that is too short for the default.
	shortest := -1
	for i, p := range s.Partitions {
		if r.badWarning || p.MaxTime <= 0 || p.MaxTime > s.TimeWarning {
			continue
		}
		if r.timeWarning == nil {
			d.Errorf(r.parts[i].maxTime, conf.Join(conf.Index("partitions", i), "max_time"),
				"%s is not longer than time_warning (%v, the default): set time_warning below it",
				slurmtime.Format(p.MaxTime), s.TimeWarning)
		} else if shortest < 0 || p.MaxTime < s.Partitions[shortest].MaxTime {
			shortest = i
		}
	}
	if shortest >= 0 {
		p := s.Partitions[shortest]
		d.Errorf(r.timeWarning, "time_warning", "%v must be shorter than the max_time of partition %q (%s)",
			s.TimeWarning, p.Name, slurmtime.Format(p.MaxTime))
	}
}

// defaults fills in what the file may leave out.
func (r *reader) defaults() {
	s := r.s
	for i := range s.Partitions {
		p := &s.Partitions[i]
		if p.Default {
			s.DefaultPartition = p.Name
		}
		if p.MaxNodes == 0 {
			p.MaxNodes = p.Nodes
		}
	}
	if s.DefaultPartition == "" && len(s.Partitions) == 1 {
		s.DefaultPartition = s.Partitions[0].Name
	}
	if s.Launcher.Comm == CommAuto {
		s.Launcher.Comm = resolveComm(s.Launcher)
	}
}

// resolveComm is the communicator "auto" stands for: mpi when the ranks
// are started by mpirun or by srun with a PMIx plugin, else tcp.
func resolveComm(l Launcher) string {
	if l.Kind == LauncherMpirun {
		return CommMPI
	}
	for i, f := range l.Flags {
		if strings.HasPrefix(f, "--mpi=pmix") ||
			f == "--mpi" && i+1 < len(l.Flags) && strings.HasPrefix(l.Flags[i+1], "pmix") {
			return CommMPI
		}
	}
	return CommTCP
}

func (r *reader) partitions(n *yaml.Node, path string) {
	d := r.d
	items := d.List(n, path)
	if len(items) == 0 {
		if deref(n).Kind == yaml.SequenceNode {
			d.Errorf(n, path, "a site needs at least one partition")
		}
		return
	}
	for i, item := range items {
		r.partition(item, conf.Index(path, i))
	}
}

func (r *reader) partition(item *yaml.Node, path string) {
	d := r.d
	var p Partition
	pn := partNodes{item: item}
	listed := -1 // nodes named by node_list; -1 when absent or invalid
	ok := d.Map(item, path, map[string]conf.Field{
		"name": {Required: true, Decode: func(n *yaml.Node, path string) {
			before := len(d.Errs)
			p.Name = r.word(n, path)
			if len(d.Errs) == before {
				pn.name = n
			}
		}},
		"default": {Decode: func(n *yaml.Node, path string) { p.Default, pn.def = d.Bool(n, path), n }},
		"cpus_per_node": {Required: true, Decode: func(n *yaml.Node, path string) {
			p.CPUsPerNode, _ = r.positive(n, path)
		}},
		"memory": {Decode: func(n *yaml.Node, path string) { p.MemoryMB = r.memory(n, path) }},
		"nodes": {Decode: func(n *yaml.Node, path string) {
			pn.nodes = n
			if v, ok := r.positive(n, path); ok {
				p.Nodes = v
			}
		}},
		"node_list": {Decode: func(n *yaml.Node, path string) {
			pn.nodeList = n
			if s := r.hostList(n, path); s != "" {
				names, _ := ExpandHostList(s)
				p.NodeList, listed = s, len(names)
			}
		}},
		"max_time": {Decode: func(n *yaml.Node, path string) {
			pn.maxTime = n
			if s := d.NonEmpty(n, path); s != "" {
				v, err := slurmtime.Parse(s)
				if err != nil {
					d.Errorf(n, path, "%v", err)
				}
				p.MaxTime = v
			}
		}},
		"max_nodes": {Decode: func(n *yaml.Node, path string) {
			pn.maxNodes = n
			p.MaxNodes, _ = r.positive(n, path)
		}},
		"account":     {Decode: func(n *yaml.Node, path string) { p.Account = r.word(n, path) }},
		"qos":         {Decode: func(n *yaml.Node, path string) { p.QoS = r.word(n, path) }},
		"constraint":  {Decode: func(n *yaml.Node, path string) { p.Constraint = r.constraint(n, path) }},
		"reservation": {Decode: func(n *yaml.Node, path string) { p.Reservation = r.reservation(n, path) }},
		"setup":       {Decode: func(n *yaml.Node, path string) { p.Setup = r.lines(n, path) }},
		"env":         {Decode: func(n *yaml.Node, path string) { p.Env = r.env(n, path) }},
		"gpus_per_node": {Decode: func(n *yaml.Node, path string) {
			pn.gpus = n
			p.GPUsPerNode, _ = r.positive(n, path)
		}},
		"gpu_nodes": {Decode: func(n *yaml.Node, path string) {
			if s := r.hostList(n, path); s != "" {
				p.GPUNodes, pn.gpuNodes = s, n
			}
		}},
	})
	r.s.Partitions = append(r.s.Partitions, p)
	r.parts = append(r.parts, pn)
	if !ok {
		return
	}
	q := &r.s.Partitions[len(r.s.Partitions)-1]
	switch {
	case pn.nodes == nil && pn.nodeList == nil:
		d.Errorf(item, path, "needs nodes (a count) or node_list (a Slurm host list such as n[1-4])")
	case listed >= 0 && pn.nodes != nil && q.Nodes > 0 && q.Nodes != listed:
		d.Errorf(pn.nodes, conf.Join(path, "nodes"), "%d, but node_list %s names %d nodes", q.Nodes, q.NodeList, listed)
	case listed >= 0:
		q.Nodes = listed
	}
	if q.MaxNodes > 0 && q.Nodes > 0 && q.MaxNodes > q.Nodes {
		d.Errorf(pn.maxNodes, conf.Join(path, "max_nodes"), "%d is more than the partition's %d nodes", q.MaxNodes, q.Nodes)
	}
	r.gpuNodes(q, pn, path)
}

// gpuNodes checks a partition's gpu_nodes against its other keys: it
// needs gpus_per_node, and names nodes of the partition.
func (r *reader) gpuNodes(p *Partition, pn partNodes, path string) {
	if pn.gpuNodes == nil {
		return
	}
	at := conf.Join(path, "gpu_nodes")
	gpu, _ := ExpandHostList(p.GPUNodes)
	switch {
	case pn.gpus == nil:
		r.d.Errorf(pn.gpuNodes, at, "needs gpus_per_node (how many GPUs each of these nodes has)")
	case p.NodeList != "":
		all, _ := ExpandHostList(p.NodeList)
		var outside []string
		for _, n := range gpu {
			if !slices.Contains(all, n) {
				outside = append(outside, n)
			}
		}
		if len(outside) > 0 {
			r.d.Errorf(pn.gpuNodes, at, "%s: not in node_list %s", CompressHostList(outside), p.NodeList)
		}
	case p.Nodes > 0 && len(gpu) > p.Nodes:
		r.d.Errorf(pn.gpuNodes, at, "names %d nodes, more than the partition's %d", len(gpu), p.Nodes)
	}
}

// hostList decodes a Slurm host list such as n[1-4],gpu[01-02].
func (r *reader) hostList(n *yaml.Node, path string) string {
	s := r.d.NonEmpty(n, path)
	if s == "" {
		return ""
	}
	if _, err := ExpandHostList(s); err != nil {
		r.d.Errorf(n, path, "%s; expected a Slurm host list such as n[1-4],gpu[01-02]",
			strings.TrimPrefix(err.Error(), "site: "))
		return ""
	}
	return s
}

func (r *reader) sbatchOptions(n *yaml.Node, path string) {
	d := r.d
	for i, item := range d.List(n, path) {
		ip := conf.Index(path, i)
		before := len(d.Errs)
		o := d.NonEmpty(item, ip)
		if len(d.Errs) > before {
			continue
		}
		name, _, _ := strings.Cut(o, "=")
		switch {
		case strings.ContainsAny(o, "\n\r"):
			d.Errorf(item, ip, "must not contain a newline")
		case !strings.HasPrefix(o, "--") || len(strings.TrimSpace(name)) < 3:
			d.Errorf(item, ip, "%q: expected a long sbatch option such as --mem-per-cpu=2G or --exclusive", o)
		case sbatchRules.refused(o) != "":
			d.Errorf(item, ip, "%s", sbatchRules.refused(o))
		default:
			r.s.Sbatch = append(r.s.Sbatch, o)
		}
	}
}

func (r *reader) launcher(n *yaml.Node, path string) {
	d, l := r.d, &r.s.Launcher
	var flags *yaml.Node
	d.Map(n, path, map[string]conf.Field{
		"kind": {Decode: func(n *yaml.Node, path string) {
			l.Kind = r.oneOf(n, path, l.Kind, LauncherSrun, LauncherMpirun)
		}},
		"flags": {Decode: func(n *yaml.Node, path string) {
			flags = n
			l.Flags = r.lines(n, path)
		}},
		"comm": {Decode: func(n *yaml.Node, path string) {
			l.Comm = r.oneOf(n, path, l.Comm, CommAuto, CommTCP, CommMPI)
		}},
	})
	if flags != nil {
		r.launcherFlags(flags, conf.Join(path, "flags"))
	}
}

// launcherFlags refuses the flags of the launcher (decoded already, each
// one argument word) that redirect the ranks' output or set what dpsbatch
// sets, however the launcher would read them (see optionRules).
func (r *reader) launcherFlags(n *yaml.Node, path string) {
	if deref(n).Kind != yaml.SequenceNode || len(deref(n).Content) != len(r.s.Launcher.Flags) {
		return // a flag was refused already (or flags is not a list)
	}
	rules := launcherRules(r.s.Launcher.Kind)
	var kept []string
	for i, f := range r.s.Launcher.Flags {
		why := rules.refused(f)
		if why == "" {
			kept = append(kept, f)
			continue
		}
		r.d.Errorf(deref(n).Content[i], conf.Index(path, i), "%q: %s", f, why)
	}
	r.s.Launcher.Flags = kept
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (r *reader) broker(n *yaml.Node, path string) {
	d, b := r.d, &r.s.Broker
	kindOK := true
	var urls *yaml.Node
	var creds []string // the credential keys given, in file order
	var credNodes []*yaml.Node
	cred := func(key string, decode func(n *yaml.Node, path string)) conf.Field {
		return conf.Field{Decode: func(n *yaml.Node, path string) {
			creds, credNodes = append(creds, key), append(credNodes, n)
			decode(n, path)
		}}
	}
	ok := d.Map(n, path, map[string]conf.Field{
		"kind": {Decode: func(n *yaml.Node, path string) {
			before := len(d.Errs)
			b.Kind = r.oneOf(n, path, b.Kind, BrokerEmbedded, BrokerExternal)
			kindOK = len(d.Errs) == before
		}},
		"urls": {Decode: func(n *yaml.Node, path string) {
			urls = n
			for i, u := range d.Strings(n, path) {
				at := n
				if deref(n).Kind == yaml.SequenceNode {
					at = deref(n).Content[i]
				}
				if msg := checkURL(u, "nats", "tls", "ws", "wss"); msg != "" {
					d.Errorf(at, conf.Index(path, i), "%s", msg)
					continue
				}
				b.URLs = append(b.URLs, u)
			}
		}},
		"credentials_file": cred("credentials_file", func(n *yaml.Node, path string) { b.CredentialsFile = r.path(n, path) }),
		"token_file":       cred("token_file", func(n *yaml.Node, path string) { b.TokenFile = r.path(n, path) }),
		"token_env": cred("token_env", func(n *yaml.Node, path string) {
			v := d.NonEmpty(n, path)
			if v != "" && !envName.MatchString(v) {
				d.Errorf(n, path, "expected the name of an environment variable (letters, digits, _), got %q", v)
				return
			}
			b.TokenEnv = v
		}),
		"token": {Decode: func(n *yaml.Node, path string) {
			d.Errorf(n, path, "a token is never written in the site file: use token_file or token_env")
		}},
		"stream_size": {Decode: func(n *yaml.Node, path string) { b.StreamSizeMB = r.memory(n, path) }},
	})
	if !ok || !kindOK {
		return
	}
	switch {
	case b.Kind == BrokerExternal && urls == nil:
		d.Errorf(n, conf.Join(path, "urls"), "an external broker needs urls, such as [nats://host:4222]")
	case b.Kind == BrokerEmbedded && urls != nil:
		d.Errorf(urls, conf.Join(path, "urls"), "only an external broker has urls (add kind: external)")
	}
	if b.Kind == BrokerEmbedded && len(creds) > 0 {
		d.Errorf(credNodes[0], conf.Join(path, creds[0]), "only an external broker takes credentials (add kind: external)")
	}
	if len(creds) > 1 {
		d.Errorf(credNodes[1], conf.Join(path, creds[1]), "give only one of credentials_file, token_file and token_env (%s is given too)", creds[0])
	}
}

// checkURL returns what is wrong with a URL of a server (an external
// broker's, slurmrestd's) that should use one of schemes, or "".
func checkURL(s string, schemes ...string) string {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Sprintf("not a URL: %q", s)
	}
	switch {
	case !slices.Contains(schemes, u.Scheme):
		starts := make([]string, len(schemes))
		for i, sc := range schemes {
			starts[i] = sc + "://"
		}
		return fmt.Sprintf("%q: expected a URL starting %s", s, orList(starts))
	case u.User != nil:
		return fmt.Sprintf("%q carries credentials: use credentials_file, token_file or token_env", u.Redacted())
	case u.Host == "":
		return fmt.Sprintf("%q names no host", s)
	}
	return ""
}

// word decodes a name that goes on an sbatch line as is: non-empty, with
// no spaces or control characters.
func (r *reader) word(n *yaml.Node, path string) string {
	s := r.d.NonEmpty(n, path)
	if strings.ContainsFunc(s, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		r.d.Errorf(n, path, "expected a single word without spaces, got %q", s)
		return ""
	}
	return s
}

// path decodes a file or folder path, made absolute against the site
// file's folder.
func (r *reader) path(n *yaml.Node, path string) string {
	s := r.d.NonEmpty(n, path)
	if strings.ContainsAny(s, "\x00\n\r") {
		r.d.Errorf(n, path, "must not contain a newline")
		return ""
	}
	if s == "" {
		return ""
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(r.dir, s)
	}
	return filepath.Clean(s)
}

// lines decodes a list of strings none of which holds a newline.
func (r *reader) lines(n *yaml.Node, path string) []string {
	var out []string
	for i, s := range r.d.Strings(n, path) {
		if strings.ContainsAny(s, "\n\r") {
			at := n
			if deref(n).Kind == yaml.SequenceNode {
				at = deref(n).Content[i]
			}
			r.d.Errorf(at, conf.Index(path, i), "must be one line, without a newline")
			continue
		}
		out = append(out, s)
	}
	return out
}

// positive decodes an integer of at least 1.
func (r *reader) positive(n *yaml.Node, path string) (int, bool) {
	before := len(r.d.Errs)
	v := r.d.Int(n, path)
	if len(r.d.Errs) > before {
		return 0, false
	}
	if v < 1 {
		r.d.Errorf(n, path, "must be at least 1, got %d", v)
		return 0, false
	}
	return v, true
}

// oneOf decodes one of the words in choices, keeping def on error.
func (r *reader) oneOf(n *yaml.Node, path, def string, choices ...string) string {
	before := len(r.d.Errs)
	v := r.d.String(n, path)
	if len(r.d.Errs) > before {
		return def
	}
	if !slices.Contains(choices, v) {
		r.d.Errorf(n, path, "expected %s, got %q%s", orList(choices), v, conf.Suggest(v, choices))
		return def
	}
	return v
}

// orList writes "a, b or c".
func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

var memorySize = regexp.MustCompile(`^([0-9]+)([MGTmgt])$`)

// memory decodes a memory size in megabytes: "2000M", "16G", "1T" or a
// bare integer of megabytes.
func (r *reader) memory(n *yaml.Node, path string) int {
	d := r.d
	before := len(d.Errs)
	s := d.String(n, path)
	if len(d.Errs) > before {
		return 0
	}
	if memorySize.FindStringSubmatch(s) == nil && deref(n).Tag != "!!int" {
		s = "?" + s // a quoted "2000" is a string, not a number of megabytes
	}
	mb, err := ParseMemory(strings.TrimPrefix(s, "?"))
	if strings.HasPrefix(s, "?") && err == nil {
		err = fmt.Errorf("expected a size such as 2000M, 16G, 1T or a number of megabytes, got %q", s[1:])
	}
	if err != nil {
		d.Errorf(n, path, "%s", err)
		return 0
	}
	return mb
}

// ParseMemory reads a memory size in megabytes: "2000M", "16G", "1T"
// (binary multiples, as Slurm counts) or a bare number of megabytes.
func ParseMemory(s string) (int, error) {
	num, unit := s, "M"
	if m := memorySize.FindStringSubmatch(s); m != nil {
		num, unit = m[1], strings.ToUpper(m[2])
	}
	v, err := strconv.Atoi(num)
	if err != nil {
		return 0, fmt.Errorf("expected a size such as 2000M, 16G, 1T or a number of megabytes, got %q", s)
	}
	mult := map[string]int{"M": 1, "G": 1 << 10, "T": 1 << 20}[unit]
	if v > math.MaxInt32/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if v < 1 {
		return 0, fmt.Errorf("must be at least 1M, got %q", s)
	}
	return v * mult, nil
}

// formatMemory writes megabytes as the site file does: "16G" when whole
// gigabytes, else "2000M".
func formatMemory(mb int) string {
	switch {
	case mb > 0 && mb%(1<<20) == 0:
		return fmt.Sprintf("%dT", mb>>20)
	case mb > 0 && mb%(1<<10) == 0:
		return fmt.Sprintf("%dG", mb>>10)
	}
	return fmt.Sprintf("%dM", mb)
}

// deref follows YAML aliases (*name) to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// inputError is an error about bad input that is not a position in the
// file (an unreadable file, an unknown partition name): it prints msg and
// matches each of kinds with errors.Is and errors.As.
type inputError struct {
	msg   string
	kinds []error
}

func (e *inputError) Error() string   { return e.msg }
func (e *inputError) Unwrap() []error { return e.kinds }
