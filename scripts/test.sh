#!/usr/bin/env bash
# The test command: installs what is missing, then runs formatting, lints,
# docs and every test of the workspace. Long soak and benchmark runs are
# separate commands (see README).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
start=$(date +%s)
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
cargo test --workspace --locked
echo "test.sh finished in $(( $(date +%s) - start )) s"
