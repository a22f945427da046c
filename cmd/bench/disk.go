package main

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// A commit returns once PostgreSQL has synced its WAL to disk, so a disk whose syncs stall
// delays every commit behind the stall, the API's and pgbench's alike. A diskProbe measures
// that disk while a load runs: every probeInterval it writes probeBlock bytes to a file on
// the WAL's file system (probeDir) and syncs them, and it keeps each sync's duration. It
// shows which of a load's slow seconds came with a slow disk.
type diskProbe struct {
	file *os.File
	stop chan struct{}
	done chan struct{}
	// syncs is the slowest sync begun in each second, in ms.
	syncs secondFigures
}

const (
	probeInterval = 20 * time.Millisecond
	probeBlock    = 8 << 10 // a WAL page
	probeSpan     = 1 << 20 // the probe rewrites the blocks of this much of its file in turn
)

// probeDir returns a directory on the file system the server syncs its WAL to, outside the
// server's data directory: the one that holds its WAL directory (pg_wal, or where that links
// to), or, when that is the data directory, the one that holds the data directory. It fails
// where the server's files are not on this machine or not readable to this process, and where
// that directory is on another file system than the WAL (a data directory that is a mount
// point of its own).
func probeDir(ctx context.Context, pool *sql.DB) (string, error) {
	var data string
	if err := pool.QueryRowContext(ctx, `SHOW data_directory`).Scan(&data); err != nil {
		return "", fmt.Errorf("read data_directory: %w", err)
	}
	data = filepath.Clean(data)
	wal, err := filepath.EvalSymlinks(filepath.Join(data, "pg_wal"))
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(wal)
	if dir == data {
		dir = filepath.Dir(data)
	}
	same, err := sameFileSystem(dir, wal)
	if err != nil {
		return "", err
	}
	if !same {
		return "", fmt.Errorf("%s is on another file system than the WAL (%s)", dir, wal)
	}
	return dir, nil
}

// sameFileSystem reports whether the files at a and b are on one file system (device).
func sameFileSystem(a, b string) (bool, error) {
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		return false, &os.PathError{Op: "stat", Path: a, Err: err}
	}
	if err := syscall.Stat(b, &sb); err != nil {
		return false, &os.PathError{Op: "stat", Path: b, Err: err}
	}
	return sa.Dev == sb.Dev, nil
}

// startProbeBeside starts a probe of the disk of pool's server's WAL (probeDir).
func startProbeBeside(ctx context.Context, pool *sql.DB) (*diskProbe, error) {
	dir, err := probeDir(ctx, pool)
	if err != nil {
		return nil, err
	}
	return startDiskProbe(dir)
}

// startDiskProbe creates the probe's file in dir and starts syncing it.
func startDiskProbe(dir string) (*diskProbe, error) {
	f, err := os.CreateTemp(dir, "orderflow-bench-sync-")
	if err != nil {
		return nil, err
	}
	p := &diskProbe{file: f, stop: make(chan struct{}), done: make(chan struct{}), syncs: newSecondFigures(math.Max)}
	go p.run()
	return p, nil
}

func (p *diskProbe) run() {
	defer close(p.done)
	block := make([]byte, probeBlock)
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for i := 0; ; i++ {
		at := time.Now()
		_, err := p.file.WriteAt(block, int64(i%(probeSpan/probeBlock))*probeBlock)
		if err == nil {
			err = p.file.Sync()
		}
		if err != nil {
			p.syncs.fail(err)
			return
		}
		p.syncs.add(at, ms(time.Since(at)))
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

// close stops the probe and removes its file.
func (p *diskProbe) close() {
	close(p.stop)
	<-p.done
	p.file.Close()
	os.Remove(p.file.Name())
}

// slowTogether counts the seconds whose p99 is over limit ms with a sync over limit ms begun
// in the same second or the one before, whose stall the calls due in that second met.
func slowTogether(p99s, syncs []float64, limit float64) int {
	n := 0
	for i, v := range p99s {
		if !(v > limit) {
			continue
		}
		for _, j := range []int{i, i - 1} {
			if j >= 0 && j < len(syncs) && syncs[j] > limit {
				n++
				break
			}
		}
	}
	return n
}
