//! Simulation tests of the whole service and clerk: real Raft nodes and key
//! value servers on a simulated network and virtual time, clients that
//! record histories, and the linearizability checker on every history.
//!
//! `cargo test -p kv-service --test sim` runs a few seeds per scenario;
//! `KV_SIM_SEEDS=200` runs more, `KV_SEED=17` replays one, and
//! `KV_HISTORY_DIR=/tmp/h` keeps every history (see harness.rs).

mod harness;
mod t10_scenarios;
mod t20_exactly_once;
mod t30_server;
mod t40_latency;
