#!/usr/bin/env bash
# The end-to-end test on a multi-node swarm (issue #14): a manager and two
# workers made by tests/swarm/cluster.sh, the controller deployed as a stack
# service on the manager, workers that mount nothing and read every file
# through the controller's signed URLs, and three faults in one job.
#
# Asserts, from the manager's Docker API and the job's own output:
# - the nodes report distinct figures: node-m 2 CPUs and the machine's
#   memory, node-w1 1 CPU and 1 GiB, node-w2 1 CPU and 768 MiB;
# - capacity: the pool is scaled to min(ceil(files / filesPerWorker),
#   maxReplicas, capacity), capacity = the sum over ready, active nodes of
#   min(CPUs / CPU reservation, memory / memory reservation), read from
#   `docker node inspect` (4 + 2 + 1 = 7 here, node-w2 bound by memory);
# - its replicas run on every node, and status.nodesUsed names all three;
# - (a) node-w2, holding a file, is cut off the network and SIGKILLed
#   mid-job (a machine lost without a word): the swarm marks it Down, the
#   controller reports fewer replicas running and scales the pool to the
#   capacity left (6), and the broker hands its file to another worker;
# - (b) node-w1 is drained: capacity falls to 4, its replicas move away;
# - (c) the controller's container is SIGKILLed: the swarm starts another,
#   which takes the lease and goes on;
# - the job Succeeds with exactly one result per file and the text matches
#   the ground truth (CER); no worker mounts a folder or sees the job's.
#
# Prints the numbers for docs/performance.md: apply -> replicas running on
# every node (p50 over SKEP_CLUSTER_SAMPLES small jobs), node lost -> its
# file in progress elsewhere, tasks delivered again.
#
# Needs: Docker on a machine that can run nested daemons (cluster.sh), the
# images (scripts/build-images.sh), jq, curl. Starts its own store
# (nx-27017) and broker (RabbitMQ) on the cluster network's gateway
# address, and removes the cluster on exit. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
# shellcheck source=tests/swarm/results.sh
. tests/swarm/results.sh

pages="${SKEP_CLUSTER_PAGES:-400}"
per_worker=10
max_replicas=10
# The worker service's reservations (below) and what the worker nodes
# report: node-w1 1 CPU and 1 GiB holds 2 replicas, node-w2 1 CPU and
# 768 MiB only 1 (memory-bound), node-m 2 CPUs and the machine's memory 4.
cpu_reservation=0.5
memory_reservation_mib=512
worker_memory_mib=1024,768
stack=skep
pool_service="${stack}_worker-default"
controller_service="${stack}_controller"
job=cluster-e2e
work="$root/.ci-work/cluster-e2e"
data="$work/data"
cluster=tests/swarm/cluster.sh
api_port=18081

log() { echo "cluster-e2e: $*" >&2; }
fail() {
  echo "cluster-e2e: FAIL: $*" >&2
  m service ps --no-trunc "$pool_service" 2>/dev/null | tail -20 >&2 || true
  m service logs --tail 60 "$controller_service" 2>/dev/null >&2 || true
  exit 1
}
# The manager's docker CLI.
m() { "$cluster" docker m "$@"; }

