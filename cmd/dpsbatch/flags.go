package main

import (
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// mustBePositive names the integer flags whose 0 would fall back to a
// default (a count of slices, ranks or events): given, they must be at
// least 1. Other integer flags take 0 as a value of its own (no
// follow-on jobs, no attempt limit) and refuse only negative numbers.
var mustBePositive = map[string]bool{"slices": true, "size": true, "last": true, "cpus-per-slice": true, "gpus-per-slice": true}

// checkFlagValues refuses a flag given with an empty or zero value where
// leaving the flag out means a default: an empty text (`--name ""`),
// a count of 0 (`--slices 0`), a negative number, a duration of 0 or
// less. Without this, such a value quietly became the default. An empty
// value of a flag that an environment variable may give counts as not
// given (see fromEmptyEnv). Every command runs it before its action
// (newApp sets it as the command's Before); a flag whose 0 means
// something of its own must be kept out of mustBePositive, and a
// duration flag whose 0 does would need an exception here.
func checkFlagValues(c *cli.Context, flags []cli.Flag) error {
	for _, f := range flags {
		name := f.Names()[0]
		if !c.IsSet(name) || fromEmptyEnv(f) && c.String(name) == "" {
			continue
		}
		switch f.(type) {
		case *cli.StringFlag:
			if strings.TrimSpace(c.String(name)) == "" {
				return badInput("--%s: empty value (leave the flag out for its default)", name)
			}
		case *cli.IntFlag:
			switch v := c.Int(name); {
			case mustBePositive[name] && v < 1:
				return badInput("--%s must be at least 1, got %d (leave the flag out for its default)", name, v)
			case v < 0:
				return badInput("--%s must be 0 or more, got %d", name, v)
			}
		case *cli.DurationFlag:
			if d := c.Duration(name); d <= 0 {
				return badInput("--%s must be a duration above 0, such as 30s or 5m, got %s", name, d)
			}
		}
	}
	return nil
}

// fromEmptyEnv reports whether f can take its value from an environment
// variable that is set but empty: an exported empty variable is taken as
// unset, and the command's own check of a missing value applies.
func fromEmptyEnv(f cli.Flag) bool {
	s, ok := f.(*cli.StringFlag)
	if !ok {
		return false
	}
	for _, env := range s.EnvVars {
		if v, set := os.LookupEnv(env); set && v == "" {
			return true
		}
	}
	return false
}
