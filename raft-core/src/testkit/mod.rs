//! Tools to test Raft backends and applications: in-memory storage, a
//! simulated network on virtual time, a cluster harness with an invariant
//! checker, and the storage conformance suite. Enabled by the `testkit`
//! feature.

pub mod conformance;
mod mem_storage;

pub use mem_storage::{MemDisk, MemStorage};
