package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is an orderflow process (api, worker, cronjob) running as a child of the
// benchmark, with its log in the output directory.
type process struct {
	kind    string
	addr    string
	cmd     *exec.Cmd
	logPath string
	done    chan error
}

// start runs `orderflow <kind>` with the environment's database and exchange and the given
// ORDERFLOW_* overrides, and waits until it answers /readyz.
func (e *env) start(ctx context.Context, kind string, overrides map[string]string) (*process, error) {
	addr, err := freeAddress()
	if err != nil {
		return nil, err
	}
	logPath, err := filepath.Abs(filepath.Join(e.r.out, "logs", e.name+"-"+kind+".log"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.r.binary, kind)
	vars := map[string]string{
		"ORDERFLOW_CONFIG_DIR":        e.r.cfgDir,
		"ORDERFLOW_DATABASE_NAME":     e.dbName,
		"ORDERFLOW_RABBITMQ_EXCHANGE": e.exchange,
		"ORDERFLOW_HTTP_ADDRESS":      addr,
	}
	for _, o := range []map[string]string{overrides, e.r.set} {
		for k, v := range o {
			vars[k] = v
		}
	}
	// Later entries win: the benchmark's settings over the inherited environment.
	cmd.Env = os.Environ()
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", kind, err)
	}
	p := &process{kind: kind, addr: addr, cmd: cmd, logPath: logPath, done: make(chan error, 1)}
	go func() {
		p.done <- cmd.Wait()
		logFile.Close()
	}()
	e.procs = append(e.procs, p)
	if err := p.waitReady(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

// url is the process's HTTP base URL.
func (p *process) url() string { return "http://" + p.addr }

func (p *process) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("%s exited while starting (%v); see %s:\n%s", p.kind, err, p.logPath, tail(p.logPath, 5))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get(p.url() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("%s not ready within %s; see %s", p.kind, timeout, p.logPath)
}

// mibPerMB converts the memory targets, in MB (10^6 bytes), to the MiB the benchmarks read:
// 150 MB is 143 MiB.
const mibPerMB = 1e6 / (1 << 20)

// peakRSS returns the process's peak resident set size (VmHWM) in MiB.
func (p *process) peakRSS() (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmHWM %q: %w", rest, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
}

// stop sends SIGTERM and waits for the process to drain and exit.
func (p *process) stop() error {
	select {
	case err := <-p.done:
		p.done <- err
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("%s did not stop within 30s", p.kind)
	}
}

// metrics reads the process's /metrics and returns every sample by its name with labels,
// as written (`orderflow_worker_payments_total{outcome="completed"}`).
func (p *process) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url()+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read %s metrics: %w", p.kind, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read %s metrics: %s", p.kind, resp.Status)
	}
	out := map[string]float64{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, s.Err()
}

// freeAddress returns a loopback address with a port that is free right now.
func freeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
