#!/usr/bin/env bash
# The test command: brings up RabbitMQ and Redis if needed, builds the binaries the black-box tests
# drive, checks formatting and lints, and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# A test run builds once from scratch (CI's clean clone): incremental caches would only fill the disk.
export CARGO_INCREMENTAL=0
scripts/services.sh
scripts/deploy-tools.sh   # promtool, yamllint, kubernetes-validate for tests/tests/deploy.rs
cargo fmt --all --check
cargo build --workspace --bins
cargo clippy --workspace --all-targets --quiet -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --profile ci
  cargo test --workspace --doc --quiet
else
  cargo test --workspace
fi
