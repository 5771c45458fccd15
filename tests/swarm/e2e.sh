#!/usr/bin/env bash
# Swarm end-to-end test: a BulkJob applied to the store makes the controller,
# running as a swarm service, scale the worker pool service, feed it, and
# scale it back. Everything checked here is read from the Docker API
# (`docker service inspect`, `docker ps`) or from the job's own output files,
# not from skep's status alone.
#
# Asserts:
# - the pool service is scaled to the replica count the rule gives:
#   min(ceil(files / filesPerWorker), maxReplicas, capacity), capacity =
#   node CPUs / the service's CPU reservation;
# - it is scaled down in the middle of the job (demand falls as files finish)
#   and back to scaleBackTo (0) once the job is done;
# - a worker container killed with `docker kill` mid-task loses no file;
# - every file has exactly one result, CER against ground truth < 5%, and the
#   job reached Succeeded.
#
# Needs: Docker (this machine is made a single-node swarm if it is not one),
# SKEP_TEST_AMQP_URL (RabbitMQ on the host's loopback); starts its own
# nx-27017 store. Called by scripts/test.sh; prints timings for
# docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
# shellcheck source=tests/swarm/results.sh
. tests/swarm/results.sh

: "${SKEP_TEST_AMQP_URL:?SKEP_TEST_AMQP_URL must name the RabbitMQ the workers use}"
pages="${SKEP_E2E_PAGES:-60}"
per_worker=20
stack=skep-e2e
pool_service="${stack}_worker-default"
job=swarm-e2e
work="$root/.ci-work/swarm-e2e"
data="$work/data"
cpu_reservation_millis=500 # tests/swarm/stack.yml: cpus "0.5"

log() { echo "e2e: $*" >&2; }
fail() {
  echo "e2e: FAIL: $*" >&2
  docker service ps --no-trunc "$pool_service" 2>/dev/null | tail -20 >&2 || true
  docker service logs --tail 60 "${stack}_controller" 2>/dev/null >&2 || true
  exit 1
}

