//! Helpers shared by the scenario tests: the lab-style `one` agreement
//! probe and small waits, all in virtual time.

#![allow(dead_code)]

use std::time::Duration;

use std::collections::BTreeSet;

use bytes::Bytes;
use raft_core::testkit::{LogMachine, SimCluster, SimOptions};
use raft_core::{LogIndex, NodeId, Role};
use tokio::time::{sleep, timeout, Instant};

pub type Cluster = SimCluster<LogMachine>;

pub async fn start(seed: u64, nodes: usize) -> Cluster {
    SimCluster::start(SimOptions::new(seed, nodes), |_| LogMachine::new()).await
}

pub async fn start_with(options: SimOptions) -> Cluster {
    SimCluster::start(options, |_| LogMachine::new()).await
}

/// Longest time an election may take with the default configuration
/// (election timeouts of 0.5–1 s, plus a pre-vote round and a vote round).
pub const ELECTION: Duration = Duration::from_secs(3);

pub async fn leader(cluster: &Cluster) -> NodeId {
    cluster
        .await_leader(ELECTION)
        .await
        .unwrap_or_else(|| panic!("seed {}: no leader elected", cluster.seed()))
}

/// How many state machines applied `command` at `index`.
pub fn applied_count(cluster: &Cluster, index: LogIndex, command: &[u8]) -> usize {
    cluster
        .ids()
        .into_iter()
        .filter(|id| cluster.is_running(*id))
        .filter(|id| {
            cluster
                .machine(*id)
                .applied()
                .iter()
                .any(|(i, c)| *i == index && c.as_ref() == command)
        })
        .count()
}

/// Proposes `command` at whichever node leads, retrying for up to 10 s,
/// until at least `expected` state machines applied it at one index (the
/// `one()` of the well-known Raft labs). Returns that index.
pub async fn one(cluster: &Cluster, command: &str, expected: usize) -> LogIndex {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for id in cluster.ids() {
            let Some(node) = cluster.node(id) else {
                continue;
            };
            if node.status().role != Role::Leader {
                continue;
            }
            let proposal = node.propose(Bytes::copy_from_slice(command.as_bytes()));
            let Ok(Ok(index)) = timeout(Duration::from_secs(2), proposal).await else {
                continue;
            };
            let wait_until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < wait_until {
                if applied_count(cluster, index, command.as_bytes()) >= expected {
                    return index;
                }
                sleep(Duration::from_millis(20)).await;
            }
        }
        sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "seed {}: {command:?} did not reach agreement on {expected} nodes; statuses: {:#?}",
        cluster.seed(),
        cluster.statuses()
    );
}

/// The ids of the running nodes other than `id`.
pub fn others(cluster: &Cluster, id: NodeId) -> Vec<NodeId> {
    cluster
        .ids()
        .into_iter()
        .filter(|other| *other != id)
        .collect()
}

/// Every state machine applied each command once at most, and every
/// acknowledged command is among them.
pub fn assert_acknowledged_applied_once(cluster: &Cluster, acked: &[Bytes]) {
    let seed = cluster.seed();
    for id in cluster.ids() {
        let applied = cluster.machine(id).applied().clone();
        let commands: BTreeSet<&Bytes> = applied.iter().map(|(_, c)| c).collect();
        assert_eq!(
            commands.len(),
            applied.len(),
            "seed {seed}: node {id} applied a command twice"
        );
        for command in acked {
            assert!(
                commands.contains(command),
                "seed {seed}: node {id} lacks acknowledged {command:?}"
            );
        }
    }
}
