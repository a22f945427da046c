package orderflow_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/prometheus/client_golang/prometheus"

	"orderflow/api"
	"orderflow/configuration"
	"orderflow/cronjob"
	"orderflow/platform/bus"
	"orderflow/platform/metrics"
	"orderflow/platform/outbox"
	"orderflow/worker"
)

// No Docker engine runs where the tests run, so the compose file and the Dockerfile are
// checked by parsing them with the loaders Docker itself uses.

// loadCompose loads docker-compose.yml, with the files given after it over it.
func loadCompose(t *testing.T, over ...string) *types.Project {
	t.Helper()
	files := []types.ConfigFile{{Filename: "docker-compose.yml"}}
	for _, f := range over {
		files = append(files, types.ConfigFile{Filename: f})
	}
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  ".",
		ConfigFiles: files,
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("orderflow", true) })
	if err != nil {
		t.Fatalf("load docker-compose.yml %v: %v", over, err)
	}
	return project
}

// published returns the ports that service publishes, as "hostIP:published->target".
func published(p *types.Project, service string) []string {
	var ports []string
	for _, port := range p.Services[service].Ports {
		ports = append(ports, fmt.Sprintf("%s:%s->%d", port.HostIP, port.Published, port.Target))
	}
	return ports
}

// TestComposeLeavesTheServersPortsToTheTests: docker compose up publishes neither
// PostgreSQL's nor RabbitMQ's port, so that it starts on a host whose own servers hold them
// (where make test runs against local servers); the tests publish them, on 127.0.0.1, with
// docker-compose.test.yml, which scripts/test-services.sh gives compose when it starts them.
func TestComposeLeavesTheServersPortsToTheTests(t *testing.T) {
	up := loadCompose(t)
	if got := published(up, "postgres"); len(got) != 0 {
		t.Errorf("postgres publishes %v, want nothing", got)
	}
	if got, want := published(up, "rabbitmq"), []string{"127.0.0.1:15672->15672"}; !slices.Equal(got, want) {
		t.Errorf("rabbitmq publishes %v, want only its management UI %v", got, want)
	}
	tests := loadCompose(t, "docker-compose.test.yml")
	if got, want := published(tests, "postgres"), []string{"127.0.0.1:5432->5432"}; !slices.Equal(got, want) {
		t.Errorf("with docker-compose.test.yml postgres publishes %v, want %v", got, want)
	}
	if got, want := sorted(published(tests, "rabbitmq")), []string{"127.0.0.1:15672->15672", "127.0.0.1:5672->5672"}; !slices.Equal(got, want) {
		t.Errorf("with docker-compose.test.yml rabbitmq publishes %v, want %v", got, want)
	}
	script, err := os.ReadFile("scripts/test-services.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "docker compose -f docker-compose.yml -f docker-compose.test.yml up -d --wait") {
		t.Error("scripts/test-services.sh does not start the servers with docker-compose.test.yml")
	}
}

func TestComposeServices(t *testing.T) {
	project := loadCompose(t)
	want := []string{"api", "cronjob", "postgres", "rabbitmq", "worker"}
	if got := project.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Fatalf("services = %v, want %v", got, want)
	}
	for _, name := range want {
		svc := project.Services[name]
		if svc.HealthCheck == nil || len(svc.HealthCheck.Test) == 0 {
			t.Errorf("%s: no healthcheck", name)
		}
		if svc.Restart != "unless-stopped" {
			t.Errorf("%s: restart = %q, want unless-stopped", name, svc.Restart)
		}
	}
	if img := project.Services["rabbitmq"].Image; !strings.Contains(img, "management") {
		t.Errorf("rabbitmq image %q has no management UI", img)
	}
	for _, name := range []string{"postgres", "rabbitmq"} {
		if len(project.Services[name].Volumes) == 0 || project.Services[name].Volumes[0].Type != "volume" {
			t.Errorf("%s: data is not on a named volume", name)
		}
	}
	// RabbitMQ's data directory is named after the container's hostname, which is random
	// unless set: a re-created container would start with no queues and no messages.
	if project.Services["rabbitmq"].Hostname == "" {
		t.Error("rabbitmq: no fixed hostname, so a re-created container does not find its data on the volume")
	}
	for _, name := range want {
		for _, p := range project.Services[name].Ports {
			if p.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %d on %q, want 127.0.0.1 only", name, p.Target, p.HostIP)
			}
		}
	}
}

