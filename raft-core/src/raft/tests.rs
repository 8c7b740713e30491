//! Paper-scenario tests of the pure core, driven message by message with a
//! hand-cranked network: no driver, no time, no tasks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::*;
use crate::storage::StoredState;

/// Durable state of one node, as a storage would hold it.
#[derive(Clone, Default)]
struct Disk {
    hard_state: HardState,
    entries: Vec<Entry>,
}

struct Net {
    nodes: BTreeMap<NodeId, Raft>,
    disks: BTreeMap<NodeId, Disk>,
    queue: VecDeque<Message>,
    /// Reads confirmed so far, by node.
    reads: BTreeMap<NodeId, Vec<ReadState>>,
    /// Pairs that can talk (both ways); `None` means everyone.
    links: Option<BTreeSet<NodeId>>,
    configs: BTreeMap<NodeId, Config>,
}

impl Net {
    fn new(count: u64, tweak: impl Fn(&mut Config)) -> Net {
        let voters: Vec<NodeId> = (1..=count).collect();
        let mut net = Net {
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            queue: VecDeque::new(),
            reads: BTreeMap::new(),
            links: None,
            configs: BTreeMap::new(),
        };
        for id in 1..=count {
            let mut config = Config::new(id, voters.clone());
            tweak(&mut config);
            net.configs.insert(id, config);
            net.disks.insert(id, Disk::default());
            net.restart(id);
        }
        net
    }

    fn restart(&mut self, id: NodeId) {
        let disk = self.disks[&id].clone();
        let stored = StoredState {
            hard_state: disk.hard_state,
            snapshot: None,
            entries: disk.entries,
        };
        let raft = Raft::new(self.configs[&id].clone(), stored, None).expect("valid config");
        self.nodes.insert(id, raft);
    }

    fn crash(&mut self, id: NodeId) {
        self.nodes.remove(&id);
        self.queue.retain(|m| m.to != id && m.from != id);
    }

    fn node(&self, id: NodeId) -> &Raft {
        &self.nodes[&id]
    }

    fn connect_only(&mut self, ids: &[NodeId]) {
        self.links = Some(ids.iter().copied().collect());
    }

    fn linked(&self, message: &Message) -> bool {
        self.links
            .as_ref()
            .is_none_or(|ids| ids.contains(&message.from) && ids.contains(&message.to))
    }

    /// Hands every node's ready out: persists, then queues its messages.
    fn flush(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            loop {
                let raft = self.nodes.get_mut(&id).expect("running");
                if !raft.has_ready() {
                    break;
                }
                let ready = raft.ready(usize::MAX);
                let disk = self.disks.get_mut(&id).expect("disk");
                if let Some(first) = ready.entries.first() {
                    disk.entries.truncate((first.index - 1) as usize);
                    disk.entries.extend(ready.entries.iter().cloned());
                }
                if let Some(hard_state) = ready.hard_state {
                    disk.hard_state = hard_state;
                }
                let last = ready.entries.last().map(|e| (e.index, e.term));
                raft.advance(last);
                self.queue.extend(ready.messages);
                self.queue.extend(ready.persisted_messages);
                self.reads.entry(id).or_default().extend(ready.reads);
            }
        }
    }

    /// Delivers queued messages until none is left or `stop` holds.
    fn pump_until(&mut self, stop: impl Fn(&Net) -> bool) -> bool {
        for _ in 0..100_000 {
            self.flush();
            if stop(self) {
                return true;
            }
            let Some(message) = self.queue.pop_front() else {
                return false;
            };
            if !self.linked(&message) {
                continue;
            }
            if let Some(raft) = self.nodes.get_mut(&message.to) {
                raft.step(message);
            }
        }
        panic!("network did not quiesce");
    }

    fn pump(&mut self) {
        self.pump_until(|_| false);
    }

    /// Makes `id` campaign at once, as a leadership hand-over would.
    fn campaign(&mut self, id: NodeId) {
        let raft = self.nodes.get_mut(&id).expect("running");
        raft.campaign(true);
    }

    fn propose(&mut self, id: NodeId, command: &str) {
        let raft = self.nodes.get_mut(&id).expect("running");
        raft.propose(vec![Bytes::copy_from_slice(command.as_bytes())])
            .expect("leader accepts");
    }
}

