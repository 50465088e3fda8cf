package harness

import (
	"io"
	"log/slog"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// settingsOf builds checked settings from plain values, for stages built
// without a policy file. StringMap values are given as []conf.Pair.
func settingsOf(m map[string]any) Settings { return Settings{conf.NewValues(m)} }

// pairs builds a StringMap value from key, value, key, value...
func pairs(kv ...string) []conf.Pair {
	var out []conf.Pair
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, conf.Pair{Key: kv[i], Value: kv[i+1]})
	}
	return out
}
