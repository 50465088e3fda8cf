package comm

// The TCP communicator, for pipeline steps started by `srun --mpi=none`:
// every rank is its own process, possibly on its own node, and they find
// each other through a directory on a shared file system.
//
// Topology: a star through rank 0. Every slice holds one connection, to
// rank 0, and none to other slices. Collectives rooted at rank 0 go
// straight over these links; those rooted at a slice are relayed by rank 0
// (Bcast and Scatter: root → 0 → the others; Gather: everyone → 0 → root).
// Exchange is relayed as well: every rank sends rank 0 its messages and the
// list of ranks it expects to hear from, rank 0 checks that sends and
// receives pair up and hands every rank what was sent to it. Rank 0 thus
// carries all traffic; it is the Pipeline, which handles most of it anyway,
// and slice-to-slice data in dpsbatch is small. Direct slice-to-slice links
// are the step to take if Exchange volume ever matters.
//
// Setup (NewTCP; tcp_setup.go): rank 0 listens, writes "host:port" and a
// random per-run token to a file in the rendezvous directory (temporary
// file, then rename), and waits for Size-1 slices. A slice polls for the
// file, connects and sends a hello with the token, its run, rank, size and
// host. Rank 0 rejects wrong tokens, other runs, wrong sizes, out-of-range
// and duplicate ranks, each with a reason the slice returns as its error.
// Once every slice has joined, rank 0 removes the file and sends each one
// "start"; if some never join within ConnectTimeout, it sends "reject"
// instead and fails, naming every missing rank.
//
// Operations: every collective call increments a per-rank sequence
// number. Each frame carries it with the frame's kind and the root, and the
// receiver checks all three, so ranks that call collectives in different
// orders get an error naming both operations instead of each other's data.
//
// Liveness: each link has a reader goroutine that always reads (data goes
// to an unbounded inbox), and a heartbeat goroutine that sends a heartbeat
// frame when the link was idle for Heartbeat. Every read and every write
// chunk carries a deadline of Timeout from the moment it starts, so a peer
// from which nothing arrived for Timeout, or to which a write made no
// progress for Timeout, is lost. A peer whose process dies is noticed at
// once (its kernel closes the connection); a hung process, host or network
// within Timeout (plus scheduling slack). TCP keepalive is on as well.
//
// Failure: the first failure on a rank (a lost link, a protocol mismatch,
// misuse such as a bad root, or Abort) aborts it: pending and later
// operations return an error wrapping ErrAborted and the cause. Rank 0
// forwards the cause to every other slice; a slice sends it to rank 0,
// which forwards it. So every rank fails, with the same text, e.g.
// "comm: aborted: comm: tcp: rank 3 on host n2 lost: read: ...".

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for TCPConfig's zero durations.
const (
	DefaultTCPConnectTimeout = 60 * time.Second
	DefaultTCPTimeout        = 30 * time.Second
)

// TCPConfig configures one rank's TCP endpoint. Zero durations take the
// defaults.
type TCPConfig struct {
	// Rank and Size place this process in the world: 0 <= Rank < Size.
	Rank, Size int
	// Rendezvous is a directory all ranks see (a shared file system when
	// they run on several nodes). Rank 0 creates it if needed and
	// publishes its address there for the duration of setup. Unused when
	// Size is 1.
	Rendezvous string
	// RunID, if set, is part of the rendezvous file's name and is checked
	// when a slice joins, so runs sharing a directory stay apart.
	// TCPConfigFromEnv sets it to "<SLURM_JOB_ID>.<SLURM_STEP_ID>".
	RunID string
	// Host names this rank's host in messages, its own and other ranks'.
	// Default: os.Hostname(). TCPConfigFromEnv sets it to SLURMD_NODENAME,
	// the name Slurm's tools show.
	Host string
	// ListenAddr is rank 0's listen address, "host:port". Empty: a
	// non-loopback address of this host (the one its name resolves to,
	// else the first one of an interface that is up, else 127.0.0.1), any
	// port. With an empty or unspecified host (":7000", "0.0.0.0:0") rank 0
	// listens on all addresses and publishes the detected one.
	ListenAddr string
	// ConnectTimeout bounds setup: how long rank 0 waits for every slice to
	// join, and how long a slice tries to reach rank 0 (a slice that got in
	// then waits up to ConnectTimeout+Timeout for the others). Default 60s.
	ConnectTimeout time.Duration
	// Timeout is the liveness bound: a link on which nothing arrived for
	// this long, or a write made no progress for this long, is lost.
	// Default 30s.
	Timeout time.Duration
	// Heartbeat is how often an idle link sends a heartbeat. Default
	// Timeout/6; it must be less than Timeout/2.
	Heartbeat time.Duration
	// Logger receives setup and failure events; nil discards them.
	Logger *slog.Logger
}

