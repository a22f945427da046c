GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The one build command of the binary; the Dockerfile runs the same line.
BUILD      = CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/orderflow ./cmd/orderflow

.PHONY: build run test test-browser test-faults generate migration vet bench

build:
	$(BUILD)

## run: api, worker and cron job on this host, against local PostgreSQL and RabbitMQ
run:
	scripts/run-local.sh

## test: the whole suite with the race detector, against PostgreSQL and RabbitMQ
test:
	scripts/test-services.sh
	$(GO) test -race -count=1 -timeout 20m ./...

## test-browser: render /docs in headless Chromium (apt-get install chromium) and screenshot it
test-browser:
	$(GO) test -tags browser -count=1 -run Chromium ./api/docs

## test-faults: the fault and soak suite of every package with `//go:build faults` tests,
## serially: it stops and starts the local PostgreSQL and RabbitMQ (see faults/README.md)
test-faults:
	scripts/test-services.sh
	$(GO) test -tags faults -p 1 -count=1 -timeout 30m -v -run Fault \
		$$(grep -rl --include='*_test.go' '^//go:build faults' . | xargs -n1 dirname | sort -u)

generate:
	$(GO) generate ./...
	$(GO) mod tidy

## migration: write a migration from the ent schema changes: make migration name=add_x
## (migrationgen diffs against the generated ent/migrate, so the code is regenerated first)
migration:
	@test -n "$(name)" || { echo 'usage: make migration name=add_something (lower-case letters, digits and _; see migrations/README.md)' >&2; exit 2; }
	$(MAKE) --no-print-directory generate
	$(GO) run ./cmd/migrationgen $(name)

vet:
	$(GO) vet ./...

## bench: every benchmark at full size (minutes); tables on stdout, JSON in bench-results/
bench:
	scripts/test-services.sh
	$(GO) run ./cmd/bench -size full
