#!/usr/bin/env bash
# Run every test: unit tests next to the code and end-to-end tests under tests/.
# Installs what the tests need first (scripts/setup.sh). Must run as root: some tests
# use unshare/mounts as oracles and drop to an unprivileged user to prove rootlessness.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked --all-targets
cargo test --locked --no-fail-fast -- --test-threads="$(nproc)"