// TCPConfigFromEnv returns the Rank, Size, RunID and Host of a task started
// by srun, from SLURM_PROCID, SLURM_NTASKS, SLURM_JOB_ID, SLURM_STEP_ID and
// SLURMD_NODENAME.
// The caller sets Rendezvous and anything else. A missing or malformed
// variable is an error naming it; all such problems are reported together.
func TCPConfigFromEnv() (TCPConfig, error) {
	var cfg TCPConfig
	var problems []string
	num := func(name string) (int, bool) {
		v, ok := os.LookupEnv(name)
		if !ok || strings.TrimSpace(v) == "" {
			problems = append(problems, name+" is not set (not started by srun?)")
			return 0, false
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			problems = append(problems, fmt.Sprintf("%s=%q is not a non-negative integer", name, v))
			return 0, false
		}
		return n, true
	}
	rank, rankOK := num("SLURM_PROCID")
	size, sizeOK := num("SLURM_NTASKS")
	if rankOK && sizeOK && rank >= size {
		problems = append(problems, fmt.Sprintf("SLURM_PROCID=%d is out of range for SLURM_NTASKS=%d", rank, size))
	}
	if len(problems) > 0 {
		return cfg, fmt.Errorf("comm: tcp: %s", strings.Join(problems, "; "))
	}
	cfg.Rank, cfg.Size = rank, size
	cfg.Host = os.Getenv("SLURMD_NODENAME")
	if job := os.Getenv("SLURM_JOB_ID"); job != "" {
		cfg.RunID = job
		if step := os.Getenv("SLURM_STEP_ID"); step != "" {
			cfg.RunID += "." + step
		}
	}
	return cfg, nil
}

// withDefaults fills in defaults and reports every problem of cfg at once.
func (cfg TCPConfig) withDefaults() (TCPConfig, error) {
	var problems []string
	if cfg.Size < 1 {
		problems = append(problems, fmt.Sprintf("size %d, want at least 1", cfg.Size))
	} else if cfg.Rank < 0 || cfg.Rank >= cfg.Size {
		problems = append(problems, fmt.Sprintf("rank %d out of range [0,%d)", cfg.Rank, cfg.Size))
	}
	if cfg.Size > 1 && cfg.Rendezvous == "" {
		problems = append(problems, "no rendezvous directory")
	}
	if cfg.ListenAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.ListenAddr); err != nil {
			problems = append(problems, fmt.Sprintf("listen address: %v", err))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"connect timeout", cfg.ConnectTimeout}, {"timeout", cfg.Timeout}, {"heartbeat", cfg.Heartbeat}} {
		if d.v < 0 {
			problems = append(problems, fmt.Sprintf("negative %s %v", d.name, d.v))
		}
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultTCPConnectTimeout
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTCPTimeout
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = cfg.Timeout / 6
	}
	if cfg.Heartbeat > 0 && cfg.Timeout > 0 && 2*cfg.Heartbeat >= cfg.Timeout {
		problems = append(problems, fmt.Sprintf("heartbeat %v is not below half the timeout %v", cfg.Heartbeat, cfg.Timeout))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(problems) > 0 {
		return cfg, fmt.Errorf("comm: tcp: bad config: %s", strings.Join(problems, "; "))
	}
	return cfg, nil
}