// TestComposePostgresHealthyOverTCP: on its first start the postgres image initialises the
// data directory with a temporary server that listens on the Unix socket only, then restarts.
// A healthcheck over the socket passes during that window, and the api (or the tests) would
// then connect over TCP to a server that refuses them; over TCP it passes once the server that
// stays is up.
func TestComposePostgresHealthyOverTCP(t *testing.T) {
	test := loadCompose(t).Services["postgres"].HealthCheck.Test
	cmd := strings.Join(test[1:], " ")
	if !strings.Contains(cmd, "pg_isready") {
		t.Fatalf("postgres healthcheck = %q, want pg_isready", test)
	}
	if !regexp.MustCompile(`(-h|--host=?)\s*(127\.0\.0\.1|localhost)\b`).MatchString(cmd) {
		t.Errorf("postgres healthcheck %q asks over the Unix socket, want -h 127.0.0.1 (TCP, as the processes connect)", cmd)
	}
}

// TestComposeProcesses: every process runs from the one image with its own command, waits
// for what it needs, and reads its configuration as it would in its container: the mounted
// files with the service's environment over them, where a name that is not a key or a value
// that does not parse stops the process (and its healthcheck) at start.
func TestComposeProcesses(t *testing.T) {
	project := loadCompose(t)
	processes := map[string]string{"api": "api", "worker": "worker", "cronjob": "cronjob"}
	var image string
	for name, command := range processes {
		svc := project.Services[name]
		t.Run(name, func(t *testing.T) {
			cfg := loadServiceConfig(t, svc)
			if svc.Build == nil || svc.Build.Context == "" {
				t.Fatal("not built from the repository")
			}
			if image == "" {
				image = svc.Image
			} else if svc.Image != image {
				t.Errorf("image %q differs from %q: every process runs from one build", svc.Image, image)
			}
			if got := []string(svc.Command); !slices.Equal(got, []string{command}) {
				t.Errorf("command = %v, want [%s]", got, command)
			}
			for _, dep := range []string{"postgres", "rabbitmq"} {
				if d, ok := svc.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
					t.Errorf("does not wait for %s to be healthy", dep)
				}
			}
			if name != "api" {
				// Only the api applies migrations; the others start after it did.
				if d, ok := svc.DependsOn["api"]; !ok || d.Condition != types.ServiceConditionHealthy {
					t.Errorf("does not wait for the api (which applies migrations)")
				}
				if len(svc.Ports) != 0 {
					t.Errorf("publishes ports %v, which breaks --scale", svc.Ports)
				}
			}
			// Compose kills a container 10 s after SIGTERM unless told otherwise; the process
			// lets its work finish for up to http.shutdownTimeout, then closes its connections.
			if grace, shutdown := svc.StopGracePeriod, cfg.HTTP.ShutdownTimeout.D(); grace == nil || time.Duration(*grace) <= shutdown {
				t.Errorf("stop_grace_period = %v, want more than http.shutdownTimeout (%v), so that a stop is not cut short", grace, shutdown)
			}
			if got := svc.HealthCheck.Test; !slices.Equal(got, []string{"CMD", "orderflow", "health"}) {
				t.Errorf("healthcheck = %v", got)
			}
			mounted := false
			for _, v := range svc.Volumes {
				if v.Source == "configuration" && v.Target == imageConfigDir(t) && v.ReadOnly {
					mounted = true
				}
			}
			if !mounted {
				t.Errorf("configuration/ is not mounted read-only at the image's ORDERFLOW_CONFIG_DIR, %s", imageConfigDir(t))
			}
			if cfg.Database.Host != "postgres" || cfg.RabbitMQ.Host != "rabbitmq" {
				t.Errorf("connects to %s and %s, want the postgres and rabbitmq services", cfg.Database.Host, cfg.RabbitMQ.Host)
			}
			env := svc.Environment
			for _, key := range []string{"ORDERFLOW_DATABASE_PASSWORD", "ORDERFLOW_RABBITMQ_USER", "ORDERFLOW_RABBITMQ_PASSWORD"} {
				if env[key] == nil {
					t.Errorf("%s not given", key)
				}
			}
			if name == "api" {
				_, port, err := net.SplitHostPort(cfg.HTTP.Address)
				if err != nil {
					t.Fatalf("http.address %q: %v", cfg.HTTP.Address, err)
				}
				if ports := svc.Ports; len(ports) != 1 || strconv.Itoa(int(ports[0].Target)) != port || ports[0].Published != port || ports[0].HostIP != "127.0.0.1" {
					t.Errorf("api ports = %+v, want 127.0.0.1:%s:%s, the port it listens on (http.address %q)", ports, port, port, cfg.HTTP.Address)
				}
			}
		})
	}
}

