package comm

// Setup of the TCP communicator: the rendezvous file, rank 0's wait for
// the slices, and a slice's join. See tcp.go for the protocol.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The rendezvous file is text, one "key value" per line after a first
// line naming the format:
//
//	dpsbatch-tcp 1
//	addr 10.1.0.7:40213
//	host n1
//	size 5
//	run 4711.0
//	token 3f2a...
//
// It is written to a temporary file and renamed, so a reader sees all of it
// or nothing, and is readable by its owner only (it holds the token).
const rendezvousMagic = "dpsbatch-tcp 1"

type rendezvousInfo struct {
	addr  string
	host  string
	size  int
	run   string
	token string
}

// rendezvousPath is the file rank 0 publishes in dir:
// dpsbatch-tcp.addr, or dpsbatch-tcp-<run>.addr with a run ID.
func rendezvousPath(dir, run string) string {
	if run == "" {
		return filepath.Join(dir, "dpsbatch-tcp.addr")
	}
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, run)
	return filepath.Join(dir, "dpsbatch-tcp-"+safe+".addr")
}

func writeRendezvous(path string, info rendezvousInfo) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".dpsbatch-tcp-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = fmt.Fprintf(f, "%s\naddr %s\nhost %s\nsize %d\nrun %s\ntoken %s\n",
		rendezvousMagic, info.addr, info.host, info.size, info.run, info.token)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func readRendezvous(path string) (rendezvousInfo, error) {
	var info rendezvousInfo
	b, err := os.ReadFile(path)
	if err != nil {
		return info, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if lines[0] != rendezvousMagic {
		return info, fmt.Errorf("%s: not a dpsbatch tcp rendezvous file", path)
	}
	for _, line := range lines[1:] {
		key, val, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch key {
		case "addr":
			info.addr = val
		case "host":
			info.host = val
		case "size":
			info.size, _ = strconv.Atoi(val)
		case "run":
			info.run = val
		case "token":
			info.token = val
		}
	}
	if info.addr == "" || info.token == "" {
		return info, fmt.Errorf("%s: no address or token", path)
	}
	return info, nil
}

// tcpHello is the first frame on a new connection, slice to rank 0.
type tcpHello struct {
	Version int    `json:"v"`
	Token   string `json:"token"`
	Run     string `json:"run"`
	Rank    int    `json:"rank"`
	Size    int    `json:"size"`
	Host    string `json:"host"`
}

// tcpJoin is a connection whose hello rank 0 has read.
type tcpJoin struct {
	p     *tcpPeer
	hello tcpHello
	err   error
}

// serve is rank 0's setup: listen, publish, collect Size-1 slices, and
// send them start (or reject, when giving up).
func (c *tcpComm) serve(ctx context.Context) error {
	listen, advertise, err := c.listenAddr(ctx)
	if err != nil {
		return err
	}
	lc := net.ListenConfig{KeepAliveConfig: c.keepAlive()}
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("comm: tcp: rank 0: %w", err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var tok [16]byte
	rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	if err := os.MkdirAll(c.cfg.Rendezvous, 0o755); err != nil {
		return fmt.Errorf("comm: tcp: rank 0: rendezvous: %w", err)
	}
	path := rendezvousPath(c.cfg.Rendezvous, c.cfg.RunID)
	info := rendezvousInfo{addr: net.JoinHostPort(advertise, port), host: c.host, size: c.size, run: c.cfg.RunID, token: token}
	if err := writeRendezvous(path, info); err != nil {
		return fmt.Errorf("comm: tcp: rank 0: publish address: %w", err)
	}
	defer os.Remove(path)
	c.log.Info("comm: tcp: rank 0 waiting for slices", "addr", info.addr, "rendezvous", path, "size", c.size)

	// Accepting and reading hellos runs until setup ends (stopped); then
	// connections still saying hello are closed, so a stray connection
	// that never speaks cannot hold setup up.
	joins := make(chan tcpJoin)
	stopped, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				c.log.Warn("comm: tcp: accept", "err", err)
				select {
				case <-stopped.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				unwatch := context.AfterFunc(stopped, func() { conn.Close() })
				j := c.readHello(conn)
				if unwatch() {
					select {
					case joins <- j:
						return
					case <-stopped.Done():
					}
				}
				conn.Close()
			}()
		}
	}()
	defer func() {
		stop()
		ln.Close()
		wg.Wait()
	}()

	peers := make([]*tcpPeer, c.size)
	var rejected []string
	var replies sync.WaitGroup
	defer replies.Wait()
	reply := func(p *tcpPeer, why string) {
		replies.Add(1)
		go func() {
			defer replies.Done()
			p.lock()
			p.writeFrame(kindReject, 0, 0, []byte(why))
			p.unlock()
			p.conn.Close()
		}()
	}
	timer := time.NewTimer(c.cfg.ConnectTimeout)
	defer timer.Stop()
	for missing := c.size - 1; missing > 0 && err == nil; {
		select {
		case j := <-joins:
			if j.err != nil {
				c.log.Warn("comm: tcp: dropped a connection", "err", j.err)
				rejected = append(rejected, j.err.Error())
				continue
			}
			h := j.hello
			if why := c.checkHello(h, token, peers); why != "" {
				msg := fmt.Sprintf("rank %d from host %s (%s): %s", h.Rank, h.Host, j.p.addr, why)
				c.log.Warn("comm: tcp: rejected a connection", "why", msg)
				rejected = append(rejected, msg)
				reply(j.p, why)
				continue
			}
			j.p.rank, j.p.host = h.Rank, h.Host
			peers[h.Rank] = j.p
			missing--
			c.log.Debug("comm: tcp: slice joined", "rank", h.Rank, "host", h.Host, "addr", j.p.addr)
		case <-timer.C:
			err = fmt.Errorf("comm: tcp: rank 0: %s never connected within %v (rendezvous %s)%s",
				missingRanks(peers), c.cfg.ConnectTimeout, path, rejectedText(rejected))
		case <-ctx.Done():
			err = fmt.Errorf("comm: tcp: rank 0: waiting for %s: %w", missingRanks(peers), context.Cause(ctx))
		}
	}
	for r := 1; r < c.size && err == nil; r++ {
		p := peers[r]
		p.lock()
		werr := p.writeFrame(kindStart, 0, 0, nil)
		p.unlock()
		if werr != nil {
			err = fmt.Errorf("comm: tcp: rank 0: starting: %w", c.lostErr(p, "write", werr))
		}
	}
	if err != nil {
		for _, p := range peers {
			if p != nil {
				reply(p, "rank 0 gave up: "+err.Error())
			}
		}
		return err
	}
	c.peers, c.links = peers, peers[1:]
	c.log.Info("comm: tcp: all ranks joined", "size", c.size)
	return nil
}

