package main

import (
	"context"
	"database/sql"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
)

// TestSignalWhileStartingStopsOnceStarted: a SIGTERM that arrives while the api is still
// starting (here: waiting for a lock on users to make sure of its admin account) does not
// kill it where it stands; it finishes starting and then stops as on any SIGTERM.
func TestSignalWhileStartingStopsOnceStarted(t *testing.T) {
	t.Parallel()
	lock, cmd, exited, out := startBehindALock(t)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Fatalf("the api exited at once on a SIGTERM while starting (%v):\n%s", err, out.String())
	case <-time.After(500 * time.Millisecond):
	}
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if errors.As(err, &exit) || err != nil {
			t.Fatalf("the api exited with %v:\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the api did not stop within 30s of starting:\n%s", out.String())
	}
	for _, msg := range []string{`"msg":"ready"`, `"msg":"stopping"`} {
		if !strings.Contains(out.String(), msg) {
			t.Errorf("log lacks %s:\n%s", msg, out.String())
		}
	}
}

// TestSecondSignalWhileStartingEndsIt: a start that cannot finish (here: the api waits for a
// lock on users that is never released) still ends on a second SIGINT or SIGTERM, as a
// repeated Ctrl-C is expected to, instead of ignoring every signal for as long as it waits.
func TestSecondSignalWhileStartingEndsIt(t *testing.T) {
	t.Parallel()
	_, cmd, exited, out := startBehindALock(t)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Fatalf("the api exited at once on the first SIGTERM while starting (%v):\n%s", err, out.String())
	case <-time.After(500 * time.Millisecond):
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err == nil {
			t.Errorf("the api exited with status 0 on a second signal while starting, want a failure")
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the api still runs 10s after a second signal while starting:\n%s", out.String())
	}
}

// startBehindALock starts the api while a transaction holds a lock on users, and returns once
// the api's start waits for it: the transaction (the test's to end), the api's command, the
// result of its exit, and what it logs.
func startBehindALock(t *testing.T) (*sql.Tx, *exec.Cmd, <-chan error, *testutil.Buffer) {
	t.Helper()
	d := testenv.Database(t)
	pool := testenv.Pool(t, d)
	lock, err := pool.Begin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lock.Rollback() })
	if _, err := lock.Exec(`LOCK TABLE users IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	out := &testutil.Buffer{}
	cmd := exec.CommandContext(ctx, binary, "api")
	cmd.Env = append(env(t), "ORDERFLOW_DATABASE_NAME="+d.Name)
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	testutil.Eventually(t, 20*time.Second, "the api to wait for the lock on users", func() bool {
		var n int
		if err := pool.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	return lock, cmd, exited, out
}