// NewTCP connects this process to the other ranks of its world and returns
// its endpoint once all Size ranks are connected. Every rank calls it, with
// the same Size and Rendezvous. ctx bounds setup only; after NewTCP returns,
// Abort and Close end the endpoint.
func NewTCP(ctx context.Context, cfg TCPConfig) (Comm, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	host := cfg.Host
	if host == "" {
		if host, err = os.Hostname(); err != nil || host == "" {
			host = "unknown"
		}
	}
	c := &tcpComm{
		cfg:       cfg,
		rank:      cfg.Rank,
		size:      cfg.Size,
		host:      host,
		log:       cfg.Logger,
		done:      make(chan struct{}),
		abortSent: make(chan struct{}),
		stopHB:    make(chan struct{}),
	}
	switch {
	case cfg.Size == 1:
	case cfg.Rank == 0:
		err = c.serve(ctx)
	default:
		err = c.join(ctx)
	}
	if err != nil {
		return nil, err
	}
	for _, p := range c.links {
		go c.readLoop(p)
		c.hbWG.Add(1)
		go c.heartbeat(p)
	}
	return c, nil
}

type tcpComm struct {
	cfg   TCPConfig
	rank  int
	size  int
	host  string
	log   *slog.Logger
	peers []*tcpPeer // rank 0: peers[r] is the link to rank r >= 1
	up    *tcpPeer   // slices: the link to rank 0
	links []*tcpPeer // all links of this endpoint; fixed after setup
	seq   uint64     // owner goroutine only

	abortOnce sync.Once
	done      chan struct{} // closed by the first abort
	cause     error         // set before done is closed
	abortSent chan struct{} // closed once the abort was passed on

	closing   atomic.Bool
	closeOnce sync.Once
	stopHB    chan struct{}
	hbWG      sync.WaitGroup
}

func (c *tcpComm) Rank() int { return c.rank }
func (c *tcpComm) Size() int { return c.size }

// abortGrace is how long an abort or goodbye waits for a link that the
// owner goroutine is writing to before it closes the link instead.
func (c *tcpComm) abortGrace() time.Duration { return min(c.cfg.Timeout, 2*time.Second) }

func (c *tcpComm) keepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: c.cfg.Timeout / 2, Interval: c.cfg.Timeout / 6, Count: 3}
}

// begin starts an operation on the owner goroutine and returns its
// sequence number.
func (c *tcpComm) begin(op string, root int) (uint64, error) {
	select {
	case <-c.done:
		return 0, c.abortErr()
	default:
	}
	if c.closing.Load() {
		return 0, fmt.Errorf("comm: tcp: %s on a closed endpoint", op)
	}
	if root < 0 || root >= c.size {
		return 0, c.fail(fmt.Errorf("comm: %s: rank %d out of range [0,%d)", op, root, c.size))
	}
	c.seq++
	return c.seq, nil
}

func (c *tcpComm) abortErr() error { return fmt.Errorf("%w: %w", ErrAborted, c.cause) }

// fail aborts the world with cause, unless it was aborted already, and
// returns the error operations report: ErrAborted wrapping the first cause.
func (c *tcpComm) fail(cause error) error {
	c.abort(cause, cause.Error(), -1)
	return c.abortErr()
}

// abort records the first cause, fails every pending and later operation on
// this rank, and passes the cause on as text: rank 0 to every slice but
// from, a slice to rank 0 unless from is 0. It does not wait for the
// sending; abortSent is closed when it is done. Any goroutine.
func (c *tcpComm) abort(cause error, text string, from int) {
	c.abortOnce.Do(func() {
		c.cause = cause
		close(c.done)
		if !c.closing.Load() {
			c.log.Error("comm: tcp: aborting", "rank", c.rank, "err", cause)
		}
		var targets []*tcpPeer
		for _, p := range c.links {
			if ended, _ := p.state(); p.rank != from && !ended {
				targets = append(targets, p)
			}
		}
		go func() {
			var wg sync.WaitGroup
			for _, p := range targets {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.sendAbort(p, text)
				}()
			}
			wg.Wait()
			close(c.abortSent)
		}()
	})
}

