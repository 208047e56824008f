#!/usr/bin/env bash
# Runs Palisade's checks and whole test suite, installing what is missing first (see
# deploy/scripts/setup.sh). Tests start their own tansu, ClickHouse and Chromium on loopback.
# This is the command CI runs (.ci/run) and the one README.md gives.
set -euo pipefail
cd "$(dirname "$0")/.."

# The build and the test servers' data need about 5 GB; a full disk shows up as a build error
# far from its cause, so say what is free first.
echo "== free disk space where the build goes"
df -h . | tail -n 1

# A clean CI checkout gains nothing from incremental compilation, which would add about 1.3 GB.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi

PALISADE_TANSU="$(deploy/scripts/setup.sh | tail -n 1)"
export PALISADE_TANSU
cargo_deny="$(deploy/scripts/setup.sh cargo-deny | tail -n 1)"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== supply chain (cargo deny: licences, duplicate versions, sources, advisories)"
deploy/scripts/deny.sh "$cargo_deny"
echo "== deployment artefacts (compose, Dockerfile, Kubernetes, Prometheus, Grafana)"
deploy/scripts/validate.sh
echo "== cargo test"
cargo test --workspace --locked "$@"
echo "== benchmarks build and run once (criterion's test mode; figures come from cargo bench)"
cargo test -p benches --benches --locked
