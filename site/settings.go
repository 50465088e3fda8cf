package site

import (
	"cmp"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// Settings is what the site file gives a job on one partition: the
// site-wide values with the partition's own in their place.
type Settings struct {
	Account, QoS            string // "" for none
	Constraint, Reservation string // "" for none
	// Sbatch holds the extra sbatch options: sbatch_options, then
	// --constraint and --reservation when set.
	Sbatch []string
	Setup  []string    // the site's setup lines, then the partition's
	Env    [][2]string // the site's env, with the partition's names replaced or added
}

// Settings returns the settings of a job on the partition called name (the
// default one for ""); a name the site file does not describe gets the
// site-wide ones. The slices are the caller's to extend.
func (s *Site) Settings(name string) Settings {
	p, err := s.Partition(name)
	if err != nil {
		p = &Partition{}
	}
	out := Settings{
		Account:     cmp.Or(p.Account, s.Account),
		QoS:         cmp.Or(p.QoS, s.QoS),
		Constraint:  cmp.Or(p.Constraint, s.Constraint),
		Reservation: cmp.Or(p.Reservation, s.Reservation),
		Sbatch:      slices.Clone(s.Sbatch),
		Setup:       append(slices.Clone(s.Setup), p.Setup...),
		Env:         mergeEnv(s.Env, p.Env),
	}
	if out.Constraint != "" {
		out.Sbatch = append(out.Sbatch, "--constraint="+out.Constraint)
	}
	if out.Reservation != "" {
		out.Sbatch = append(out.Sbatch, "--reservation="+out.Reservation)
	}
	return out
}

// mergeEnv returns base with each entry of over replacing the one of the
// same name, or added after them.
func mergeEnv(base, over [][2]string) [][2]string {
	out := slices.Clone(base)
	for _, e := range over {
		i := slices.IndexFunc(out, func(b [2]string) bool { return b[0] == e[0] })
		if i >= 0 {
			out[i] = e
		} else {
			out = append(out, e)
		}
	}
	return out
}

// constraintSyntax is what a constraint may hold: node feature names
// (letters, digits, _ . -) joined by & and |, with counts (*2), brackets
// and parentheses. Anything else sbatch would misread or refuse.
var (
	constraintSyntax = regexp.MustCompile(`^[A-Za-z0-9_.\-&|*\[\]()]+$`)
	featureName      = regexp.MustCompile(`[A-Za-z0-9_.\-]+`)
	reservationName  = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
)

// constraint decodes an sbatch --constraint value.
func (r *reader) constraint(n *yaml.Node, path string) string {
	c := r.d.NonEmpty(n, path)
	if c != "" && (!constraintSyntax.MatchString(c) || len(Features(c)) == 0) {
		r.d.Errorf(n, path, "%q: expected node features joined by & or |, such as intel&ib or [rack1|rack2]", c)
		return ""
	}
	return c
}

// Features returns the node feature names a constraint names, in order,
// without the counts (gpu*2 names gpu).
func Features(constraint string) []string {
	var out []string
	for _, f := range featureName.FindAllString(constraint, -1) {
		if strings.Trim(f, "0123456789") != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// reservation decodes an sbatch --reservation value.
func (r *reader) reservation(n *yaml.Node, path string) string {
	v := r.d.NonEmpty(n, path)
	if v != "" && !reservationName.MatchString(v) {
		r.d.Errorf(n, path, "%q: expected a reservation name (letters, digits, _ . -)", v)
		return ""
	}
	return v
}

// env decodes a map of environment variables, in file order. dpsbatch's
// own variables (DPSBATCH_*) are refused: jobs set them.
func (r *reader) env(n *yaml.Node, path string) [][2]string {
	d := r.d
	var out [][2]string
	for _, kv := range d.Pairs(n, path) {
		name, at := kv[0].Value, conf.Join(path, kv[0].Value)
		before := len(d.Errs)
		v := d.String(kv[1], at)
		switch {
		case len(d.Errs) > before:
		case !envName.MatchString(name):
			d.Errorf(kv[0], at, "expected a shell variable name (letters, digits, _, not starting with a digit), got %q", name)
		case strings.HasPrefix(name, "DPSBATCH_"):
			d.Errorf(kv[0], at, "DPSBATCH_ variables are set by dpsbatch itself")
		case strings.ContainsAny(v, "\x00\n\r"):
			d.Errorf(kv[1], at, "must be one line, without a newline")
		default:
			out = append(out, [2]string{name, v})
		}
	}
	return out
}
