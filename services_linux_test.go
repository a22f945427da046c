package orderflow_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// listenEnv makes the test binary the helper of TestServicesScriptComposesOnlyWhatIsMissing:
// started in a network namespace of its own, it listens on this port of 127.0.0.1 and runs
// scripts/test-services.sh there.
const listenEnv = "ORDERFLOW_TEST_LISTEN"

func TestMain(m *testing.M) {
	if port := os.Getenv(listenEnv); port != "" {
		os.Exit(listenAndRunServicesScript(port))
	}
	os.Exit(m.Run())
}

func listenAndRunServicesScript(port string) int {
	// A new network namespace's loopback is down: nothing connects to 127.0.0.1.
	if err := loopbackUp(); err != nil {
		fmt.Fprintln(os.Stderr, "bring the loopback interface up:", err)
		return 1
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer l.Close()
	script := exec.Command("scripts/test-services.sh")
	script.Stdout, script.Stderr = os.Stdout, os.Stderr
	if err := script.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "scripts/test-services.sh:", err)
		return 1
	}
	return 0
}

// TestServicesScriptComposesOnlyWhatIsMissing: when one of PostgreSQL and RabbitMQ listens
// already, scripts/test-services.sh has compose start only the other, as compose fails on a
// port that is taken. The script runs in a network namespace where only the one server's port
// is listened on, with a docker first on PATH that records its arguments.
func TestServicesScriptComposesOnlyWhatIsMissing(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skipf("needs unshare (util-linux), to run the script in a network namespace: %v", err)
	}
	if out, err := exec.Command("unshare", "-rn", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace: unshare -rn: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// The script first looks for the race detector's C compiler: without one it stops, or tries
	// to install it, which the namespace's lack of network defeats.
	cc, err := exec.Command("go", "env", "CC").Output()
	if err != nil {
		t.Fatalf("go env CC: %v", err)
	}
	if _, err := exec.LookPath(strings.TrimSpace(string(cc))); err != nil {
		t.Skipf("the script needs a C compiler: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	ports := map[string]string{"postgres": "5432", "rabbitmq": "5672"}
	for missing, listening := range map[string]string{"postgres": "rabbitmq", "rabbitmq": "postgres"} {
		t.Run(missing+" missing", func(t *testing.T) {
			bin := t.TempDir()
			docker := filepath.Join(bin, "docker")
			if err := os.WriteFile(docker, []byte("#!/bin/sh\necho \"$*\" >>\"$0.calls\"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("unshare", "-rn", self)
			cmd.Env = append(os.Environ(),
				"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
				listenEnv+"="+ports[listening])
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			calls, err := os.ReadFile(docker + ".calls")
			if err != nil {
				t.Fatalf("docker was not called: %v\n%s", err, out)
			}
			var composes []string
			for _, call := range strings.Split(strings.TrimSpace(string(calls)), "\n") {
				if strings.HasPrefix(call, "compose ") {
					composes = append(composes, call)
				}
			}
			if want := []string{"compose -f docker-compose.yml -f docker-compose.test.yml up -d --wait " + missing}; !slices.Equal(composes, want) {
				t.Errorf("compose calls = %q, want %q", composes, want)
			}
			if !strings.Contains(string(out), missing) || strings.Contains(string(out), listening) {
				t.Errorf("the script says %q: want it to name %s and not %s", out, missing, listening)
			}
		})
	}
}

// loopbackUp sets the IFF_UP flag of the lo interface, as `ip link set lo up` does.
func loopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var req struct {
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [22]byte // the rest of struct ifreq's union
	}
	copy(req.name[:], "lo")
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return fmt.Errorf("read the flags of lo: %w", errno)
	}
	req.flags |= syscall.IFF_UP
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return fmt.Errorf("set lo up: %w", errno)
	}
	return nil
}
