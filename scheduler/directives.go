package scheduler

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
	"github.com/dpsbatch/dpsbatch/scheduler/slurmrest"
)

// slurmrestd (v0.0.38) does not read a script's #SBATCH lines: the REST
// backend reads them here, as sbatch would, into the job description it
// sends beside the script.

// sbatchWords returns the words of the script's #SBATCH lines, those
// before its first command, split as sbatch splits them: at spaces; a
// backslash makes the next character literal; '...' and "..." group and
// their quotes are dropped; an unquoted # ends the line.
func sbatchWords(script []byte) ([]string, error) {
	var words []string
	sc := bufio.NewScanner(bytes.NewReader(script))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || n == 1 && strings.HasPrefix(line, "#!") {
			continue
		}
		if !strings.HasPrefix(line, "#") {
			break // the first command
		}
		rest, ok := strings.CutPrefix(line, "#SBATCH")
		if !ok || rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			continue
		}
		w, err := splitSbatchLine(rest)
		if err != nil {
			return nil, fmt.Errorf("scheduler: job script line %d: %w", n, err)
		}
		words = append(words, w...)
	}
	return words, sc.Err()
}

// splitSbatchLine splits the rest of one #SBATCH line into words.
func splitSbatchLine(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteByte(c)
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '#':
			i = len(s)
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in #SBATCH%s", quote, s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// jobDescOption sets one sbatch option's value on d.
type jobDescOption func(d *slurmrest.JobDesc, v string) error

// jobDescOptions are the sbatch options the REST backend passes on, by
// their long name; a flag (no value) is marked by a nil value check.
var jobDescOptions = map[string]jobDescOption{
	"job-name":        func(d *slurmrest.JobDesc, v string) error { d.Name = v; return nil },
	"partition":       func(d *slurmrest.JobDesc, v string) error { d.Partition = v; return nil },
	"account":         func(d *slurmrest.JobDesc, v string) error { d.Account = v; return nil },
	"qos":             func(d *slurmrest.JobDesc, v string) error { d.QoS = v; return nil },
	"chdir":           func(d *slurmrest.JobDesc, v string) error { d.WorkDir = v; return nil },
	"output":          func(d *slurmrest.JobDesc, v string) error { d.Output = v; return nil },
	"error":           func(d *slurmrest.JobDesc, v string) error { d.Error = v; return nil },
	"dependency":      func(d *slurmrest.JobDesc, v string) error { d.Dependency = v; return nil },
	"constraint":      func(d *slurmrest.JobDesc, v string) error { d.Constraint = v; return nil },
	"reservation":     func(d *slurmrest.JobDesc, v string) error { d.Reservation = v; return nil },
	"gres":            func(d *slurmrest.JobDesc, v string) error { d.GRES = v; return nil },
	"gpus-per-task":   func(d *slurmrest.JobDesc, v string) error { d.GPUsPerTask = v; return nil },
	"signal":          func(d *slurmrest.JobDesc, v string) error { d.Signal = v; return nil },
	"ntasks":          intOption(func(d *slurmrest.JobDesc) *int { return &d.Tasks }),
	"ntasks-per-node": intOption(func(d *slurmrest.JobDesc) *int { return &d.TasksPerNode }),
	"cpus-per-task":   intOption(func(d *slurmrest.JobDesc) *int { return &d.CPUsPerTask }),
	"mem-per-cpu":     memOption(func(d *slurmrest.JobDesc) *int { return &d.MemPerCPUMB }),
	"mem":             memOption(func(d *slurmrest.JobDesc) *int { return &d.MemPerNodeMB }),
	"nodes": func(d *slurmrest.JobDesc, v string) error {
		lo, hi, ranged := strings.Cut(v, "-")
		var err error
		if d.Nodes, err = strconv.Atoi(lo); err != nil || d.Nodes < 1 {
			return fmt.Errorf("want a node count or MIN-MAX")
		}
		if ranged {
			if d.MaxNodes, err = strconv.Atoi(hi); err != nil || d.MaxNodes < d.Nodes {
				return fmt.Errorf("want a node count or MIN-MAX")
			}
		}
		return nil
	},
	"time": func(d *slurmrest.JobDesc, v string) error {
		t, err := slurmtime.Parse(v)
		d.TimeLimit = t
		return err
	},
	"open-mode": func(d *slurmrest.JobDesc, v string) error {
		if v != "append" && v != "truncate" {
			return fmt.Errorf("want append or truncate")
		}
		d.OpenAppend = v == "append"
		return nil
	},
}

// jobDescFlags are the sbatch options without a value it passes on (or,
// for --ignore-pbs, has no need of: slurmrestd reads no #PBS lines).
var jobDescFlags = map[string]func(d *slurmrest.JobDesc){
	"ignore-pbs": func(*slurmrest.JobDesc) {},
	"exclusive":  func(d *slurmrest.JobDesc) { d.Exclusive = "true" },
	"requeue":    func(d *slurmrest.JobDesc) { yes := true; d.Requeue = &yes },
	"no-requeue": func(d *slurmrest.JobDesc) { no := false; d.Requeue = &no },
}

func intOption(field func(*slurmrest.JobDesc) *int) jobDescOption {
	return func(d *slurmrest.JobDesc, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("want a positive number")
		}
		*field(d) = n
		return nil
	}
}

