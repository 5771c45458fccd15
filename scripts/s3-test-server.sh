#!/usr/bin/env bash
# Starts or stops a throw-away S3-compatible server for the object-storage
# tests: s3s-fs (crates.io, Apache-2.0), a real S3 server that keeps buckets
# as folders, run on loopback with everything it writes under DIR.
#
#   scripts/s3-test-server.sh start DIR PORT  # prints http://127.0.0.1:PORT ACCESS_KEY SECRET_KEY
#   scripts/s3-test-server.sh stop DIR
#
# `start` prints one line of three fields separated by single spaces: the
# endpoint URL (path-style requests; any region name is accepted, say
# us-east-1), the access key id and the secret key. Both keys are hex, so
# the line splits on whitespace with no quoting. They are random, made at the
# first start from DIR and kept in DIR/credentials (mode 600) for later ones.
# NB: s3s-fs takes its keys only as arguments, so they show in the process
# list of this host; they guard a test server on loopback and nothing else.
#
# DIR holds the buckets (DIR/data/BUCKET/KEY), the log (DIR/s3s-fs.log), the
# pid file and the credentials. Starting a server that already runs from DIR
# only prints its line. Data in DIR survives a stop and a start. S3S_LOG sets
# the server's log filter (RUST_LOG syntax, default "info").
#
# The server is built with `cargo install` on first use, into
# S3S_ROOT (default ~/.cache/skep/s3s-fs-VERSION), which later runs and other
# DIRs reuse; the first build takes two to three minutes on two cores.
#
# What s3s-fs 0.14.1 does not do like S3, for test writers: ListObjectsV2
# walks and sorts the whole bucket for every page (100k keys take ~4 min in
# pages of 1000, ~16 s in pages of 10000), and its entries carry no ETag
# (HEAD and GET do). A test may fill a bucket fast by writing files straight
# into DIR/data/BUCKET/. `If-None-Match: *` is checked before the write, not
# atomically with it: concurrent creates of one key may all succeed. A PUT
# into a bucket that does not exist makes it (S3 answers NoSuchBucket).
set -euo pipefail

S3S_VERSION="0.14.1" # the newest s3s-fs whose rust-version (1.92) this toolchain meets
START_TIMEOUT_S=30

usage() {
  echo "usage: $0 start DIR PORT | stop DIR" >&2
  exit 2
}

[ $# -ge 2 ] || usage
cmd="$1"
dir="$2"
root="${S3S_ROOT:-$HOME/.cache/skep/s3s-fs-$S3S_VERSION}"
bin="$root/bin/s3s-fs"
pid_file="$dir/s3s-fs.pid"

running() {
  [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

port_answers() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

install_s3s() {
  # NB: several starts may share one S3S_ROOT: install under a lock.
  mkdir -p "$root"
  (
    if command -v flock >/dev/null; then
      flock 9
    fi
    if [ ! -x "$bin" ]; then
      if ! command -v cargo >/dev/null; then
        echo "cargo is needed to install s3s-fs $S3S_VERSION (into $root)" >&2
        exit 1
      fi
      echo "installing s3s-fs $S3S_VERSION into $root (takes a few minutes)" >&2
      cargo install --locked --quiet s3s-fs --version "$S3S_VERSION" \
        --features binary --root "$root" >&2
    fi
  ) 9>"$root.lock"
}

# Makes DIR/credentials at the first start: "ACCESS_KEY SECRET_KEY".
credentials() {
  local file="$dir/credentials"
  if [ ! -s "$file" ]; then
    local access secret
    access="SKEP$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F')"
    secret="$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')"
    (
      umask 077
      echo "$access $secret" >"$file.tmp"
    )
    mv "$file.tmp" "$file"
  fi
  chmod 600 "$file"
  read -r ACCESS_KEY SECRET_KEY <"$file"
  if [ -z "${ACCESS_KEY:-}" ] || [ -z "${SECRET_KEY:-}" ]; then
    echo "$file does not hold \"ACCESS_KEY SECRET_KEY\"; remove it to make new keys" >&2
    exit 1
  fi
}

line() {
  echo "http://127.0.0.1:$1 $ACCESS_KEY $SECRET_KEY"
}

case "$cmd" in
  start)
    [ $# -eq 3 ] || usage
    port="$3"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    pid_file="$dir/s3s-fs.pid"
    credentials
    if running; then
      running_port="$(cat "$dir/port" 2>/dev/null || true)"
      if [ "$running_port" != "$port" ]; then
        echo "an s3s-fs from $dir already runs on port $running_port; stop it first" >&2
        exit 1
      fi
      line "$port"
      exit 0
    fi
    install_s3s
    if port_answers "$port"; then
      echo "port $port is already in use" >&2
      exit 1
    fi
    mkdir -p "$dir/data"
    rm -f "$pid_file"
    echo "$port" >"$dir/port"
    RUST_LOG="${S3S_LOG:-info}" setsid "$bin" --host 127.0.0.1 --port "$port" \
      --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$dir/data" \
      >>"$dir/s3s-fs.log" 2>&1 </dev/null &
    echo $! >"$pid_file"
    deadline=$((SECONDS + START_TIMEOUT_S))
    while [ "$SECONDS" -lt "$deadline" ]; do
      if ! running; then
        echo "s3s-fs exited while starting; its log:" >&2
        tail -n 30 "$dir/s3s-fs.log" >&2 || true
        rm -f "$pid_file"
        exit 1
      fi
      if port_answers "$port"; then
        line "$port"
        exit 0
      fi
      sleep 0.1
    done
    echo "s3s-fs did not answer on port $port within ${START_TIMEOUT_S} s; its log:" >&2
    tail -n 30 "$dir/s3s-fs.log" >&2 || true
    exit 1
    ;;
  stop)
    [ $# -eq 2 ] || usage
    if ! running; then
      rm -f "$pid_file"
      exit 0
    fi
    pid="$(cat "$pid_file")"
    # SIGINT is s3s-fs's graceful stop: it lets open requests finish (10 s).
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pid_file"
        exit 0
      fi
      sleep 0.1
    done
    echo "s3s-fs (pid $pid) did not stop within 15 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pid_file"
    exit 0
    ;;
  *)
    usage
    ;;
esac
