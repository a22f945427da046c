package orderflow_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestPackageBoundaries keeps the boundaries of the design: the api, worker and cronjob
// processes meet only through PostgreSQL and RabbitMQ, never by importing one another;
// events, configuration and domain import nothing of the project; ent imports only itself;
// platform imports only ent, events, configuration and migrations (the SQL files that
// platform/migrate applies, embedded), besides itself; internal never imports a process.
// Only the packages' own code counts: an end-to-end test may start several processes.
func TestPackageBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "orderflow"
	processes := []string{"api", "worker", "cronjob"}
	under := func(pkg, dir string) bool {
		return pkg == module+"/"+dir || strings.HasPrefix(pkg, module+"/"+dir+"/")
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		for _, imp := range imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue // not the project's
			}
			var broken string
			switch {
			case under(pkg, "events") || under(pkg, "configuration") || under(pkg, "domain"):
				if !under(imp, strings.SplitN(strings.TrimPrefix(pkg, module+"/"), "/", 2)[0]) {
					broken = "imports nothing of the project"
				}
			case under(pkg, "ent"):
				if !under(imp, "ent") {
					broken = "imports only ent"
				}
			case under(pkg, "platform"):
				if !slices.ContainsFunc([]string{"platform", "ent", "events", "configuration", "migrations"}, func(dir string) bool { return under(imp, dir) }) {
					broken = "imports only ent, events, configuration and migrations"
				}
			case under(pkg, "internal"):
				for _, p := range processes {
					if under(imp, p) || under(imp, "cmd") {
						broken = "never imports a process"
					}
				}
			default:
				for _, p := range processes {
					for _, q := range processes {
						if p != q && under(pkg, p) && under(imp, q) {
							broken = "meets the other processes only through PostgreSQL and RabbitMQ"
						}
					}
				}
			}
			if broken != "" {
				t.Errorf("%s imports %s, but %s %s", pkg, imp, strings.TrimPrefix(pkg, module+"/"), broken)
			}
		}
	}
}
