//! Integration tests of the RocksDB storage. They live in one test binary,
//! because every binary links RocksDB.
//!
//! - `conformance`: raft-core's storage conformance suite, the same cases
//!   the in-memory storage passes.
//! - `crash`: a child process appends and installs snapshots under
//!   SIGKILL; every write it reported durable must be there after each
//!   kill, whole, and the snapshot must be the previous or the next one,
//!   never a mix.
//! - `open_errors`: directories that must be refused, untouched.
//! - `corruption`: damaged records give errors that name them.
//! - `space`: a cluster of real nodes on RocksDB writes for a while; the
//!   log and the data directory stay under bounds set by the snapshot
//!   threshold (`cluster` and `slot_machine` are its harness).

mod child;
mod cluster;
mod conformance;
mod corruption;
mod crash;
mod model;
mod open_errors;
mod slot_machine;
mod space;
mod support;
