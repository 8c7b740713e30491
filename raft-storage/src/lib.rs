//! Durable log storage for `raft-core`, in RocksDB.
//!
//! [`RocksStorage`] implements [`raft_core::LogStorage`]: it keeps a node's
//! Raft log, hard state (term, vote, commit) and latest snapshot in a
//! RocksDB database, and returns from a mutating call only once its data is
//! synced to disk. It passes the same conformance suite
//! (`raft_core::testkit::conformance`) as raft-core's in-memory storage, so
//! the two are interchangeable.
//!
//! - [`RocksStorage::open`] opens a data directory, creating it on request
//!   ([`OpenOptions::create_if_missing`]), and refuses, with an [`Error`]
//!   that names the path, one that is missing, unwritable, locked, foreign,
//!   damaged, or of another [`FORMAT_VERSION`].
//! - Each [`raft_core::LogWrite`] is one synced RocksDB write batch: its
//!   entries share one sync (group commit), and truncating a conflicting
//!   suffix happens in the same atomic batch. Installing a snapshot and
//!   dropping the entries it covers is one atomic batch too.
//! - Records carry a CRC-32; a damaged one is reported as
//!   [`Error::Corrupted`] with its index, never a panic.
//! - Space is bounded by the snapshot threshold: after a snapshot install
//!   the storage has RocksDB flush its memtables (in the background), so
//!   the WAL files the snapshot made dead are deleted, and the table files
//!   hold only the live log. [`OpenOptions`] sizes the memtables and caps
//!   the WAL for when snapshots are off. The README's "Snapshots and
//!   space" gives the bounds and the measured figures.
//!
//! # Usage
//!
//! ```
//! use raft_core::{Entry, EntryPayload, HardState, LogStorage, LogWrite};
//! use raft_storage::{OpenOptions, RocksStorage};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let directory = tempfile::tempdir()?;
//! # let data_path = directory.path().join("node-1");
//! // First start of the node: create the directory.
//! let options = OpenOptions::new().create_if_missing(true);
//! let mut storage = RocksStorage::open(&data_path, options)?;
//!
//! let write = LogWrite {
//!     hard_state: Some(HardState { term: 1, vote: Some(1), commit: 0 }),
//!     entries: vec![Entry { term: 1, index: 1, payload: EntryPayload::Blank }],
//! };
//! storage.write(write).await?; // synced when this returns
//! drop(storage);
//!
//! // A restart: open the existing directory only.
//! let mut storage = RocksStorage::open(&data_path, OpenOptions::new())?;
//! let state = storage.load().await?;
//! assert_eq!(state.hard_state.vote, Some(1));
//! assert_eq!(state.entries.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! The layout on disk is described in the crate's README and in the
//! `layout` module's source.
#![deny(missing_docs)]

mod error;
mod layout;
mod open;
mod options;
mod rocks_storage;
mod store;

pub use error::Error;
pub use layout::FORMAT_VERSION;
pub use options::{
    OpenOptions, FLUSH_AFTER_BYTES_MIN, MEMTABLE_BYTES_MAX_DEFAULT, MEMTABLE_BYTES_MAX_MIN,
    WAL_BYTES_MAX_DEFAULT,
};
pub use rocks_storage::RocksStorage;