cleanup() {
  "$cluster" down >/dev/null 2>&1 || true
  scripts/mongo-test-server.sh stop "$work/nx" >/dev/null 2>&1 || true
  scripts/rabbitmq-test-server.sh stop "$work/rabbitmq" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# --- the cluster, the images, the servers ----------------------------------
mkdir -p "$root/.ci-work"
scripts/build-images.sh >"$root/.ci-work/cluster-e2e-images.log" 2>&1 ||
  { tail -20 "$root/.ci-work/cluster-e2e-images.log" >&2; exit 1; }
cargo build --release --locked -q -p skep -p skep-testkit
skep="$root/target/release/skep"
testkit="$root/target/release/skep-testkit"

"$cluster" down >/dev/null 2>&1 || true
scripts/mongo-test-server.sh stop "$work/nx" >/dev/null 2>&1 || true
scripts/rabbitmq-test-server.sh stop "$work/rabbitmq" >/dev/null 2>&1 || true
rm -rf "$work"
mkdir -p "$data"
"$testkit" gen --pages-dir "$data/pages" --truth-dir "$data/truth" --pages "$pages" --seed 14 >/dev/null
chmod -R a+rX "$data"

t0="$(now)"
SKEP_CLUSTER_SHARE="$data" SKEP_CLUSTER_MEMORY="$worker_memory_mib" "$cluster" up 2
t_up="$(now)"
"$cluster" load --on m skep:dev
"$cluster" load skep-worker:dev
t_loaded="$(now)"
log "cluster up in $(elapsed "$t0" "$t_up") s, images loaded in $(elapsed "$t_up" "$t_loaded") s"

# The store and the broker listen on the host's address on the cluster's
# network: the nodes' containers reach it, nothing outside the host does.
gw="$("$cluster" gateway)"
export NX_VENV="${NX_VENV:-$root/.ci-work/nx/venv}"
store="$(SKEP_TEST_BIND="$gw" scripts/mongo-test-server.sh start "$work/nx" "${SKEP_CLUSTER_NX_PORT:-27219}")/skep"
queue="$(SKEP_TEST_BIND="$gw" scripts/rabbitmq-test-server.sh start "$work/rabbitmq" "${SKEP_CLUSTER_AMQP_PORT:-5830}")"
export SKEP_STORE="$store"
mgmt="http://$gw:$(sed -n 's/.*management_port=\([0-9]*\).*/\1/p' <<<"$queue")"
mgmt_auth="skep:$(cat "$work/rabbitmq/password")"
rabbit() { curl -fsS -u "$mgmt_auth" "$mgmt/api/$1"; }

# --- the stack ---------------------------------------------------------------
read_token="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s' "$store" | m secret create skep_store_url - >/dev/null
printf '%s' "$queue" | m secret create skep_queue_url - >/dev/null
printf '%s read\n' "$read_token" | m secret create skep_api_tokens - >/dev/null
head -c 48 /dev/urandom | m secret create skep_file_url_key - >/dev/null
# NB: the compose file is read by the manager's CLI from stdin, so it is
# written out whole here (no variables left for that CLI to fill in).
m stack deploy --prune -c - "$stack" >/dev/null <<YAML
version: "3.8"
services:
  controller:
    image: skep:dev
    user: "0:0"
    command:
      - controller
      - --runtime=swarm
      - --service-prefix=${stack}_worker-
      - --scale-down-cooldown-seconds=2
      - --resync-seconds=5
      - --listen=0.0.0.0:8080
      # workers fetch files from the controller over the stack's network
      - --file-url-base=http://controller:8080
    environment:
      SKEP_STORE_FILE: /run/secrets/skep_store_url
      SKEP_QUEUE_FILE: /run/secrets/skep_queue_url
      SKEP_API_TOKENS_FILE: /run/secrets/skep_api_tokens
      SKEP_FILE_URL_KEY_FILE: /run/secrets/skep_file_url_key
      SKEP_ALLOW_PATHS: $data
      SKEP_LOG: info
    secrets: [skep_store_url, skep_queue_url, skep_api_tokens, skep_file_url_key]
    ports:
      - { target: 8080, published: $api_port, protocol: tcp, mode: host }
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
      - $data:$data
    networks: [skep]
    deploy:
      # NB: the name resolves to the task's own address: a virtual IP
      # (IPVS) answers "No route to host" inside these nested daemons.
      endpoint_mode: dnsrr
      placement:
        constraints: [node.role == manager]
      restart_policy:
        condition: any
        delay: 1s
  worker-default:
    image: skep-worker:dev
    command: [run]
    environment:
      SKEP_QUEUE_FILE: /run/secrets/skep_queue_url
      SKEP_POOL: default
      SKEP_NODE: "{{.Node.Hostname}}"
      SKEP_WORKER_SLOTS: "1"
      # no mount of the job's folders: every file through its URL
      SKEP_FILE_ACCESS: url
      SKEP_LOG: info
    secrets: [skep_queue_url]
    networks: [skep]
    stop_grace_period: 30s
    deploy:
      replicas: 0
      labels:
        dev.skep.owned: "true"
      resources:
        reservations:
          cpus: "$cpu_reservation"
          memory: ${memory_reservation_mib}M
      restart_policy:
        condition: on-failure
        delay: 1s
networks:
  skep:
    driver: overlay
    attachable: true
    # VXLAN adds 50 bytes to the nodes' 1300
    driver_opts:
      com.docker.network.driver.mtu: "1250"
secrets:
  skep_store_url: { external: true }
  skep_queue_url: { external: true }
  skep_api_tokens: { external: true }
  skep_file_url_key: { external: true }
YAML
api="http://$("$cluster" ip m):$api_port"
for _ in $(seq 1 120); do
  curl -fsS "$api/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "$api/readyz" >/dev/null 2>&1 || fail "the controller's /readyz did not answer at $api"
log "stack deployed; the controller answers at $api"

# --- what the Docker API and the broker say -----------------------------------
# One exec into the manager per look: the pool's desired replicas, then
# "NODE STATE" for each task the swarm wants running.
look() {
  docker exec skep-node-m sh -c "docker service inspect --format '{{.Spec.Mode.Replicated.Replicas}}' $pool_service &&
    docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' $pool_service"
}
desired_of() { head -1 <<<"$1"; }
running_nodes() { tail -n +2 <<<"$1" | awk '$2 == "Running" { print $1 }' | sort -u | paste -sd, -; }
running_count() { tail -n +2 <<<"$1" | awk '$2 == "Running"' | wc -l; }
count_nodes() { tr ',' '\n' <<<"$1" | grep -c . || true; }
node_state() { m node inspect --format '{{.Status.State}}' "node-$1"; }

# The nodes as the manager describes them: "STATE AVAILABILITY NANOCPUS
# MEMORYBYTES HOSTNAME" each.
nodes_described() {
  docker exec skep-node-m sh -c 'docker node inspect $(docker node ls -q) --format "{{.Status.State}} {{.Spec.Availability}} {{.Description.Resources.NanoCPUs}} {{.Description.Resources.MemoryBytes}} {{.Description.Hostname}}"'
}
# The capacity the rule gives: the sum over ready, active nodes of
# min(CPUs / CPU reservation, memory / memory reservation).
capacity() {
  nodes_described | awk -v c="$cpu_reservation" -v m="$memory_reservation_mib" '$1 == "ready" && $2 == "active" {
    a = int($3 / (c * 1000000000)); b = int($4 / (m * 1048576)); n += (a < b ? a : b) } END { print n + 0 }'
}
# min(ceil(files / filesPerWorker), maxReplicas, capacity)
rule() {
  local want=$((($1 + per_worker - 1) / per_worker))
  [ "$want" -gt "$max_replicas" ] && want="$max_replicas"
  [ "$want" -gt "$2" ] && want="$2"
  echo "$want"
}
# Deliveries a node's workers hold unacknowledged, or "gone" when the broker
# lists no channel from that node (a channel's name begins with the address
# its connection comes from: "ADDR:PORT -> ...").
held_by() {
  rabbit "channels?columns=name,messages_unacknowledged" |
    jq -r --arg ip "$1:" '[.[] | select(.name | startswith($ip))] |
      if length == 0 then "gone" else (map(.messages_unacknowledged) | add | tostring) end'
}
# Deliveries the broker made again of a queue's messages, so far.
redelivered() {
  rabbit "queues/%2f/${1:-skep.tasks.default}?columns=message_stats" | jq -r '.message_stats.redeliver // 0'
}

