//go:build browser

package docs_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"orderflow"
	"orderflow/api/docs"
)

// TestDocsRenderInChromium opens /docs in headless Chromium (Debian's chromium package)
// and checks that the operations of openapi.yaml render, then saves a screenshot to
// test-artifacts/docs.png. Run with: make test-browser
func TestDocsRenderInChromium(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: apt-get install chromium")
	}
	mux := http.NewServeMux()
	docs.Register(mux)
	mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(orderflow.OpenAPI)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{
			"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=15000", "--window-size=1280,2000",
		}
		out, err := exec.CommandContext(ctx, browser, append(base, args...)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}

	dom := run("--dump-dom", srv.URL+"/docs")
	for _, want := range []string{
		"orderflow",       // the contract's title
		"/api/auth/login", // operations, one per path
		"/api/orders/{id}",
		"/api/products",
		"/api/users",
		"/api/orders/{id}/notifications",
		"Authorize",              // the bearer token can be entered
		"opblock-summary-method", // rendered operation blocks, not the raw spec
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if n := strings.Count(dom, "opblock-summary-method"); n < 15 {
		t.Errorf("%d operations rendered", n)
	}

	dir := filepath.Join("..", "..", "test-artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot, _ := filepath.Abs(filepath.Join(dir, "docs.png"))
	run("--screenshot="+shot, srv.URL+"/docs")
	if info, err := os.Stat(shot); err != nil || info.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}
