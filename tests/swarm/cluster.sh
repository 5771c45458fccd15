#!/usr/bin/env bash
# A multi-node Docker Swarm on one machine, for tests and for trying skep
# (issue #14): a manager and N workers, each a container that runs its own
# Docker daemon (Debian's docker.io, in an image skep-node:<hash> built on
# skep-base:bookworm)
# on a private bridge network. No registry is needed: images are copied into
# every node with `docker save | docker load`.
#
#   tests/swarm/cluster.sh up [WORKERS]        make the swarm (2 workers by default)
#   tests/swarm/cluster.sh load [--on m,w1] IMAGE...  copy images into every node (or those named)
#   tests/swarm/cluster.sh docker NODE ARGS... the docker CLI of one node (m, w1, w2, ...)
#   tests/swarm/cluster.sh kill NODE           SIGKILL a node: its daemon and its tasks go at once
#   tests/swarm/cluster.sh cut NODE            take a node off the network: it falls silent, no
#                                              connection of its is closed (then `kill` it: a lost machine)
#   tests/swarm/cluster.sh start NODE          start a killed node again, on the network (it rejoins)
#   tests/swarm/cluster.sh nodes               `docker node ls` on the manager
#   tests/swarm/cluster.sh ip NODE             a node's address on the cluster's network
#   tests/swarm/cluster.sh gateway             the host's address on it (servers the nodes reach)
#   tests/swarm/cluster.sh down                remove every container, volume and network it made
#
# SKEP_CLUSTER_SHARE=DIR (absolute) at `up` mounts DIR at the same path on
# the manager only: the controller's folders, while workers read files
# through its URLs.
#
# SKEP_CLUSTER_MEMORY at `up`: the memory worker nodes report, in MiB, one
# figure per worker in turn ("2048,1024" by default: node-w1 2 GiB, node-w2
# 1 GiB); the manager reports the machine's. A nested daemon takes its
# memory from /proc/meminfo, so each worker gets one of its own (kept
# under .ci-work/cluster/) with that MemTotal.
#
# Nodes are containers skep-node-m (manager) and skep-node-w1..wN, hostnames
# node-m, node-w1, ...; each worker is labelled skep.node=wK in the swarm and
# pinned to one CPU of its own where the machine has enough (so capacity sums
# over nodes of different sizes). `up` removes what it made if it fails.
#
# Why not `--privileged`: on the VMs this was written on, the daemon's
# capability bounding set lacks CAP_SYS_RESOURCE, and runc refuses a
# privileged container ("unable to apply caps: operation not permitted"). A
# node gets every other capability, no seccomp or AppArmor profile, /proc/sys
# writable, and the host's cgroup hierarchy, which is what a nested daemon
# needs. /var/lib/docker is a volume, so the nested daemon uses overlay2 on
# the host's file system, not on the container's own overlay.
#
# Networks: the nested daemons use an MTU of 1300 (the host's is 1400 here,
# and VXLAN adds 50 bytes) and bridges of their own (10.213.0.0/16), apart
# from the host's 172.17.0.0/16.
set -euo pipefail
cd "$(dirname "$0")/../.."

base="${SKEP_BASE_IMAGE:-skep-base:bookworm}"
net=skep-cluster
label=skep.cluster=1
mtu=1300

log() { echo "cluster: $*" >&2; }
die() {
  echo "cluster: $*" >&2
  exit 1
}
node() { echo "skep-node-$1"; }
state="$PWD/.ci-work/cluster"
in_node() {
  local n="$1"
  shift
  docker exec -i "$(node "$n")" docker "$@"
}

# NB: a node's daemon starts after a kill with its old pid files still in
# the container; they are removed first.
dockerfile='ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      docker.io iptables iproute2 ca-certificates procps >/dev/null \
 && rm -rf /var/lib/apt/lists/*
VOLUME /var/lib/docker
ENTRYPOINT ["sh", "-c", "rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid; exec dockerd \"$@\"", "dockerd"]
'
# The image is named by what builds it, so a change here builds it again.
image="skep-node:$(printf '%s%s' "$base" "$dockerfile" | sha256sum | cut -c1-12)"

build_image() {
  docker image inspect "$image" >/dev/null 2>&1 && return
  docker image inspect "$base" >/dev/null 2>&1 ||
    die "no $base image: scripts/build-images.sh makes it"
  log "building $image from $base (Debian's docker.io)"
  local ctx
  ctx="$(mktemp -d)"
  printf '%s' "$dockerfile" >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q --build-arg BASE_IMAGE="$base" -t "$image" "$ctx" >/dev/null 2>&1 || {
    rm -rf "$ctx"
    die "could not build $image"
  }
  rm -rf "$ctx"
}

# A /proc/meminfo that says MIB MiB of memory (free and available too).
meminfo() {
  local mib="$1" file="$state/meminfo-$2"
  mkdir -p "$state"
  awk -v kb="$((mib * 1024))" '/^(MemTotal|MemFree|MemAvailable):/ { printf "%-16s%8d kB\n", $1, kb; next } { print }' \
    /proc/meminfo >"$file"
  echo "$file"
}

run_node() {
  local n="$1" index="$2" cpus="$3" mib="${4:-}"
  local cpuset=() share=() memory=()
  [ -n "$cpus" ] && cpuset=(--cpuset-cpus "$cpus")
  [ -n "$mib" ] && memory=(-v "$(meminfo "$mib" "$n"):/proc/meminfo:ro")
  [ "$n" = m ] && [ -n "${SKEP_CLUSTER_SHARE:-}" ] && share=(-v "$SKEP_CLUSTER_SHARE:$SKEP_CLUSTER_SHARE")
  docker volume create --label "$label" "$(node "$n")" >/dev/null
  docker run -d --name "$(node "$n")" --hostname "node-$n" --label "$label" \
    --network "$net" -v "$(node "$n"):/var/lib/docker" \
    --cap-add ALL --cap-drop SYS_RESOURCE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --security-opt systempaths=unconfined \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    "${share[@]}" "${cpuset[@]}" "${memory[@]}" "$image" \
    --mtu "$mtu" --bip "10.213.$index.1/24" \
    --default-address-pool "base=10.213.$((100 + index)).0/24,size=28" >/dev/null
}

