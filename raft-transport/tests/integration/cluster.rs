//! A three-node raft-core cluster over real QUIC: it elects a leader,
//! replicates, and elects another when the leader's endpoint goes away.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::testkit::MemStorage;
use raft_core::{
    Config, LogIndex, NodeId, RaftNode, Role, SnapshotMeta, StateMachine, StateMachineError,
};
use raft_transport::QuicTransport;

use crate::support::*;

/// Records every applied command; answers with the index it was applied at.
#[derive(Clone, Default)]
struct Recorder {
    applied: Arc<Mutex<Vec<Bytes>>>,
}

#[async_trait]
impl StateMachine for Recorder {
    type Response = LogIndex;

    async fn apply(&mut self, index: LogIndex, command: Bytes) -> LogIndex {
        self.applied.lock().unwrap().push(command);
        index
    }

    async fn snapshot(&mut self, _meta: SnapshotMeta) -> Result<Bytes, StateMachineError> {
        let applied = self.applied.lock().unwrap();
        Ok(Bytes::from(
            applied
                .iter()
                .flat_map(|command| command.to_vec())
                .collect::<Vec<u8>>(),
        ))
    }

    async fn restore(
        &mut self,
        _meta: SnapshotMeta,
        _data: Bytes,
    ) -> Result<(), StateMachineError> {
        Err(StateMachineError::new(
            "restore",
            "the recorder does not restore snapshots",
        ))
    }
}

struct Member {
    node: RaftNode<LogIndex>,
    transport: QuicTransport,
    recorder: Recorder,
}

async fn start_member(id: NodeId, addrs: &BTreeMap<NodeId, SocketAddr>) -> Member {
    init_tracing();
    let (inbox_sender, inbox) = raft_core::inbox(4096);
    let transport = QuicTransport::start(test_config(id, addrs), inbox_sender)
        .await
        .unwrap();
    // Short ticks keep the test quick; elections still take several round
    // trips' worth of ticks.
    let mut config = Config::new(id, addrs.keys().copied().collect());
    config.tick_interval = Duration::from_millis(5);
    config.heartbeat_ticks = 4;
    config.election_ticks_min = 40;
    config.election_ticks_max = 80;
    let recorder = Recorder::default();
    let node = RaftNode::start(
        config,
        MemStorage::new(),
        transport.clone(),
        recorder.clone(),
        inbox,
    )
    .await
    .unwrap();
    Member {
        node,
        transport,
        recorder,
    }
}

/// Waits until the members in `alive` agree on one leader among them, in a
/// term above `term_above`; returns its id and term.
async fn agreed_leader(
    members: &BTreeMap<NodeId, Member>,
    alive: &[NodeId],
    term_above: u64,
) -> (NodeId, u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let statuses: Vec<_> = alive.iter().map(|id| members[id].node.status()).collect();
        let leaders: Vec<_> = statuses
            .iter()
            .filter(|status| status.role == Role::Leader)
            .collect();
        if let [leader] = leaders[..] {
            let agreed = statuses
                .iter()
                .all(|status| status.leader == Some(leader.id) && status.term == leader.term);
            if agreed && leader.term > term_above {
                return (leader.id, leader.term);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed leader: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn assert_applied_everywhere(
    members: &BTreeMap<NodeId, Member>,
    alive: &[NodeId],
    expected: &[Bytes],
) {
    wait_until(
        Duration::from_secs(10),
        "every member to apply the commands",
        || {
            alive
                .iter()
                .all(|id| *members[id].recorder.applied.lock().unwrap() == expected)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_quic_elect_replicate_and_reelect_when_the_leader_goes() {
    let addrs = addr_map(&[1, 2, 3]);
    let mut members = BTreeMap::new();
    for id in [1, 2, 3] {
        members.insert(id, start_member(id, &addrs).await);
    }
    let everyone = [1, 2, 3];

    // Election and replication.
    let (leader, term) = agreed_leader(&members, &everyone, 0).await;
    let mut expected = Vec::new();
    for number in 0..20 {
        let command = Bytes::from(format!("command {number}"));
        members[&leader]
            .node
            .propose(command.clone())
            .await
            .unwrap();
        expected.push(command);
    }
    assert_applied_everywhere(&members, &everyone, &expected).await;
    let followers: Vec<NodeId> = everyone
        .iter()
        .copied()
        .filter(|&id| id != leader)
        .collect();
    for id in &followers {
        let error = members[id]
            .node
            .propose(Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, raft_core::Error::NotLeader { leader_hint: Some(hint) } if hint == leader)
        );
    }

    // The leader's endpoint goes away: the other two elect a new leader in
    // a later term, which replicates between them.
    members[&leader].transport.shutdown().await;
    let (new_leader, new_term) = agreed_leader(&members, &followers, term).await;
    assert_ne!(new_leader, leader);
    assert!(new_term > term);
    let command = Bytes::from_static(b"after the leader left");
    members[&new_leader]
        .node
        .propose(command.clone())
        .await
        .unwrap();
    expected.push(command);
    assert_applied_everywhere(&members, &followers, &expected).await;

    for member in members.values() {
        member.node.shutdown().await;
        member.transport.shutdown().await;
    }
}
