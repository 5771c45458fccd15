#!/usr/bin/env bash
# Installs what is missing, then runs every check and test of the project:
# formatting, clippy, the generated schema, unit, conformance and
# black-box tests. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export OMP_THREAD_LIMIT=1

cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo test --locked --workspace
