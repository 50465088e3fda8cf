//go:build mpi

package comm

/*
#cgo pkg-config: ompi
#include <mpi.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// Every wrapper below that communicates first checks that it runs on the
// thread that called MPI_Init_thread (MPI_THREAD_SINGLE and FUNNELED allow
// no other),
// and returns DPS_ERR_THREAD otherwise. MPI error codes are never negative.
#define DPS_ERR_THREAD (-1)

static pthread_t dps_main;

#define DPS_CHECK_THREAD() \
	do { if (!pthread_equal(pthread_self(), dps_main)) return DPS_ERR_THREAD; } while (0)

static char dps_empty; // a valid address for zero-length buffers

static int dps_initialized(int *flag) {
	int fin = 0;
	MPI_Finalized(&fin);
	if (fin) {
		*flag = 1;
		return MPI_SUCCESS;
	}
	return MPI_Initialized(flag);
}

static int dps_init(int required, int *provided) {
	int rc = MPI_Init_thread(NULL, NULL, required, provided);
	dps_main = pthread_self();
	return rc;
}

static int dps_funneled(void) { return MPI_THREAD_FUNNELED; }
static int dps_single(void) { return MPI_THREAD_SINGLE; }

// dps_setup sets MPI_ERRORS_RETURN on MPI_COMM_WORLD, duplicates it (so the
// harness's traffic never matches anyone else's) and reports rank and size.
static int dps_setup(MPI_Comm *c, int *rank, int *size) {
	int rc = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	if (rc != MPI_SUCCESS) return rc;
	rc = MPI_Comm_dup(MPI_COMM_WORLD, c);
	if (rc != MPI_SUCCESS) return rc;
	rc = MPI_Comm_set_errhandler(*c, MPI_ERRORS_RETURN);
	if (rc != MPI_SUCCESS) return rc;
	rc = MPI_Comm_rank(*c, rank);
	if (rc != MPI_SUCCESS) return rc;
	return MPI_Comm_size(*c, size);
}

static int dps_finalize(MPI_Comm *c) {
	DPS_CHECK_THREAD();
	if (*c != NULL && *c != MPI_COMM_NULL) MPI_Comm_free(c);
	return MPI_Finalize();
}

static void dps_abort(void) { MPI_Abort(MPI_COMM_WORLD, 1); }

static void *dps_buf(void *p) { return p ? p : &dps_empty; }

static int dps_barrier(MPI_Comm c) {
	DPS_CHECK_THREAD();
	return MPI_Barrier(c);
}

static int dps_bcast(MPI_Comm c, void *buf, int n, int root) {
	DPS_CHECK_THREAD();
	return MPI_Bcast(dps_buf(buf), n, MPI_BYTE, root, c);
}

// The communicator and its slot buffers (C memory), set once by NewMPI:
// the small-message path passes no pointer (MPI_Comm is one in Open MPI)
// through cgo, so its calls skip cgo's pointer checks.
static MPI_Comm dps_comm;
static void *dps_sslots, *dps_rslots;

static void dps_set_slots(MPI_Comm c, void *s, void *r) {
	dps_comm = c;
	dps_sslots = s;
	dps_rslots = r;
}

static int dps_bcast_slot(int n, int root) {
	DPS_CHECK_THREAD();
	return MPI_Bcast(dps_sslots, n, MPI_BYTE, root, dps_comm);
}

static int dps_gather_slot(int n, int root) {
	DPS_CHECK_THREAD();
	return MPI_Gather(dps_sslots, n, MPI_BYTE, dps_rslots, n, MPI_BYTE, root, dps_comm);
}

static int dps_scatter(MPI_Comm c, void *sbuf, void *rbuf, int n, int root) {
	DPS_CHECK_THREAD();
	return MPI_Scatter(sbuf, n, MPI_BYTE, rbuf, n, MPI_BYTE, root, c);
}

static int dps_send(MPI_Comm c, void *buf, int n, int dst, int tag) {
	DPS_CHECK_THREAD();
	return MPI_Send(dps_buf(buf), n, MPI_BYTE, dst, tag, c);
}

static int dps_recv(MPI_Comm c, void *buf, int n, int src, int tag) {
	DPS_CHECK_THREAD();
	return MPI_Recv(dps_buf(buf), n, MPI_BYTE, src, tag, c, MPI_STATUS_IGNORE);
}

static int dps_isend(MPI_Comm c, void *buf, int n, int dst, int tag, MPI_Request *req) {
	DPS_CHECK_THREAD();
	return MPI_Isend(dps_buf(buf), n, MPI_BYTE, dst, tag, c, req);
}

static int dps_irecv(MPI_Comm c, void *buf, int n, int src, int tag, MPI_Request *req) {
	DPS_CHECK_THREAD();
	return MPI_Irecv(dps_buf(buf), n, MPI_BYTE, src, tag, c, req);
}

// dps_waitall waits for n requests and returns the first request's own
// error when MPI_Waitall reports MPI_ERR_IN_STATUS.
static int dps_waitall(int n, MPI_Request *reqs, MPI_Status *stats) {
	DPS_CHECK_THREAD();
	if (n == 0) return MPI_SUCCESS;
	int rc = MPI_Waitall(n, reqs, stats);
	if (rc == MPI_ERR_IN_STATUS) {
		for (int i = 0; i < n; i++) {
			int e = stats[i].MPI_ERROR;
			if (e != MPI_SUCCESS && e != MPI_ERR_PENDING) return e;
		}
	}
	return rc;
}

static void dps_error_string(int code, char *buf, int *n) {
	if (MPI_Error_string(code, buf, n) != MPI_SUCCESS) {
		*n = 0;
	}
}

static int dps_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Wire format. Every operation first moves one fixed-size slot per message:
// an 8-byte little-endian length followed by the first mpiInline bytes of
// the payload. Messages that fit (the common case of the stage loop's small
// control messages) therefore cost one MPI call; longer ones move the rest
// in a second step that only the ranks concerned take part in (a collective
// for Bcast, where every rank knows the length; point-to-point for Gather,
// Scatter and Exchange, where only sender and receiver know it).
const (
	mpiSlot   = 256
	mpiInline = mpiSlot - 8
	// mpiChunk bounds one MPI call's count, which is a C int.
	mpiChunk = 1 << 30
	// mpiBadLen in a length field means "the sender had an error".
	mpiBadLen = math.MaxUint64

	mpiTagGather       = 1
	mpiTagScatter      = 2
	mpiTagExchangeHead = 3
	mpiTagExchangeRest = 4
)

var (
	mpiMu      sync.Mutex
	mpiStarted bool
	// mpiLeaked keeps the pinned buffers of operations that failed with
	// requests still in flight alive and in place: MPI may still write
	// into them.
	mpiLeaked []*runtime.Pinner
)

// NewMPI joins the MPI world this process was started in (by mpirun, or by
// srun --mpi=pmix) and returns its endpoint: the world's rank and size, on
// a private duplicate of MPI_COMM_WORLD. Call it at most once per process.
//
// Threading contract: MPI is initialised with MPI_THREAD_SINGLE (or
// FUNNELED, below); either way only the initialising OS thread may call
// MPI. NewMPI therefore locks the calling goroutine to its OS thread (runtime.LockOSThread) and the caller
// must make every call on the returned Comm, Close included, from that same
// goroutine: in practice the goroutine that runs the rank's stage loop,
// normally the main goroutine. Calls from another goroutine fail at once
// with an error and do not reach MPI. No operation hands work to another
// goroutine: a channel hand-off would cost more than a small collective.
// Abort is the one exception (see below).
//
// Before MPI_Init, NewMPI sets OMPI_MCA_mpi_yield_when_idle=1 in the
// environment unless it is already set: Open MPI otherwise busy-polls while
// it waits, and with more ranks than cores (pipelines on few nodes, tests)
// the polling ranks starve the working ones and throughput collapses. Set
// the variable to 0 beforehand to keep busy polling on dedicated cores.
//
// Thread level: MPI_THREAD_SINGLE by default; DPSBATCH_MPI_THREAD=funneled
// in the environment asks for MPI_THREAD_FUNNELED ("single", or unset, is
// the default; any other value is an error). SINGLE is safe here because
// what a library may assume of it holds: one thread, the same one every
// time, makes every MPI call, never two at once. The wrappers below refuse
// any other thread before MPI sees the call (DPS_CHECK_THREAD), and Abort,
// the one call made from anywhere, ends the job (see Abort). The other
// threads of a Go process (the runtime's) never call MPI, as the threads
// of any process linked with a threaded library do not; only the letter of
// the standard's "only one thread will execute" speaks of them. What SINGLE
// buys: Open MPI 4 turns on its internal locking for any level above it,
// which cost the no-op stage loop 17% at 2 ranks (BENCHMARKS.md). funneled
// is for an MPI library that holds to that letter.
//
// GOMAXPROCS: when the process may use one CPU only (mpirun binds each of
// up to 2 ranks to a core, and Go sizes GOMAXPROCS by the affinity mask)
// and the GOMAXPROCS environment variable is not set, NewMPI raises
// GOMAXPROCS to 2. With a single P, the Go scheduler takes the P away
// from the thread waiting inside MPI at every sysmon tick and wakes
// another thread to hold it; with an idle second P it leaves the waiting
// thread alone. That cut the stage loop's cost by about 7-10% on 2 ranks
// (BENCHMARKS.md).
//
// Launch checks: a task that srun started without PMIx (srun --mpi=none)
// gets an error before MPI_Init, where Open MPI would abort it. When
// SLURM_NTASKS is set and the process was not started by mpirun (which
// sets OMPI_COMM_WORLD_SIZE and decides the world size itself, even inside
// an allocation), the world size must equal it: a mismatch means every task
// started as its own singleton MPI world (for example a batch script that
// runs the binary without srun), and NewMPI fails rather than run N
// one-rank pipelines.
//
// Errors from MPI are returned (MPI_ERRORS_RETURN), as Go errors with the
// text of MPI_Error_string. After an MPI error the communicator is unusable
// and every later operation returns that error; the caller should Abort.
//
// Messages may be empty or nil and are limited only by memory. Received
// messages are freshly allocated and belong to the caller (Gather's slice
// of them at root is reused by the next Gather); sent slices are not
// retained after the call returns.
func NewMPI() (Comm, error) {
	mpiMu.Lock()
	defer mpiMu.Unlock()
	if mpiStarted {
		return nil, errors.New("comm: NewMPI called twice (MPI can be initialised once per process)")
	}
	var flag C.int
	if rc := C.dps_initialized(&flag); rc != C.MPI_SUCCESS || flag != 0 {
		return nil, errors.New("comm: NewMPI: MPI was already initialised (or finalised) in this process")
	}
	if _, ok := os.LookupEnv("OMPI_MCA_mpi_yield_when_idle"); !ok {
		if err := os.Setenv("OMPI_MCA_mpi_yield_when_idle", "1"); err != nil {
			return nil, fmt.Errorf("comm: NewMPI: %w", err)
		}
	}
	_, byMpirun := os.LookupEnv("OMPI_COMM_WORLD_SIZE")
	if err := mpiCheckSrun(); err != nil {
		return nil, err
	}

	required := C.dps_single()
	switch v := os.Getenv("DPSBATCH_MPI_THREAD"); v {
	case "", "single":
	case "funneled":
		required = C.dps_funneled()
	default:
		return nil, fmt.Errorf("comm: NewMPI: DPSBATCH_MPI_THREAD=%q: expected funneled or single", v)
	}
	if _, ok := os.LookupEnv("GOMAXPROCS"); !ok && runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}

	runtime.LockOSThread()
	mpiStarted = true
	c := &mpiComm{pin: new(runtime.Pinner)}
	fail := func(err error) (Comm, error) {
		C.dps_finalize(&c.comm)
		runtime.UnlockOSThread()
		return nil, err
	}
	var provided C.int
	// With the default error handler a failing MPI_Init aborts the process;
	// the check is for implementations that return.
	if rc := C.dps_init(required, &provided); rc != C.MPI_SUCCESS {
		runtime.UnlockOSThread()
		return nil, mpiError("init", rc)
	}
	if provided < required {
		return fail(fmt.Errorf("comm: MPI provides thread level %d, need %d (MPI_THREAD_SINGLE %d, MPI_THREAD_FUNNELED %d)",
			provided, required, C.dps_single(), C.dps_funneled()))
	}
	var rank, size C.int
	if rc := C.dps_setup(&c.comm, &rank, &size); rc != C.MPI_SUCCESS {
		return fail(mpiError("setup", rc))
	}
	c.rank, c.size = int(rank), int(size)
	if s, ok := os.LookupEnv("SLURM_NTASKS"); ok && !byMpirun {
		if n, err := strconv.Atoi(s); err == nil && n != c.size {
			return fail(fmt.Errorf("comm: MPI world size %d but SLURM_NTASKS=%s: Open MPI started without PMIx (use srun --mpi=pmix or mpirun)", c.size, s))
		}
	}

	c.sbuf = C.malloc(C.size_t(c.size * mpiSlot))
	c.rbuf = C.malloc(C.size_t(c.size * mpiSlot))
	C.dps_set_slots(c.comm, c.sbuf, c.rbuf)
	c.sv = unsafe.Slice((*byte)(c.sbuf), c.size*mpiSlot)
	c.rv = unsafe.Slice((*byte)(c.rbuf), c.size*mpiSlot)
	c.growReqs(2*c.size + 8)
	return c, nil
}

// mpiCheckSrun refuses, before MPI_Init, a task that srun started without
// a process-management interface (srun --mpi=none on a cluster whose
// MpiDefault is none): Open MPI would abort the process inside MPI_Init
// with a page of advice. A step task has SLURM_STEP_ID; a task that can
// join a world of several ranks also has PMIX_RANK (srun --mpi=pmix, Open
// MPI 5's mpirun), PMI_RANK (srun --mpi=pmi2, MPICH) or
// OMPI_COMM_WORLD_SIZE (Open MPI 4's mpirun). A batch script that runs the
// binary without srun has no SLURM_STEP_ID; MPI_Init then makes a one-rank
// world and the SLURM_NTASKS check in NewMPI catches it.
func mpiCheckSrun() error {
	if _, ok := os.LookupEnv("SLURM_STEP_ID"); !ok {
		return nil
	}
	for _, v := range []string{"PMIX_RANK", "PMI_RANK", "OMPI_COMM_WORLD_SIZE"} {
		if _, ok := os.LookupEnv(v); ok {
			return nil
		}
	}
	return fmt.Errorf("comm: srun started this task without PMIx (SLURM_NTASKS=%s, no PMIX_RANK in the environment): Open MPI cannot start (use srun --mpi=pmix or mpirun)", os.Getenv("SLURM_NTASKS"))
}

// mpiComm is the MPI endpoint. Its scratch memory (slots, requests,
// statuses) is C memory allocated once, so the small-message path allocates
// nothing but the messages it returns.
type mpiComm struct {
	comm       C.MPI_Comm
	rank, size int

	sbuf, rbuf unsafe.Pointer // C memory, size*mpiSlot bytes each
	sv, rv     []byte         // Go views of sbuf and rbuf

	reqs  *C.MPI_Request // C memory, reqCap entries
	stats *C.MPI_Status  // C memory, reqCap entries
	reqv  []C.MPI_Request
	nreq  int

	pin *runtime.Pinner // Go buffers that requests in flight point into

	broken    error       // first MPI error; every later operation returns it
	closed    atomic.Bool // Abort reads it from any goroutine
	abortOnce sync.Once

	// gathered is Gather's answer at root, reused by the next Gather
	// (the Comm contract): one allocation less on every stage.
	gathered [][]byte

	ops     uint64    // operations begun (passScheduler)
	schedAt time.Time // when passScheduler last let the Go scheduler run
}

func mpiError(op string, rc C.int) error {
	if rc == C.DPS_ERR_THREAD {
		return fmt.Errorf("comm: mpi %s: called from another OS thread than NewMPI's: call every method from the goroutine that called NewMPI", op)
	}
	buf := (*C.char)(C.malloc(C.size_t(C.dps_max_error_string())))
	defer C.free(unsafe.Pointer(buf))
	var n C.int
	C.dps_error_string(rc, buf, &n)
	msg := C.GoStringN(buf, n)
	if msg == "" {
		msg = fmt.Sprintf("MPI error %d", int(rc))
	}
	return fmt.Errorf("comm: mpi %s: %s", op, msg)
}

// fail records an MPI failure: the communicator is unusable from now on.
// Buffers pinned for requests that may still be in flight stay pinned.
func (c *mpiComm) fail(op string, rc C.int) error {
	err := mpiError(op, rc)
	if rc == C.DPS_ERR_THREAD {
		return err // nothing reached MPI; the communicator is fine
	}
	if c.nreq > 0 {
		mpiMu.Lock()
		mpiLeaked = append(mpiLeaked, c.pin)
		mpiMu.Unlock()
		c.pin = new(runtime.Pinner)
		c.nreq = 0
	}
	c.broken = err
	return err
}

// ready is the start of every operation: it checks that the communicator
// can be used and that root is a rank, and lets the Go scheduler run when
// it is due (passScheduler).
func (c *mpiComm) ready(op string, root int) error {
	c.passScheduler()
	if c.closed.Load() {
		return fmt.Errorf("comm: mpi %s after Close", op)
	}
	if c.broken != nil {
		return fmt.Errorf("comm: mpi %s: communicator unusable after an earlier error: %w", op, c.broken)
	}
	if root < 0 || root >= c.size {
		return fmt.Errorf("comm: %s: rank %d out of range [0,%d)", op, root, c.size)
	}
	return nil
}

// The Go scheduler and long runs of cgo calls. The goroutine that owns the
// communicator spends its time in MPI calls and, on a busy stage loop,
// never blocks in Go, so the scheduler never runs it anew. After 10 ms of
// that, sysmon takes its P away in the middle of an MPI call (Go's
// forced preemption of a long-running goroutine, which a cgo call cannot
// answer) and then wakes every 20 µs for a while: context switches on
// the rank's core, and a slow return from the next cgo call. With a
// bound rank and an MPI that yields when idle, that cost a third of the
// time of a no-op stage (BENCHMARKS.md). Passing through the scheduler
// (runtime.Gosched) every mpiSchedEvery keeps sysmon asleep; it costs
// about 20 µs on a locked thread, 2% at that interval. The clock is read
// every mpiSchedCheck operations only.
const (
	mpiSchedEvery = time.Millisecond
	mpiSchedCheck = 64
)

// mpiGosched is runtime.Gosched; tests count its calls.
var mpiGosched = runtime.Gosched

// passScheduler lets the Go scheduler run when mpiSchedEvery has passed
// since it last did; the goroutine stays locked to its thread.
func (c *mpiComm) passScheduler() {
	c.ops++
	if c.ops%mpiSchedCheck != 0 || time.Since(c.schedAt) < mpiSchedEvery {
		return
	}
	mpiGosched()
	c.schedAt = time.Now()
}

func (c *mpiComm) Rank() int { return c.rank }
func (c *mpiComm) Size() int { return c.size }

func (c *mpiComm) slot(v []byte, r int) []byte { return v[r*mpiSlot : (r+1)*mpiSlot] }

// takeSlot cuts rank r's message out of buf at *off (advancing it): its
// first mpiInline bytes are copied from r's slot of c.rv, and the rest,
// if any, is received (non-blocking, tag) into place; the caller waits
// for it (waitall) before reading past mpiInline.
func (c *mpiComm) takeSlot(buf []byte, off *int, r, tag int) ([]byte, C.int) {
	s := c.slot(c.rv, r)
	n := int(mpiSlotLen(s))
	p := buf[*off : *off+n : *off+n]
	*off += n
	copy(p, s[8:])
	if n > mpiInline {
		if rc := c.irecv(p[mpiInline:], r, tag); rc != C.MPI_SUCCESS {
			return nil, rc
		}
	}
	return p, C.MPI_SUCCESS
}

// mpiPutSlot writes data's length and inline part into s.
func mpiPutSlot(s, data []byte) {
	binary.LittleEndian.PutUint64(s, uint64(len(data)))
	copy(s[8:], data)
}

func mpiSlotLen(s []byte) uint64 { return binary.LittleEndian.Uint64(s) }

func mpiPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// mpiChunks calls fn for b in pieces of at most mpiChunk bytes.
func mpiChunks(b []byte, fn func(p []byte) C.int) C.int {
	for len(b) > 0 {
		n := min(len(b), mpiChunk)
		if rc := fn(b[:n]); rc != C.MPI_SUCCESS {
			return rc
		}
		b = b[n:]
	}
	return C.MPI_SUCCESS
}

// growReqs makes room for n more requests.
func (c *mpiComm) growReqs(n int) {
	if c.nreq+n <= len(c.reqv) {
		return
	}
	newCap := max(2*len(c.reqv), c.nreq+n)
	c.reqs = (*C.MPI_Request)(C.realloc(unsafe.Pointer(c.reqs), C.size_t(newCap)*C.size_t(unsafe.Sizeof(*c.reqs))))
	c.stats = (*C.MPI_Status)(C.realloc(unsafe.Pointer(c.stats), C.size_t(newCap)*C.size_t(unsafe.Sizeof(*c.stats))))
	if c.reqs == nil || c.stats == nil {
		panic("comm: mpi: out of memory for requests")
	}
	c.reqv = unsafe.Slice(c.reqs, newCap)
}

// req returns the next free request slot.
func (c *mpiComm) req() *C.MPI_Request {
	c.growReqs(1)
	r := &c.reqv[c.nreq]
	c.nreq++
	return r
}

// isend and irecv post b in chunks; b must be pinned (c.pin) until waitall.
func (c *mpiComm) isend(b []byte, dst, tag int) C.int {
	return mpiChunks(b, func(p []byte) C.int {
		return C.dps_isend(c.comm, mpiPtr(p), C.int(len(p)), C.int(dst), C.int(tag), c.req())
	})
}

func (c *mpiComm) irecv(b []byte, src, tag int) C.int {
	return mpiChunks(b, func(p []byte) C.int {
		return C.dps_irecv(c.comm, mpiPtr(p), C.int(len(p)), C.int(src), C.int(tag), c.req())
	})
}

// waitall waits for requests [from, nreq); with from 0 it also unpins.
func (c *mpiComm) waitall(from int) C.int {
	if c.nreq > from {
		if rc := C.dps_waitall(C.int(c.nreq-from), &c.reqv[from], c.stats); rc != C.MPI_SUCCESS {
			return rc
		}
	}
	c.nreq = from
	if from == 0 {
		c.pin.Unpin()
	}
	return C.MPI_SUCCESS
}

func (c *mpiComm) Bcast(root int, data []byte) ([]byte, error) {
	if err := c.ready("bcast", root); err != nil {
		return nil, err
	}
	head := c.slot(c.sv, 0)
	if c.rank == root {
		mpiPutSlot(head, data)
	}
	if rc := C.dps_bcast_slot(mpiSlot, C.int(root)); rc != C.MPI_SUCCESS {
		return nil, c.fail("bcast", rc)
	}
	var out []byte
	if c.rank == root {
		out = data
	} else {
		out = make([]byte, mpiSlotLen(head))
		copy(out, head[8:])
	}
	if len(out) > mpiInline {
		rc := mpiChunks(out[mpiInline:], func(p []byte) C.int {
			return C.dps_bcast(c.comm, mpiPtr(p), C.int(len(p)), C.int(root))
		})
		if rc != C.MPI_SUCCESS {
			return nil, c.fail("bcast", rc)
		}
	}
	return out, nil
}

func (c *mpiComm) Gather(root int, data []byte) ([][]byte, error) {
	if err := c.ready("gather", root); err != nil {
		return nil, err
	}
	mpiPutSlot(c.slot(c.sv, 0), data)
	if rc := C.dps_gather_slot(mpiSlot, C.int(root)); rc != C.MPI_SUCCESS {
		return nil, c.fail("gather", rc)
	}
	if c.rank != root {
		if len(data) > mpiInline {
			rc := mpiChunks(data[mpiInline:], func(p []byte) C.int {
				return C.dps_send(c.comm, mpiPtr(p), C.int(len(p)), C.int(root), mpiTagGather)
			})
			if rc != C.MPI_SUCCESS {
				return nil, c.fail("gather", rc)
			}
		}
		return nil, nil
	}
	// Root: one buffer for every other rank's message.
	var total uint64
	for r := 0; r < c.size; r++ {
		if r != root {
			total += mpiSlotLen(c.slot(c.rv, r))
		}
	}
	buf := make([]byte, total)
	if c.gathered == nil {
		c.gathered = make([][]byte, c.size)
	}
	out := c.gathered
	out[root] = data
	if total > 0 {
		c.pin.Pin(&buf[0])
	}
	off := 0
	for r := 0; r < c.size; r++ {
		if r == root {
			continue
		}
		p, rc := c.takeSlot(buf, &off, r, mpiTagGather)
		if rc != C.MPI_SUCCESS {
			return nil, c.fail("gather", rc)
		}
		out[r] = p
	}
	if rc := c.waitall(0); rc != C.MPI_SUCCESS {
		return nil, c.fail("gather", rc)
	}
	return out, nil
}

func (c *mpiComm) Scatter(root int, parts [][]byte) ([]byte, error) {
	if err := c.ready("scatter", root); err != nil {
		return nil, err
	}
	var bad error
	if c.rank == root {
		if len(parts) != c.size {
			// Tell every rank, so none waits for a part that never comes.
			bad = fmt.Errorf("comm: scatter: root passed %d parts for %d ranks", len(parts), c.size)
			for r := 0; r < c.size; r++ {
				binary.LittleEndian.PutUint64(c.slot(c.sv, r), mpiBadLen)
			}
		} else {
			for r, p := range parts {
				mpiPutSlot(c.slot(c.sv, r), p)
			}
		}
	}
	if rc := C.dps_scatter(c.comm, c.sbuf, c.rbuf, mpiSlot, C.int(root)); rc != C.MPI_SUCCESS {
		return nil, c.fail("scatter", rc)
	}
	if c.rank == root {
		if bad != nil {
			return nil, bad
		}
		for r, p := range parts {
			if r != root && len(p) > mpiInline {
				c.pin.Pin(&p[0])
				if rc := c.isend(p[mpiInline:], r, mpiTagScatter); rc != C.MPI_SUCCESS {
					return nil, c.fail("scatter", rc)
				}
			}
		}
		if rc := c.waitall(0); rc != C.MPI_SUCCESS {
			return nil, c.fail("scatter", rc)
		}
		return parts[root], nil
	}
	s := c.slot(c.rv, 0)
	n := mpiSlotLen(s)
	if n == mpiBadLen {
		return nil, fmt.Errorf("comm: scatter: root %d passed a wrong number of parts", root)
	}
	out := make([]byte, n)
	copy(out, s[8:])
	if n > mpiInline {
		rc := mpiChunks(out[mpiInline:], func(p []byte) C.int {
			return C.dps_recv(c.comm, mpiPtr(p), C.int(len(p)), C.int(root), mpiTagScatter)
		})
		if rc != C.MPI_SUCCESS {
			return nil, c.fail("scatter", rc)
		}
	}
	return out, nil
}

func (c *mpiComm) Barrier() error {
	if err := c.ready("barrier", 0); err != nil {
		return err
	}
	if rc := C.dps_barrier(c.comm); rc != C.MPI_SUCCESS {
		return c.fail("barrier", rc)
	}
	return nil
}

// Exchange posts a slot (length and inline part) to every destination and
// a slot receive from every source, waits for the source slots, then moves
// the longer messages' rest in a second round of point-to-point messages.
func (c *mpiComm) Exchange(send map[int][]byte, from []int) (map[int][]byte, error) {
	if err := c.ready("exchange", 0); err != nil {
		return nil, err
	}
	for r := range send {
		if r < 0 || r >= c.size {
			return nil, fmt.Errorf("comm: exchange: rank %d out of range [0,%d)", r, c.size)
		}
	}
	for i, r := range from {
		if r < 0 || r >= c.size {
			return nil, fmt.Errorf("comm: exchange: rank %d out of range [0,%d)", r, c.size)
		}
		for _, q := range from[:i] {
			if q == r {
				return nil, fmt.Errorf("comm: exchange: rank %d listed twice in from", r)
			}
		}
	}
	// Slot receives first, so they are requests [0, len(from)).
	for _, r := range from {
		rc := C.dps_irecv(c.comm, unsafe.Pointer(&c.slot(c.rv, r)[0]), mpiSlot, C.int(r), mpiTagExchangeHead, c.req())
		if rc != C.MPI_SUCCESS {
			return nil, c.fail("exchange", rc)
		}
	}
	for r, d := range send {
		s := c.slot(c.sv, r)
		mpiPutSlot(s, d)
		if rc := C.dps_isend(c.comm, unsafe.Pointer(&s[0]), mpiSlot, C.int(r), mpiTagExchangeHead, c.req()); rc != C.MPI_SUCCESS {
			return nil, c.fail("exchange", rc)
		}
		if len(d) > mpiInline {
			c.pin.Pin(&d[0])
			if rc := c.isend(d[mpiInline:], r, mpiTagExchangeRest); rc != C.MPI_SUCCESS {
				return nil, c.fail("exchange", rc)
			}
		}
	}
	if len(from) > 0 {
		// Wait for the slots received; the sends stay in flight meanwhile.
		rc := C.dps_waitall(C.int(len(from)), &c.reqv[0], c.stats)
		if rc != C.MPI_SUCCESS {
			return nil, c.fail("exchange", rc)
		}
	}
	var total uint64
	for _, r := range from {
		total += mpiSlotLen(c.slot(c.rv, r))
	}
	buf := make([]byte, total)
	if total > 0 {
		c.pin.Pin(&buf[0])
	}
	out := make(map[int][]byte, len(from))
	off := 0
	for _, r := range from {
		p, rc := c.takeSlot(buf, &off, r, mpiTagExchangeRest)
		if rc != C.MPI_SUCCESS {
			return nil, c.fail("exchange", rc)
		}
		out[r] = p
	}
	// Completed slot receives are MPI_REQUEST_NULL now: waiting on them
	// again is free.
	if rc := c.waitall(0); rc != C.MPI_SUCCESS {
		return nil, c.fail("exchange", rc)
	}
	return out, nil
}

// Abort prints err to stderr and ends the whole MPI job through
// MPI_Abort(MPI_COMM_WORLD, 1): every rank of the step is killed, so none
// waits forever for this one. It does not return. It may be called from any
// goroutine: MPI_THREAD_SINGLE and FUNNELED do not strictly allow
// MPI_Abort off the main thread, but Open MPI's abort only tells the runtime to kill the job
// and exits, which works from any thread (the tests check it); the main
// thread may be blocked inside MPI at the time, which is the usual reason
// to abort from elsewhere. After Close it only prints.
func (c *mpiComm) Abort(err error) {
	c.abortOnce.Do(func() {
		if err == nil {
			err = fmt.Errorf("rank %d aborted", c.rank)
		}
		fmt.Fprintf(os.Stderr, "comm: mpi rank %d of %d aborting the job: %v\n", c.rank, c.size, err)
		if c.closed.Load() {
			return
		}
		C.dps_abort()
	})
}

// Close frees the communicator and calls MPI_Finalize, which waits for
// every rank to reach it; then it unlocks the goroutine from its OS thread.
// Call it once, from NewMPI's goroutine, after the last operation.
func (c *mpiComm) Close() error {
	if c.closed.Load() {
		return errors.New("comm: mpi: Close called twice")
	}
	if rc := C.dps_finalize(&c.comm); rc != C.MPI_SUCCESS {
		return mpiError("finalize", rc)
	}
	c.closed.Store(true)
	C.free(c.sbuf)
	C.free(c.rbuf)
	C.free(unsafe.Pointer(c.reqs))
	C.free(unsafe.Pointer(c.stats))
	c.sv, c.rv, c.reqv = nil, nil, nil
	c.sbuf, c.rbuf, c.reqs, c.stats = nil, nil, nil, nil
	runtime.UnlockOSThread()
	return nil
}

var _ Comm = (*mpiComm)(nil)
