#!/usr/bin/env bash
# The fault-injection run (README, "Fault runs"): three real kv-server processes
# on 127.0.0.1, concurrent recorded clients, seeded faults (SIGKILL, SIGSTOP,
# all nodes killed, and, as root, network partitions in a private network
# namespace), then a linearizability check of the recorded history.
#
#   bash scripts/fault-run.sh                          # 60 s, 5 clients, a fresh seed
#   bash scripts/fault-run.sh --seed 42                # replay a schedule
#   bash scripts/fault-run.sh --duration-s 300 --faults kill-leader,partition-leader
#
# It installs the Debian packages the build needs when they are missing
# (and, as root, nftables for the partitions), builds kv-server and
# fault-run in release mode and runs fault-run with the arguments given
# (see --help). The exit status is fault-run's: 0 linearizable, 1 not
# linearizable, 2 bad command line, 3 check undecided, 4 run failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null; then
  echo "fault-run.sh: cargo not found; install Rust from https://rustup.rs and run this again" >&2
  exit 1
fi
bash scripts/install-deps.sh
if [[ $(id -u) -eq 0 ]] && ! command -v nft >/dev/null; then
  echo "installing nftables for the partition faults" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables >/dev/null; then
    echo "fault-run.sh: nftables not installed; the run goes on without partitions" >&2
  fi
fi
cargo build --release --locked -q \
  -p kv-service --bin kv-server \
  -p examples --bin fault-run
bin_dir="${CARGO_TARGET_DIR:-target}/release"
exec "$bin_dir/fault-run" "$@"
