package orderflow_test

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"orderflow/internal/testenv"
)

// TestRunLocalCreatesTheConfiguredDatabase: scripts/run-local.sh (make run) creates the
// database of ORDERFLOW_DATABASE_HOST, _PORT, _USER and _NAME when it is missing, on the
// configured port even when libpq's PGPORT names another. The script runs from a copy of the
// tree whose make and bin/orderflow do nothing, so that only its database step is real.
func TestRunLocalCreatesTheConfiguredDatabase(t *testing.T) {
	for _, tool := range []string{"psql", "createdb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("scripts/run-local.sh (make run) needs %s, from postgresql-client: %v", tool, err)
		}
	}
	cfg := testenv.EmptyDatabase(t)
	db, err := sql.Open("pgx", cfg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	server := cfg
	server.Name = "postgres"
	admin, err := sql.Open("pgx", server.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `DROP DATABASE "`+cfg.Name+`"`); err != nil {
		t.Fatalf("drop the database for the script to create: %v", err)
	}

	tree := t.TempDir()
	for dir, files := range map[string]map[string]string{
		"scripts": {"run-local.sh": ""},
		"bin":     {"orderflow": "#!/bin/sh\nexit 0\n", "make": "#!/bin/sh\nexit 0\n"},
	} {
		if err := os.MkdirAll(filepath.Join(tree, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, text := range files {
			data := []byte(text)
			if text == "" {
				if data, err = os.ReadFile(filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(tree, dir, name), data, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(tree, "scripts", "run-local.sh"))
	cmd.Env = append(os.Environ(),
		"PATH="+filepath.Join(tree, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
		"PGPORT=1",
		"ORDERFLOW_DATABASE_HOST="+cfg.Host,
		"ORDERFLOW_DATABASE_PORT="+strconv.Itoa(cfg.Port),
		"ORDERFLOW_DATABASE_USER="+cfg.User,
		"ORDERFLOW_DATABASE_NAME="+cfg.Name)
	if cfg.Password != "" {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+cfg.Password)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/run-local.sh: %v\n%s", err, out)
	}
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("database %s on port %d after scripts/run-local.sh: %v\n%s", cfg.Name, cfg.Port, err, out)
	}
}