#[test]
fn figure_8_a_leader_does_not_commit_an_old_term_entry_by_counting_replicas() {
    // One entry per append, so the old entry reaches a quorum on its own.
    let mut net = Net::new(5, |config| config.append_entries_max = 1);
    net.campaign(1);
    net.pump();
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(net.node(1).commit(), 1, "the first blank entry commits");

    // (a) S1 appends entry 2 and reaches only S2.
    net.connect_only(&[1, 2]);
    net.propose(1, "x");
    net.pump();
    assert_eq!(net.node(2).entry_term(2), net.node(1).entry_term(2));
    let old_term = net.node(1).entry_term(2).unwrap();

    // (b) S1 crashes; S5 wins with S3 and S4 and writes its own entry 2
    // that reaches nobody.
    net.crash(1);
    net.connect_only(&[3, 4, 5]);
    net.campaign(5);
    net.pump_until(|net| net.node(5).role() == Role::Leader);
    net.queue.clear();
    net.crash(5);

    // (c) S1 restarts and wins a later term with S2 and S3; it copies its
    // old entry 2 to S3, so a quorum holds it.
    net.restart(1);
    net.connect_only(&[1, 2, 3]);
    while net.node(1).role() != Role::Leader {
        // S3 voted for S5 in S5's term: S1 may need a second term.
        net.campaign(1);
        net.pump_until(|net| net.node(1).role() == Role::Leader);
    }
    net.pump_until(|net| net.node(3).entry_term(3).is_some());
    assert_eq!(net.node(3).entry_term(2), Some(old_term));
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(
        net.node(1).commit(),
        1,
        "entry 2 of an earlier term must not commit by counting replicas (Raft §5.4.2)"
    );
    // Once its own entry 3 reaches the quorum, both commit.
    net.pump();
    assert_eq!(net.node(1).commit(), 3);
}

#[test]
fn a_vote_leaves_only_after_the_term_and_vote_are_written() {
    let mut net = Net::new(3, |_| {});
    let raft = net.nodes.get_mut(&1).unwrap();
    raft.campaign(false);
    let ready = raft.ready(usize::MAX);
    assert!(
        ready.messages.is_empty(),
        "a candidate's requests wait for its vote to be durable"
    );
    assert_eq!(ready.persisted_messages.len(), 2);
    let hard_state = ready.hard_state.expect("term and vote to write");
    assert_eq!((hard_state.term, hard_state.vote), (1, Some(1)));

    let request = ready.persisted_messages[0].clone();
    let voter = net.nodes.get_mut(&request.to).unwrap();
    voter.step(request);
    let ready = voter.ready(usize::MAX);
    assert!(
        ready.messages.is_empty(),
        "a vote waits for the voter's state to be durable"
    );
    assert_eq!(ready.hard_state.map(|h| h.vote), Some(Some(1)));
    assert!(matches!(
        ready.persisted_messages[0].body,
        MessageBody::RequestVoteResponse { granted: true, .. }
    ));
}

#[test]
fn a_follower_acknowledges_entries_only_after_writing_them() {
    let mut net = Net::new(3, |_| {});
    net.campaign(1);
    net.pump();
    net.propose(1, "x");
    let leader = net.nodes.get_mut(&1).unwrap();
    let ready = leader.ready(usize::MAX);
    // The leader sends before its own write (Raft thesis §10.2.1).
    assert_eq!(ready.messages.len(), 2);
    assert_eq!(ready.entries.len(), 1);
    let append = ready.messages[0].clone();
    let follower = net.nodes.get_mut(&append.to).unwrap();
    follower.step(append);
    let ready = follower.ready(usize::MAX);
    assert_eq!(ready.entries.len(), 1, "the entry is handed to storage");
    assert!(ready.messages.is_empty());
    assert!(matches!(
        ready.persisted_messages[0].body,
        MessageBody::AppendEntriesResponse {
            outcome: AppendOutcome::Success { match_index: 2 },
            ..
        }
    ));
}

#[test]
fn a_stale_duplicate_append_does_not_truncate_newer_entries() {
    let mut net = Net::new(3, |_| {});
    net.campaign(1);
    net.pump();
    net.propose(1, "a");
    let first_append = net.nodes.get_mut(&1).unwrap().ready(usize::MAX).messages[0].clone();
    net.nodes.get_mut(&1).unwrap().advance(Some((2, 1)));
    net.propose(1, "b");
    net.pump();
    let follower = first_append.to;
    assert_eq!(net.node(follower).entries().len(), 3);
    // The old append (entries up to 2) arrives again, late.
    net.nodes.get_mut(&follower).unwrap().step(first_append);
    net.flush();
    assert_eq!(
        net.node(follower).entries().len(),
        3,
        "an append that agrees with the log must not cut it (Raft §5.3)"
    );
}

