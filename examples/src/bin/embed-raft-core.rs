//! Embeds `raft-core` with a storage and a transport of its own, the way a
//! user who depends on `raft-core` alone would.
//!
//! Run it with `cargo run -p examples --bin embed-raft-core`. It starts three
//! nodes in one process, connected by in-process channels, elects a leader,
//! replicates a few commands to a counter, reads linearizably, hands
//! leadership over, and prints what each step did. Watch for the final line:
//! every node holds the same total.

#![allow(clippy::print_stdout)] // a command-line program: its output is the point

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{
    Config, Entry, InboxSender, LogIndex, LogStorage, LogWrite, Message, NodeId, RaftNode, Role,
    Snapshot, SnapshotMeta, StateMachine, StateMachineError, StorageError, StoredState, Transport,
};

/// Storage that keeps everything in a vector. A real one must make each
/// call durable before returning (see `raft-storage` for RocksDB); this one
/// is "durable" only for the life of the process.
#[derive(Default)]
struct VecStorage {
    state: StoredState,
    snapshot: Option<Snapshot>,
}

#[async_trait]
impl LogStorage for VecStorage {
    async fn load(&mut self) -> Result<StoredState, StorageError> {
        Ok(self.state.clone())
    }

    async fn write(&mut self, write: LogWrite) -> Result<(), StorageError> {
        if let Some(first) = write.entries.first() {
            let offset = self.state.snapshot.map_or(0, |s| s.last_index) + 1;
            self.state.entries.truncate((first.index - offset) as usize);
            self.state.entries.extend(write.entries);
        }
        if let Some(hard_state) = write.hard_state {
            self.state.hard_state = hard_state;
        }
        Ok(())
    }

    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let meta = snapshot.meta;
        let keep_from = self
            .state
            .entries
            .iter()
            .position(|e| e.index == meta.last_index && e.term == meta.last_term);
        match keep_from {
            Some(position) => drop(self.state.entries.drain(..=position)),
            None => self.state.entries.clear(),
        }
        self.state.snapshot = Some(meta);
        self.snapshot = Some(snapshot.clone());
        Ok(())
    }

    async fn snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.snapshot.clone())
    }

    async fn entries(&mut self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>, StorageError> {
        let range = low..high;
        Ok(self
            .state
            .entries
            .iter()
            .filter(|e| range.contains(&e.index))
            .cloned()
            .collect())
    }
}

/// A counter: each command is a decimal number to add. Clones share the
/// total so that `main` can read it.
#[derive(Clone, Default)]
struct Counter {
    total: Arc<Mutex<i64>>,
}

#[async_trait]
impl StateMachine for Counter {
    type Response = i64;

    async fn apply(&mut self, _index: LogIndex, command: Bytes) -> i64 {
        let amount: i64 = std::str::from_utf8(&command)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(0);
        let mut total = self.total.lock().unwrap();
        *total += amount;
        *total
    }

    async fn snapshot(&mut self, _meta: SnapshotMeta) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::from(self.total.lock().unwrap().to_string()))
    }

    async fn restore(&mut self, _meta: SnapshotMeta, data: Bytes) -> Result<(), StateMachineError> {
        let text =
            std::str::from_utf8(&data).map_err(|e| StateMachineError::new("restore counter", e))?;
        *self.total.lock().unwrap() = text
            .parse()
            .map_err(|e| StateMachineError::new("restore counter", e))?;
        Ok(())
    }
}

/// A transport over in-process channels: every node's inbox, by id.
#[derive(Clone, Default)]
struct ChannelNetwork {
    inboxes: Arc<Mutex<BTreeMap<NodeId, InboxSender>>>,
}

impl Transport for ChannelNetwork {
    fn send(&self, message: Message) {
        // Never blocks: a full inbox drops the message, as a real network may.
        if let Some(inbox) = self.inboxes.lock().unwrap().get(&message.to) {
            inbox.deliver(message);
        }
    }
}

async fn leader_of(nodes: &BTreeMap<NodeId, RaftNode<i64>>) -> anyhow::Result<NodeId> {
    for _ in 0..500 {
        if let Some(node) = nodes.values().find(|n| n.status().role == Role::Leader) {
            return Ok(node.id());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("no leader within 5 s")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let voters = vec![1, 2, 3];
    let network = ChannelNetwork::default();
    let mut nodes = BTreeMap::new();
    let mut counters = BTreeMap::new();
    for &id in &voters {
        let (inbox_sender, inbox) = raft_core::inbox(1024);
        network.inboxes.lock().unwrap().insert(id, inbox_sender);
        let counter = Counter::default();
        counters.insert(id, counter.clone());
        let config = Config::new(id, voters.clone());
        let node = RaftNode::start(
            config,
            VecStorage::default(),
            network.clone(),
            counter,
            inbox,
        )
        .await
        .with_context(|| format!("starting node {id}"))?;
        nodes.insert(id, node);
    }

    let leader = leader_of(&nodes).await?;
    println!("node {leader} leads");
    for amount in [5, 7, 30] {
        let total = nodes[&leader]
            .propose(Bytes::from(amount.to_string()))
            .await?;
        println!("added {amount}: total {total}");
    }
    let index = nodes[&leader].read_index().await?;
    println!(
        "linearizable read at index {index}: total {}",
        counters[&leader].total.lock().unwrap()
    );

    let target = voters
        .iter()
        .copied()
        .find(|id| *id != leader)
        .expect("three voters");
    nodes[&leader].transfer_leadership(target).await?;
    let new_leader = leader_of(&nodes).await?;
    println!("leadership handed to node {new_leader}");
    let total = nodes[&new_leader].propose(Bytes::from("-2")).await?;
    println!("added -2: total {total}");

    // Followers apply shortly after the leader; wait for them to agree.
    for _ in 0..500 {
        let totals: Vec<i64> = counters
            .values()
            .map(|c| *c.total.lock().unwrap())
            .collect();
        if totals.iter().all(|t| *t == 40) {
            println!("all nodes agree: total {}", totals[0]);
            for node in nodes.values() {
                node.shutdown().await;
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("nodes did not converge on the total")
}