# --- the job ----------------------------------------------------------------
[ "$(desired_of "$(look)")" = 0 ] || fail "the pool does not start at 0 replicas"
figures="$(nodes_described | awk '{ printf "%s%s %g CPUs %d MiB", sep, $5, $3 / 1e9, $4 / 1048576; sep = ", " }')"
log "nodes: $figures"
for want_node in "node-w1 1 CPUs 1024 MiB" "node-w2 1 CPUs 768 MiB"; do
  grep -q "$want_node" <<<"$figures" || fail "the nodes do not report '$want_node': $figures"
done
cap0="$(capacity)"
want="$(rule "$pages" "$cap0")"
log "capacity $cap0 (reservations $cpu_reservation CPU, $memory_reservation_mib MiB per replica); the rule gives $want replicas for $pages files"
w2_ip="$("$cluster" ip w2)"

write_job "$work/job.yaml" "$job" "$data/pages" "$data/out" "txt, report" default "$per_worker" "$max_replicas"

t_apply="$(now)"
"$skep" apply -f "$work/job.yaml" >/dev/null
stage=spread
max=0
timeline="0"
last=0
t_spread="" t_kill="" t_down="" t_back="" t_redone="" t_pool="" pool_after_kill="" t_drain="" t_drained_ok="" t_ckill="" t_resumed=""
cap1="" cap2="" held="" redeliver0="" done_at_ckill="" old_controller=""
seen_timeline="" last_seen="" seen_after_loss=""
deadline=$(($(date +%s) + ${SKEP_CLUSTER_TIMEOUT:-900}))
while :; do
  st="$(look)"
  desired="$(desired_of "$st")"
  running="$(running_count "$st")"
  on="$(running_nodes "$st")"
  if [ "$desired" != "$last" ]; then
    timeline="$timeline -> $desired"
    last="$desired"
  fi
  [ "$desired" -gt "$max" ] && max="$desired"
  status="$("$skep" get "$job" -o json 2>/dev/null || echo '{}')"
  phase="$(jq -r '.status.phase // ""' <<<"$status")"
  total="$(jq -r '.status.files.total // 0' <<<"$status")"
  finished="$(jq -r '(.status.files.succeeded // 0) + (.status.files.failed // 0)' <<<"$status")"
  left=$((total - finished))
  # what the controller itself reports: "running/desired", desired being
  # what the job asks (not capped by capacity)
  seen="$(jq -r '"\(.status.replicas.running // 0)/\(.status.replicas.desired // 0)"' <<<"$status")"
  if [ "$seen" != "$last_seen" ]; then
    seen_timeline="$seen_timeline -> $seen"
    last_seen="$seen"
    [ "$stage" = killed ] && seen_after_loss="$seen_after_loss ${seen%/*} "
  fi
  if [ "$phase" = Succeeded ] || [ "$phase" = Failed ]; then
    break
  fi
  case "$stage" in
    spread)
      # a replica on every node: look at two workers, then kill a node
      # and node-w2 holds a file: it is lost with the node
      if [ "$(count_nodes "$on")" -ge 3 ] && [ "$finished" -ge 5 ] && [ "$(held_by "$w2_ip")" -ge 1 ] 2>/dev/null; then
        t_spread="$(now)"
        for n in w1 w2; do
          c="$(docker exec "skep-node-$n" docker ps -q --filter "label=com.docker.swarm.service.name=$pool_service" | awk 'NR == 1')"
          [ -n "$c" ] || fail "no worker container on node-$n"
          mounts="$(docker exec "skep-node-$n" docker inspect --format '{{range .Mounts}}{{.Type}}:{{.Source}} {{end}}' "$c")"
          [ -z "${mounts// /}" ] || fail "the worker on node-$n mounts $mounts"
          if docker exec "skep-node-$n" docker exec "$c" test -e "$data"; then
            fail "the worker on node-$n sees $data"
          fi
        done
        held="$(held_by "$w2_ip")"
        redeliver0="$(redelivered)"
        # a lost machine: off the network first, so that none of its
        # connections is closed; the swarm and the broker hear nothing more
        "$cluster" cut w2
        "$cluster" kill w2
        t_kill="$(now)"
        log "replicas on $on; node-w2 cut off and killed with $finished files done, $held deliveries held there"
        stage=killed
      fi
      ;;
    killed)
      if [ -z "$t_down" ] && [ "$(node_state w2)" = down ]; then
        t_down="$(now)"
        cap1="$(capacity)"
      fi
      if [ -z "$t_back" ] && [ "$(held_by "$w2_ip")" = gone ]; then
        t_back="$(now)"
      fi
      if [ -z "$t_pool" ] && [ -n "$t_down" ] && [ "$desired" = "$(rule "$left" "$cap1")" ] &&
        [ "$running" = "$desired" ] && ! grep -q node-w2 <<<"$on"; then
        t_pool="$(now)"
        pool_after_kill="$desired on $on"
      fi
      # its file handed to another worker: in progress again
      if [ -z "$t_redone" ] && [ "$(redelivered)" -gt "$redeliver0" ]; then
        t_redone="$(now)"
      fi
      # (or, had its worker acknowledged before the cut, nothing to hand on)
      if [ -n "$t_pool" ] && [ -n "$t_back" ] &&
        { [ -n "$t_redone" ] || [ "$(elapsed "$t_back" "$(now)" | cut -d. -f1)" -ge 15 ]; }; then
        [ -n "$t_redone" ] || t_redone="$t_back"
        log "node-w2 Down after $(elapsed "$t_kill" "$t_down") s; pool at $pool_after_kill (capacity $cap1) after $(elapsed "$t_kill" "$t_pool") s; its connections dropped by the broker after $(elapsed "$t_kill" "$t_back") s, its file in progress elsewhere after $(elapsed "$t_kill" "$t_redone") s"
        m node update --availability drain node-w1 >/dev/null
        t_drain="$(now)"
        cap2="$(capacity)"
        stage=drained
      fi
      ;;
    drained)
      if [ "$desired" = "$(rule "$left" "$cap2")" ] && [ "$running" = "$desired" ] && ! grep -q node-w1 <<<"$on"; then
        t_drained_ok="$(now)"
        log "node-w1 drained: pool at $desired (capacity $cap2) on $on after $(elapsed "$t_drain" "$t_drained_ok") s"
        old_controller="$(docker exec skep-node-m docker ps -q --filter "label=com.docker.swarm.service.name=$controller_service")"
        [ -n "$old_controller" ] || fail "no controller container on node-m"
        docker exec skep-node-m docker kill "$old_controller" >/dev/null
        t_ckill="$(now)"
        done_at_ckill="$finished"
        log "killed the controller's container with $finished files done"
        stage=ckilled
      fi
      ;;
    ckilled)
      c="$(docker exec skep-node-m docker ps -q --filter "label=com.docker.swarm.service.name=$controller_service")"
      if [ -n "$c" ] && [ "$c" != "$old_controller" ] && [ "$finished" -gt "$done_at_ckill" ] &&
        curl -fsS "$api/readyz" >/dev/null 2>&1; then
        t_resumed="$(now)"
        log "a new controller goes on: $finished files done $(elapsed "$t_ckill" "$t_resumed") s after the kill"
        stage=resumed
      fi
      ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || fail "the job did not finish in time (stage $stage, phase '$phase', $finished of $total files)"
  sleep 0.3