func (c *tcpComm) sendAbort(p *tcpPeer, text string) {
	if !p.lockWithin(c.abortGrace()) {
		// The owner goroutine is stuck writing to p. Closing the link
		// fails that write, and p notices the loss instead of the text.
		p.conn.Close()
		return
	}
	p.writeFrame(kindAbort, uint32(c.rank), 0, []byte(text))
	p.unlock()
}

// lostErr describes a failed read or write on p's link.
func (c *tcpComm) lostErr(p *tcpPeer, op string, err error) error {
	why := op
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) && op == "read":
		why = fmt.Sprintf("nothing received for %v", c.cfg.Timeout)
	case errors.Is(err, os.ErrDeadlineExceeded):
		why = fmt.Sprintf("%s made no progress for %v", op, c.cfg.Timeout)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		why = op + ": connection closed without goodbye"
	}
	return fmt.Errorf("comm: tcp: rank %d on host %s lost: %s: %w", p.rank, p.host, why, err)
}

// lost aborts the world after a failed write to p.
func (c *tcpComm) lost(p *tcpPeer, err error) error {
	return c.fail(c.lostErr(p, "write", err))
}

func (c *tcpComm) send(p *tcpPeer, k frameKind, root int, seq uint64, data []byte) error {
	select {
	case <-c.done:
		return c.abortErr()
	default:
	}
	p.lock()
	err := p.writeFrame(k, uint32(root), seq, data)
	p.unlock()
	if err != nil {
		return c.lost(p, err)
	}
	return nil
}

// recv returns the payload of the next frame from p, which must be of kind
// k for operation seq with this root.
func (c *tcpComm) recv(p *tcpPeer, seq uint64, k frameKind, root int) ([]byte, error) {
	for {
		select {
		case <-c.done:
			return nil, c.abortErr()
		default:
		}
		f, ok, ended, endErr := p.pop()
		if ok {
			if f.seq != seq || f.kind != k || f.aux != uint32(root) {
				return nil, c.fail(fmt.Errorf("comm: tcp: rank %d: operation mismatch with rank %d on host %s: "+
					"expected %s (operation %d, root %d), got %s (operation %d, root %d); "+
					"every rank must call the same collectives in the same order",
					c.rank, p.rank, p.host, k, seq, root, f.kind, f.seq, f.aux))
			}
			return f.data, nil
		}
		if ended {
			if endErr != nil {
				return nil, c.fail(endErr)
			}
			return nil, c.fail(fmt.Errorf("comm: tcp: rank %d on host %s closed its endpoint while rank %d waits for its %s (operation %d)",
				p.rank, p.host, c.rank, k, seq))
		}
		select {
		case <-p.sig:
		case <-c.done:
			return nil, c.abortErr()
		}
	}
}

// readLoop is p's reader goroutine, from the end of setup until the link
// closes: it answers heartbeats and aborts itself and queues everything
// else for the owner goroutine.
func (c *tcpComm) readLoop(p *tcpPeer) {
	defer close(p.readerDone)
	bye := false
	for {
		f, err := p.readFrame(maxFrame)
		if err != nil {
			if bye || c.closing.Load() {
				p.end(nil)
				return
			}
			lost := c.lostErr(p, "read", err)
			p.end(lost)
			p.conn.Close()
			c.abort(lost, lost.Error(), p.rank)
			return
		}
		switch f.kind {
		case kindHeartbeat:
		case kindAbort:
			text := string(f.data)
			c.abort(errors.New(text), text, p.rank)
		case kindBye:
			bye = true
			p.end(nil)
		default:
			if !bye {
				p.push(f)
			}
		}
	}
}

