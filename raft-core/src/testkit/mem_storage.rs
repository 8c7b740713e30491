//! In-memory log storage that behaves like a disk across simulated crashes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StorageError;
use crate::storage::{LogStorage, LogWrite, StoredState};
use crate::types::{Entry, HardState, LogIndex, Snapshot};

/// What a [`MemStorage`] holds durably.
#[derive(Clone, Debug, Default)]
pub struct MemDisk {
    /// The last hard state written.
    pub hard_state: HardState,
    /// The latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// The entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// How many mutating calls completed; tests use it to see progress.
    pub writes: u64,
}

impl MemDisk {
    fn first_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(0, |s| s.meta.last_index) + 1
    }

    fn last_index(&self) -> LogIndex {
        self.entries
            .last()
            .map_or(self.first_index() - 1, |entry| entry.index)
    }
}

/// In-memory [`LogStorage`]. Clones share one "disk", so a test can keep a
/// clone, drop the node (a crash) and start a new node on the same disk.
///
/// A write becomes durable only when its call returns: with a write delay
/// set, a node aborted during the delay loses that write, as a process
/// killed during `fsync` would.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    disk: Arc<Mutex<MemDisk>>,
    /// Nanoseconds a write takes; shared by clones.
    write_delay_nanos: Arc<AtomicU64>,
}

impl MemStorage {
    /// An empty storage whose writes are durable at once.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// An empty storage whose writes take `write_delay` (of tokio time) to
    /// become durable.
    pub fn with_write_delay(write_delay: Duration) -> MemStorage {
        let storage = MemStorage::default();
        storage.set_write_delay(write_delay);
        storage
    }

    /// Changes how long writes take, for this storage and its clones.
    pub fn set_write_delay(&self, write_delay: Duration) {
        let nanos = u64::try_from(write_delay.as_nanos()).unwrap_or(u64::MAX);
        self.write_delay_nanos.store(nanos, Ordering::Relaxed);
    }

    /// Locks and returns the durable contents, for inspection by tests.
    pub fn disk(&self) -> MutexGuard<'_, MemDisk> {
        self.disk
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    async fn delay(&self) {
        let nanos = self.write_delay_nanos.load(Ordering::Relaxed);
        if nanos > 0 {
            tokio::time::sleep(Duration::from_nanos(nanos)).await;
        }
    }
}

fn contract_violation(operation: &str, text: String) -> StorageError {
    StorageError::new(operation, "memory", text)
}

#[async_trait]
impl LogStorage for MemStorage {
    async fn load(&mut self) -> Result<StoredState, StorageError> {
        let disk = self.disk();
        Ok(StoredState {
            hard_state: disk.hard_state,
            snapshot: disk.snapshot.as_ref().map(|s| s.meta),
            entries: disk.entries.clone(),
        })
    }

    async fn write(&mut self, write: LogWrite) -> Result<(), StorageError> {
        self.delay().await;
        let mut disk = self.disk();
        if let Some(first) = write.entries.first() {
            if first.index < disk.first_index() || first.index > disk.last_index() + 1 {
                return Err(contract_violation(
                    "append entries",
                    format!(
                        "entry {} outside {}..={}",
                        first.index,
                        disk.first_index(),
                        disk.last_index() + 1
                    ),
                ));
            }
            for pair in write.entries.windows(2) {
                if pair[1].index != pair[0].index + 1 {
                    return Err(contract_violation(
                        "append entries",
                        "entries are not contiguous".into(),
                    ));
                }
            }
            let keep = (first.index - disk.first_index()) as usize;
            disk.entries.truncate(keep);
            disk.entries.extend(write.entries);
        }
        if let Some(hard_state) = write.hard_state {
            disk.hard_state = hard_state;
        }
        disk.writes += 1;
        Ok(())
    }

    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.delay().await;
        let mut disk = self.disk();
        let meta = snapshot.meta;
        let first = disk.first_index();
        let matches = meta.last_index >= first
            && meta.last_index <= disk.last_index()
            && disk.entries[(meta.last_index - first) as usize].term == meta.last_term;
        if matches {
            let drop = (meta.last_index + 1 - first) as usize;
            disk.entries.drain(..drop);
        } else {
            disk.entries.clear();
        }
        disk.snapshot = Some(snapshot.clone());
        disk.writes += 1;
        Ok(())
    }

    async fn snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.disk().snapshot.clone())
    }

    async fn entries(&mut self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>, StorageError> {
        let disk = self.disk();
        Ok(disk
            .entries
            .iter()
            .filter(|entry| entry.index >= low && entry.index < high)
            .cloned()
            .collect())
    }
}
