#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document with schemathesis
# (PyPI) and fails on any 5xx answer (or a response that breaks the
# document's status codes/content types). The API runs as
# `skep controller --api-only` (no reconciling: generated jobs with random
# source folders are stored, never scanned) on a fresh SQLite store, with
# the local Docker daemon behind the swarm routes; an admin token so that
# every route is reached.
#
# Two passes, so that fuzzing cannot wreck the machine's swarm (an earlier
# unrestricted run deployed random stacks of 10 000 replicas of images that
# cannot be pulled and left the Docker daemon unable to answer /info):
# 1. every operation, all phases (stateful too, following links from one
#    answer to the next), but those that change the swarm;
# 2. the operations that change one named service or stack, without the
#    stateful phase: their names are then always made up, and the API
#    matches names and ids exactly (no prefix), so they answer 400 or 404.
# Never fuzzed: swarmInit and swarmLeave (forceNewCluster / force would
# rebuild or leave the swarm), setNodeAvailability and deleteNode (a short
# random name could be this node's hostname), deployStack (creates real
# services). The event streams (events, jobEvents) never end by design. All
# of these are tested against the real engine by crates/skep/tests/api_*.rs.
#
# Needs: python3 with venv, PyPI, Docker as a swarm manager, and
#   cargo build -p skep
# Env: SKEP_BIN (default target/debug/skep), SKEP_ARTIFACTS (default
# target/artifacts), SCHEMATHESIS_MAX_EXAMPLES (default 25).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${SKEP_BIN:-target/debug/skep}"
artifacts="${SKEP_ARTIFACTS:-target/artifacts}"
[ -x "$bin" ] || { echo "schemathesis: $bin is missing; cargo build -p skep" >&2; exit 2; }
mkdir -p "$artifacts"

venv=.ci-work/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ] || ! cmp -s tests/api/requirements.txt "$venv/.requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/api/requirements.txt
  cp tests/api/requirements.txt "$venv/.requirements.txt"
fi

work="$(mktemp -d)"
services_before="$(docker service ls -q | sort)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  # Anything the fuzzer managed to create in the swarm goes again.
  for s in $(comm -13 <(echo "$services_before") <(docker service ls -q | sort)); do
    docker service rm "$s" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

admin="schemathesis-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s admin\n' "$admin" >"$work/tokens"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$bin" --store "sqlite:$work/skep.db" controller --api-only --allow-any-path --listen "127.0.0.1:$port" \
  --api-tokens-file "$work/tokens" >"$artifacts/schemathesis-controller.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null

st() {
  "$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/openapi.json" \
    --header "Authorization: Bearer $admin" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
    --request-timeout 20 \
    --generation-deterministic \
    "$@"
}
never=(swarmInit swarmLeave setNodeAvailability deleteNode deployStack events jobEvents)
named=(scaleService setServiceImage deleteService deleteStack)
exclude=()
for op in "${never[@]}" "${named[@]}"; do exclude+=(--exclude-operation-id "$op"); done
include=()
for op in "${named[@]}"; do include+=(--include-operation-id "$op"); done
st "${exclude[@]}" --report junit --report-dir "$artifacts/schemathesis"
st "${include[@]}" --phases examples,coverage,fuzzing --report junit --report-dir "$artifacts/schemathesis-named"
echo "schemathesis: no 5xx and no status/content-type mismatches"