// heartbeat is p's heartbeat goroutine, until Close: it sends a heartbeat
// whenever nothing was written to p for about a Heartbeat.
func (c *tcpComm) heartbeat(p *tcpPeer) {
	defer c.hbWG.Done()
	t := time.NewTicker(c.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-c.stopHB:
			return
		case <-t.C:
		}
		if time.Now().UnixNano()-p.lastWrite.Load() < int64(c.cfg.Heartbeat/2) {
			continue
		}
		if ended, _ := p.state(); ended || !p.tryLock() {
			continue // a write in progress is as good as a heartbeat
		}
		err := p.writeFrame(kindHeartbeat, uint32(c.rank), 0, nil)
		p.unlock()
		if err != nil && !c.closing.Load() {
			lost := c.lostErr(p, "heartbeat", err)
			p.end(lost)
			p.conn.Close()
			c.abort(lost, lost.Error(), p.rank)
		}
	}
}

func (c *tcpComm) Bcast(root int, data []byte) ([]byte, error) {
	seq, err := c.begin("bcast", root)
	if err != nil {
		return nil, err
	}
	if c.rank == 0 {
		if root != 0 {
			if data, err = c.recv(c.peers[root], seq, kindBcast, root); err != nil {
				return nil, err
			}
		}
		for r := 1; r < c.size; r++ {
			if r != root {
				if err := c.send(c.peers[r], kindBcast, root, seq, data); err != nil {
					return nil, err
				}
			}
		}
		return data, nil
	}
	if c.rank == root {
		if err := c.send(c.up, kindBcast, root, seq, data); err != nil {
			return nil, err
		}
		return data, nil
	}
	return c.recv(c.up, seq, kindBcast, root)
}

func (c *tcpComm) Gather(root int, data []byte) ([][]byte, error) {
	seq, err := c.begin("gather", root)
	if err != nil {
		return nil, err
	}
	if c.rank == 0 {
		out := make([][]byte, c.size)
		out[0] = data
		for r := 1; r < c.size; r++ {
			if r == root {
				continue // root keeps its own part
			}
			if out[r], err = c.recv(c.peers[r], seq, kindGather, root); err != nil {
				return nil, err
			}
		}
		if root == 0 {
			return out, nil
		}
		p := c.peers[root]
		p.lock()
		err := p.writeBundle(kindGatherResult, uint32(root), seq, out, root)
		p.unlock()
		if err != nil {
			return nil, c.lost(p, err)
		}
		return nil, nil
	}
	if c.rank != root {
		return nil, c.send(c.up, kindGather, root, seq, data)
	}
	b, err := c.recv(c.up, seq, kindGatherResult, root)
	if err != nil {
		return nil, err
	}
	parts, err := decodeBundle(b, c.size, "gather result")
	if err != nil {
		return nil, c.fail(fmt.Errorf("comm: tcp: rank %d: %w", c.rank, err))
	}
	parts[root] = data
	return parts, nil
}

func (c *tcpComm) Scatter(root int, parts [][]byte) ([]byte, error) {
	seq, err := c.begin("scatter", root)
	if err != nil {
		return nil, err
	}
	if c.rank == root && len(parts) != c.size {
		return nil, c.fail(fmt.Errorf("comm: scatter: root passed %d parts for %d ranks", len(parts), c.size))
	}
	if c.rank == 0 {
		if root != 0 {
			b, err := c.recv(c.peers[root], seq, kindScatterParts, root)
			if err != nil {
				return nil, err
			}
			if parts, err = decodeBundle(b, c.size, "scatter parts"); err != nil {
				return nil, c.fail(fmt.Errorf("comm: tcp: rank %d: %w", c.rank, err))
			}
		}
		for r := 1; r < c.size; r++ {
			if r != root {
				if err := c.send(c.peers[r], kindScatter, root, seq, parts[r]); err != nil {
					return nil, err
				}
			}
		}
		return parts[0], nil
	}
	if c.rank == root {
		p := c.up
		p.lock()
		err := p.writeBundle(kindScatterParts, uint32(root), seq, parts, root)
		p.unlock()
		if err != nil {
			return nil, c.lost(p, err)
		}
		return parts[root], nil
	}
	return c.recv(c.up, seq, kindScatter, root)
}

