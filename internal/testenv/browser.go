package testenv

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// RenderPage opens the HTML file at path in headless Chromium (Debian's
// chromium, which scripts/cluster.sh installs) and returns the page's DOM
// once its scripts have run, and the URLs of the network requests the page
// made. Every host name is unresolvable meanwhile (--host-resolver-rules),
// so a request fails at once and nothing leaves the machine; the net log
// still records it. The browser's own background requests (initiator "not
// an origin") are not the page's and are left out. Without chromium the
// test skips, or fails under NoSkip.
func RenderPage(t testing.TB, path string) (dom string, requests []string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		SkipOrFail(t, "chromium not found (scripts/cluster.sh install installs it): %v", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	netLog := filepath.Join(tmp, "net.json")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-dev-shm-usage",
		"--user-data-dir="+filepath.Join(tmp, "profile"), "--virtual-time-budget=2000",
		"--log-net-log="+netLog, "--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom", "file://"+abs)
	// Chromium writes crash-report and dconf folders under HOME.
	cmd.Env = append(os.Environ(), "HOME="+filepath.Join(tmp, "home"))
	var stderr SyncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", abs, err, stderr.String())
	}
	return string(out), pageRequests(t, netLog)
}

// pageRequests reads Chromium's net log and returns the URL of each
// request job a page started.
func pageRequests(t testing.TB, netLog string) []string {
	t.Helper()
	data, err := os.ReadFile(netLog)
	if err != nil {
		t.Fatalf("chromium's net log: %v", err)
	}
	var log struct {
		Constants struct {
			LogEventTypes map[string]int `json:"logEventTypes"`
		} `json:"constants"`
		Events []struct {
			Type   int `json:"type"`
			Params struct {
				Initiator *string `json:"initiator"`
				URL       string  `json:"url"`
			} `json:"params"`
		} `json:"events"`
	}
	if err := json.Unmarshal(data, &log); err != nil {
		t.Fatalf("chromium's net log %s: %v", netLog, err)
	}
	start, ok := log.Constants.LogEventTypes["URL_REQUEST_START_JOB"]
	if !ok {
		t.Fatalf("chromium's net log %s names no URL_REQUEST_START_JOB event type", netLog)
	}
	var urls []string
	for _, e := range log.Events {
		if e.Type == start && e.Params.Initiator != nil && *e.Params.Initiator != "not an origin" {
			urls = append(urls, e.Params.URL)
		}
	}
	return urls
}
