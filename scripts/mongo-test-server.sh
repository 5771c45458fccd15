#!/usr/bin/env bash
# Starts or stops nx-27017, the MongoDB wire-protocol stand-in the store
# tests run against, through scripts/nx_mongo_launch.py, which patches what
# nx-27017 gets wrong for the Rust driver (its docstring says what and why).
#
#   scripts/mongo-test-server.sh start DIR PORT   # prints mongodb://127.0.0.1:PORT
#   scripts/mongo-test-server.sh stop DIR
#
# SKEP_TEST_BIND=ADDR listens on ADDR instead of loopback (the multi-node
# swarm test binds a private bridge's address that its nodes reach).
#
# DIR holds the server's database, log and pid file, and the Python venv it
# runs from (DIR/venv, created on first start; NX_VENV names another one to
# reuse). The launcher is scripts/nx_mongo_launch.py beside this script
# (NX_LAUNCHER names another Python script taking nx-27017's arguments, such
# as DIR/venv/bin/nx-27017 for the unpatched server). Starting a server that
# already runs from DIR only prints its URI. Data in DIR survives a stop and
# a start.
set -euo pipefail

NX_VERSION="0.8.1"

usage() {
  echo "usage: $0 start DIR PORT | stop DIR" >&2
  exit 2
}

[ $# -ge 2 ] || usage
cmd="$1"
dir="$2"
venv="${NX_VENV:-$dir/venv}"
pid_file="$dir/nx.pid"
bind="${SKEP_TEST_BIND:-127.0.0.1}"

running() {
  [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

launcher() {
  if [ -n "${NX_LAUNCHER:-}" ]; then
    echo "$NX_LAUNCHER"
    return
  fi
  echo "$(cd "$(dirname "$0")" && pwd)/nx_mongo_launch.py"
}

port_answers() {
  (exec 3<>"/dev/tcp/$bind/$1") 2>/dev/null
}

case "$cmd" in
  start)
    [ $# -eq 3 ] || usage
    port="$3"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    pid_file="$dir/nx.pid"
    if running; then
      echo "mongodb://$bind:$port"
      exit 0
    fi
    # NB: several starts may share one venv (NX_VENV): install under a lock.
    mkdir -p "$(dirname "$venv")"
    (
      if command -v flock >/dev/null; then
        flock 9
      fi
      if [ ! -x "$venv/bin/nx-27017" ]; then
        echo "installing nx-27017==$NX_VERSION into $venv" >&2
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "nx-27017==$NX_VERSION" >&2
      fi
    ) 9>"$venv.lock"
    script="$(launcher)"
    if [ ! -f "$script" ]; then
      echo "cannot find the nx-27017 launcher at $script (set NX_LAUNCHER)" >&2
      exit 1
    fi
    if port_answers "$port"; then
      echo "port $port is already in use" >&2
      exit 1
    fi
    rm -f "$pid_file"
    "$venv/bin/python" "$script" -d --host "$bind" -p "$port" \
      --db "$dir/t.db" --log-file "$dir/nx.log" --pid-file "$pid_file" >&2
    for _ in $(seq 1 150); do
      if port_answers "$port"; then
        echo "mongodb://$bind:$port"
        exit 0
      fi
      sleep 0.1
    done
    echo "nx-27017 did not answer on port $port within 15 s; its log:" >&2
    tail -n 20 "$dir/nx.log" >&2 || true
    exit 1
    ;;
  stop)
    if ! running; then
      exit 0
    fi
    pid="$(cat "$pid_file")"
    "$venv/bin/nx-27017" --stop --pid-file "$pid_file" >&2 || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.1
    done
    echo "nx-27017 (pid $pid) did not stop within 10 s" >&2
    exit 1
    ;;
  *)
    usage
    ;;
esac
