package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"orderflow/configuration"
	"orderflow/platform/db"
	"orderflow/platform/log"
	"orderflow/platform/migrate"
)

// migrateOnce applies the pending migrations to the configured database.
func migrateOnce(dir string, stdout io.Writer) error {
	cfg, err := configuration.Load(dir)
	if err != nil {
		return err
	}
	logger, err := log.New(os.Stderr, cfg.Log, "migrate")
	if err != nil {
		return err
	}
	// No deadline: a migration that builds an index or validates a constraint on a large
	// table takes as long as it takes; a signal stops it (and rolls its file back).
	ctx, cancel := signalContext()
	defer cancel()
	pool, err := db.Open(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := migrate.Apply(ctx, pool, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied %d migration(s)\n", n)
	return nil
}

// checkHealth asks the process listening on this host's http.address for /readyz. Container
// healthchecks run it inside the process's own container.
func checkHealth(dir string, stdout io.Writer) error {
	cfg, err := configuration.Load(dir)
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(cfg.HTTP.Address)
	if err != nil {
		return fmt.Errorf("http.address: %w", err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	fmt.Fprintf(stdout, "%s", body)
	return nil
}
