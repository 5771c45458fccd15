#!/usr/bin/env bash
# Remote workers from manifests/docker-compose.worker.yml, run for real with
# docker-compose: two worker containers that mount nothing of the job's
# folders, given only the broker URL (a secret file), process a folder job
# of a controller started with `--runtime external`, reading every file
# through the controller's signed URLs and sending the artefacts back
# through its upload URLs.
#
# Asserts:
# - the containers mount no folder of the host (read from `docker inspect`);
# - the controller lists both workers (distinct ids, live) in /api/workers;
# - the job Succeeds with exactly one result per file, hOCR for each, and
#   the text matches the ground truth (CER);
# - the workers fetched through URLs (their own metrics);
# - `docker-compose down` leaves no container of the project.
#
# Needs: Docker, docker-compose, SKEP_TEST_AMQP_URL (RabbitMQ on the host's
# loopback), the images (scripts/build-images.sh). Called by
# scripts/test.sh after the swarm end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
# shellcheck source=tests/swarm/results.sh
. tests/swarm/results.sh

: "${SKEP_TEST_AMQP_URL:?SKEP_TEST_AMQP_URL must name the RabbitMQ the workers use}"
pages="${SKEP_COMPOSE_PAGES:-16}"
project=skep-compose-test
job=compose-workers
pool="compose-$$"
work="$root/.ci-work/compose-workers"
data="$work/data"
compose=(docker-compose -p "$project" -f manifests/docker-compose.worker.yml -f tests/swarm/compose.override.yml)

log() { echo "compose: $*" >&2; }
controller_pid=""
fail() {
  echo "compose: FAIL: $*" >&2
  "${compose[@]}" logs --tail 40 >&2 2>/dev/null || true
  tail -40 "$work/controller.log" >&2 2>/dev/null || true
  exit 1
}
cleanup() {
  "${compose[@]}" down --timeout 30 >/dev/null 2>&1 || true
  [ -n "$controller_pid" ] && kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
  return 0
}
trap cleanup EXIT

command -v docker-compose >/dev/null || fail "docker-compose is not installed (scripts/install-deps.sh installs it)"
scripts/build-images.sh >/dev/null
cargo build --release --locked -q -p skep -p skep-testkit
skep="$root/target/release/skep"
testkit="$root/target/release/skep-testkit"

rm -rf "$work"
mkdir -p "$data"
"$testkit" gen --pages-dir "$data/pages" --truth-dir "$data/truth" --pages "$pages" --seed 11 >/dev/null
export SKEP_STORE="sqlite:$work/skep.db"
head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/file-url.key"
# NB: the worker runs as the image's `skep` user and compose without a
# swarm bind-mounts a file secret as it is, so it must be readable by
# others: fine for the test broker's guest account, not for a real one
# (there, own the file by the image's uid).
printf '%s' "$SKEP_TEST_AMQP_URL" >"$work/queue-url"
chmod 644 "$work/queue-url"
export SKEP_COMPOSE_QUEUE_FILE="$work/queue-url"
port="${SKEP_COMPOSE_API_PORT:-18090}"
api="http://127.0.0.1:$port"

"$skep" controller --runtime external --queue "$SKEP_TEST_AMQP_URL" \
  --listen "127.0.0.1:$port" --api-no-auth \
  --file-url-base "$api" --file-url-key-file "$work/file-url.key" \
  --allow-path "$data" >"$work/controller.log" 2>&1 &
controller_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$api/livez" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$api/livez" >/dev/null || fail "the controller did not start"

SKEP_POOL="$pool" SKEP_FILE_ACCESS=auto SKEP_NODE=compose-host \
  "${compose[@]}" up -d --scale worker=2 >/dev/null 2>&1 || fail "docker-compose up failed"
containers="$("${compose[@]}" ps -q worker)"
[ "$(wc -l <<<"$containers")" = 2 ] || fail "docker-compose started $(wc -l <<<"$containers") workers, not 2"
for c in $containers; do
  mounts="$(docker inspect --format '{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}' "$c")"
  # NB: the secret is the one bind mount (compose without swarm makes a
  # file secret a bind mount); nothing of the job's folders.
  for m in $mounts; do
    case "$m" in
      bind:/run/secrets/skep_queue_url) ;;
      *) fail "worker container $c mounts $m" ;;
    esac
  done
  [ "$(docker exec "$c" sh -c "test -e '$data' && echo seen || echo hidden")" = hidden ] ||
    fail "worker container $c sees $data"
done
log "2 worker containers up, mounting nothing of $data"

write_job "$work/job.yaml" "$job" "$data/pages" "$data/out" "txt, hocr, report" "$pool"
started="$(date +%s)"
"$skep" apply -f "$work/job.yaml" >/dev/null
"$skep" wait "$job" --timeout "${SKEP_COMPOSE_TIMEOUT:-300}" >/dev/null ||
  fail "the job did not succeed: $("$skep" get "$job" -o json | jq -c .status)"
took=$(($(date +%s) - started))

workers="$(curl -fsS "$api/api/workers" | jq -c --arg p "$pool" '[.data[] | select(.pool == $p)]')"
[ "$(jq 'length' <<<"$workers")" = 2 ] || fail "/api/workers lists $(jq 'length' <<<"$workers") workers of the pool: $workers"
[ "$(jq '[.[].id] | unique | length' <<<"$workers")" = 2 ] || fail "the workers share an id: $workers"
[ "$(jq '[.[] | select(.stale)] | length' <<<"$workers")" = 0 ] || fail "a worker is stale: $workers"

results="$data/out/results.jsonl"
check_results "$results" "$pages" "$data/truth" "$work/cer.txt"
hocr="$(find "$data/out/hocr" -name '*.hocr' 2>/dev/null | wc -l || true)"
[ "$hocr" = "$pages" ] || fail "$hocr hOCR files landed for $pages files"
by_worker="$(jq -r .worker "$results" | sort | uniq -c | awk '{printf "%s%s", sep, $1; sep="+"}')"

fetched=0
for c in $containers; do
  # NB: the last start's port (restart is off in the override, but say
  # so plainly if a worker did not start at all).
  listen="$(docker logs "$c" 2>&1 | grep 'serving /livez' | grep -oE '127\.0\.0\.1:[0-9]+' | tail -1 || true)"
  [ -n "$listen" ] || fail "worker $c did not say where it listens"
  n="$(curl -fsS "http://$listen/metrics" | awk '/^skep_worker_fetches_total\{result="ok"\}/ {print $2}' || true)"
  n="${n:-0}"
  fetched=$((fetched + ${n%.*}))
done
[ "$fetched" -ge "$pages" ] || fail "the workers fetched $fetched files through URLs for $pages files"

"${compose[@]}" down --timeout 30 >/dev/null 2>&1 || fail "docker-compose down failed"
left="$(docker ps -aq --filter "label=com.docker.compose.project=$project" | wc -l)"
[ "$left" = 0 ] || fail "$left containers of the project are left after down"
log "PASS: $pages files in ${took}s by 2 workers (files each: $by_worker), $fetched fetched through URLs, $(tail -1 "$work/cer.txt")"
