package comm

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"strings"
	"testing"
	"time"
)

// waitRendezvous polls for rank 0's rendezvous file, as a slice does.
func waitRendezvous(t *testing.T, path string) rendezvousInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := readRendezvous(path)
		if err == nil {
			return info
		}
		if !errors.Is(err, fs.ErrNotExist) || time.Now().After(deadline) {
			t.Fatalf("rendezvous: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hello connects to addr as a slice with the given hello and returns rank
// 0's answer: the reject reason, or "" if the connection was closed
// without one.
func hello(t *testing.T, addr string, raw []byte) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := newPeer(conn, 5*time.Second)
	p.lock()
	err = p.writeFrame(kindHello, 0, 0, raw)
	p.unlock()
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.readFrame(maxSetupFrame)
	if err != nil {
		return ""
	}
	if f.kind != kindReject {
		t.Fatalf("got %s, want reject", f.kind)
	}
	return string(f.data)
}

// Strangers are turned away with a reason, and the world still forms.
func TestTCPRejectsStrangers(t *testing.T) {
	dir := t.TempDir()
	cfg := TCPConfig{
		Rank: 0, Size: 2, Rendezvous: dir, RunID: "run-1", ListenAddr: "127.0.0.1:0",
		ConnectTimeout: 10 * time.Second, Timeout: 5 * time.Second, Heartbeat: 50 * time.Millisecond,
	}
	type result struct {
		c   Comm
		err error
	}
	rank0 := make(chan result, 1)
	go func() {
		c, err := NewTCP(context.Background(), cfg)
		rank0 <- result{c, err}
	}()
	info := waitRendezvous(t, rendezvousPath(dir, "run-1"))

	good := tcpHello{Version: frameVersion, Token: info.token, Run: "run-1", Rank: 1, Size: 2, Host: "h"}
	for _, tc := range []struct {
		name string
		edit func(h *tcpHello)
		want string
	}{
		{"token", func(h *tcpHello) { h.Token = strings.Repeat("0", len(h.Token)) }, "wrong token"},
		{"run", func(h *tcpHello) { h.Run = "run-2" }, `run "run-2", but rank 0 is in run "run-1"`},
		{"size", func(h *tcpHello) { h.Size = 3 }, "size 3, but rank 0 has size 2"},
		{"rank", func(h *tcpHello) { h.Rank = 2 }, "rank 2 out of range [1,2)"},
		{"rank0", func(h *tcpHello) { h.Rank = 0 }, "rank 0 out of range [1,2)"},
		{"version", func(h *tcpHello) { h.Version = 9 }, "protocol version 9"},
	} {
		h := good
		tc.edit(&h)
		raw, _ := json.Marshal(h)
		if got := hello(t, info.addr, raw); !strings.Contains(got, tc.want) {
			t.Errorf("%s: rejected with %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := hello(t, info.addr, []byte("not json")); got != "" {
		t.Errorf("garbage hello: got %q, want the connection closed", got)
	}
	// Not even a frame.
	if conn, err := net.Dial("tcp", info.addr); err == nil {
		conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		conn.Close()
	}
	// Connected, but silent: must not hold up setup for its Timeout.
	idle, err := net.Dial("tcp", info.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	slice, err := NewTCP(context.Background(), TCPConfig{
		Rank: 1, Size: 2, Rendezvous: dir, RunID: "run-1",
		ConnectTimeout: 10 * time.Second, Timeout: 5 * time.Second, Heartbeat: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	joined := time.Now()
	r := <-rank0
	if r.err != nil {
		t.Fatal(r.err)
	}
	if d := time.Since(joined); d > 2*time.Second {
		t.Errorf("rank 0 returned %v after the last slice joined", d)
	}
	done := make(chan error, 1)
	go func() { done <- r.c.Barrier() }()
	if err := slice.Barrier(); err != nil {
		t.Error(err)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
	go func() { done <- r.c.Close() }()
	slice.Close()
	<-done
	if _, err := readRendezvous(rendezvousPath(dir, "run-1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("rendezvous file left behind: %v", err)
	}
}

func TestTCPRendezvousFile(t *testing.T) {
	dir := t.TempDir()
	want := rendezvousInfo{addr: "10.0.0.1:4000", host: "n1", size: 5, run: "12.0", token: "abc"}
	path := rendezvousPath(dir, "12/0 x")
	if !strings.HasSuffix(path, "dpsbatch-tcp-12_0_x.addr") {
		t.Errorf("path %s", path)
	}
	if err := writeRendezvous(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := readRendezvous(path)
	if err != nil || got != want {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
}

func TestTCPBundle(t *testing.T) {
	parts := [][]byte{[]byte("a"), nil, []byte("ccc"), {}}
	conn1, conn2 := net.Pipe()
	defer conn1.Close()
	defer conn2.Close()
	w, r := newPeer(conn1, 0), newPeer(conn2, 0)
	go func() {
		w.lock()
		w.writeBundle(kindGatherResult, 1, 7, parts, 2)
		w.unlock()
	}()
	f, err := r.readFrame(maxFrame)
	if err != nil {
		t.Fatal(err)
	}
	if f.kind != kindGatherResult || f.aux != 1 || f.seq != 7 {
		t.Errorf("header %v %d %d", f.kind, f.aux, f.seq)
	}
	got, err := decodeBundle(f.data, 4, "bundle")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"a", "", "", ""} {
		if string(got[i]) != want {
			t.Errorf("part %d: %q, want %q", i, got[i], want)
		}
	}
	if cap(got[0]) != 1 {
		t.Errorf("part 0 has capacity %d: appending would overwrite part 1", cap(got[0]))
	}
	if _, err := decodeBundle(f.data[:len(f.data)-1], 4, "bundle"); err == nil {
		t.Error("truncated bundle decoded")
	}
	if _, err := decodeBundle(f.data, 3, "bundle"); err == nil {
		t.Error("bundle of 4 decoded as 3")
	}
}
