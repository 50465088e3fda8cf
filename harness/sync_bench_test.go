package harness

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness/comm"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// peerComm is one rank of a two-rank run whose other rank is played back:
// every collective returns at once what the peer would have sent in a
// run of no-op stages. The stage loop's own work per stage, on one side,
// is then all that is timed: what the Pipeline does between a Gather's
// return and the next Bcast, and a Slice between a Bcast's return and its
// Gather, which a real communicator adds to its latency on every stage.
type peerComm struct {
	comm.Comm // only the methods below are called
	rank      int
	bcasts    [][]byte // a Slice's: what the Pipeline broadcasts, in order
	host      []byte   // the Pipeline's: the Slice's HostInfo
	gathers   int
	parts     [][]byte
}

func (c *peerComm) Rank() int { return c.rank }
func (c *peerComm) Size() int { return 2 }

func (c *peerComm) Bcast(_ int, data []byte) ([]byte, error) {
	if c.rank == 0 {
		return data, nil
	}
	out := c.bcasts[0]
	c.bcasts = c.bcasts[1:]
	return out, nil
}

func (c *peerComm) Gather(_ int, data []byte) ([][]byte, error) {
	c.gathers++
	if c.rank > 0 {
		return nil, nil
	}
	c.parts[0], c.parts[1] = data, nil
	if c.gathers == 1 {
		c.parts[1] = c.host
	}
	return c.parts, nil
}

func (c *peerComm) Scatter(_ int, parts [][]byte) ([]byte, error) {
	if c.rank == 0 {
		return parts[0], nil
	}
	return encode(assignMsg{IDs: []mapper.DataID{{"rank": "1"}}})
}

func (c *peerComm) Close() error { return nil }

// noopPolicy loads a policy of n no-op stages for one slice.
func noopPolicy(b *testing.B, n int) *Policy {
	var s strings.Builder
	s.WriteString("pipeline: noop\nslices: 1\nmapper: {type: rank}\nstages:\n")
	for i := range n {
		s.WriteString("  - {name: s" + strconv.Itoa(i) + ", type: noop}\n")
	}
	path := filepath.Join(b.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(s.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	p, err := Load(path, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchSide runs visits of stages no-op stages on one rank over a
// peerComm and reports the rank's own time per stage (ns/stage) and
// allocations per stage.
func benchSide(b *testing.B, rank, stages int) {
	visits := max(b.N/stages, 1)
	o := RunOptions{Policy: noopPolicy(b, stages), RunID: "bench", RunDir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)}
	c := &peerComm{rank: rank, parts: make([][]byte, 2)}
	if rank == 0 {
		host, err := encode(mapper.HostInfo{Rank: 1, Node: "n"})
		if err != nil {
			b.Fatal(err)
		}
		c.host = host
		o.Visits = make([]Visit, visits)
		for i := range o.Visits {
			o.Visits[i] = Visit{ID: strconv.Itoa(i + 1)}
		}
	} else {
		for i := range visits {
			vm, err := encodeVisit(visitMsg{Visit: strconv.Itoa(i + 1)})
			if err != nil {
				b.Fatal(err)
			}
			c.bcasts = append(c.bcasts, vm)
			c.bcasts = append(c.bcasts, make([][]byte, stages)...)
		}
		stop, _ := encodeVisit(visitMsg{Stop: true})
		c.bcasts = append(c.bcasts, stop)
	}
	o.Comm = c
	clk := &visitClock{}
	if rank == 0 {
		o.Recorder = clk // the visits' publication is not timed
	}
	b.ReportAllocs()
	b.ResetTimer()
	if _, err := Run(context.Background(), o); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	took := b.Elapsed()
	if rank == 0 {
		took = clk.last.Sub(clk.first)
	}
	b.ReportMetric(float64(took.Nanoseconds())/float64(visits*stages), "ns/stage")
}

// visitClock notes when the first visit starts and the last one ends.
type visitClock struct {
	nopRecorder
	first, last time.Time
}

func (c *visitClock) VisitStarted(string, time.Time) error {
	if c.first.IsZero() {
		c.first = time.Now()
	}
	return nil
}

func (c *visitClock) VisitEnded(string, VisitResult) error {
	c.last = time.Now()
	return nil
}

// BenchmarkStageSyncPipeline and BenchmarkStageSyncSlice time each side's
// own work per no-op stage (the visit's share included) with the peer
// played back, so no communicator's latency is in the figure; visits of
// 10 stages, as bench/run-mpi.sh runs, and of 1 and 40, which tell a
// visit's share from a stage's:
//
//	go test ./harness -run '^$' -bench StageSync -benchtime 200000x
func BenchmarkStageSyncPipeline(b *testing.B) { benchSides(b, 0) }
func BenchmarkStageSyncSlice(b *testing.B)    { benchSides(b, 1) }

func benchSides(b *testing.B, rank int) {
	for _, stages := range []int{10, 1, 40} {
		b.Run("stages="+strconv.Itoa(stages), func(b *testing.B) { benchSide(b, rank, stages) })
	}
}
