#!/usr/bin/env bash
# Installs what is missing, starts the servers the tests need, then runs
# every check and test of the project: formatting, clippy, the generated
# schema, unit, conformance and black-box tests, the API fuzzing
# (schemathesis), the dashboard in headless Chromium, and the end-to-end
# tests on a real Docker Swarm: this machine as a single node, and a swarm
# of three nodes made of nested daemons (tests/swarm/cluster.sh). This is what CI runs
# (.ci/run). Servers run from .ci-work/ (git-ignored) and stop on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export OMP_THREAD_LIMIT=1

work="$PWD/.ci-work"
mkdir -p "$work"
cleanup() {
  scripts/mongo-test-server.sh stop "$work/nx" >/dev/null 2>&1 || true
  scripts/rabbitmq-test-server.sh stop "$work/rabbitmq" >/dev/null 2>&1 || true
  scripts/s3-test-server.sh stop "$work/s3" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# MongoDB wire-protocol stand-in (nx-27017) for the MongoDB store suite.
export NX_VENV="$work/nx/venv"
SKEP_TEST_NX_URI="$(scripts/mongo-test-server.sh start "$work/nx" "${SKEP_TEST_NX_PORT:-27217}")"
export SKEP_TEST_NX_URI

# RabbitMQ (Debian's rabbitmq-server, its own node on loopback ports
# PORT..PORT+12) for the AMQP queue suite.
SKEP_TEST_AMQP_URL="$(scripts/rabbitmq-test-server.sh start "$work/rabbitmq" "${SKEP_TEST_AMQP_PORT:-5800}")"
export SKEP_TEST_AMQP_URL

# The object-storage tests' S3 server: "ENDPOINT ACCESS_KEY SECRET_KEY", then
# the folder its buckets live in.
s3_line="$(scripts/s3-test-server.sh start "$work/s3" "${SKEP_TEST_S3_PORT:-9400}")"
export SKEP_TEST_S3="$s3_line $work/s3/data"

# A single-node swarm and the images, for the swarm runtime suite and the
# end-to-end test (no registry needed: see scripts/build-images.sh).
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi
scripts/build-images.sh
export SKEP_TEST_SWARM=1 SKEP_TEST_IMAGE=skep-base:bookworm

cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# NB: the NSQ tests need an nsqd that no registry ships: they run only where
# SKEP_TEST_NSQD names one (README, "Tests"); say so where they cannot.
if [ -z "${SKEP_TEST_NSQD:-}" ]; then
  echo "NSQ suite did not run: SKEP_TEST_NSQD is not set (no nsqd here; see the README's Tests section)" >&2
fi
cargo test --locked --workspace
# The REST API fuzzed from its OpenAPI document, and the dashboard in a real
# headless browser (screenshots in target/artifacts/).
# NB: --tests resolves features as `cargo test` did (dev-dependencies turn on
# tokio's test-util), so the binaries link from the dependencies already
# built instead of building all of them again: CI ran out of disk once.
cargo build --locked --workspace --bins --tests
tests/api/schemathesis.sh
tests/dashboard/run.sh
tests/swarm/e2e.sh
# A swarm of three nodes (nested daemons) on this machine: placement,
# capacity over nodes, a node lost, a node drained, the controller killed.
tests/swarm/cluster-e2e.sh
# Remote workers from manifests/docker-compose.worker.yml, mounting nothing.
tests/swarm/compose-workers.sh
