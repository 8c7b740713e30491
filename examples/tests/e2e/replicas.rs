//! Reads a stopped node's data directory: its snapshot and log, replayed
//! through the key-value state machine, give the map that node holds.
//!
//! This is how the end-to-end test checks "every acknowledged write on
//! every node": reads through the service are served by the leader alone,
//! so to see what each node holds, the test stops the nodes cleanly and
//! replays each one's durable log, the same way the node itself would on
//! its next start.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use kv_service::{KvStateMachine, SessionConfig};
use raft_core::{EntryPayload, LogStorage, StateMachine};
use raft_storage::{OpenOptions, RocksStorage};

/// What one node's data directory holds, replayed.
pub struct Replica {
    /// The key-value map after every entry of the log.
    pub map: BTreeMap<Bytes, Bytes>,
    /// The last log index.
    pub last_index: u64,
    /// The index the stored snapshot covers (0 without one).
    pub snapshot_index: u64,
}

/// Replays the snapshot and every entry of the log in `data_dir` (the node
/// must be stopped: RocksDB allows one process at a time).
///
/// Every entry is applied, committed or not: the caller compares the
/// result with the writes it knows were acknowledged, and a node that
/// holds an entry that never committed shows as a difference.
pub async fn replay(data_dir: &Path) -> Replica {
    let mut storage = RocksStorage::open(data_dir, OpenOptions::new())
        .unwrap_or_else(|error| panic!("open {}: {error}", data_dir.display()));
    let stored = storage.load().await.expect("load the log");
    let mut machine = KvStateMachine::new(SessionConfig::default());
    let mut last_index = 0;
    let mut snapshot_index = 0;
    if stored.snapshot.is_some() {
        let snapshot = storage
            .snapshot()
            .await
            .expect("read the snapshot")
            .expect("a snapshot is stored");
        last_index = snapshot.meta.last_index;
        snapshot_index = last_index;
        machine
            .restore(snapshot.meta, snapshot.data.clone())
            .await
            .expect("restore the snapshot");
    }
    for entry in stored.entries {
        last_index = entry.index;
        if let EntryPayload::Command(command) = entry.payload {
            let _ = machine.apply(entry.index, command).await;
        }
    }
    Replica {
        map: machine.entries().into_iter().collect(),
        last_index,
        snapshot_index,
    }
}
