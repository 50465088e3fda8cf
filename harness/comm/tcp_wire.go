package comm

// Wire format of the TCP communicator (see tcp.go for the protocol).
//
// Every message is one frame: a fixed 24-byte header followed by the
// payload.
//
//	offset size field
//	0      2    magic 0xd5b7 (big endian, as every integer here)
//	2      1    kind (frameKind)
//	3      1    protocol version (1)
//	4      4    aux: the operation's root rank, or the origin rank of an abort
//	8      8    seq: the operation's sequence number on the sending rank
//	16     8    payload length in bytes
//
// Bundles (gather results, scatter parts) are a uint32 count followed by
// count × (uint64 length, bytes). Exchange frames are described at
// Exchange in tcp.go.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	frameMagic   = 0xd5b7
	frameVersion = 1
	frameHdrLen  = 24

	// maxSetupFrame bounds frames read before a peer has authenticated
	// (hello, start, reject), so a stray connection cannot make rank 0
	// allocate much.
	maxSetupFrame = 64 << 10
	// maxFrame bounds any frame: a larger length means a corrupt stream.
	maxFrame = 1 << 40

	// writeChunk is the most handed to one conn.Write, so the write
	// deadline bounds "no progress" rather than "whole message".
	writeChunk = 1 << 20
	bufSize    = 64 << 10
)

type frameKind uint8

const (
	kindHello frameKind = iota + 1
	kindReject
	kindStart
	kindHeartbeat
	kindAbort
	kindBye
	kindBcast
	kindGather
	kindGatherResult
	kindScatter
	kindScatterParts
	kindBarrier
	kindBarrierRelease
	kindExchange
	kindExchangeResult
)

var kindNames = [...]string{
	kindHello:          "hello",
	kindReject:         "reject",
	kindStart:          "start",
	kindHeartbeat:      "heartbeat",
	kindAbort:          "abort",
	kindBye:            "bye",
	kindBcast:          "bcast",
	kindGather:         "gather",
	kindGatherResult:   "gather result",
	kindScatter:        "scatter",
	kindScatterParts:   "scatter parts",
	kindBarrier:        "barrier",
	kindBarrierRelease: "barrier release",
	kindExchange:       "exchange",
	kindExchangeResult: "exchange result",
}

