package harness

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
)

// allocStage puts 16 KiB on every slice clipboard, shared 64 bytes back to
// the Pipeline: if clipboards outlived their visit, the heap would grow by
// 16 KiB per data ID per visit.
type allocStage struct{}

func (allocStage) Process(cx *Context, cb *Clipboard) error {
	cb.Put("pixels", make([]byte, 16<<10))
	cb.PutShared("summary", string(make([]byte, 64)))
	return nil
}

func init() {
	RegisterStage(Type{Name: "test-alloc", New: func(Settings) (Stage, error) { return allocStage{}, nil }})
}

// feeder is a Recorder that publishes the next visit each time one ends,
// keeping two queued, and notes the live heap after chosen visits.
type feeder struct {
	b          events.Broker
	next, last int
	marks      map[int]uint64
	ended      int
	endTimes   []time.Time // when each visit ended
}

func (f *feeder) publish() {
	if f.next > f.last {
		return
	}
	var e events.Event
	if f.next == f.last {
		e = events.Event{Topic: "visits", RunID: "bench", Kind: events.KindNoMoreData}
	} else {
		e = Visit{ID: strconv.Itoa(f.next)}.Event("visits", "bench")
	}
	f.next++
	f.b.Publish(context.Background(), e)
}

func (f *feeder) VisitStarted(string, time.Time) error          { return nil }
func (f *feeder) StageDone(string, string, time.Duration) error { return nil }
func (f *feeder) SliceFailed(SliceFailure) error                { return nil }
func (f *feeder) VisitEnded(string, VisitResult) error {
	f.ended++
	f.endTimes = append(f.endTimes, time.Now())
	if _, ok := f.marks[f.ended]; ok {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		f.marks[f.ended] = ms.HeapAlloc
	}
	f.publish()
	return nil
}

// runBench runs visits through policy with the given slices and returns the
// feeder (with heap marks at the visits listed) and the wall time.
func runBench(b *testing.B, policy string, visits int, marks ...int) (*feeder, time.Duration) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "p.yaml")
	os.WriteFile(path, []byte(policy), 0o644)
	p, err := Load(path, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	mem := events.NewMemory()
	f := &feeder{b: mem, next: 1, last: visits + 1, marks: map[int]uint64{}}
	for _, m := range marks {
		f.marks[m] = 0
	}
	f.publish()
	f.publish()
	start := time.Now()
	sum, err := Run(context.Background(), RunOptions{Ranks: CommLocal, Policy: p, RunID: "bench", RunDir: b.TempDir(), Broker: mem, Feed: true, Recorder: f})
	if err != nil {
		b.Fatal(err)
	}
	if sum.Done != visits {
		b.Fatalf("%d visits done, want %d", sum.Done, visits)
	}
	return f, time.Since(start)
}

// BenchmarkVisitMemory shows that memory stays flat over 10,000 visits: it
// reports the live heap after 1,000 and after 10,000 visits of a pipeline
// whose stage puts 16 KiB on each of 8 clipboards per visit (1.25 GiB in
// all if nothing were released), and their ratio.
//
//	go test ./harness -run '^$' -bench VisitMemory -benchtime 1x
func BenchmarkVisitMemory(b *testing.B) {
	const policy = "pipeline: mem\nslices: 4\nmapper: {type: range, settings: {key: ccd, from: 1, to: 8}}\n" +
		"stages:\n  - {name: a, type: test-alloc}\n  - {name: b, type: test-alloc}\n"
	var f *feeder
	var took time.Duration
	for i := 0; i < b.N; i++ {
		f, took = runBench(b, policy, 10000, 1000, 10000)
	}
	h1, h10 := f.marks[1000], f.marks[10000]
	b.ReportMetric(float64(h1), "heap-after-1k-visits-B")
	b.ReportMetric(float64(h10), "heap-after-10k-visits-B")
	b.ReportMetric(float64(h10)/float64(h1), "heap-10k/1k")
	b.ReportMetric(float64(took.Microseconds())/10000, "µs/visit")
}

// BenchmarkStageLoopLocal times the harness's own cost per stage on the
// local communicator: a pipeline of 10 no-op stages over 4 slices.
//
//	go test ./harness -run '^$' -bench StageLoopLocal
func BenchmarkStageLoopLocal(b *testing.B) {
	policy := "pipeline: noop\nslices: 4\nmapper: {type: rank}\nstages:\n"
	for i := 0; i < 10; i++ {
		policy += "  - {name: s" + strconv.Itoa(i) + ", type: noop}\n"
	}
	visits := max(b.N/10, 1)
	b.ResetTimer()
	_, took := runBench(b, policy, visits)
	b.ReportMetric(float64(took.Nanoseconds())/float64(visits*10), "ns/stage")
	b.ReportMetric(0, "ns/op")
}
