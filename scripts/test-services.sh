#!/usr/bin/env bash
# Makes sure the tests can run: a C compiler for the race detector, and a PostgreSQL and a
# RabbitMQ to talk to. Uses the servers already listening on 127.0.0.1 and starts the others:
# the compose file's when a Docker engine is present, or, as root on Debian, local ones,
# installed when missing (scripts/local-services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

as_debian_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

# go test -race needs cgo, and cgo a C compiler.
cc=$(go env CC)
if ! command -v "$cc" >/dev/null; then
  if [ "$cc" = gcc ] && as_debian_root; then
    echo "installing gcc: the race detector needs a C compiler" >&2
    apt-get update -q -o Acquire::Retries=5
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Acquire::Retries=5 gcc libc6-dev >/dev/null
  else
    echo "the tests run with the race detector, which needs a C compiler ($cc), and none is installed (on Debian: apt-get install gcc)" >&2
    exit 1
  fi
fi

reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The compose services of the servers not listening: compose cannot publish a port that
# another server holds. docker-compose.test.yml publishes their ports on 127.0.0.1.
services=()
reachable 5432 || services+=(postgres)
reachable 5672 || services+=(rabbitmq)
if [ ${#services[@]} = 0 ]; then
  # Debian's own PostgreSQL asks for a password over TCP until local-services.sh opens it to
  # the tests (trust for 127.0.0.1), which they need unless ORDERFLOW_TEST_DATABASE_* say
  # otherwise. Any other refusal (a server still starting, say) is left to the tests to report.
  if [ -z "${!ORDERFLOW_TEST_DATABASE_*}" ] && command -v psql >/dev/null &&
    ! refusal=$(psql -h 127.0.0.1 -U postgres -d postgres -w -Atc 'select 1' 2>&1 >/dev/null) &&
    [[ $refusal == *password* ]]; then
    if as_debian_root && command -v pg_ctlcluster >/dev/null; then
      echo "PostgreSQL on 127.0.0.1:5432 refuses postgres without a password: opening it to the tests (scripts/local-services.sh)" >&2
      exec scripts/local-services.sh
    fi
    echo "PostgreSQL on 127.0.0.1:5432 refuses postgres without a password; the tests need trust auth for 127.0.0.1 in pg_hba.conf (as root on Debian, scripts/local-services.sh sets it)" >&2
    exit 1
  fi
  exit 0
fi
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  echo "starting with docker compose: ${services[*]}" >&2
  docker compose -f docker-compose.yml -f docker-compose.test.yml up -d --wait "${services[@]}"
  exit 0
fi
if as_debian_root; then
  echo "starting local ${services[*]} (scripts/local-services.sh)" >&2
  exec scripts/local-services.sh
fi
missing=()
reachable 5432 || missing+=("PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth)")
reachable 5672 || missing+=("RabbitMQ on 127.0.0.1:5672 (guest/guest)")
{
  echo "the tests need a database and a broker, and no Docker engine is running to start them:"
  printf '  - %s\n' "${missing[@]}"
  echo "start Docker (the tests then start them with docker compose), or start them locally"
  echo "(on Debian, as root: scripts/local-services.sh, which make test runs itself as root)."
} >&2
exit 1
