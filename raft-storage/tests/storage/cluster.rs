//! A cluster of real `raft_core::RaftNode`s on `RocksStorage` in one
//! process, for the space test: an in-process channel transport, the
//! [`SlotMachine`], and a storage wrapper that counts the entries the
//! database really holds by reading them back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use raft_core::{
    inbox, Config, Entry, InboxSender, LogIndex, LogStorage, LogWrite, Message, NodeId, RaftNode,
    Role, Snapshot, StorageError, StoredState, Transport,
};
use raft_storage::{OpenOptions, RocksStorage};

use crate::slot_machine::SlotMachine;

/// Capacity of each node's inbox.
const INBOX_CAPACITY: usize = 4096;

/// Besides before and after each snapshot, the wrapper counts the stored
/// entries after every this many writes.
const COUNT_EVERY_WRITES: u64 = 32;

/// Delivers each message straight into the receiver's inbox. Never blocks:
/// a full inbox drops the message, which Raft recovers from.
struct ChannelTransport {
    inboxes: Arc<BTreeMap<NodeId, InboxSender>>,
}

impl Transport for ChannelTransport {
    fn send(&self, message: Message) {
        if let Some(inbox) = self.inboxes.get(&message.to) {
            inbox.deliver(message);
        }
    }
}

/// What a [`CountingStorage`] saw of its log, read back from RocksDB.
#[derive(Clone, Debug, Default)]
pub struct EntryCounts {
    /// The most entries the log held at any count.
    pub stored_max: usize,
    /// How many times the log was counted.
    pub counts: u64,
    /// Snapshots installed (taken locally or received from the leader).
    pub snapshots_installed: u64,
    /// The largest snapshot's data, in bytes.
    pub snapshot_bytes_max: usize,
    /// Broken expectations, reported by the test rather than by a panic in
    /// the node's task.
    pub violations: Vec<String>,
}

/// Forwards to a [`RocksStorage`] and counts its entries by reading all of
/// them back (`entries(0, MAX)`): right before each snapshot install (the
/// log only grows between installs, so that is its peak), right after it,
/// and every [`COUNT_EVERY_WRITES`] writes.
struct CountingStorage {
    inner: RocksStorage,
    counts: Arc<Mutex<EntryCounts>>,
    writes: u64,
}

impl CountingStorage {
    fn counts(&self) -> MutexGuard<'_, EntryCounts> {
        lock(&self.counts)
    }

    async fn stored_entries(&mut self) -> Result<Vec<Entry>, StorageError> {
        let entries = self.inner.entries(0, LogIndex::MAX).await?;
        let mut counts = self.counts();
        counts.counts += 1;
        counts.stored_max = counts.stored_max.max(entries.len());
        Ok(entries)
    }
}

#[async_trait]
impl LogStorage for CountingStorage {
    async fn load(&mut self) -> Result<StoredState, StorageError> {
        self.inner.load().await
    }

    async fn write(&mut self, write: LogWrite) -> Result<(), StorageError> {
        self.inner.write(write).await?;
        self.writes += 1;
        if self.writes % COUNT_EVERY_WRITES == 0 {
            self.stored_entries().await?;
        }
        Ok(())
    }

    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.stored_entries().await?;
        self.inner.install_snapshot(snapshot).await?;
        let after = self.stored_entries().await?;

        let last_index = snapshot.meta.last_index;
        let mut counts = self.counts();
        counts.snapshots_installed += 1;
        counts.snapshot_bytes_max = counts.snapshot_bytes_max.max(snapshot.data.len());
        if let Some(covered) = after.iter().find(|entry| entry.index <= last_index) {
            let violation = format!(
                "entry {} is still stored after a snapshot at {last_index}",
                covered.index
            );
            counts.violations.push(violation);
        }
        Ok(())
    }

    async fn snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.inner.snapshot().await
    }

    async fn entries(&mut self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>, StorageError> {
        self.inner.entries(low, high).await
    }
}

/// One node of the cluster and what the test watches of it.
pub struct ClusterNode {
    pub id: NodeId,
    pub node: RaftNode<()>,
    pub machine: SlotMachine,
    pub counts: Arc<Mutex<EntryCounts>>,
    pub path: PathBuf,
}

impl ClusterNode {
    pub fn counts(&self) -> EntryCounts {
        lock(&self.counts).clone()
    }
}

/// Nodes `1..=size`, each in its own data directory under `root`.
pub struct RocksCluster {
    pub nodes: Vec<ClusterNode>,
}

impl RocksCluster {
    /// Creates the data directories and starts the nodes with the
    /// configuration `configure` makes for each id.
    pub async fn start(
        root: &Path,
        options: OpenOptions,
        size: u64,
        configure: impl Fn(NodeId, Vec<NodeId>) -> Config,
    ) -> RocksCluster {
        let ids: Vec<NodeId> = (1..=size).collect();
        let mut senders = BTreeMap::new();
        let mut inboxes = BTreeMap::new();
        for &id in &ids {
            let (sender, receiver) = inbox(INBOX_CAPACITY);
            senders.insert(id, sender);
            inboxes.insert(id, receiver);
        }
        let senders = Arc::new(senders);

        let mut nodes = Vec::new();
        for &id in &ids {
            let path = root.join(format!("node-{id}"));
            let open_path = path.clone();
            let open_options = options.clone().create_if_missing(true);
            // Opening blocks on file I/O for a few milliseconds.
            let storage =
                tokio::task::spawn_blocking(move || RocksStorage::open(&open_path, open_options))
                    .await
                    .expect("open task")
                    .unwrap_or_else(|error| panic!("open node {id}: {error}"));
            let counts = Arc::new(Mutex::new(EntryCounts::default()));
            let storage = CountingStorage {
                inner: storage,
                counts: Arc::clone(&counts),
                writes: 0,
            };
            let transport = ChannelTransport {
                inboxes: Arc::clone(&senders),
            };
            let machine = SlotMachine::new();
            let inbox = inboxes.remove(&id).expect("an inbox per node");
            let config = configure(id, ids.clone());
            let node = RaftNode::start(config, storage, transport, machine.clone(), inbox)
                .await
                .unwrap_or_else(|error| panic!("start node {id}: {error}"));
            nodes.push(ClusterNode {
                id,
                node,
                machine,
                counts,
                path,
            });
        }
        RocksCluster { nodes }
    }

    /// The node that leads in the highest term, if any.
    pub fn leader(&self) -> Option<&RaftNode<()>> {
        self.nodes
            .iter()
            .map(|member| (member.node.status(), &member.node))
            .filter(|(status, _)| status.role == Role::Leader)
            .max_by_key(|(status, _)| status.term)
            .map(|(_, node)| node)
    }

    /// Waits until every node has applied at least `index`; false when
    /// `deadline` passes first.
    pub async fn wait_applied(&self, index: LogIndex, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            let behind = self
                .nodes
                .iter()
                .any(|member| member.node.status().applied < index);
            if !behind {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// Stops a node that died of a storage or state-machine error loudly.
    pub fn assert_no_fatal_error(&self) {
        for member in &self.nodes {
            if let Some(error) = member.node.fatal_error() {
                panic!("node {} stopped: {error}", member.id);
            }
        }
    }

    pub async fn shutdown(&self) {
        for member in &self.nodes {
            member.node.shutdown().await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
