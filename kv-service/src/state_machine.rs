//! The key-value state machine that raft-core drives.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use bytes::Bytes;
use kv_clerk::protocol::Response;
use raft_core::{LogIndex, SnapshotMeta, StateMachine, StateMachineError};
use tracing::info;

use crate::sessions::SessionConfig;
use crate::store::Store;

/// The replicated key-value map and client sessions, as a
/// [`raft_core::StateMachine`].
///
/// Clones share one state: hand one clone to the Raft node and keep another
/// to read (after a [`raft_core::RaftNode::read_index`] barrier). Applying
/// takes the write lock for one command; reads take the read lock for one
/// lookup, so neither waits long.
#[derive(Clone, Debug)]
pub struct KvStateMachine {
    store: Arc<RwLock<Store>>,
    config: SessionConfig,
}

impl KvStateMachine {
    /// An empty store with the given session rules, which every replica of
    /// the cluster must share.
    pub fn new(config: SessionConfig) -> KvStateMachine {
        KvStateMachine {
            store: Arc::default(),
            config,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.store
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The value of `key` in the applied state, `None` when missing. This
    /// is a local read: linearizable only after a ReadIndex barrier.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.read().get(key)
    }

    /// Every key and value of the applied state, in key order (for tests
    /// that compare replicas).
    pub fn entries(&self) -> Vec<(Bytes, Bytes)> {
        let store = self.read();
        store
            .map
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// How many client sessions live.
    pub fn session_count(&self) -> usize {
        self.read().sessions.len()
    }

    /// The log clock: the highest leader clock reading applied, in
    /// milliseconds.
    pub fn clock_ms(&self) -> u64 {
        self.read().clock_ms
    }

    /// The session rules.
    pub fn session_config(&self) -> SessionConfig {
        self.config
    }
}

#[async_trait]
impl StateMachine for KvStateMachine {
    type Response = Response;

    async fn apply(&mut self, index: LogIndex, command: Bytes) -> Response {
        let config = self.config;
        self.write().apply(index, &command, &config)
    }

    async fn snapshot(&mut self, meta: SnapshotMeta) -> Result<Bytes, StateMachineError> {
        let data = self.read().to_snapshot();
        info!(
            index = meta.last_index,
            bytes = data.len(),
            "snapshot taken"
        );
        Ok(data)
    }

    async fn restore(&mut self, meta: SnapshotMeta, data: Bytes) -> Result<(), StateMachineError> {
        let store = Store::from_snapshot(&data)
            .map_err(|error| StateMachineError::new("restore snapshot", error))?;
        info!(
            index = meta.last_index,
            keys = store.map.len(),
            "snapshot restored"
        );
        *self.write() = store;
        Ok(())
    }
}