cleanup() {
  docker stack rm "$stack" >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do
    [ -z "$(docker service ls -q --filter "label=com.docker.stack.namespace=$stack")" ] && break
    sleep 0.5
  done
  scripts/mongo-test-server.sh stop "$work/nx" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# --- the swarm, the images, the store --------------------------------------
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  log "making this machine a single-node swarm"
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi
scripts/build-images.sh
cargo build --release --locked -q -p skep -p skep-worker -p skep-testkit
skep="$root/target/release/skep"
testkit="$root/target/release/skep-testkit"

# A fresh store and corpus every run (the venv is kept).
export NX_VENV="${NX_VENV:-$root/.ci-work/nx/venv}"
scripts/mongo-test-server.sh stop "$work/nx" >/dev/null 2>&1 || true
rm -rf "$data" "$work/nx"
mkdir -p "$data"
store="$(scripts/mongo-test-server.sh start "$work/nx" "${SKEP_E2E_NX_PORT:-27218}")/skep-e2e"
export SKEP_STORE="$store"

# --- the corpus and the job --------------------------------------------------
"$testkit" gen --pages-dir "$data/pages" --truth-dir "$data/truth" --pages "$pages" --seed 7 >/dev/null
chmod -R a+rX "$data"
write_job "$work/job.yaml" "$job" "$data/pages" "$data/out" "txt, report" default "$per_worker" 10

# --- deploy ------------------------------------------------------------------
# The production stack cannot be deployed here (its broker and store images
# cannot be pulled), but it must at least be a valid stack file.
for stack_file in manifests/docker-stack.yml manifests/docker-stack.nsq.yml; do
  docker stack config -c "$stack_file" >/dev/null || fail "$stack_file is not a valid stack file"
done
api_port="${SKEP_E2E_API_PORT:-18080}"
api="http://127.0.0.1:$api_port"
read_token="e2e-read-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
admin_token="e2e-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s read\n%s admin\n' "$read_token" "$admin_token" >"$data/api-tokens"
SKEP_E2E_STORE="$store" SKEP_E2E_QUEUE="$SKEP_TEST_AMQP_URL" SKEP_E2E_DATA="$data" SKEP_E2E_API_PORT="$api_port" \
  docker stack deploy -c tests/swarm/stack.yml "$stack" >/dev/null
for _ in $(seq 1 120); do
  [ "$(docker service ps -q --filter desired-state=running --filter name="${stack}_controller" | wc -l)" -ge 1 ] &&
    docker service ps --format '{{.CurrentState}}' "${stack}_controller" | grep -q '^Running' && break
  sleep 0.5
done
docker service ps --format '{{.CurrentState}}' "${stack}_controller" | grep -q '^Running' ||
  fail "the controller service did not start"
log "stack deployed; controller running"

replicas() { docker service inspect --format '{{.Spec.Mode.Replicated.Replicas}}' "$pool_service"; }
[ "$(replicas)" = 0 ] || fail "the pool starts at $(replicas) replicas, not 0"

ncpu="$(docker info --format '{{.NCPU}}')"
capacity=$((ncpu * 1000 / cpu_reservation_millis))
want=$(((pages + per_worker - 1) / per_worker))
[ "$want" -gt 10 ] && want=10
[ "$want" -gt "$capacity" ] && want="$capacity"
log "expecting $want replicas (files $pages, filesPerWorker $per_worker, capacity $capacity)"

# --- run the job, watching the service through the Docker API ---------------
t_apply="$(now)"
"$skep" apply -f "$work/job.yaml" -o json >/dev/null
t_up=""
t_done=""
max=0
last=0
timeline="0"
fell_mid_job=0
killed=""
phase=""
deadline=$(($(date +%s) + ${SKEP_E2E_TIMEOUT:-600}))
while :; do
  r="$(replicas)"
  if [ "$r" != "$last" ]; then
    timeline="$timeline -> $r"
    [ -z "$t_up" ] && [ "$r" -gt 0 ] && t_up="$(now)"
    [ "$r" -lt "$last" ] && [ -z "$t_done" ] && fell_mid_job=1
    last="$r"
  fi
  [ "$r" -gt "$max" ] && max="$r"
  status="$("$skep" get "$job" -o json)"
  phase="$(jq -r '.status.phase // ""' <<<"$status")"
  done_files="$(jq -r '(.status.files.succeeded // 0) + (.status.files.failed // 0)' <<<"$status")"
  if [ -z "$killed" ] && [ "$done_files" -ge 6 ]; then
    victim="$(docker ps -q --filter "label=com.docker.swarm.service.name=$pool_service" | head -1)"
    if [ -n "$victim" ]; then
      docker kill "$victim" >/dev/null
      killed="$victim"
      log "killed worker container $victim with $done_files files done"
    fi
  fi
  if [ "$phase" = Succeeded ] || [ "$phase" = Failed ]; then
    t_done="$(now)"
    break
  fi
  [ "$(date +%s)" -lt "$deadline" ] || fail "the job did not finish in time (phase '$phase', $done_files files done)"
  sleep 0.2
done
log "job $phase after $(elapsed "$t_apply" "$t_done") s; replicas over time: $timeline"

# --- scale-back ----------------------------------------------------------------
t_back=""
for _ in $(seq 1 300); do
  if [ "$(replicas)" = 0 ]; then
    t_back="$(now)"
    [ "$last" != 0 ] && timeline="$timeline -> 0 (after the job)"
    break
  fi
  sleep 0.1
done
[ -n "$t_back" ] || fail "the pool was not scaled back to 0 (replicas $(replicas))"

# --- assertions ------------------------------------------------------------------
[ "$phase" = Succeeded ] || fail "job phase is $phase"
[ "$max" = "$want" ] || fail "the pool was scaled to at most $max replicas, the rule gives $want"
[ "$fell_mid_job" = 1 ] || fail "the pool was never scaled down before the job ended (timeline $timeline)"
[ -n "$killed" ] || fail "no worker container was killed mid-job"
results="$data/out/results.jsonl"
check_results "$results" "$pages" "$data/truth" "$work/cer.txt"
log "$(tail -1 "$work/cer.txt")"
nodes="$("$skep" get "$job" -o json | jq -r '.status.nodesUsed | join(",")')"
[ -n "$nodes" ] || fail "status.nodesUsed is empty"

# --- the controller's HTTP server, as deployed ---------------------------------
curl -fsS "$api/readyz" >/dev/null || fail "the controller's /readyz is not 200"
api_phase="$(curl -fsS -H "Authorization: Bearer $read_token" "$api/api/jobs/$job" | jq -r .data.status.phase)"
[ "$api_phase" = Succeeded ] || fail "GET /api/jobs/$job says phase '$api_phase'"
code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $read_token" "$api/api/jobs/$job/retry")"
[ "$code" = 403 ] || fail "a read token got $code, not 403, for POST /api/jobs/$job/retry"
pool_desired="$(curl -fsS -H "Authorization: Bearer $read_token" "$api/api/swarm/services?stack=$stack" |
  jq -r --arg s "$pool_service" '.data[] | select(.name == $s) | .replicas.desired')"
