//! The log-storage trait that durable backends implement.

use async_trait::async_trait;

use crate::error::StorageError;
use crate::types::{Entry, HardState, LogIndex, Snapshot, SnapshotMeta};

/// Everything a node needs from its storage to restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredState {
    /// The last hard state written.
    pub hard_state: HardState,
    /// The position of the latest snapshot, if one was ever installed.
    pub snapshot: Option<SnapshotMeta>,
    /// Every entry after the snapshot (or from index 1), in index order,
    /// contiguous.
    pub entries: Vec<Entry>,
}

/// One durable write: a new hard state and new entries, together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogWrite {
    /// The hard state to store, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to store, contiguous in index. When the first one's index is
    /// at or below the storage's last index, every stored entry from that
    /// index on is dropped first (a conflicting suffix, Raft §5.3).
    pub entries: Vec<Entry>,
}

impl LogWrite {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none() && self.entries.is_empty()
    }
}

/// Durable storage of a node's Raft log, hard state and latest snapshot.
///
/// The driver owns its storage and calls it from one task, one call at a
/// time, in the order the calls appear here in its life: `load` once at
/// start, then any number of `write`, `install_snapshot`, `entries` and
/// `snapshot` calls.
///
/// **Durability contract.** When a mutating call returns `Ok`, its effect
/// must survive a crash or power loss of the machine (for a disk: synced).
/// Each mutating call is atomic: after a crash, storage holds either all of
/// it or none of it, never a part. An `Err` means the node cannot trust its
/// storage any more: the driver stops the node.
///
/// The conformance suite (`raft_core::testkit::conformance`, feature
/// `testkit`) checks an implementation against this contract.
#[async_trait]
pub trait LogStorage: Send + 'static {
    /// Reads the state to restart from: hard state, latest snapshot position,
    /// and the entries after it. A new, empty storage returns the default.
    async fn load(&mut self) -> Result<StoredState, StorageError>;

    /// Durably and atomically applies `write`: drops stored entries from the
    /// first new entry's index on (when there are any), appends the new
    /// entries, and replaces the hard state when one is given.
    ///
    /// The driver never writes an entry at an index that a snapshot covers,
    /// and never leaves a gap: the first entry's index is at most the last
    /// stored index + 1.
    async fn write(&mut self, write: LogWrite) -> Result<(), StorageError>;

    /// Durably and atomically replaces the stored snapshot with `snapshot`
    /// and drops every entry it covers (index ≤ `snapshot.meta.last_index`).
    /// Entries after it stay when the stored entry at `last_index` has term
    /// `last_term`; otherwise the whole log is dropped, as it conflicts with
    /// the snapshot. The hard state stays as it is.
    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;

    /// Reads the latest snapshot, if any.
    async fn snapshot(&mut self) -> Result<Option<Snapshot>, StorageError>;

    /// Reads the stored entries with index in `low..high`; fewer when the
    /// log ends before `high`. Used by tests and tools, not on the hot path.
    async fn entries(&mut self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>, StorageError>;
}
