#!/usr/bin/env bash
# The project's test command: installs what the tests need (idempotent), then runs lint and
# every test — unit, end-to-end packaging, bad input, kill/restart, real players.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast -- --test-threads="${ABR_TEST_THREADS:-4}"
