package capture

import (
	"bytes"
	"encoding/gob"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The harness registers these with gob (RegisterType); so does this test.
func init() {
	gob.Register(map[string]any(nil))
	gob.Register([]any(nil))
}

func TestItemsRoundTripAndUnserialisableListed(t *testing.T) {
	items, bad := EncodeItems(map[string]Value{
		"n":      {V: 3},
		"name":   {V: "ccd3", Shared: true},
		"list":   {V: []any{1.5, "x"}},
		"ch":     {V: make(chan int)},
		"fn":     {V: func() {}},
		"fields": {V: map[string]any{"a": int64(2)}},
	})
	if len(bad) != 2 || bad[0].Key != "ch" || bad[1].Key != "fn" || bad[0].Type != "chan int" {
		t.Fatalf("unserialisable = %+v, want ch and fn listed with their types", bad)
	}
	got := map[string]any{}
	for _, it := range items {
		v, err := it.Value()
		if err != nil {
			t.Fatal(err)
		}
		got[it.Key] = v
		if it.Key == "name" && !it.Shared {
			t.Errorf("name lost its shared mark")
		}
	}
	if got["n"] != 3 || got["name"] != "ccd3" || got["fields"].(map[string]any)["a"] != int64(2) {
		t.Errorf("decoded %#v: types or values changed", got)
	}
}

func TestInputFilesCopiedBelowTheLimit(t *testing.T) {
	dir := t.TempDir()
	small, big := filepath.Join(dir, "small.dat"), filepath.Join(dir, "big.dat")
	os.WriteFile(small, []byte("abc"), 0o644)
	os.WriteFile(big, bytes.Repeat([]byte("x"), 100), 0o644)
	fs := InputFiles([]Named{
		{Setting: "command[0]", Text: "python3"},
		{Setting: "command[1]", Text: "small.dat"},
		{Setting: "command[2]", Text: "--in=" + big},
	}, []string{dir}, 10)
	if len(fs) != 2 {
		t.Fatalf("files = %+v, want small.dat and big.dat", fs)
	}
	if fs[0].Path != small || string(fs[0].Data) != "abc" || fs[0].Size != 3 || fs[0].SHA256 == "" || fs[0].Named != "small.dat" {
		t.Errorf("small file recorded as %+v", fs[0])
	}
	if fs[1].Data != nil || !strings.Contains(fs[1].NotCopied, "copy limit") || fs[1].Size != 100 || fs[1].Named != big {
		t.Errorf("big file recorded as %+v, want its checksum only and why", fs[1])
	}
	if !fs[0].Matches(small) || fs[0].Matches(big) {
		t.Errorf("Matches does not tell the files apart")
	}
}

func TestWriterKeepsToTheRunBudgetAndSaysSoOnce(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	w := NewWriter(dir, Limits{PerRun: 2500}, log)
	other := NewWriter(dir, Limits{PerRun: 2500}, log) // another rank
	c := &Capture{Why: WhyFailed, Visit: "1004", Stage: "measure", Side: SideSlice, Slice: 2, DataID: map[string]any{"ccd": 3}}
	path, err := w.Write(c)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(Dir, "visit-1004", "measure.slice2-ccd=3.failed.json") {
		t.Errorf("path = %q", path)
	}
	back, err := Read(filepath.Join(dir, path))
	if err != nil || back.Stage != "measure" || back.Version == "" || back.Host == "" {
		t.Fatalf("read back %+v, %v", back, err)
	}
	second, err := other.Write(c)
	if err != nil || second == path {
		t.Fatalf("second capture of the same call: %q, %v; want a new file", second, err)
	}
	n := 2
	for ; n < 50; n++ {
		if _, err = w.Write(c); err != nil {
			break
		}
	}
	if err != ErrLimit {
		t.Fatalf("after %d captures: %v, want ErrLimit", n, err)
	}
	if _, err := other.Write(c); err != ErrLimit {
		t.Fatalf("another rank after the limit: %v, want ErrLimit", err)
	}
	if strings.Count(logs.String(), "reached their limit") != 1 {
		t.Errorf("log says the limit %d times, want once:\n%s", strings.Count(logs.String(), "reached their limit"), logs.String())
	}
	if size := folderSize(filepath.Join(dir, Dir)); size > 2500+200 {
		t.Errorf("captures take %d bytes, over the budget", size)
	}
	if LimitReached(dir) == "" {
		t.Errorf("LimitReached says nothing")
	}
}

func TestReadRefusesANewerFormat(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(p, []byte(`{"format": 99, "stage": "x", "dpsbatchVersion": "dpsbatch 9"}`), 0o644)
	if _, err := Read(p); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Read = %v, want a newer-format error", err)
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"4096": 4096, "16MiB": 16 << 20, "1 GiB": 1 << 30, "512KB": 512 << 10} {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-1", "1TB", "x"} {
		if _, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) accepted", s)
		}
	}
}