func memOption(field func(*slurmrest.JobDesc) *int) jobDescOption {
	return func(d *slurmrest.JobDesc, v string) error {
		unit := map[byte]int{'K': 0, 'M': 1, 'G': 1024, 'T': 1024 * 1024}
		mult := 1
		if n := len(v); n > 0 {
			if m, ok := unit[v[n-1]&^0x20]; ok {
				mult, v = m, v[:n-1]
			}
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || mult == 0 {
			return fmt.Errorf("want megabytes, such as 500M or 2G")
		}
		*field(d) = n * mult
		return nil
	}
}

// jobDesc reads the script's #SBATCH options into a job description.
// An option it does not know is an error naming it, matching
// conf.ErrInvalid: sbatch would apply it, slurmrestd would not, and the
// job must not run without it.
func jobDesc(script []byte) (slurmrest.JobDesc, error) {
	d, err := readJobDesc(script)
	if err != nil {
		return d, fmt.Errorf("%w: %w", err, conf.ErrInvalid)
	}
	return d, nil
}

func readJobDesc(script []byte) (slurmrest.JobDesc, error) {
	var d slurmrest.JobDesc
	words, err := sbatchWords(script)
	if err != nil {
		return d, err
	}
	for i := 0; i < len(words); i++ {
		w := words[i]
		name, value, hasValue := strings.Cut(strings.TrimPrefix(w, "--"), "=")
		if flag, ok := jobDescFlags[name]; ok && strings.HasPrefix(w, "--") && !hasValue {
			flag(&d)
			continue
		}
		set, ok := jobDescOptions[name]
		if !ok || !strings.HasPrefix(w, "--") {
			return d, fmt.Errorf("scheduler: rest: the job script's #SBATCH %s: the REST backend passes on only the long options %s; "+
				"use one of them, or the cli backend", w, knownOptions())
		}
		if !hasValue {
			if i+1 == len(words) {
				return d, fmt.Errorf("scheduler: rest: the job script's #SBATCH %s: no value", w)
			}
			i++
			value = words[i]
		}
		if err := set(&d, value); err != nil {
			return d, fmt.Errorf("scheduler: rest: the job script's #SBATCH --%s=%s: %w", name, value, err)
		}
	}
	return d, nil
}

// restCarries checks that the REST backend can pass on each of a site's
// sbatch options (each --name or --name=value), so that a submission is
// refused before anything is made.
func restCarries(options []string) error {
	var script strings.Builder
	for _, o := range options {
		script.WriteString("#SBATCH " + o + "\n")
	}
	_, err := jobDesc([]byte(script.String()))
	return err
}

// knownOptions lists the options jobDesc reads, sorted.
func knownOptions() string {
	var names []string
	for n := range jobDescOptions {
		names = append(names, "--"+n)
	}
	for n := range jobDescFlags {
		names = append(names, "--"+n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