done
t_done="$(now)"
log "job $phase after $(elapsed "$t_apply" "$t_done") s; pool replicas: $timeline"
log "the job's status.replicas (running/desired): ${seen_timeline# -> }"

[ "$phase" = Succeeded ] || fail "job phase is $phase: $(jq -c .status <<<"$status")"
[ "$stage" = resumed ] || fail "the job ended at stage $stage, before every fault was made (raise SKEP_CLUSTER_PAGES)"
[ "$max" = "$want" ] || fail "the pool was scaled to at most $max replicas; the rule gives $want"
grep -q " $cap1 " <<<"$seen_after_loss" ||
  fail "after node-w2 went Down the job's status never said $cap1 replicas running (running/desired): ${seen_timeline# -> }"
results="$data/out/results.jsonl"
check_results "$results" "$pages" "$data/truth" "$work/cer.txt"
log "$(tail -1 "$work/cer.txt")"
nodes_used="$("$skep" get "$job" -o json | jq -r '.status.nodesUsed | join(",")')"
[ "$(count_nodes "$nodes_used")" -ge 2 ] || fail "status.nodesUsed is '$nodes_used'"
by_node="$(jq -r .node "$results" | sort | uniq -c | awk '{ printf "%s%s %s", sep, $2, $1; sep = ", " }')"
log "files per node: $by_node; status.nodesUsed $nodes_used"
for n in node-m node-w1 node-w2; do
  grep -q "$n" <<<"$by_node" || fail "no file was read on $n"