func (k frameKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

type frame struct {
	kind frameKind
	aux  uint32
	seq  uint64
	data []byte
}

var errBadMagic = errors.New("bad frame header (not a dpsbatch tcp peer, or corrupt stream)")

// deadlineConn bounds every Read and Write on a connection by an idle
// timeout: a call that makes no progress for that long fails with
// os.ErrDeadlineExceeded. Heartbeats keep an idle but healthy link busy.
// The timeouts are set before the goroutines that use them start.
type deadlineConn struct {
	c        net.Conn
	rtimeout time.Duration
	wtimeout time.Duration
}

func (d *deadlineConn) Read(p []byte) (int, error) {
	if d.rtimeout > 0 {
		d.c.SetReadDeadline(time.Now().Add(d.rtimeout))
	}
	return d.c.Read(p)
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > writeChunk {
			chunk = chunk[:writeChunk]
		}
		if d.wtimeout > 0 {
			d.c.SetWriteDeadline(time.Now().Add(d.wtimeout))
		}
		m, err := d.c.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// tcpPeer is one end of a link: on rank 0 one per slice, on a slice the
// single link to rank 0.
//
// Writing: the owner goroutine (the loop), the heartbeat goroutine, abort
// senders and Close all write; they take wlock, a channel so it can be
// tried or waited for with a time limit. Reading: before the link starts,
// the setup code reads; afterwards only the reader goroutine (readLoop),
// which queues data frames for the owner goroutine.
type tcpPeer struct {
	rank int
	host string
	addr string
	conn net.Conn
	dc   *deadlineConn
	r    *bufio.Reader
	w    *bufio.Writer

	wlock     chan struct{}
	whdr      [frameHdrLen]byte // under wlock
	wnum      [12]byte          // under wlock
	lastWrite atomic.Int64      // UnixNano of the last flush

	rhdr [frameHdrLen]byte // reader only

	mu     sync.Mutex
	queue  []frame
	head   int
	ended  bool  // no more frames will be queued
	endErr error // why: nil when the peer said goodbye
	sig    chan struct{}

	readerDone chan struct{}
}

func newPeer(conn net.Conn, timeout time.Duration) *tcpPeer {
	dc := &deadlineConn{c: conn, rtimeout: timeout, wtimeout: timeout}
	return &tcpPeer{
		rank:       -1,
		addr:       conn.RemoteAddr().String(),
		conn:       conn,
		dc:         dc,
		r:          bufio.NewReaderSize(dc, bufSize),
		w:          bufio.NewWriterSize(dc, bufSize),
		wlock:      make(chan struct{}, 1),
		sig:        make(chan struct{}, 1),
		readerDone: make(chan struct{}),
	}
}

func (p *tcpPeer) lock()   { p.wlock <- struct{}{} }
func (p *tcpPeer) unlock() { <-p.wlock }

func (p *tcpPeer) tryLock() bool {
	select {
	case p.wlock <- struct{}{}:
		return true
	default:
		return false
	}
}

func (p *tcpPeer) lockWithin(d time.Duration) bool {
	if p.tryLock() {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case p.wlock <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// Frame writing; the caller holds wlock. Errors stick in the bufio.Writer
// and come out of flush.

func (p *tcpPeer) header(k frameKind, aux uint32, seq uint64, n int) {
	h := &p.whdr
	binary.BigEndian.PutUint16(h[0:], frameMagic)
	h[2] = byte(k)
	h[3] = frameVersion
	binary.BigEndian.PutUint32(h[4:], aux)
	binary.BigEndian.PutUint64(h[8:], seq)
	binary.BigEndian.PutUint64(h[16:], uint64(n))
	p.w.Write(h[:])
}

func (p *tcpPeer) putU32(v uint32) {
	binary.BigEndian.PutUint32(p.wnum[:4], v)
	p.w.Write(p.wnum[:4])
}

func (p *tcpPeer) putU64(v uint64) {
	binary.BigEndian.PutUint64(p.wnum[:8], v)
	p.w.Write(p.wnum[:8])
}

// putRankLen writes an exchange entry's rank and length in one call.
func (p *tcpPeer) putRankLen(r int, n int) {
	binary.BigEndian.PutUint32(p.wnum[:4], uint32(r))
	binary.BigEndian.PutUint64(p.wnum[4:], uint64(n))
	p.w.Write(p.wnum[:12])
}

func (p *tcpPeer) flush() error {
	err := p.w.Flush()
	p.lastWrite.Store(time.Now().UnixNano())
	return err
}

// writeFrame writes and flushes a frame with one payload.
func (p *tcpPeer) writeFrame(k frameKind, aux uint32, seq uint64, data []byte) error {
	p.header(k, aux, seq, len(data))
	p.w.Write(data)
	return p.flush()
}

// bundleLen is the encoded size of parts, with parts[skip] sent empty.
func bundleLen(parts [][]byte, skip int) int {
	n := 4
	for i, b := range parts {
		n += 8
		if i != skip {
			n += len(b)
		}
	}
	return n
}

// writeBundle writes and flushes a frame holding parts; parts[skip] is sent
// empty (the receiver has it already). skip -1 sends all.
func (p *tcpPeer) writeBundle(k frameKind, aux uint32, seq uint64, parts [][]byte, skip int) error {
	p.header(k, aux, seq, bundleLen(parts, skip))
	p.putU32(uint32(len(parts)))
	for i, b := range parts {
		if i == skip {
			p.putU64(0)
			continue
		}
		p.putU64(uint64(len(b)))
		p.w.Write(b)
	}
	return p.flush()
}

// readFrame reads one frame; the payload is freshly allocated and owned by
// the caller. Only one goroutine reads a peer at a time.
func (p *tcpPeer) readFrame(max uint64) (frame, error) {
	h := &p.rhdr
	if _, err := io.ReadFull(p.r, h[:]); err != nil {
		return frame{}, err
	}
	if binary.BigEndian.Uint16(h[0:]) != frameMagic {
		return frame{}, errBadMagic
	}
	if h[3] != frameVersion {
		return frame{}, fmt.Errorf("protocol version %d, want %d", h[3], frameVersion)
	}
	f := frame{
		kind: frameKind(h[2]),
		aux:  binary.BigEndian.Uint32(h[4:]),
		seq:  binary.BigEndian.Uint64(h[8:]),
	}
	n := binary.BigEndian.Uint64(h[16:])
	if n > max {
		return frame{}, fmt.Errorf("%s frame of %d bytes exceeds the limit of %d", f.kind, n, max)
	}
	f.data = make([]byte, n)
	if _, err := io.ReadFull(p.r, f.data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	return f, nil
}

// Inbox: the reader goroutine pushes, the owner goroutine pops. The queue
// is unbounded so the reader never stops reading (and so never misses
// heartbeats) however far the owner is behind.

func (p *tcpPeer) push(f frame) {
	p.mu.Lock()
	if p.head > 0 && p.head >= len(p.queue)/2 {
		n := copy(p.queue, p.queue[p.head:])
		clear(p.queue[n:])
		p.queue = p.queue[:n]
		p.head = 0
	}
	p.queue = append(p.queue, f)
	p.mu.Unlock()
	p.notify()
}

func (p *tcpPeer) notify() {
	select {
	case p.sig <- struct{}{}:
	default:
	}
}

// end records that no more frames will arrive (err nil: a goodbye).
func (p *tcpPeer) end(err error) {
	p.mu.Lock()
	if !p.ended {
		p.ended, p.endErr = true, err
	}
	p.mu.Unlock()
	p.notify()
}

// pop returns the next queued frame, or ok false and the end state.
func (p *tcpPeer) pop() (f frame, ok, ended bool, endErr error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.head < len(p.queue) {
		f = p.queue[p.head]
		p.queue[p.head] = frame{}
		p.head++
		if p.head == len(p.queue) {
			p.queue, p.head = p.queue[:0], 0
		}
		return f, true, false, nil
	}
	return frame{}, false, p.ended, p.endErr
}

func (p *tcpPeer) state() (ended bool, endErr error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ended, p.endErr
}

// decoder reads the payloads of bundle and exchange frames. Byte slices it
// returns alias the payload, with capacity capped so appending to one
// cannot overwrite the next.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) u32() uint32 {
	if len(d.b) < 4 {
		d.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.bad = true
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if uint64(len(d.b)) < n {
		d.bad = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) err(what string) error {
	if d.bad || len(d.b) != 0 {
		return fmt.Errorf("malformed %s payload", what)
	}
	return nil
}

// decodeBundle decodes a bundle of exactly want parts.
func decodeBundle(b []byte, want int, what string) ([][]byte, error) {
	d := decoder{b: b}
	n := d.u32()
	if !d.bad && int(n) != want {
		return nil, fmt.Errorf("%s holds %d parts, want %d", what, n, want)
	}
	parts := make([][]byte, want)
	for i := range parts {
		if d.bad {
			break
		}
		parts[i] = d.bytes(d.u64())
	}
	if err := d.err(what); err != nil {
		return nil, err
	}
	return parts, nil
}
