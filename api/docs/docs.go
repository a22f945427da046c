// Package docs serves the API's interactive documentation at /docs: Swagger UI, embedded
// in the binary, rendering the contract the API serves at /openapi.yaml. The page loads
// nothing from any other host.
package docs

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed index.html assets
var files embed.FS

// Register serves the documentation page on GET /docs and its assets under /docs/assets/.
func Register(mux *http.ServeMux) {
	assets, err := fs.Sub(files, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	page, err := files.ReadFile("index.html")
	if err != nil {
		panic(err)
	}
	mux.HandleFunc("GET /docs", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// Everything comes from this server; inline scripts are not needed. No page, of this
		// site or another, may frame it: its "Execute" buttons act with the token typed in.
		w.Header().Set("Content-Security-Policy",
			"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'")
		_, _ = w.Write(page)
	})
	mux.Handle("GET /docs/assets/", http.StripPrefix("/docs/assets/", http.FileServerFS(assets)))
}
