package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RenderPage sees what a page's script drew, and counts a request the
// page makes, but not the browser's own.
func TestRenderPage(t *testing.T) {
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.html")
	loads := filepath.Join(dir, "loads.html")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(clean, []byte(`<!DOCTYPE html><p id="p">static</p>
<script>setTimeout(() => { document.getElementById("p").textContent = "drawn" }, 500)</script>`), 0o644))
	must(os.WriteFile(loads, []byte(`<!DOCTYPE html><img src="http://example.invalid/x.png"><p>loads</p>`), 0o644))

	dom, reqs := RenderPage(t, clean)
	if !strings.Contains(dom, `<p id="p">drawn</p>`) || len(reqs) != 0 {
		t.Errorf("clean page: requests %q, DOM:\n%s", reqs, dom)
	}
	dom, reqs = RenderPage(t, loads)
	if len(reqs) != 1 || reqs[0] != "http://example.invalid/x.png" || !strings.Contains(dom, "loads") {
		t.Errorf("page loading an image: requests %q, want the image's; DOM:\n%s", reqs, dom)
	}
}
