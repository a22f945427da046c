package docs_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"orderflow/api/docs"
)

func TestPageAndAssetsAreServedLocally(t *testing.T) {
	mux := http.NewServeMux()
	docs.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	page := fetch(t, srv.URL+"/docs", "text/html")
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 3 {
		t.Fatalf("page references %d files, want the bundle, its stylesheet and the initializer", len(refs))
	}
	for _, ref := range refs {
		if !strings.HasPrefix(ref[1], "/docs/assets/") {
			t.Errorf("page loads %s, which is not served by the API itself", ref[1])
			continue
		}
		if body := fetch(t, srv.URL+ref[1], ""); len(body) == 0 {
			t.Errorf("%s is empty", ref[1])
		}
	}
	if init := fetch(t, srv.URL+"/docs/assets/init.js", ""); !strings.Contains(init, `url: "/openapi.yaml"`) {
		t.Error("the initializer does not render /openapi.yaml")
	}
}

// TestPageIsNotFramed: no site can show the page in a frame and have a signed-in user press
// its buttons.
func TestPageIsNotFramed(t *testing.T) {
	mux := http.NewServeMux()
	docs.Register(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/docs", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q lets other sites frame the page", csp)
	}
}

func fetch(t *testing.T, url, contentType string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	if contentType != "" && !strings.HasPrefix(resp.Header.Get("Content-Type"), contentType) {
		t.Errorf("GET %s: content type %q", url, resp.Header.Get("Content-Type"))
	}
	return string(b)
}