[ -n "$pool_desired" ] || fail "GET /api/swarm/services?stack=$stack does not list $pool_service"
processed="$(curl -fsS "$api/metrics" | awk '/^skep_files_processed_total\{outcome="succeeded"\}/ {print $2}')"
[ "${processed%.*}" -ge "$pages" ] 2>/dev/null || fail "/metrics counts ${processed:-no} succeeded files for $pages pages"
log "controller API: readyz 200, job Succeeded over /api, read token refused a change (403), $processed files counted in /metrics"

# --- latency samples (reported, not asserted: docs/performance.md) ------------
# Small jobs one after another, each from 0 replicas: apply -> the service's
# replicas raised, and the job's completionTime -> replicas back at 0.
mkdir -p "$data/small"
cp "$data/pages/page-0001.png" "$data/pages/page-0002.png" "$data/small/"
up_samples=()
back_samples=()
for i in $(seq 1 "${SKEP_E2E_SAMPLES:-5}"); do
  sed -e "s/name: $job/name: lat-$i/" -e "s#path: $data/pages#path: $data/small#" \
    -e "s#path: $data/out#path: $data/out-lat-$i#" "$work/job.yaml" >"$work/lat.yaml"
  t0="$(now)"
  "$skep" apply -f "$work/lat.yaml" >/dev/null
  t1=""
  for _ in $(seq 1 600); do
    [ "$(replicas)" -gt 0 ] && { t1="$(now)"; break; }
    sleep 0.05
  done
  [ -n "$t1" ] || fail "latency job lat-$i was never given replicas"
  t2=""
  for _ in $(seq 1 1200); do
    [ "$(replicas)" = 0 ] && { t2="$(now)"; break; }
    sleep 0.05
  done
  [ -n "$t2" ] || fail "latency job lat-$i was never scaled back"
  "$skep" wait "lat-$i" --timeout 60 >/dev/null || fail "latency job lat-$i did not succeed"
  done_at="$(date -d "$("$skep" get "lat-$i" -o json | jq -r .status.completionTime)" +%s.%N)"
  up_samples+=("$(elapsed "$t0" "$t1")")
  back_samples+=("$(elapsed "$done_at" "$t2")")
done
log "latency: apply -> replicas raised, s: ${up_samples[*]} (p50 $(median "${up_samples[@]}"))"
log "latency: completionTime -> scaled back, s: ${back_samples[*]} (p50 $(median "${back_samples[@]}"); cooldown 2 s)"

log "PASS: $pages files, max replicas $max (rule $want), timeline $timeline, nodes $nodes"
log "timing: apply -> replicas updated $(elapsed "$t_apply" "$t_up") s; job done -> scaled back $(elapsed "$t_done" "$t_back") s (cooldown 2 s)"
