#!/usr/bin/env bash
# The dashboard's real-browser test: a controller, a job, a swarm service
# and headless Chromium driven by Selenium (tests/dashboard/test_dashboard.py).
#
# Needs: Debian bookworm (apt for chromium, chromium-driver, python3-venv
# when missing), Docker as a swarm manager with image skep-base:bookworm,
# PyPI for selenium, and the debug binaries:
#   cargo build -p skep -p skep-testkit
# Env: SKEP_BIN (default target/debug/skep), SKEP_TESTKIT_BIN (default
# target/debug/skep-testkit), SKEP_ARTIFACTS (default target/artifacts).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  echo "dashboard test: installing ${missing[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  # NB: another job on the machine may hold the dpkg lock for a while.
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
fi

venv=.ci-work/dashboard-venv
stamp="$venv/.requirements.txt"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! cmp -s tests/dashboard/requirements.txt "$stamp"; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/dashboard/requirements.txt
  cp tests/dashboard/requirements.txt "$stamp"
fi

export SKEP_BIN="${SKEP_BIN:-target/debug/skep}"
export SKEP_TESTKIT_BIN="${SKEP_TESTKIT_BIN:-target/debug/skep-testkit}"
for bin in "$SKEP_BIN" "$SKEP_TESTKIT_BIN"; do
  if [ ! -x "$bin" ]; then
    echo "dashboard test: $bin is missing; build it with: cargo build -p skep -p skep-testkit" >&2
    exit 2
  fi
done

exec "$venv/bin/python" tests/dashboard/test_dashboard.py "$@"