// loadServiceConfig loads the configuration as svc's process would: the repository's files
// (mounted over the image's) with svc's environment and nothing else of the test's.
func loadServiceConfig(t *testing.T, svc types.ServiceConfig) *configuration.Config {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, configuration.EnvPrefix) {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	for name, value := range svc.Environment {
		if value == nil {
			t.Fatalf("%s is given no value: compose would take it from the host's environment", name)
		}
		t.Setenv(name, *value)
	}
	cfg, err := configuration.Load("configuration")
	if err != nil {
		t.Fatalf("the process would not start with its environment: %v", err)
	}
	return cfg
}

// imageConfigDir is the ORDERFLOW_CONFIG_DIR the runtime image sets: where its processes
// read their configuration.
func imageConfigDir(t *testing.T) string {
	t.Helper()
	for _, cmd := range parseDockerfile(t)[1].Commands {
		if c, ok := cmd.(*instructions.EnvCommand); ok {
			for _, kv := range c.Env {
				if kv.Key == "ORDERFLOW_CONFIG_DIR" {
					return kv.Value
				}
			}
		}
	}
	t.Fatal("the runtime image sets no ORDERFLOW_CONFIG_DIR")
	return ""
}

func parseDockerfile(t *testing.T) []instructions.Stage {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("parse Dockerfile instructions: %v", err)
	}
	return stages
}

func TestDockerfileStages(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) != 2 {
		t.Fatalf("%d stages, want build and runtime", len(stages))
	}
	build, runtime := stages[0], stages[1]

	// go.mod and go.sum are copied and modules downloaded before the source comes in.
	var order []string
	for _, cmd := range build.Commands {
		switch c := cmd.(type) {
		case *instructions.CopyCommand:
			order = append(order, "COPY "+strings.Join(c.SourcePaths, " "))
		case *instructions.RunCommand:
			order = append(order, "RUN "+strings.Join(c.CmdLine, " "))
		}
	}
	wantPrefix := []string{"COPY go.mod go.sum", "RUN go mod download", "COPY ."}
	if len(order) < 4 || !slices.Equal(order[:3], wantPrefix) {
		t.Errorf("build stage steps = %q, want to start with %q", order, wantPrefix)
	}

	var (
		user       string
		copies     []string
		entrypoint *instructions.EntrypointCommand
	)
	for _, cmd := range runtime.Commands {
		switch c := cmd.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.CopyCommand:
			copies = append(copies, strings.Join(c.SourcePaths, " ")+" -> "+c.DestPath)
		case *instructions.EntrypointCommand:
			entrypoint = c
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				if kv.Key == "PATH" {
					t.Errorf("runtime image sets PATH=%s: the healthcheck finds orderflow on the base image's", kv.Value)
				}
			}
		}
	}
	if user == "" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0") {
		t.Errorf("runtime user = %q, want a non-root user", user)
	}
	joined := strings.Join(copies, "\n")
	for _, want := range []string{
		// Compose's healthcheck runs `orderflow health`, found on the image's PATH (the
		// distroless base's: /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin).
		"/src/bin/orderflow -> /usr/local/bin/orderflow",
		// The defaults, where compose mounts the repository's configuration/.
		"configuration/instance.json configuration/secrets.json -> " + imageConfigDir(t) + "/",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("runtime image does not receive %s (copies: %q)", want, copies)
		}
	}
	// Compose gives each service only its command (api, worker, cronjob), and the
	// healthcheck runs the binary by name.
	if entrypoint == nil || entrypoint.PrependShell || !slices.Equal(entrypoint.CmdLine, []string{"orderflow"}) {
		t.Errorf("runtime ENTRYPOINT = %+v, want [\"orderflow\"] in exec form", entrypoint)
	}
}

// TestDockerfileGoIsGoMods: the build image's Go is the version go.mod asks for; the image
// builds with its own toolchain only, so an older one refuses the module.
func TestDockerfileGoIsGoMods(t *testing.T) {
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	want := "golang:" + string(m[1]) + "-"
	if base := parseDockerfile(t)[0].BaseName; !strings.HasPrefix(base, want) {
		t.Errorf("build stage FROM %s, want %s<variant> (go.mod's go %s)", base, want, m[1])
	}
}

