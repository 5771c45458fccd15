#!/usr/bin/env bash
# Starts or stops a throw-away RabbitMQ node for the queue tests: Debian's
# rabbitmq-server, run as a node of its own (not the system service) on
# loopback, with everything it writes under DIR.
#
#   scripts/rabbitmq-test-server.sh start DIR PORT  # prints amqp://guest:guest@127.0.0.1:PORT/%2f
#   scripts/rabbitmq-test-server.sh stop DIR [PORT]
#
# Ports: PORT (AMQP), PORT+1 (Erlang distribution), PORT+2 (management
# HTTP API, loopback only), PORT+3..PORT+12 (rabbitmqctl's own distribution
# ports). PORT must be at most 65523. Installs rabbitmq-server with apt when
# it is missing. Starting a node that already runs from DIR only prints its
# URL. Data in DIR survives a stop and a start. The URL carries the
# management port as `?management_port=PORT+2` for the skep queue backend,
# which reads in-flight counts from it.
#
# SKEP_TEST_BIND=ADDR listens on ADDR instead of loopback (the multi-node
# swarm test binds a private bridge's address that its nodes reach). RabbitMQ
# lets `guest` in from loopback only, so such a node gets a user `skep` with
# a random password (kept in DIR/password, mode 600), and the URL names it.
set -euo pipefail

usage() {
  echo "usage: $0 start DIR PORT | stop DIR [PORT]" >&2
  exit 2
}

[ $# -ge 2 ] || usage
cmd="$1"
dir="$2"

RABBIT_BIN=/usr/lib/rabbitmq/bin
START_TIMEOUT_S=120
bind="${SKEP_TEST_BIND:-127.0.0.1}"

install_rabbitmq() {
  if [ -x "$RABBIT_BIN/rabbitmq-server" ]; then
    return
  fi
  echo "installing rabbitmq-server with apt" >&2
  export DEBIAN_FRONTEND=noninteractive
  # NB: keep the package's own service from starting where an init system
  # would start it; this node uses its own name and ports either way.
  apt-get update -q >&2 || true
  apt-get install -y -q --no-install-recommends rabbitmq-server >&2
}

# Exports the environment that names this node and keeps all of its files in
# DIR; both the server and rabbitmqctl need the same view.
node_env() {
  local port="$1"
  if [ "$port" -gt 65523 ] || [ "$port" -lt 1 ]; then
    echo "PORT must be between 1 and 65523 (PORT..PORT+12 are used)" >&2
    exit 2
  fi
  export HOME="$dir"
  export RABBITMQ_NODENAME="skeptest${port}@localhost"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="$port"
  export RABBITMQ_DIST_PORT=$((port + 1))
  export RABBITMQ_CTL_DIST_PORT_MIN=$((port + 3))
  export RABBITMQ_CTL_DIST_PORT_MAX=$((port + 12))
  export RABBITMQ_MNESIA_BASE="$dir/mnesia"
  export RABBITMQ_LOG_BASE="$dir/log"
  export RABBITMQ_PID_FILE="$dir/rabbit.pid"
  export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
  export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
  NODE="$RABBITMQ_NODENAME"
  MGMT_PORT=$((port + 2))
}

ctl() {
  "$RABBIT_BIN/rabbitmqctl" -n "$NODE" "$@"
}

node_up() {
  ctl ping >/dev/null 2>&1
}

server_alive() {
  [ -f "$dir/server.pid" ] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null
}

port_answers() {
  (exec 3<>"/dev/tcp/$bind/$1") 2>/dev/null
}

url() {
  local user=guest:guest
  [ "$bind" = 127.0.0.1 ] || user="skep:$(cat "$dir/password")"
  echo "amqp://$user@$bind:$1/%2f?management_port=$MGMT_PORT"
}

# A user for a node that is not on loopback (see the top).
add_user() {
  [ "$bind" = 127.0.0.1 ] && return
  [ -s "$dir/password" ] || (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/password")
  # NB: the password on stdin, not on a command line.
  ctl add_user skep <"$dir/password" >/dev/null 2>&1 || true
  ctl set_permissions -p / skep '.*' '.*' '.*' >/dev/null
  ctl set_user_tags skep management >/dev/null
}

write_config() {
  local port="$1"
  mkdir -p "$dir/mnesia" "$dir/log"
  cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.default = $bind:$port
loopback_users.guest = true
management.tcp.ip = $bind
management.tcp.port = $MGMT_PORT
# The management API's queue counts refresh every half second (quorum
# queues report theirs every second, see advanced.config).
collect_statistics_interval = 500
log.console = false
log.file.level = info
EOF
  echo '[rabbitmq_management].' >"$dir/enabled_plugins"
  : >"$dir/rabbitmq-env.conf"
  echo '[{rabbit, [{quorum_tick_interval, 1000}]}].' >"$dir/advanced.config"
}

case "$cmd" in
  start)
    [ $# -eq 3 ] || usage
    port="$3"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    install_rabbitmq
    node_env "$port"
    if node_up; then
      url "$port"
      exit 0
    fi
    if server_alive; then
      echo "a rabbitmq-server from $dir is running but does not answer; stop it first" >&2
      exit 1
    fi
    if port_answers "$port"; then
      echo "port $port is already in use" >&2
      exit 1
    fi
    write_config "$port"
    # NB: the node registers with epmd; start it here so a failure shows.
    epmd -daemon
    rm -f "$RABBITMQ_PID_FILE"
    setsid "$RABBIT_BIN/rabbitmq-server" >"$dir/server.out" 2>&1 </dev/null &
    echo $! >"$dir/server.pid"
    deadline=$((SECONDS + START_TIMEOUT_S))
    while [ "$SECONDS" -lt "$deadline" ]; do
      if ! server_alive; then
        echo "rabbitmq-server exited while starting; its output:" >&2
        tail -n 30 "$dir/server.out" >&2 || true
        exit 1
      fi
      if [ -f "$RABBITMQ_PID_FILE" ] && ctl await_startup --timeout 10 >/dev/null 2>&1 \
        && port_answers "$port"; then
        add_user
        url "$port"
        exit 0
      fi
      sleep 0.5
    done
    echo "rabbitmq node $NODE did not start within ${START_TIMEOUT_S} s; its output:" >&2
    tail -n 30 "$dir/server.out" >&2 || true
    exit 1
    ;;
  stop)
    [ -d "$dir" ] || exit 0
    dir="$(cd "$dir" && pwd)"
    if [ $# -ge 3 ]; then
      port="$3"
    else
      port="$(sed -n 's/^listeners.tcp.default = .*://p' "$dir/rabbitmq.conf" 2>/dev/null || true)"
      [ -n "$port" ] || exit 0
    fi
    node_env "$port"
    if node_up; then
      ctl stop "$RABBITMQ_PID_FILE" >&2 || true
    fi
    if server_alive; then
      pid="$(cat "$dir/server.pid")"
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        echo "rabbitmq-server (pid $pid) did not stop within 10 s; killing it" >&2
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$dir/server.pid"
    exit 0
    ;;
  *)
    usage
    ;;
esac
