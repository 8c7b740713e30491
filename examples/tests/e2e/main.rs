//! End-to-end tests on the real programs: `kv-server` processes on
//! loopback with RocksDB data and QUIC with mutual TLS, driven through
//! `kv-cli` and the clerk library.
//!
//! Run with `cargo test -p examples --test e2e`. Integration tests see only
//! their own package's binaries, so this package builds the kv-server and
//! kv-cli sources once more as `e2e-kv-server` and `e2e-kv-cli`; set
//! `KV_E2E_BIN_DIR=target/release` to test other builds of the programs
//! instead (the directory must hold `kv-server` and `kv-cli`).
//!
//! - `cluster`: three nodes; writes through kv-cli and the clerk; the
//!   leader SIGKILLed and restarted; every acknowledged write on every node;
//!   a client of another CA refused.
//! - `local_cluster`: the local-cluster program starts, answers, stops on
//!   Ctrl-C and finds its data again.
//! - `startup`: every bad start-up input gives its one-line message.

mod cluster;
mod local_cluster;
mod replicas;
mod startup;
mod support;