// TestDockerfileBuildsLikeMakefile keeps the image's build command identical to `make build`.
func TestDockerfileBuildsLikeMakefile(t *testing.T) {
	stages := parseDockerfile(t)
	var dockerBuild string
	for _, cmd := range stages[0].Commands {
		if r, ok := cmd.(*instructions.RunCommand); ok && strings.Contains(strings.Join(r.CmdLine, " "), "go build") {
			dockerBuild = strings.Join(r.CmdLine, " ")
		}
	}
	makefile, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^BUILD\s*=\s*(.+)$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("Makefile has no BUILD line")
	}
	makeBuild := strings.NewReplacer("$(VERSION)", "${VERSION}").Replace(string(m[1]))
	if strings.TrimSpace(makeBuild) != strings.TrimSpace(dockerBuild) {
		t.Errorf("build commands differ:\n  Dockerfile: %s\n  Makefile:   %s", dockerBuild, makeBuild)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestCheckoutUsesLF: the files a clone gives the Docker build keep LF line endings wherever
// it is checked out (Git for Windows converts text to CRLF by default): the migrations are
// embedded in the binary and checked against atlas.sum, which a CRLF copy fails, and the
// scripts run in Linux.
func TestCheckoutUsesLF(t *testing.T) {
	if err := exec.Command("git", "rev-parse", "--is-inside-work-tree").Run(); err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	files, err := exec.Command("git", "ls-files", "migrations", "scripts", ".ci", "configuration", "Dockerfile", "docker-compose.yml").Output()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"check-attr", "eol", "--"}, strings.Fields(string(files))...)
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 10 {
		t.Fatalf("git check-attr gave %d lines, want one per file", len(lines))
	}
	for _, line := range lines {
		if !strings.HasSuffix(line, ": eol: lf") {
			t.Errorf("%s: want eol lf (.gitattributes)", line)
		}
	}
}

// TestReadmeConfigurationTable keeps the README's configuration reference complete, and
// each key's meaning in the code (configuration.KeyTable) the same as in its row.
func TestReadmeConfigurationTable(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(readme), "\n") {
		if m := regexp.MustCompile("^\\| `([a-zA-Z.]+)` \\|.*`ORDERFLOW_").FindStringSubmatch(line); m != nil {
			rows[m[1]] = line
		}
	}
	for _, k := range configuration.KeyTable() {
		row, ok := rows[k.Path]
		if !ok {
			t.Errorf("README has no row for %s", k.Path)
			continue
		}
		if !strings.Contains(row, "`"+k.Env+"`") {
			t.Errorf("README row of %s lacks %s", k.Path, k.Env)
		}
		file := "`" + k.File + "`"
		if k.File == configuration.SecretsFile {
			file = "**" + file + "**"
		}
		if !strings.HasPrefix(row, "| `"+k.Path+"` | "+file+" |") {
			t.Errorf("README row of %s does not name its file %s", k.Path, file)
		}
		if k.Default != "" && !strings.Contains(row, "`"+k.Default+"`") {
			t.Errorf("README row of %s lacks the default %s", k.Path, k.Default)
		}
		if !strings.Contains(row, "| "+k.Meaning+" |") {
			t.Errorf("README row of %s lacks its meaning %q", k.Path, k.Meaning)
		}
		delete(rows, k.Path)
	}
	for path := range rows {
		t.Errorf("README documents %s, which is not a key", path)
	}
}

// collectorRecorder is a prometheus.Registerer that keeps what is registered with it.
type collectorRecorder struct{ collectors []prometheus.Collector }

func (r *collectorRecorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *collectorRecorder) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}

func (r *collectorRecorder) Unregister(prometheus.Collector) bool { return false }

// TestReadmeMetricLabels: the README names every metric of the processes with its labels,
// as `name{label,...}`, so that a query written from it selects something, and no metric
// that none of them exports.
func TestReadmeMetricLabels(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rec := &collectorRecorder{}
	metrics.NewHTTP(rec)
	// The outbox backlog collector only describes itself here: it reads the database when
	// collected, never when described.
	backlog := outbox.NewBacklogCollector(nil, slog.New(slog.DiscardHandler))
	collectors := slices.Concat(rec.collectors, api.Collectors(), bus.Collectors(), worker.Collectors(), cronjob.Collectors(), []prometheus.Collector{backlog})
	descs := make(chan *prometheus.Desc, 100)
	for _, c := range collectors {
		c.Describe(descs)
	}
	close(descs)
	descRE := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	documented := regexp.MustCompile("`(orderflow_[a-z_]+)(?:\\{([a-z_,]*)\\})?`").FindAllStringSubmatch(string(readme), -1)
	described := make(map[string]bool)
	for d := range descs {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		name, labels := m[1], strings.Split(m[2], ",")
		if m[2] == "" {
			labels = nil
		}
		slices.Sort(labels)
		found := false
		for _, doc := range documented {
			if doc[1] != name {
				continue
			}
			var got []string
			if doc[2] != "" {
				got = strings.Split(doc[2], ",")
			}
			slices.Sort(got)
			if slices.Equal(got, labels) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("README does not name %s with its labels, as `%s{%s}`", name, name, m[2])
		}
		described[name] = true
	}
	for _, doc := range documented {
		if !described[doc[1]] {
			t.Errorf("README names %s, which no process exports", doc[0])
		}
	}
}
