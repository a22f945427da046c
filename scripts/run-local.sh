#!/usr/bin/env bash
# Runs api, worker and cron job on this host against a local PostgreSQL and RabbitMQ (see
# README), each line of output prefixed with its process. Ctrl-C stops all three; so does
# the exit of any one of them, and the run then fails with its status.
#   API     http://127.0.0.1:8080   worker  http://127.0.0.1:8081   cronjob http://127.0.0.1:8082
set -euo pipefail
cd "$(dirname "$0")/.."

make --no-print-directory build
export ORDERFLOW_CONFIG_DIR=${ORDERFLOW_CONFIG_DIR:-./configuration}
export ORDERFLOW_LOG_FORMAT=${ORDERFLOW_LOG_FORMAT:-text}

# The database is created from the variables only, not from the files (see README).
server=(-h "${ORDERFLOW_DATABASE_HOST:-localhost}" -p "${ORDERFLOW_DATABASE_PORT:-5432}" -U "${ORDERFLOW_DATABASE_USER:-postgres}")
if [ -n "${ORDERFLOW_DATABASE_PASSWORD:-}" ]; then
  export PGPASSWORD=$ORDERFLOW_DATABASE_PASSWORD
fi
psql "${server[@]}" -d postgres -Atqc \
  "SELECT 1 FROM pg_database WHERE datname = '${ORDERFLOW_DATABASE_NAME:-orderflow}'" | grep -q 1 ||
  createdb "${server[@]}" "${ORDERFLOW_DATABASE_NAME:-orderflow}"

pids=() names=()
# stop stops the processes started and waits for them; with a status, it then exits with it.
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait
  if (($# > 0)); then
    exit "$1"
  fi
}
# Ctrl-C ends the run with the status of a shell it stopped.
trap 'stop 130' INT
trap 'stop 143' TERM
trap stop EXIT

start() {
  local name=$1 address=$2
  ORDERFLOW_HTTP_ADDRESS=$address bin/orderflow "$name" > >(sed -u "s/^/[$name] /") 2>&1 &
  pids+=($!)
  names+=("$name")
}

api=127.0.0.1:8080 worker=127.0.0.1:8081 cronjob=127.0.0.1:8082

# An orderflow already serving one of these addresses (the compose file's api publishes
# 8080) would answer the health check below for the api started here, which cannot listen
# there: the worker and the cron job would then run without it.
for address in $api $worker $cronjob; do
  if ORDERFLOW_HTTP_ADDRESS=$address bin/orderflow health >/dev/null 2>&1; then
    echo "run-local: an orderflow already serves $address (docker compose's api, or another make run?): stop it first" >&2
    exit 1
  fi
done

# The api applies pending migrations; the others start once it answers. An api that exits
# first (a configuration error, say) ends the run with its status; its log says why.
start api $api
ready=false
for _ in $(seq 1 60); do
  if ORDERFLOW_HTTP_ADDRESS=$api bin/orderflow health >/dev/null 2>&1; then
    ready=true
    break
  fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    status=0
    wait "${pids[0]}" || status=$?
    echo "run-local: the api exited with status $status before it was ready" >&2
    exit $((status == 0 ? 1 : status))
  fi
  sleep 0.5
done
if ! $ready; then
  echo "run-local: the api did not answer its health check within 30 s; its log above says why" >&2
  exit 1
fi
start worker $worker
start cronjob $cronjob

# The three run until one of them exits, which nobody asked for (a crash, a configuration
# error, a lost database): the run then stops the other two and ends with its status, 1 for
# a 0. wait -n returns once one has exited; the one that kill -0 no longer finds is it, and
# wait on its pid gives its status even when another exited at the same moment.
wait -n "${pids[@]}" || true
for exited in "${!pids[@]}"; do
  kill -0 "${pids[$exited]}" 2>/dev/null || break
done
status=0
wait "${pids[$exited]}" || status=$?
echo "run-local: the ${names[$exited]} exited with status $status; stopping the others" >&2
stop $((status == 0 ? 1 : status))
