//! Integration tests of the RocksDB storage. They live in one test binary,
//! because every binary links RocksDB.
//!
//! - `conformance`: raft-core's storage conformance suite, the same cases
//!   the in-memory storage passes.
//! - `crash`: a child process appends under SIGKILL; every write it reported
//!   durable must be there after each kill, whole.
//! - `open_errors`: directories that must be refused, untouched.
//! - `corruption`: damaged records give errors that name them.

mod child;
mod conformance;
mod corruption;
mod crash;
mod model;
mod open_errors;
mod support;
