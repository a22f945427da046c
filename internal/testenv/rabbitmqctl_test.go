package testenv

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// withPath makes a directory of shell scripts, name to body, the whole PATH for the test.
func withPath(t *testing.T, scripts map[string]string) {
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
}

// TestFindRabbitmqctl: rabbitmqctl runs in the compose file's rabbitmq container when that
// publishes the test broker's port, on the host otherwise, and a clear error says what is
// missing when neither can run it.
func TestFindRabbitmqctl(t *testing.T) {
	t.Setenv("ORDERFLOW_TEST_RABBITMQ_HOST", "127.0.0.1:5673")
	for _, tc := range []struct {
		name    string
		scripts map[string]string
		want    []string
	}{
		{
			name: "the compose container publishes the port",
			scripts: map[string]string{
				// Answers only the query for the compose service on the test broker's port.
				"docker":      `case "$*" in *com.docker.compose.service=rabbitmq*publish=5673*) echo 0123abcd ;; esac`,
				"rabbitmqctl": "exit 0",
			},
			want: []string{"docker", "exec", "0123abcd", "rabbitmqctl"},
		},
		{
			name: "no container publishes the port",
			scripts: map[string]string{
				"docker":      "exit 0",
				"rabbitmqctl": "exit 0",
			},
			want: []string{"rabbitmqctl"},
		},
		{
			name: "no Docker engine",
			scripts: map[string]string{
				"docker":      "echo 'Cannot connect to the Docker daemon' >&2; exit 1",
				"rabbitmqctl": "exit 0",
			},
			want: []string{"rabbitmqctl"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withPath(t, tc.scripts)
			got, err := findRabbitmqctl()
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("findRabbitmqctl() = %q, %v, want %q", got, err, tc.want)
			}
		})
	}
	t.Run("neither", func(t *testing.T) {
		withPath(t, map[string]string{"docker": "exit 0"})
		_, err := findRabbitmqctl()
		if err == nil || !strings.Contains(err.Error(), "rabbitmqctl is not installed") {
			t.Fatalf("findRabbitmqctl() error = %v, want one saying rabbitmqctl is not installed", err)
		}
	})
}
