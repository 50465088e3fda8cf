package harness

import (
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// With ignore_stop_signals, the exec stage's program runs with the stop
// signals ignored: Slurm signals every process of a step, and such a
// program must finish (see ignoreStopSignals). SIGKILL still kills it.
func TestExecStageProgramIgnoresStopSignals(t *testing.T) {
	cx := stContext(t, t.TempDir(), nil, "v1", mapper.DataID{"ccd": "1"})
	// The program signals itself, as scancel --signal would, then
	// reports; a program that died of a signal reports nothing.
	for _, sig := range []string{"INT", "TERM", "USR1"} {
		t.Run(sig, func(t *testing.T) {
			st := newStage(t, "exec", map[string]any{
				"command":             []string{"sh", "-c", `kill -` + sig + ` $$; sleep 0.1; echo '{{"alive": 1}}'`},
				"timeout":             10 * time.Second,
				"produces":            []string{"alive"},
				"ignore_stop_signals": true,
			})
			cb := newClipboard()
			if err := st.(Processor).Process(cx, cb); err != nil {
				t.Fatal(err)
			}
			if v, _ := cb.Get("alive"); v != 1 {
				t.Errorf("alive = %#v, want 1", v)
			}
		})
	}
	// SIGKILL is not a stop signal: the program dies of it, and the
	// error says so.
	st := newStage(t, "exec", map[string]any{
		"command":             []string{"sh", "-c", `kill -KILL $$`},
		"timeout":             10 * time.Second,
		"ignore_stop_signals": true,
	})
	err := st.(Processor).Process(cx, newClipboard())
	if err == nil || !strings.Contains(err.Error(), "exec: sh was killed by signal killed") {
		t.Errorf("error %v, want one saying sh was killed", err)
	}
}
