package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	ctlOnce sync.Once
	ctlArgs []string // the command that runs rabbitmqctl, without its arguments
	ctlErr  error
)

// ctlTimeout bounds one run of rabbitmqctl, so that a wedged CLI (or broker) fails the test
// that runs it instead of holding it until the test binary's timeout.
const ctlTimeout = 60 * time.Second

// Rabbitmqctl runs rabbitmqctl with args against the test broker and returns its output. The
// broker is the compose file's rabbitmq container when that is what listens on the test
// broker's port (make test starts it there when no broker listens on the host), and the
// host's otherwise.
func Rabbitmqctl(args ...string) (string, error) {
	ctlOnce.Do(func() { ctlArgs, ctlErr = findRabbitmqctl() })
	if ctlErr != nil {
		return "", ctlErr
	}
	argv := append(append([]string{}, ctlArgs...), args...)
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// Killed at the timeout, it may leave children holding its output open: stop waiting for
	// them soon after.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return string(out), fmt.Errorf("rabbitmqctl %s: timed out after %v (killed): %v: %s", strings.Join(args, " "), ctlTimeout, err, out)
	}
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// findRabbitmqctl returns the command that runs rabbitmqctl for the test broker.
func findRabbitmqctl() ([]string, error) {
	_, port, err := net.SplitHostPort(env("ORDERFLOW_TEST_RABBITMQ_HOST", "127.0.0.1:5672"))
	if err != nil {
		return nil, fmt.Errorf("ORDERFLOW_TEST_RABBITMQ_HOST: %w", err)
	}
	if _, err := exec.LookPath("docker"); err == nil {
		// Without a Docker engine this fails, and the broker is the host's.
		out, err := exec.Command("docker", "ps", "-q",
			"--filter", "label=com.docker.compose.project=orderflow",
			"--filter", "label=com.docker.compose.service=rabbitmq",
			"--filter", "publish="+port).Output()
		if id := strings.TrimSpace(string(out)); err == nil && id != "" {
			return []string{"docker", "exec", strings.Fields(id)[0], "rabbitmqctl"}, nil
		}
	}
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		return nil, errors.New("rabbitmqctl is not installed, and the test broker is not the compose file's rabbitmq container: " +
			"the test needs it to act on the broker (install RabbitMQ's server package, or stop the host's broker for make test to start the container)")
	}
	return []string{"rabbitmqctl"}, nil
}

// CloseConnections closes, on the test broker, the connections whose client-provided name is
// name, as `rabbitmqctl close_all_connections` does for all of them, and returns how many it
// closed. Only the test's own connections are closed, so that parallel tests of other
// packages are not disturbed.
func CloseConnections(t testing.TB, name string) int {
	t.Helper()
	out, err := Rabbitmqctl("list_connections", "-q", "pid", "client_properties")
	if err != nil {
		t.Fatal(err)
	}
	closed := 0
	for _, line := range strings.Split(out, "\n") {
		pid, props, ok := strings.Cut(line, "\t")
		if !ok || !strings.Contains(props, `{"connection_name","`+name+`"}`) {
			continue
		}
		if _, err := Rabbitmqctl("close_connection", pid, "test: connection closed"); err != nil {
			t.Fatal(err)
		}
		closed++
	}
	return closed
}