func (c *tcpComm) Barrier() error {
	seq, err := c.begin("barrier", 0)
	if err != nil {
		return err
	}
	if c.rank != 0 {
		if err := c.send(c.up, kindBarrier, 0, seq, nil); err != nil {
			return err
		}
		_, err := c.recv(c.up, seq, kindBarrierRelease, 0)
		return err
	}
	for r := 1; r < c.size; r++ {
		if _, err := c.recv(c.peers[r], seq, kindBarrier, 0); err != nil {
			return err
		}
	}
	for r := 1; r < c.size; r++ {
		if err := c.send(c.peers[r], kindBarrierRelease, 0, seq, nil); err != nil {
			return err
		}
	}
	return nil
}

// Exchange is relayed by rank 0. A slice sends one exchange frame:
//
//	uint32 n, n × uint32 rank            the ranks in from
//	uint32 m, m × (uint32 dst, uint64 len, bytes)   the messages
//
// Rank 0 checks that every send has a matching entry in its destination's
// from and the other way round (aborting with a list of the mismatches if
// not), then sends each slice one exchange result frame:
//
//	uint32 m, m × (uint32 src, uint64 len, bytes)
//
// So Exchange synchronises all ranks, like a Barrier.
func (c *tcpComm) Exchange(send map[int][]byte, from []int) (map[int][]byte, error) {
	seq, err := c.begin("exchange", 0)
	if err != nil {
		return nil, err
	}
	for r := range send {
		if r < 0 || r >= c.size {
			return nil, c.fail(fmt.Errorf("comm: exchange: rank %d out of range [0,%d)", r, c.size))
		}
	}
	for _, r := range from {
		if r < 0 || r >= c.size {
			return nil, c.fail(fmt.Errorf("comm: exchange: rank %d out of range [0,%d)", r, c.size))
		}
	}
	if c.rank != 0 {
		return c.exchangeSlice(seq, send, from)
	}

	in := make([][]xmsg, c.size) // in[dst]: messages for dst, by source rank
	froms := make([][]int, c.size)
	froms[0] = from
	for dst, d := range send {
		in[dst] = append(in[dst], xmsg{0, d})
	}
	for r := 1; r < c.size; r++ {
		b, err := c.recv(c.peers[r], seq, kindExchange, 0)
		if err != nil {
			return nil, err
		}
		d := decoder{b: b}
		n := int(d.u32())
		if n > len(b)/4 {
			d.bad = true
		}
		fr := make([]int, 0, n)
		for i := 0; i < n && !d.bad; i++ {
			fr = append(fr, int(d.u32()))
		}
		m := int(d.u32())
		for i := 0; i < m && !d.bad; i++ {
			dst := int(d.u32())
			data := d.bytes(d.u64())
			if dst >= c.size {
				d.bad = true
				break
			}
			in[dst] = append(in[dst], xmsg{r, data})
		}
		if slices.ContainsFunc(fr, func(s int) bool { return s >= c.size }) {
			d.bad = true
		}
		if err := d.err("exchange"); err != nil {
			return nil, c.fail(fmt.Errorf("comm: tcp: rank %d sent a %w", r, err))
		}
		froms[r] = fr
	}
	if err := checkPairs(in, froms); err != nil {
		return nil, c.fail(err)
	}
	for r := 1; r < c.size; r++ {
		p := c.peers[r]
		n := 4
		for _, m := range in[r] {
			n += 12 + len(m.data)
		}
		p.lock()
		p.header(kindExchangeResult, 0, seq, n)
		p.putU32(uint32(len(in[r])))
		for _, m := range in[r] {
			p.putRankLen(m.src, len(m.data))
			p.w.Write(m.data)
		}
		err := p.flush()
		p.unlock()
		if err != nil {
			return nil, c.lost(p, err)
		}
	}
	out := make(map[int][]byte, len(in[0]))
	for _, m := range in[0] {
		out[m.src] = m.data
	}
	return out, nil
}

type xmsg struct {
	src  int
	data []byte
}