// readHello reads the hello of a new connection (bounded by Timeout).
func (c *tcpComm) readHello(conn net.Conn) tcpJoin {
	p := newPeer(conn, c.cfg.Timeout)
	f, err := p.readFrame(maxSetupFrame)
	if err == nil && f.kind != kindHello {
		err = fmt.Errorf("%s frame before hello", f.kind)
	}
	var h tcpHello
	if err == nil {
		err = json.Unmarshal(f.data, &h)
	}
	if err != nil {
		conn.Close()
		return tcpJoin{err: fmt.Errorf("connection from %s: %v", p.addr, err)}
	}
	return tcpJoin{p: p, hello: h}
}

// checkHello returns why rank 0 refuses h, or "".
func (c *tcpComm) checkHello(h tcpHello, token string, peers []*tcpPeer) string {
	switch {
	case h.Version != frameVersion:
		return fmt.Sprintf("protocol version %d, rank 0 speaks %d", h.Version, frameVersion)
	case subtle.ConstantTimeCompare([]byte(h.Token), []byte(token)) != 1:
		return "wrong token (a process of another run?)"
	case h.Run != c.cfg.RunID:
		return fmt.Sprintf("run %q, but rank 0 is in run %q", h.Run, c.cfg.RunID)
	case h.Size != c.size:
		return fmt.Sprintf("size %d, but rank 0 has size %d", h.Size, c.size)
	case h.Rank < 1 || h.Rank >= c.size:
		return fmt.Sprintf("rank %d out of range [1,%d)", h.Rank, c.size)
	case peers[h.Rank] != nil:
		return fmt.Sprintf("duplicate rank %d (already joined from host %s, %s)", h.Rank, peers[h.Rank].host, peers[h.Rank].addr)
	}
	return ""
}

func missingRanks(peers []*tcpPeer) string {
	var miss []string
	for r := 1; r < len(peers); r++ {
		if peers[r] == nil {
			miss = append(miss, strconv.Itoa(r))
		}
	}
	const most = 32
	if len(miss) > most {
		miss = append(miss[:most], fmt.Sprintf("and %d more", len(miss)-most))
	}
	if len(miss) == 1 {
		return "rank " + miss[0]
	}
	return "ranks " + strings.Join(miss, ", ")
}

func rejectedText(rejected []string) string {
	if len(rejected) == 0 {
		return ""
	}
	const most = 8
	if len(rejected) > most {
		rejected = append(rejected[:most:most], fmt.Sprintf("and %d more", len(rejected)-most))
	}
	return "; rejected: " + strings.Join(rejected, "; ")
}