#[test]
fn a_conflict_reply_names_the_conflicting_term_and_its_first_index() {
    let mut net = Net::new(3, |_| {});
    let follower = net.nodes.get_mut(&2).unwrap();
    // The follower holds entries 1..=3 of term 1; the leader of term 2
    // probes at index 3 with term 2.
    for index in 1..=3 {
        follower.log.push(Entry {
            term: 1,
            index,
            payload: EntryPayload::Blank,
        });
    }
    follower.step(Message {
        from: 1,
        to: 2,
        term: 2,
        body: MessageBody::AppendEntries {
            prev_index: 3,
            prev_term: 2,
            entries: Vec::new(),
            commit: 0,
            read_seq: 0,
        },
    });
    let ready = follower.ready(usize::MAX);
    let reply = ready.persisted_messages.last().expect("a reply");
    assert_eq!(
        reply.body,
        MessageBody::AppendEntriesResponse {
            outcome: AppendOutcome::Conflict {
                rejected_index: 3,
                conflict_term: Some(1),
                conflict_index: 1
            },
            last_index: 3,
            read_seq: 0,
        }
    );
}

#[test]
fn a_read_is_confirmed_only_by_answers_to_a_round_that_began_after_it() {
    let mut net = Net::new(3, |_| {});
    net.campaign(1);
    net.pump();
    let leader = net.nodes.get_mut(&1).unwrap();
    // An answer to an old round (read_seq 0) arrives after the read.
    leader.read_index(7).unwrap();
    leader.step(Message {
        from: 2,
        to: 1,
        term: 1,
        body: MessageBody::HeartbeatResponse {
            read_seq: 0,
            last_index: 1,
        },
    });
    let ready = leader.ready(usize::MAX);
    assert!(
        ready.reads.is_empty(),
        "an old answer must not confirm a new read"
    );
    let round: Vec<u64> = ready
        .messages
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::Heartbeat { read_seq, .. } => Some(read_seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        round,
        vec![1, 1],
        "the read starts round 1 at both followers"
    );
    net.queue.extend(ready.messages);
    net.pump();
    assert_eq!(net.reads[&1], vec![ReadState { id: 7, index: 1 }]);
}

#[test]
fn a_deposed_leader_fails_its_pending_reads() {
    let mut net = Net::new(3, |_| {});
    net.campaign(1);
    net.pump();
    let leader = net.nodes.get_mut(&1).unwrap();
    leader.read_index(9).unwrap();
    leader.step(Message {
        from: 2,
        to: 1,
        term: 5,
        body: MessageBody::Heartbeat {
            commit: 0,
            read_seq: 0,
        },
    });
    let ready = leader.ready(usize::MAX);
    assert!(ready.reads.is_empty());
    assert_eq!(ready.failed_reads, vec![9]);
}

#[test]
fn a_full_window_whose_answers_were_lost_resumes_after_a_heartbeat() {
    // Regression: randomized seed 534 stalled a follower for good when every
    // answer to a full window of appends was lost.
    let mut net = Net::new(3, |config| {
        config.inflight_appends_max = 2;
        config.append_entries_max = 1;
    });
    net.campaign(1);
    net.pump();
    net.connect_only(&[1, 2]);
    for n in 0..4 {
        net.propose(1, &format!("c{n}"));
    }
    // Node 3 gets the appends of the window, but its answers are lost.
    net.flush();
    let to_three: Vec<Message> = net.queue.iter().filter(|m| m.to == 3).cloned().collect();
    assert_eq!(to_three.len(), 2, "the window holds two appends");
    for message in to_three {
        net.nodes.get_mut(&3).unwrap().step(message);
    }
    let _lost_answers = net.nodes.get_mut(&3).unwrap().ready(usize::MAX);
    net.pump();
    assert_eq!(net.node(3).entries().len(), 3);

    // A heartbeat round trip reopens the window.
    net.links = None;
    let leader = net.nodes.get_mut(&1).unwrap();
    for _ in 0..leader.config.heartbeat_ticks {
        leader.tick();
    }
    net.pump();
    assert_eq!(
        net.node(3).entries().len(),
        5,
        "node 3 caught up after the heartbeat"
    );
    assert_eq!(net.node(1).commit(), 5);
}

#[test]
fn a_read_at_a_new_leader_waits_for_its_first_commit_without_spinning() {
    // Regression: `has_ready` counted a read that `ready` could not start
    // yet, so the driver looped on empty readies for good.
    let mut net = Net::new(3, |_| {});
    net.campaign(1);
    net.pump_until(|net| net.node(1).role() == Role::Leader);
    let leader = net.nodes.get_mut(&1).unwrap();
    assert!(leader.commit() < 1, "the blank entry is not committed yet");
    leader.read_index(3).unwrap();
    let mut turns = 0;
    while leader.has_ready() {
        let ready = leader.ready(usize::MAX);
        leader.advance(ready.entries.last().map(|e| (e.index, e.term)));
        net.queue.extend(ready.messages);
        net.queue.extend(ready.persisted_messages);
        turns += 1;
        assert!(turns < 10, "ready keeps reporting work it cannot do");
    }
    net.pump();
    assert_eq!(net.reads[&1], vec![ReadState { id: 3, index: 1 }]);
}
