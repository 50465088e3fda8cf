package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed moves a command's flags ahead of its positional arguments,
// so that `dpsbatch local pipeline.yaml --visits v.csv` works: urfave/cli
// v2 stops reading flags at the first argument. Tokens after "--" stay as
// they are. Global flags (before the command name) are left alone. Shell
// completion's --generate-bash-completion stays last, where urfave/cli
// looks for it.
func interspersed(app *cli.App, args []string) []string {
	if n := len(args); n > 1 && args[n-1] == completionFlag {
		return append(interspersed(app, args[:n-1:n-1]), completionFlag)
	}
	cmdAt := -1
	var cmd *cli.Command
	for i := 1; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			if !strings.Contains(a, "=") && takesValue(app.Flags, a) {
				i++
			}
			continue
		}
		cmdAt, cmd = i, app.Command(a)
		break
	}
	if cmd == nil {
		return args
	}
	// Descend into subcommands, if any.
	for len(cmd.Subcommands) > 0 && cmdAt+1 < len(args) {
		sub := cmd.Command(args[cmdAt+1])
		if sub == nil {
			break
		}
		cmdAt, cmd = cmdAt+1, sub
	}
	out := append([]string(nil), args[:cmdAt+1]...)
	var flags, pos []string
	rest := args[cmdAt+1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			pos = append(pos, rest[i:]...)
			i = len(rest)
		case strings.HasPrefix(a, "-") && a != "-":
			flags = append(flags, a)
			if !strings.Contains(a, "=") && takesValue(cmd.Flags, a) && i+1 < len(rest) {
				flags = append(flags, rest[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(append(out, flags...), pos...)
}

// takesValue reports whether the flag named by token (-x or --name) is
// one that reads the next token as its value.
func takesValue(flags []cli.Flag, token string) bool {
	name := strings.TrimLeft(token, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
