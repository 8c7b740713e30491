#!/usr/bin/env bash
# The soak: the randomized raft-core simulation on many seeds (default
# 20,000), in release mode. Usage: bash scripts/soak.sh [SEEDS]
# A failure prints its seed; replay it with RAFT_SEED=<seed> (same command).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seeds=${1:-20000}
bash scripts/install-deps.sh
RAFT_SEEDS=$seeds cargo test --release -p raft-core --test t50_random \
  randomized_faults_never_break_safety_or_lose_acknowledged_commands -- --nocapture
