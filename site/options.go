package site

import (
	"fmt"
	"slices"
	"strings"
)

// optionRules says which options of one command (sbatch, srun, mpirun) a
// site file may not give, and how that command reads its options, so that
// every spelling of a refused option is found.
//
// sbatch and srun read options with getopt_long: a long option may be
// abbreviated to any prefix that names it alone (--outp=x is --output=x),
// and short options may be bundled, a value attached (-lo/tmp/x is -l -o
// /tmp/x). A word that is a proper prefix of a refused long option is
// refused too: either the command reads it as that option, or it is
// ambiguous and the command refuses it anyway. No exact long option of
// sbatch or srun 22.05 is a proper prefix of a refused one, except
// --ntasks and --gpus, refused themselves. Open MPI's mpirun takes no abbreviations: its
// options are matched whole, with one dash or two.
type optionRules struct {
	tool string
	// long maps a refused long option (without dashes) to why.
	long map[string]string
	// short maps a refused short option to its long name.
	short map[byte]string
	// shortArg holds the short options that take a value (required or
	// optional): in a bundle, what follows one of them is its value.
	shortArg string
	// whole: options are matched whole, after one or two dashes (mpirun).
	whole bool
}

const (
	whyOutput = "the job's output goes to its log in the run directory under runs_root"
	whyChdir  = "jobs run in the run's folder under runs_root"
	whySize   = "dpsbatch sizes the allocation from the pipeline's slices and the partition's cpus_per_node"
	whyStep   = "dpsbatch sizes each step from the plan"
	whyGPUs   = "GPUs come from the partition's gpus_per_node and the run's GPUs per slice (submit --gpus-per-slice, or the policy's gpus_per_slice)"
)

// sbatchRules: the sbatch options dpsbatch sets itself (sbatch_options).
var sbatchRules = optionRules{tool: "sbatch", long: map[string]string{
	"nodes":           whySize,
	"ntasks":          whySize,
	"ntasks-per-node": whySize,
	"partition":       "the partition comes from the submission, else the site file's default partition",
	"time":            "the time limit comes from the submission, else the partition's max_time",
	"job-name":        "the job name comes from the run's name",
	"output":          whyOutput,
	"error":           whyOutput,
	"input":           "a job reads no standard input",
	"chdir":           whyChdir,
	"signal":          "the warning signal is sent time_warning before the time limit",
	"dependency":      "dpsbatch orders the jobs of a run itself",
	"account":         "use the site file's account key",
	"qos":             "use the site file's qos key",
	"constraint":      "use the site file's constraint key (or a partition's)",
	"reservation":     "use the site file's reservation key (or a partition's)",
	"gpus-per-task":   whyGPUs,
	"gpus":            whyGPUs,
}}

// srunRules: the srun options of launcher.flags that would redirect the
// ranks' output, move them elsewhere, or change what dpsbatch sets on
// the job and its steps.
var srunRules = optionRules{tool: "srun", long: map[string]string{
	"output":           whyOutput,
	"error":            whyOutput,
	"input":            "the ranks read no standard input",
	"chdir":            whyChdir,
	"nodes":            whyStep,
	"ntasks":           whyStep,
	"ntasks-per-node":  whyStep,
	"kill-on-bad-exit": "dpsbatch sets it: a rank that fails ends the step",
	"partition":        "the partition is the job's",
	"time":             "the time limit is the job's",
	"job-name":         "the job name comes from the run's name",
	"account":          "use the site file's account key",
	"qos":              "use the site file's qos key",
	"dependency":       "dpsbatch orders the jobs of a run itself",
	"jobid":            "the ranks run in the run's own job",
	"signal":           "the warning signal is sent time_warning before the time limit",
	"gpus-per-task":    whyGPUs,
	"gpus":             whyGPUs,
}, short: map[byte]string{
	'o': "output", 'e': "error", 'i': "input", 'D': "chdir", 'N': "nodes", 'n': "ntasks",
	'K': "kill-on-bad-exit", 'p': "partition", 't': "time", 'J': "job-name", 'A': "account",
	'q': "qos", 'd': "dependency", 'G': "gpus",
}, shortArg: "ABCDGIJKLMNSTWbcdeimnopqrtwx"}

// mpirunRules: the same for Open MPI 4's mpirun.
var mpirunRules = optionRules{tool: "mpirun", whole: true, long: map[string]string{
	"output-filename":  whyOutput,
	"xml-file":         whyOutput,
	"stdin":            "the ranks read no standard input",
	"wdir":             whyChdir,
	"wd":               whyChdir,
	"np":               whyStep,
	"n":                whyStep,
	"c":                whyStep,
	"N":                whyStep,
	"npernode":         whyStep,
	"npersocket":       whyStep,
	"H":                "the ranks run on the job's nodes",
	"host":             "the ranks run on the job's nodes",
	"hostfile":         "the ranks run on the job's nodes",
	"machinefile":      "the ranks run on the job's nodes",
	"default-hostfile": "the ranks run on the job's nodes",
}}

// launcherRules returns the rules for a launcher kind.
func launcherRules(kind string) optionRules {
	if kind == LauncherMpirun {
		return mpirunRules
	}
	return srunRules
}

// refused returns why word, one argument of the command, may not be given
// in the site file, or "" when it may. Words that are not options (a
// value given as the next word) are allowed.
func (r optionRules) refused(word string) string {
	switch {
	case r.whole && strings.HasPrefix(word, "-"):
		name, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(word, "-"), "-"), "=")
		if why := r.long[name]; why != "" {
			return fmt.Sprintf("%s is set by dpsbatch itself: %s", strings.SplitN(word, "=", 2)[0], why)
		}
	case strings.HasPrefix(word, "--") && len(word) > 2:
		return r.refusedLong(word)
	case strings.HasPrefix(word, "-") && len(word) > 1:
		return r.refusedShort(word)
	}
	return ""
}

// refusedLong checks a --name or --name=value word, abbreviations too.
func (r optionRules) refusedLong(word string) string {
	name, _, _ := strings.Cut(word[2:], "=")
	name, _, _ = strings.Cut(name, " ")
	if why := r.long[name]; why != "" {
		return fmt.Sprintf("--%s is set by dpsbatch itself: %s", name, why)
	}
	var full []string
	for o := range r.long {
		if strings.HasPrefix(o, name) {
			full = append(full, o)
		}
	}
	if len(full) == 0 {
		return ""
	}
	slices.Sort(full)
	o := full[0]
	return fmt.Sprintf("--%s abbreviates --%s for %s, which dpsbatch sets itself: %s", name, o, r.tool, r.long[o])
}

// refusedShort checks a bundle of short options, -x or -xyz or -ovalue.
func (r optionRules) refusedShort(word string) string {
	for i := 1; i < len(word); i++ {
		c := word[i]
		if o, ok := r.short[c]; ok {
			return fmt.Sprintf("-%c is %s's --%s, which dpsbatch sets itself: %s", c, r.tool, o, r.long[o])
		}
		if strings.IndexByte(r.shortArg, c) >= 0 {
			return "" // the rest of the word is its value
		}
	}
	return ""
}
