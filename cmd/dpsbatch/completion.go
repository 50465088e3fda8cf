package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/jobs"
)

// Shell completion: the shell asks the binary itself (urfave/cli's
// --generate-bash-completion, given as the last argument), so commands,
// flags and run names are always this binary's. The scripts below only
// pass the words typed so far.

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh) for commands, flags and run names",
		ArgsUsage: "bash | zsh",
		Description: "Add to ~/.bashrc:   source <(dpsbatch completion bash)\n" +
			"Add to ~/.zshrc:    source <(dpsbatch completion zsh)\n" +
			"Run names are completed from the runs root of the site file (--site or $DPSBATCH_SITE).",
		BashComplete: func(c *cli.Context) { fmt.Fprintln(c.App.Writer, "bash\nzsh") },
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return badInput("completion takes one shell, bash or zsh, got %d arguments", c.NArg())
			}
			script, ok := completionScripts[c.Args().First()]
			if !ok {
				return badInput("completion: unknown shell %q: want bash or zsh", c.Args().First())
			}
			_, err := fmt.Fprint(c.App.Writer, strings.ReplaceAll(script, "PROG", c.App.Name))
			return err
		},
	}
}

// completionScripts: each asks `PROG WORDS... --generate-bash-completion`
// for the candidates after the words before the cursor (with the word
// under the cursor when it starts a flag, so that flags are listed), and
// lets the shell filter them by that word.
var completionScripts = map[string]string{
	"bash": `# bash completion for PROG: source <(PROG completion bash)
_PROG_complete() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	local -a words=("${COMP_WORDS[@]:1:COMP_CWORD-1}")
	[[ $cur == -* ]] && words+=("$cur")
	local IFS=$'\n'
	COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _PROG_complete PROG
`,
	"zsh": `#compdef PROG
# zsh completion for PROG: source <(PROG completion zsh)
_PROG_complete() {
	local -a words_before candidates
	words_before=("${(@)words[2,CURRENT-1]}")
	[[ ${words[CURRENT]} == -* ]] && words_before+=("${words[CURRENT]}")
	candidates=("${(@f)$(${words[1]} "${(@)words_before}" --generate-bash-completion 2>/dev/null)}")
	if (( ${#candidates} )); then
		compadd -a candidates
	else
		_files
	fi
}
compdef _PROG_complete PROG
`,
}

// completionFlag is the argument urfave/cli answers with completions.
const completionFlag = "--generate-bash-completion"

// completeRuns is the completion of a command taking RUN arguments: its
// flags after a dash (urfave/cli's own completion, which reads the word
// before the completion flag in os.Args), else the run names under the
// site's runs root.
func completeRuns(c *cli.Context) {
	if n := len(os.Args); n > 2 && strings.HasPrefix(os.Args[n-2], "-") {
		cli.DefaultCompleteWithFlags(c.Command)(c)
		return
	}
	s, err := loadSite(c, false)
	if err != nil || s == nil {
		return
	}
	names, _ := jobs.RunNames(s.RunsRoot)
	for _, n := range names {
		fmt.Fprintln(c.App.Writer, n)
	}
}