ip_of() {
  docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$(node "$1")"
}

wait_daemon() {
  local n="$1"
  for _ in $(seq 1 60); do
    in_node "$n" info >/dev/null 2>&1 && return
    sleep 0.5
  done
  docker logs --tail 30 "$(node "$n")" >&2 || true
  die "the daemon of node $n did not start"
}

up() {
  local workers="${1:-2}"
  [ "$workers" -ge 1 ] || die "at least one worker"
  docker ps -a -q --filter "label=$label" | grep -q . &&
    die "a cluster is up already ($0 down first)"
  if [ -n "${SKEP_CLUSTER_SHARE:-}" ]; then
    case "$SKEP_CLUSTER_SHARE" in
      /*) [ -d "$SKEP_CLUSTER_SHARE" ] || die "SKEP_CLUSTER_SHARE: no folder $SKEP_CLUSTER_SHARE" ;;
      *) die "SKEP_CLUSTER_SHARE must be an absolute path" ;;
    esac
  fi
  build_image
  trap 'log "failed; removing what was made"; down' ERR
  docker network create --label "$label" --opt "com.docker.network.driver.mtu=$mtu" "$net" >/dev/null
  local ncpu
  # NB: nproc honours OMP_THREAD_LIMIT, which the test script sets to 1
  ncpu="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
  local mibs
  IFS=, read -r -a mibs <<<"${SKEP_CLUSTER_MEMORY:-2048,1024}"
  [ ${#mibs[@]} -gt 0 ] || die "SKEP_CLUSTER_MEMORY: no figure"
  for mib in "${mibs[@]}"; do
    [[ "$mib" =~ ^[1-9][0-9]{0,6}$ ]] || die "SKEP_CLUSTER_MEMORY: '$mib' is not a number of MiB"
  done
  run_node m 0 ""
  for k in $(seq 1 "$workers"); do
    # NB: a CPU of its own where there are enough, so that nodes differ.
    local cpus=""
    [ "$ncpu" -gt 1 ] && cpus="$(((k - 1) % ncpu))"
    run_node "w$k" "$k" "$cpus" "${mibs[$(((k - 1) % ${#mibs[@]}))]}"
  done
  wait_daemon m
  local addr
  addr="$(ip_of m)"
  in_node m swarm init --advertise-addr "$addr" >/dev/null
  local token
  token="$(in_node m swarm join-token -q worker)"
  for k in $(seq 1 "$workers"); do
    wait_daemon "w$k"
    in_node "w$k" swarm join --token "$token" "$addr:2377" >/dev/null
    in_node m node update --label-add "skep.node=w$k" "node-w$k" >/dev/null
  done
  trap - ERR
  log "manager node-m at $addr, $workers worker(s)"
  in_node m node ls >&2
}

load() {
  local on=""
  if [ "${1:-}" = --on ]; then
    on="${2:?--on NODE,NODE...}"
    shift 2
  fi
  [ $# -ge 1 ] || die "name the images to load"
  local nodes=() n
  if [ -n "$on" ]; then
    for n in ${on//,/ }; do nodes+=("$(node "$n")"); done
  else
    mapfile -t nodes < <(docker ps --filter "label=$label" --format '{{.Names}}')
  fi
  [ ${#nodes[@]} -gt 0 ] || die "no cluster is up"
  # NB: saved once, loaded into the nodes side by side.
  local tar pids=() failed=0
  tar="$(mktemp)"
  docker save -o "$tar" "$@" || {
    rm -f "$tar"
    die "could not save $*"
  }
  for c in "${nodes[@]}"; do
    docker exec -i "$c" docker load -q <"$tar" >/dev/null &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  rm -f "$tar"
  [ "$failed" = 0 ] || die "loading $* failed on a node"
  log "loaded into ${nodes[*]}: $*"
}

down() {
  local ids
  ids="$(docker ps -a -q --filter "label=$label")"
  [ -n "$ids" ] && docker rm -f -v $ids >/dev/null
  local vols
  vols="$(docker volume ls -q --filter "label=$label")"
  [ -n "$vols" ] && docker volume rm $vols >/dev/null
  docker network ls -q --filter "label=$label" | xargs -r docker network rm >/dev/null
  rm -rf "$state"
  log "down"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  up) up "$@" ;;
  load) load "$@" ;;
  docker)
    [ $# -ge 1 ] || die "usage: $0 docker NODE ARGS..."
    n="$1"
    shift
    in_node "$n" "$@"
    ;;
  kill) docker kill "$(node "${1:?NODE}")" >/dev/null ;;
  cut) docker network disconnect -f "$net" "$(node "${1:?NODE}")" ;;
  start)
    # a node cut off is joined to the network again first
    docker inspect -f '{{json .NetworkSettings.Networks}}' "$(node "${1:?NODE}")" | grep -q "\"$net\"" ||
      docker network connect "$net" "$(node "$1")"
    docker start "$(node "$1")" >/dev/null
    wait_daemon "$1"
    ;;
  nodes) in_node m node ls ;;
  ip) ip_of "${1:?NODE}" ;;
  gateway) docker network inspect -f '{{(index .IPAM.Config 0).Gateway}}' "$net" ;;
  down) down ;;
  *)
    sed -n '2,30p' "$0" >&2
    exit 2
    ;;
esac
