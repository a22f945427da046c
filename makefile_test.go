package orderflow_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeMigrationWithoutName: `make migration` without name= stops at once with the usage
// of the target, before it regenerates the code, instead of running migrationgen without a
// name, whose usage speaks of flags that make does not pass.
func TestMakeMigrationWithoutName(t *testing.T) {
	t.Parallel()
	// A go that records its calls, so that nothing is generated or run.
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	stub := filepath.Join(dir, "go")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\necho \"$@\" >> "+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "migration", "GO="+stub)
	out, err := cmd.CombinedOutput()
	ran, _ := os.ReadFile(calls)
	if err == nil || !strings.Contains(string(out), "make migration name=") || len(ran) > 0 {
		t.Fatalf("make migration without name: err %v, output:\n%s\ngo was run with:\n%s\nwant a failure naming name= before go runs", err, out, ran)
	}
}