func (c *tcpComm) exchangeSlice(seq uint64, send map[int][]byte, from []int) (map[int][]byte, error) {
	p := c.up
	n := 4 + 4*len(from) + 4
	for _, d := range send {
		n += 12 + len(d)
	}
	p.lock()
	p.header(kindExchange, 0, seq, n)
	p.putU32(uint32(len(from)))
	for _, r := range from {
		p.putU32(uint32(r))
	}
	p.putU32(uint32(len(send)))
	for r, d := range send {
		p.putRankLen(r, len(d))
		p.w.Write(d)
	}
	err := p.flush()
	p.unlock()
	if err != nil {
		return nil, c.lost(p, err)
	}
	b, err := c.recv(p, seq, kindExchangeResult, 0)
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	m := int(d.u32())
	out := make(map[int][]byte, min(m, len(from)))
	for i := 0; i < m && !d.bad; i++ {
		src := int(d.u32())
		out[src] = d.bytes(d.u64())
	}
	if err := d.err("exchange result"); err != nil {
		return nil, c.fail(fmt.Errorf("comm: tcp: rank %d: %w", c.rank, err))
	}
	return out, nil
}

// checkPairs reports every rank whose from list does not match the ranks
// that sent to it. in[dst] is sorted by source rank.
func checkPairs(in [][]xmsg, froms [][]int) error {
	var problems []string
	for dst := range in {
		want := slices.Clone(froms[dst])
		slices.Sort(want)
		for i := 1; i < len(want); i++ {
			if want[i] == want[i-1] {
				problems = append(problems, fmt.Sprintf("rank %d lists rank %d twice", dst, want[i]))
			}
		}
		want = slices.Compact(want)
		got := in[dst]
		i, j := 0, 0
		for i < len(got) || j < len(want) {
			switch {
			case j == len(want) || (i < len(got) && got[i].src < want[j]):
				problems = append(problems, fmt.Sprintf("rank %d sends to rank %d, which does not expect it", got[i].src, dst))
				i++
			case i == len(got) || want[j] < got[i].src:
				problems = append(problems, fmt.Sprintf("rank %d expects a message from rank %d, which sends none", dst, want[j]))
				j++
			default:
				i++
				j++
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	const most = 8
	if len(problems) > most {
		problems = append(problems[:most], fmt.Sprintf("and %d more", len(problems)-most))
	}
	return fmt.Errorf("comm: tcp: exchange: sends and receives do not pair up: %s", strings.Join(problems, "; "))
}

// Abort aborts the world: every rank's pending and later operations fail
// with an error wrapping ErrAborted and err. It returns once the abort is
// on its way to the other ranks (or after a bounded wait), so a process
// may exit right after it. Any goroutine, any number of times; only the
// first abort of a world counts.
func (c *tcpComm) Abort(err error) {
	if err == nil {
		err = fmt.Errorf("rank %d aborted", c.rank)
	}
	c.abort(err, fmt.Sprintf("rank %d (host %s): %v", c.rank, c.host, err), -1)
	<-c.abortSent
}

// Close says goodbye on every link, waits (at most Timeout) for the peers
// to do the same, and releases the endpoint. Called once, by the owner
// goroutine, after its last operation (and after Abort, if any). A peer
// still waiting for this rank then fails with "closed its endpoint". Close
// returns nil: nothing is left to report that an operation did not.
func (c *tcpComm) Close() error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		select {
		case <-c.done:
			<-c.abortSent
		default:
		}
		close(c.stopHB)
		c.hbWG.Wait()
		for _, p := range c.links {
			if ended, endErr := p.state(); ended && endErr != nil {
				continue
			}
			if p.lockWithin(c.abortGrace()) {
				p.writeFrame(kindBye, uint32(c.rank), 0, nil)
				p.unlock()
			}
			if tc, ok := p.conn.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}
		// Keep reading until the peers close too, so none of them gets
		// a reset instead of the goodbye.
		t := time.NewTimer(c.cfg.Timeout)
		defer t.Stop()
	wait:
		for _, p := range c.links {
			select {
			case <-p.readerDone:
			case <-t.C:
				break wait
			}
		}
		for _, p := range c.links {
			p.conn.Close()
		}
		for _, p := range c.links {
			<-p.readerDone
		}
	})
	return nil
}

var _ Comm = (*tcpComm)(nil)
