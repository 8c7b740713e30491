#!/usr/bin/env bash
# The benchmark: the five kvbench/1 workloads (shared/bench/README.md) on a
# fresh local three-node cluster per run (QUIC, RocksDB data on disk), then
# medians and, when given etcd's results, the comparison table.
#
#   bash scripts/bench.sh                          # 3 runs, full length
#   RUNS=1 SCALE=0.1 bash scripts/bench.sh         # quick check
#   ETCD_RESULTS=/tmp/kvbench/results/etcd-XXXX bash scripts/bench.sh
#
# Environment: RUNS [3], SCALE [1.0], WORKLOADS [all five], BASE
# [/tmp/raft-kv-bench] (cluster data: must be a real disk), BASE_PORT [27101],
# RESULTS_DIR [$BASE/results/raft-kv-<UTC stamp>], SHARED [../shared],
# ETCD_RESULTS [none].
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${RUNS:-3}
SCALE=${SCALE:-1.0}
WORKLOADS=${WORKLOADS:-put-1,put-64,get-64,mixed-64,append-64}
BASE=${BASE:-/tmp/raft-kv-bench}
BASE_PORT=${BASE_PORT:-27101}
STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS_DIR=${RESULTS_DIR:-$BASE/results/raft-kv-$STAMP}
SHARED=${SHARED:-../shared}
log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }

[[ $RUNS =~ ^[1-9][0-9]?$ ]] || { log "RUNS must be 1..99"; exit 2; }
bash scripts/install-deps.sh
cargo build --release --locked -q \
  -p kv-service --bin kv-server -p kv-clerk --bin kv-cli \
  -p examples --bin local-cluster --bin kv-bench
bin=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$RESULTS_DIR"
if [[ $(stat -f -c %T "$BASE" 2>/dev/null || echo unknown) == tmpfs ]]; then
  log "warning: $BASE is on tmpfs; the rules ask for a real disk"
fi

runner=""
stop_cluster() {
  if [[ -n $runner ]] && kill -0 "$runner" 2>/dev/null; then
    kill -INT "$runner" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$runner" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$runner" 2>/dev/null || true
  fi
  runner=""
}
trap stop_cluster EXIT

for run in $(seq 1 "$RUNS"); do
  dir=$BASE/run$run
  rm -rf "$dir"
  log "run $run of $RUNS: starting a fresh cluster in $dir"
  "$bin/local-cluster" --dir "$dir" --base-port "$BASE_PORT" >"$BASE/run$run.log" 2>&1 &
  runner=$!
  for _ in $(seq 1 600); do
    grep -q "env.sh" "$BASE/run$run.log" 2>/dev/null && break
    kill -0 "$runner" 2>/dev/null || { log "the cluster failed to start:"; cat "$BASE/run$run.log" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "env.sh" "$BASE/run$run.log" || { log "the cluster did not become ready"; exit 1; }
  # shellcheck disable=SC1091
  source "$dir/env.sh"
  pids=$(cat "$dir"/node-*/pid | paste -sd, -)
  "$bin/kv-bench" --label "raft-kv-run$run" --scale "$SCALE" --workloads "$WORKLOADS" \
    --watch-pids "$pids" --json-out "$RESULTS_DIR/results.jsonl" >/dev/null
  stop_cluster
done

log "results in $RESULTS_DIR"
if [[ -f $SHARED/bench/compare.py ]]; then
  python3 "$SHARED/bench/compare.py" --check "$RESULTS_DIR"
  if [[ -n ${ETCD_RESULTS:-} ]]; then
    python3 "$SHARED/bench/compare.py" "$ETCD_RESULTS" "$RESULTS_DIR" --names etcd,raft-kv
  fi
else
  log "no $SHARED/bench/compare.py: skipping the format check and the comparison"
fi