// listenAddr returns where rank 0 listens and the host it publishes.
func (c *tcpComm) listenAddr(ctx context.Context) (listen, advertise string, err error) {
	if c.cfg.ListenAddr == "" {
		h := detectHost(ctx)
		return net.JoinHostPort(h, "0"), h, nil
	}
	host, _, err := net.SplitHostPort(c.cfg.ListenAddr)
	if err != nil {
		return "", "", fmt.Errorf("comm: tcp: listen address %q: %w", c.cfg.ListenAddr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return c.cfg.ListenAddr, detectHost(ctx), nil
	}
	return c.cfg.ListenAddr, host, nil
}

// detectHost returns an address of this host that other nodes can reach:
// the first non-loopback address its name resolves to, else the first one
// of an interface that is up, else 127.0.0.1. IPv4 is preferred.
func detectHost(ctx context.Context) string {
	if name, err := os.Hostname(); err == nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ips, _ := net.DefaultResolver.LookupIP(ctx, "ip", name)
		cancel()
		if ip := pickIP(ips); ip != nil {
			return ip.String()
		}
	}
	var ips []net.IP
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				ips = append(ips, ipn.IP)
			}
		}
	}
	if ip := pickIP(ips); ip != nil {
		return ip.String()
	}
	return "127.0.0.1"
}

func pickIP(ips []net.IP) net.IP {
	var v6 net.IP
	for _, ip := range ips {
		if !ip.IsGlobalUnicast() {
			continue
		}
		if ip.To4() != nil {
			return ip
		}
		if v6 == nil {
			v6 = ip
		}
	}
	return v6
}

// join is a slice's setup: find rank 0's address, connect, say hello and
// wait for start.
func (c *tcpComm) join(ctx context.Context) error {
	path := rendezvousPath(c.cfg.Rendezvous, c.cfg.RunID)
	deadline := time.Now().Add(c.cfg.ConnectTimeout)
	wait := 10 * time.Millisecond
	for {
		info, err := readRendezvous(path)
		if err == nil {
			var p *tcpPeer
			if p, err = c.dial(ctx, info, deadline); err == nil {
				return c.awaitStart(ctx, p, info)
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("comm: tcp: rank %d: joining: %w", c.rank, context.Cause(ctx))
		}
		left := time.Until(deadline)
		if left <= 0 {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("comm: tcp: rank %d: rank 0 did not publish its address (%s) within %v",
					c.rank, path, c.cfg.ConnectTimeout)
			}
			return fmt.Errorf("comm: tcp: rank %d: could not reach rank 0 within %v: %w", c.rank, c.cfg.ConnectTimeout, err)
		}
		t := time.NewTimer(min(wait, left))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// dial connects to rank 0 and sends the hello.
func (c *tcpComm) dial(ctx context.Context, info rendezvousInfo, deadline time.Time) (*tcpPeer, error) {
	d := net.Dialer{Timeout: 5 * time.Second, Deadline: deadline, KeepAliveConfig: c.keepAlive()}
	conn, err := d.DialContext(ctx, "tcp", info.addr)
	if err != nil {
		return nil, err
	}
	p := newPeer(conn, c.cfg.Timeout)
	p.rank, p.host = 0, info.host
	hello, _ := json.Marshal(tcpHello{
		Version: frameVersion, Token: info.token, Run: c.cfg.RunID,
		Rank: c.rank, Size: c.size, Host: c.host,
	})
	p.lock()
	err = p.writeFrame(kindHello, 0, 0, hello)
	p.unlock()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("hello to %s: %w", info.addr, err)
	}
	return p, nil
}

// awaitStart waits for rank 0's start or reject. Rank 0 answers within its
// ConnectTimeout, which began before this slice connected.
func (c *tcpComm) awaitStart(ctx context.Context, p *tcpPeer, info rendezvousInfo) error {
	p.dc.rtimeout = c.cfg.ConnectTimeout + c.cfg.Timeout
	stop := context.AfterFunc(ctx, func() { p.conn.Close() })
	f, err := p.readFrame(maxSetupFrame)
	stop()
	p.dc.rtimeout = c.cfg.Timeout
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("comm: tcp: rank %d: waiting for the other ranks: %w", c.rank, context.Cause(ctx))
	case err != nil:
		err = fmt.Errorf("comm: tcp: rank %d: waiting for the other ranks: %w", c.rank, c.lostErr(p, "read", err))
	case f.kind == kindReject:
		err = fmt.Errorf("comm: tcp: rank %d: rank 0 on host %s (%s) refused: %s", c.rank, info.host, info.addr, f.data)
	case f.kind != kindStart:
		err = fmt.Errorf("comm: tcp: rank %d: rank 0 on host %s sent %s instead of start", c.rank, info.host, f.kind)
	}
	if err != nil {
		p.conn.Close()
		return err
	}
	c.up, c.links = p, []*tcpPeer{p}
	return nil
}