done
redone=$(($(redelivered) - redeliver0))
results_redelivered="$(redelivered skep.results)"

# --- apply -> replicas running on every node ------------------------------------
"$cluster" start w2
m node update --availability active node-w1 >/dev/null
for _ in $(seq 1 120); do
  [ "$(node_state w2)" = ready ] && break
  sleep 0.5
done
[ "$(node_state w2)" = ready ] || fail "node-w2 did not come back Ready"
samples=() raised=()
for i in $(seq 1 "${SKEP_CLUSTER_SAMPLES:-5}"); do
  for _ in $(seq 1 120); do
    [ "$(desired_of "$(look)")" = 0 ] && break
    sleep 0.5
  done
  # the whole folder again (so every replica starts before the files run
  # out); deleted once measured
  sed -e "s/name: $job/name: spread-$i/" -e "s#path: $data/out#path: $data/out-spread-$i#" \
    "$work/job.yaml" >"$work/spread.yaml"
  ta="$(now)"
  "$skep" apply -f "$work/spread.yaml" >/dev/null
  tr="" tb=""
  for _ in $(seq 1 300); do
    st="$(look)"
    [ -z "$tr" ] && [ "$(desired_of "$st")" -gt 0 ] && tr="$(now)"
    if [ "$(count_nodes "$(running_nodes "$st")")" -ge 3 ]; then
      tb="$(now)"
      break
    fi
    sleep 0.1
  done
  [ -n "$tb" ] || fail "job spread-$i never had replicas running on all 3 nodes"
  samples+=("$(elapsed "$ta" "$tb")")
  raised+=("$(elapsed "$ta" "${tr:-$tb}")")
  "$skep" delete "spread-$i" --wait >/dev/null || fail "job spread-$i was not deleted"
done

log "PASS: $pages files on $nodes_used, exactly one result each; pool $timeline (capacity $cap0 -> $cap1 -> $cap2)"
log "timing: cluster up $(elapsed "$t0" "$t_up") s, images $(elapsed "$t_up" "$t_loaded") s, job $(elapsed "$t_apply" "$t_done") s"
log "timing: apply -> replicas on every node, s: ${samples[*]} (p50 $(median "${samples[@]}")); in the big job $(elapsed "$t_apply" "$t_spread") s"
log "timing: of which apply -> the service's replicas raised, s: ${raised[*]} (p50 $(median "${raised[@]}"))"
log "node loss: Down after $(elapsed "$t_kill" "$t_down") s; pool at the capacity left after $(elapsed "$t_kill" "$t_pool") s; its connections dropped after $(elapsed "$t_kill" "$t_back") s; its file in progress elsewhere after $(elapsed "$t_kill" "$t_redone") s"
log "tasks delivered again from the node loss on: $redone ($held held on the lost node); results delivered again: $results_redelivered"
log "drain: pool off node-w1 in $(elapsed "$t_drain" "$t_drained_ok") s; controller killed -> files done again after $(elapsed "$t_ckill" "$t_resumed") s"
