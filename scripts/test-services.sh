#!/usr/bin/env bash
# Makes sure the tests have a PostgreSQL and a RabbitMQ to talk to: uses the ones already
# listening on 127.0.0.1, or starts the compose file's when a Docker engine is present.
set -euo pipefail
cd "$(dirname "$0")/.."

reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if reachable 5432 && reachable 5672; then
  exit 0
fi
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  echo "starting postgres and rabbitmq with docker compose" >&2
  docker compose up -d --wait postgres rabbitmq
  exit 0
fi
missing=()
reachable 5432 || missing+=("PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth)")
reachable 5672 || missing+=("RabbitMQ on 127.0.0.1:5672 (guest/guest)")
{
  echo "the tests need a database and a broker, and no Docker engine is running to start them:"
  printf '  - %s\n' "${missing[@]}"
  echo "start Docker (the tests then start them with docker compose), or start them locally"
  echo "(on Debian, as root: scripts/local-services.sh)."
} >&2
exit 1
