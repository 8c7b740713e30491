#!/usr/bin/env bash
# Starts a local three-node cluster on 127.0.0.1 (QUIC, RocksDB data under
# ./local-cluster/) and keeps it running until Ctrl-C, which stops all three
# nodes cleanly. Running it again finds the data where it was.
#
# It installs the Debian packages the build needs when they are missing,
# builds kv-server, kv-cli and local-cluster in release mode, and runs
# local-cluster. Arguments go to local-cluster (--dir, --base-port, --nodes;
# see --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null; then
  echo "cluster.sh: cargo not found; install Rust from https://rustup.rs and run this again" >&2
  exit 1
fi
bash scripts/install-deps.sh
cargo build --release --locked \
  -p kv-service --bin kv-server \
  -p kv-clerk --bin kv-cli \
  -p examples --bin local-cluster
bin_dir="${CARGO_TARGET_DIR:-target}/release"
exec "$bin_dir/local-cluster" "$@"
