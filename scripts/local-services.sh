#!/usr/bin/env bash
# Starts the Debian packages' PostgreSQL and RabbitMQ on this host when they are not
# running, installing them first when they are missing. Used by CI and by development
# machines without Docker. Needs root.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

# pgrep (procps) finds the running broker below; a minimal Debian image lacks it.
if ! command -v pg_ctlcluster >/dev/null || ! command -v rabbitmq-server >/dev/null || ! command -v pgrep >/dev/null; then
  # Retries ride out a mirror's passing network failure.
  apt-get update -q -o Acquire::Retries=5
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Acquire::Retries=5 postgresql rabbitmq-server procps
fi

if ! pg_up; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  if ! pg_up; then
    echo "postgresql: not accepting connections on 127.0.0.1:5432 30 s after starting it" >&2
    exit 1
  fi
fi
# The tests connect over TCP as postgres without a password: a fresh install asks for one.
if ! psql -h 127.0.0.1 -U postgres -d postgres -w -Atc 'select 1' >/dev/null 2>&1; then
  hba=$(su postgres -c "psql -Atc 'show hba_file'")
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  su postgres -c "psql -Atc 'select pg_reload_conf()'" >/dev/null
  # pg_reload_conf() only signals the server, which reads the file again a moment later.
  for _ in $(seq 1 10); do
    psql -h 127.0.0.1 -U postgres -d postgres -w -Atc 'select 1' >/dev/null 2>&1 && break
    sleep 1
  done
fi
psql -h 127.0.0.1 -U postgres -d postgres -w -Atc 'select 1' >/dev/null
echo "postgresql: up"

# RabbitMQ counts sockets and queue files against its open-files limit; at the usual soft
# limit of 1024, a broker holding a few hundred quorum queues stops accepting connections
# after its application restarts (the fault tests restart it). A running broker with such a
# limit is restarted with the hard limit.
broker_pid() { pgrep -f 'beam.smp.*-s rabbit boot' | head -n 1; }
if rabbit_up && pid=$(broker_pid) && [ -n "$pid" ]; then
  soft=$(awk '/Max open files/ {print $4}' "/proc/$pid/limits")
  if [ "$soft" != unlimited ] && [ "$soft" -lt 10000 ] && [ "$(ulimit -Hn)" != "$soft" ]; then
    echo "rabbitmq: restarting with more open files than $soft"
    timeout 120 rabbitmqctl shutdown >/dev/null || kill "$pid"
    for _ in $(seq 1 60); do rabbit_up || break; sleep 1; done
  fi
fi
if ! rabbit_up; then
  # As root, rabbitmq-server switches to its user with su, whose PAM session resets the
  # limit to 1024; setpriv switches without a session, so the raised limit stays.
  (ulimit -n "$(ulimit -Hn)" && cd /var/lib/rabbitmq &&
    setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
      env HOME=/var/lib/rabbitmq rabbitmq-server -detached)
  # -detached returns before the node is known to the CLI tools.
  for _ in $(seq 1 60); do
    timeout 5 rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break
    sleep 1
  done
fi
timeout 120 rabbitmqctl await_startup >/dev/null
echo "rabbitmq: up"
