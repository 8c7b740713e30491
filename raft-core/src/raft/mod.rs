//! The deterministic Raft core: no I/O, no clock, no tasks.
//!
//! Inputs are method calls ([`Raft::step`], [`Raft::tick`],
//! [`Raft::propose`], [`Raft::read_index`], ...). Outputs accumulate until the
//! caller takes them with [`Raft::ready`], persists what it says, reports
//! that with [`Raft::advance`], and sends and applies the rest.

mod log;
mod progress;
mod read;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, trace, warn};

use crate::config::Config;
use crate::error::Error;
use crate::message::{AppendOutcome, Message, MessageBody};
use crate::rng::Rng;
use crate::storage::StoredState;
use crate::types::{
    Entry, EntryPayload, HardState, LogIndex, NodeId, Role, Snapshot, SnapshotMeta, Status, Term,
};

use log::RaftLog;
use progress::{Progress, ReplicationState};
use read::ReadQueue;

pub use read::ReadState;

/// Everything the caller must do after feeding the core, in this order:
///
/// 1. send `messages` (they may leave before anything is durable: a
///    leader's appends, Raft §10.2.1);
/// 2. durably install `snapshot`, then durably write `hard_state` and
///    `entries` (one storage write);
/// 3. call [`Raft::advance`] with the last entry written;
/// 4. send `persisted_messages`, which must not leave before step 2;
/// 5. apply `committed` in order, and serve `reads` once their index is
///    applied; fail `failed_reads`.
#[derive(Debug, Default)]
pub struct Ready {
    /// Hard state to store, when it changed.
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader, to install before `entries`.
    pub snapshot: Option<Snapshot>,
    /// Entries to write; the first may overwrite a stored suffix.
    pub entries: Vec<Entry>,
    /// Messages that may be sent at once.
    pub messages: Vec<Message>,
    /// Messages to send only once the writes above are durable.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in index order.
    pub committed: Vec<Entry>,
    /// Reads confirmed by a quorum: each may be served once the state
    /// machine has applied its index.
    pub reads: Vec<ReadState>,
    /// Reads that can no longer be confirmed (leadership was lost).
    pub failed_reads: Vec<u64>,
}

impl Ready {
    /// Whether the caller has to write anything to storage.
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || !self.entries.is_empty()
    }
}

/// A snapshot being received from the leader, chunk by chunk.
#[derive(Debug)]
struct IncomingSnapshot {
    meta: SnapshotMeta,
    data: BytesMut,
}

/// The Raft state of one node.
#[derive(Debug)]
pub struct Raft {
    id: NodeId,
    /// Every voter, this node included, in ascending order.
    voters: Vec<NodeId>,
    config: Config,
    term: Term,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    /// The hard state as last handed to storage.
    written_hard_state: HardState,
    /// Ticks since the last reset; drives elections and check-quorum.
    election_elapsed: u32,
    /// The current randomized election timeout, in ticks.
    election_timeout: u32,
    heartbeat_elapsed: u32,
    /// Votes received in the current (pre-)election, by voter.
    votes: BTreeMap<NodeId, bool>,
    /// The leader's view of each other voter.
    progress: BTreeMap<NodeId, Progress>,
    /// A follower the leader is handing leadership to, and ticks since.
    transfer: Option<(NodeId, u32)>,
    reads: ReadQueue,
    incoming_snapshot: Option<IncomingSnapshot>,
    /// A snapshot received in full, waiting to be handed to the caller.
    snapshot_to_install: Option<Snapshot>,
    /// The latest local snapshot, sent to followers that need it.
    latest_snapshot: Option<Snapshot>,
    messages: Vec<Message>,
    persisted_messages: Vec<Message>,
    rng: Rng,
}

impl Raft {
    /// A node restarted from `stored` (empty for a new node). `snapshot`
    /// carries the data of the stored snapshot, if any, so that a leader can
    /// send it to followers.
    pub fn new(
        config: Config,
        stored: StoredState,
        snapshot: Option<Snapshot>,
    ) -> Result<Raft, Error> {
        config.validate()?;
        let mut voters = config.voters.clone();
        voters.sort_unstable();
        let snapshot_meta = stored.snapshot.unwrap_or_default();
        let hard_state = stored.hard_state;
        let log = RaftLog::restore(snapshot_meta, stored.entries, hard_state.commit);
        let mut raft = Raft {
            id: config.id,
            voters,
            rng: Rng::new(config.seed),
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: None,
            log,
            written_hard_state: hard_state,
            election_elapsed: 0,
            election_timeout: 0,
            heartbeat_elapsed: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            transfer: None,
            reads: ReadQueue::default(),
            incoming_snapshot: None,
            snapshot_to_install: None,
            latest_snapshot: snapshot.filter(|s| s.meta == snapshot_meta),
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            config,
        };
        raft.reset_election_timeout();
        info!(
            term = raft.term,
            last_index = raft.log.last_index(),
            "raft node restored"
        );
        Ok(raft)
    }

    // ----- queries -------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this node knows of in the current term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The commit index.
    pub fn commit(&self) -> LogIndex {
        self.log.commit
    }

    /// The entries held in memory (those after the latest snapshot).
    pub fn entries(&self) -> &[Entry] {
        self.log.entries()
    }

    /// The position the latest snapshot covers.
    pub fn snapshot_meta(&self) -> SnapshotMeta {
        self.log.snapshot
    }

    /// The term of the entry at `index`, when the log still has it.
    pub fn entry_term(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// A summary for monitoring; `applied` is the caller's to fill in.
    pub fn status(&self, applied: LogIndex) -> Status {
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit: self.log.commit,
            applied,
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            persisted_index: self.log.persisted,
            snapshot_index: self.log.snapshot.last_index,
        }
    }

    fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    fn peers(&self) -> Vec<NodeId> {
        self.voters
            .iter()
            .copied()
            .filter(|id| *id != self.id)
            .collect()
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit,
        }
    }

    // ----- inputs --------------------------------------------------------

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => {
                if self.election_elapsed >= self.election_timeout {
                    self.election_elapsed = 0;
                    self.campaign_or_pre_campaign();
                }
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        if let Some((target, ticks)) = self.transfer {
            if ticks + 1 >= self.config.election_ticks_min {
                info!(target, "leadership transfer timed out");
                self.transfer = None;
            } else {
                self.transfer = Some((target, ticks + 1));
            }
        }
        if self.election_elapsed >= self.config.election_ticks_min {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_active() {
                info!(
                    term = self.term,
                    "leader lost contact with a quorum: stepping down"
                );
                self.become_follower(self.term, None);
            }
        }
    }

    /// Whether a quorum (this node included) was heard from since the last
    /// check; clears the marks for the next round.
    fn quorum_active(&mut self) -> bool {
        let mut active = 1;
        for progress in self.progress.values_mut() {
            if progress.recent_active {
                active += 1;
            }
            progress.recent_active = false;
        }
        active >= self.quorum()
    }

    /// Proposes commands. On a leader they are appended together, as one
    /// batch, and the first one's index is returned with the term.
    pub fn propose(&mut self, commands: Vec<Bytes>) -> Result<(LogIndex, Term), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(Error::TransferInProgress);
        }
        let first = self.log.last_index() + 1;
        for command in commands {
            let index = self.log.last_index() + 1;
            self.log.push(Entry {
                term: self.term,
                index,
                payload: EntryPayload::Command(command),
            });
        }
        self.broadcast_append();
        // A single voter commits on its own persistence, in `advance`.
        Ok((first, self.term))
    }

    /// Asks for a read index on behalf of read `id`. The answer comes as a
    /// [`ReadState`] (or a failed read) in a later [`Ready`].
    pub fn read_index(&mut self, id: u64) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader_hint: self.leader,
            });
        }
        self.reads.push(id);
        Ok(())
    }

    /// Starts handing leadership to `target` (Raft thesis §3.10).
    pub fn transfer_leadership(&mut self, target: NodeId) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader_hint: self.leader,
            });
        }
        if !self.voters.contains(&target) {
            return Err(Error::UnknownNode(target));
        }
        if target == self.id {
            return Ok(());
        }
        info!(target, "leadership transfer started");
        self.transfer = Some((target, 0));
        let caught_up = self.progress[&target].match_index == self.log.last_index();
        if caught_up {
            self.send_timeout_now(target);
        } else {
            self.send_append(target);
        }
        Ok(())
    }

    /// A local snapshot at `snapshot.meta` is durable: drop the log it
    /// covers and keep its data to send to lagging followers.
    pub fn snapshot_saved(&mut self, snapshot: Snapshot) {
        if snapshot.meta.last_index <= self.log.snapshot.last_index {
            return;
        }
        self.log.compact(snapshot.meta);
        debug!(index = snapshot.meta.last_index, "log compacted");
        self.latest_snapshot = Some(snapshot);
    }

    /// Handles a message from a peer.
    pub fn step(&mut self, message: Message) {
        if message.to != self.id || !self.voters.contains(&message.from) || message.from == self.id
        {
            debug!(
                from = message.from,
                to = message.to,
                "dropping misaddressed message"
            );
            return;
        }
        if message.term > self.term {
            if let MessageBody::RequestVote {
                pre_vote, transfer, ..
            } = message.body
            {
                let in_lease = self.config.check_quorum
                    && self.leader.is_some()
                    && self.election_elapsed < self.config.election_ticks_min;
                if in_lease && !transfer {
                    debug!(
                        from = message.from,
                        term = message.term,
                        "vote ignored: leader lease"
                    );
                    return;
                }
                if !pre_vote {
                    self.become_follower(message.term, None);
                }
            } else if matches!(
                message.body,
                MessageBody::RequestVoteResponse {
                    pre_vote: true,
                    granted: true
                }
            ) {
                // A granted pre-vote carries the term we would stand in.
            } else {
                let leader = match message.body {
                    MessageBody::AppendEntries { .. }
                    | MessageBody::Heartbeat { .. }
                    | MessageBody::InstallSnapshot { .. } => Some(message.from),
                    _ => None,
                };
                self.become_follower(message.term, leader);
            }
        } else if message.term < self.term {
            self.step_stale(message);
            return;
        }

        match message.body {
            MessageBody::RequestVote {
                pre_vote,
                last_log_index,
                last_log_term,
                ..
            } => self.handle_vote_request(
                message.from,
                message.term,
                pre_vote,
                last_log_index,
                last_log_term,
            ),
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                self.handle_vote_response(message.from, message.term, pre_vote, granted)
            }
            MessageBody::AppendEntries {
                prev_index,
                prev_term,
                entries,
                commit,
                read_seq,
            } => {
                self.follow(message.from);
                self.handle_append(
                    message.from,
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                    read_seq,
                )
            }
            MessageBody::Heartbeat { commit, read_seq } => {
                self.follow(message.from);
                self.handle_heartbeat(message.from, commit, read_seq)
            }
            MessageBody::InstallSnapshot {
                meta,
                offset,
                data,
                done,
                read_seq,
            } => {
                self.follow(message.from);
                self.handle_snapshot_chunk(message.from, meta, offset, data, done, read_seq)
            }
            MessageBody::AppendEntriesResponse {
                outcome,
                last_index,
                read_seq,
            } => self.handle_append_response(message.from, outcome, last_index, read_seq),
            MessageBody::HeartbeatResponse {
                read_seq,
                last_index,
            } => self.handle_heartbeat_response(message.from, read_seq, last_index),
            MessageBody::InstallSnapshotResponse {
                meta,
                next_offset,
                installed,
                rejected,
                read_seq,
            } => self.handle_snapshot_response(
                message.from,
                meta,
                next_offset,
                installed,
                rejected,
                read_seq,
            ),
            MessageBody::TimeoutNow => {
                if self.role != Role::Leader {
                    info!(from = message.from, "leadership handed over: campaigning");
                    self.campaign(true);
                }
            }
        }
    }

    /// A message from an older term. Tell a stale leader or candidate our
    /// term so it steps down (with pre-vote and check-quorum, a node that
    /// ignores it could otherwise keep it stuck, Raft thesis §9.6).
    fn step_stale(&mut self, message: Message) {
        let reply = match message.body {
            MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. } => MessageBody::HeartbeatResponse {
                read_seq: 0,
                last_index: self.log.last_index(),
            },
            MessageBody::RequestVote { pre_vote, .. } => MessageBody::RequestVoteResponse {
                pre_vote,
                granted: false,
            },
            _ => return,
        };
        trace!(
            from = message.from,
            term = message.term,
            "answering a stale message"
        );
        self.send(message.from, reply);
    }

    /// Accepts `leader` as leader of the current term.
    fn follow(&mut self, leader: NodeId) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(leader));
        }
        self.leader = Some(leader);
        self.election_elapsed = 0;
    }

    // ----- elections -----------------------------------------------------

    fn reset_election_timeout(&mut self) {
        self.election_timeout = self.rng.range(
            self.config.election_ticks_min as u64,
            self.config.election_ticks_max as u64,
        ) as u32;
    }

    fn campaign_or_pre_campaign(&mut self) {
        if self.config.pre_vote {
            self.pre_campaign();
        } else {
            self.campaign(false);
        }
    }

    fn pre_campaign(&mut self) {
        info!(term = self.term, "election timeout: starting pre-vote");
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.id, true);
        self.reset_election_timeout();
        if self.votes_granted() >= self.quorum() {
            self.campaign(false);
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.peers() {
            self.send_with_term(
                peer,
                self.term + 1,
                MessageBody::RequestVote {
                    pre_vote: true,
                    last_log_index,
                    last_log_term,
                    transfer: false,
                },
            );
        }
    }

    fn campaign(&mut self, transfer: bool) {
        self.term += 1;
        self.vote = Some(self.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.election_elapsed = 0;
        self.reset_election_timeout();
        self.votes.clear();
        self.votes.insert(self.id, true);
        info!(term = self.term, "campaigning");
        if self.votes_granted() >= self.quorum() {
            self.become_leader();
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.peers() {
            self.send(
                peer,
                MessageBody::RequestVote {
                    pre_vote: false,
                    last_log_index,
                    last_log_term,
                    transfer,
                },
            );
        }
    }

    fn votes_granted(&self) -> usize {
        self.votes.values().filter(|granted| **granted).count()
    }

    fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        let up_to_date = self.log.is_up_to_date(last_log_index, last_log_term);
        let granted = if pre_vote {
            // A pre-vote is granted to a candidate that could win: a higher
            // term and a log at least as up to date (thesis §9.6).
            term > self.term && up_to_date
        } else {
            debug_assert_eq!(term, self.term);
            let free = self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none());
            free && up_to_date
        };
        if granted && !pre_vote {
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        debug!(from, term, pre_vote, granted, "vote request");
        let reply_term = if pre_vote && granted { term } else { self.term };
        self.send_with_term(
            from,
            reply_term,
            MessageBody::RequestVoteResponse { pre_vote, granted },
        );
    }

    fn handle_vote_response(&mut self, from: NodeId, term: Term, pre_vote: bool, granted: bool) {
        let expected = match (self.role, pre_vote) {
            // Granted pre-votes carry the term asked for; refusals the
            // voter's own term, which is ours (a higher one made us follow).
            (Role::PreCandidate, true) => term == self.term + u64::from(granted),
            (Role::Candidate, false) => term == self.term,
            _ => false,
        };
        if !expected {
            return;
        }
        self.votes.insert(from, granted);
        let rejected = self.votes.len() - self.votes_granted();
        if self.votes_granted() >= self.quorum() {
            if pre_vote {
                self.campaign(false);
            } else {
                self.become_leader();
            }
        } else if rejected >= self.quorum() {
            debug!(term = self.term, pre_vote, "election lost");
            self.become_follower(self.term, None);
        }
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(
            term >= self.term,
            "term went down from {} to {}",
            self.term,
            term
        );
        let was_leader = self.role == Role::Leader;
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        if self.role != Role::Follower || self.leader != leader {
            info!(term, leader = ?leader, "following");
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.election_elapsed = 0;
        self.reset_election_timeout();
        self.progress.clear();
        self.transfer = None;
        self.votes.clear();
        if was_leader {
            self.reads.fail_all();
        }
    }

    fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        info!(term = self.term, "became leader");
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let next_index = self.log.last_index() + 1;
        self.progress = self
            .peers()
            .into_iter()
            .map(|peer| (peer, Progress::new(next_index)))
            .collect();
        // Commit entries of earlier terms through one of our own (Raft §8).
        self.log.push(Entry {
            term: self.term,
            index: next_index,
            payload: EntryPayload::Blank,
        });
        self.broadcast_append();
    }

    // ----- replication: leader side --------------------------------------

    fn broadcast_append(&mut self) {
        for peer in self.peers() {
            self.send_append(peer);
        }
    }

    fn broadcast_heartbeat(&mut self) {
        let read_seq = self.reads.current_seq();
        for peer in self.peers() {
            let commit = self.log.commit.min(self.progress[&peer].match_index);
            self.send(peer, MessageBody::Heartbeat { commit, read_seq });
        }
    }

    /// Sends `peer` what it lacks, as far as its window allows.
    fn send_append(&mut self, peer: NodeId) {
        let read_seq = self.reads.current_seq();
        loop {
            let progress = self.progress.get(&peer).expect("progress of a voter");
            if let ReplicationState::Snapshot { .. } = progress.state {
                return;
            }
            if !progress.can_send(self.config.inflight_appends_max) {
                return;
            }
            let next_index = progress.next_index;
            let prev_index = next_index - 1;
            let prev_term = match self.log.term(prev_index) {
                Some(term) if next_index >= self.log.first_index() => term,
                _ => {
                    self.start_snapshot_transfer(peer);
                    return;
                }
            };
            let entries = if next_index <= self.log.last_index() {
                self.log.slice(
                    next_index,
                    self.log.last_index(),
                    self.config.append_bytes_max,
                    self.config.append_entries_max,
                )
            } else {
                Vec::new()
            };
            let progress = self.progress.get_mut(&peer).expect("progress of a voter");
            let replicating = matches!(progress.state, ReplicationState::Replicate);
            if entries.is_empty() && (replicating || progress.match_index >= prev_index) {
                // Nothing new to send; a probe is only worth it while the
                // follower's match is unknown.
                return;
            }
            let sent_last = prev_index + entries.len() as u64;
            let has_entries = !entries.is_empty();
            match progress.state {
                ReplicationState::Probe { .. } => {
                    progress.state = ReplicationState::Probe { sent: true };
                }
                ReplicationState::Replicate => {
                    if has_entries {
                        progress.inflight.push_back(sent_last);
                        progress.next_index = sent_last + 1;
                    }
                }
                ReplicationState::Snapshot { .. } => unreachable!(),
            }
            let commit = self.log.commit.min(sent_last.max(progress.match_index));
            let replicate = matches!(progress.state, ReplicationState::Replicate);
            trace!(peer, prev_index, count = entries.len(), "sending append");
            self.send(
                peer,
                MessageBody::AppendEntries {
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                    read_seq,
                },
            );
            // In Replicate, keep streaming while there is more and room.
            if !(replicate && has_entries && sent_last < self.log.last_index()) {
                return;
            }
        }
    }

    /// Tells followers about a new commit index without waiting for the
    /// next heartbeat, so that they can apply (and serve) promptly.
    fn broadcast_commit(&mut self) {
        for peer in self.peers() {
            self.send_append(peer);
            self.maybe_send_commit(peer);
        }
    }

    /// Sends an empty append to carry the commit index to a follower that
    /// has nothing in flight and has not heard of its latest value. A
    /// follower with appends in flight learns it from their successors or
    /// from this call when their answers arrive.
    fn maybe_send_commit(&mut self, peer: NodeId) {
        let progress = &self.progress[&peer];
        let known_commit = self.log.commit.min(progress.match_index);
        let idle = matches!(progress.state, ReplicationState::Replicate)
            && progress.next_index > self.log.last_index()
            && progress.inflight.is_empty();
        if !idle || progress.commit_sent >= known_commit {
            return;
        }
        let prev_index = progress.next_index - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            return;
        };
        let commit = self.log.commit.min(prev_index);
        let read_seq = self.reads.current_seq();
        self.send(
            peer,
            MessageBody::AppendEntries {
                prev_index,
                prev_term,
                entries: Vec::new(),
                commit,
                read_seq,
            },
        );
    }

    fn start_snapshot_transfer(&mut self, peer: NodeId) {
        let Some(snapshot) = self.latest_snapshot.clone() else {
            // The log is compacted only by a snapshot the core keeps (taken
            // here, received, or handed over at start from storage), so
            // this happens only when storage returned a snapshot whose data
            // does not match its position. The follower then waits for the
            // next local snapshot.
            warn!(peer, "follower needs a snapshot, but none is in memory");
            return;
        };
        info!(peer, index = snapshot.meta.last_index, "sending snapshot");
        let progress = self.progress.get_mut(&peer).expect("progress of a voter");
        progress.state = ReplicationState::Snapshot {
            meta: snapshot.meta,
            data: snapshot.data,
            offset: 0,
        };
        progress.inflight.clear();
        self.send_snapshot_chunk(peer);
    }

    fn send_snapshot_chunk(&mut self, peer: NodeId) {
        let read_seq = self.reads.current_seq();
        let progress = &self.progress[&peer];
        let ReplicationState::Snapshot { meta, data, offset } = &progress.state else {
            return;
        };
        let start = (*offset as usize).min(data.len());
        let end = (start + self.config.snapshot_chunk_bytes).min(data.len());
        let body = MessageBody::InstallSnapshot {
            meta: *meta,
            offset: start as u64,
            data: data.slice(start..end),
            done: end == data.len(),
            read_seq,
        };
        self.send(peer, body);
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        outcome: AppendOutcome,
        last_index: LogIndex,
        read_seq: u64,
    ) {
        if self.role != Role::Leader {
            return;
        }
        self.note_contact(from, read_seq);
        match outcome {
            AppendOutcome::Success { match_index } => {
                let grew = self
                    .progress
                    .get_mut(&from)
                    .expect("progress of a voter")
                    .accept(match_index);
                if grew && self.maybe_commit() {
                    self.broadcast_commit();
                } else {
                    self.send_append(from);
                    self.maybe_send_commit(from);
                }
                self.maybe_finish_transfer(from);
            }
            AppendOutcome::Conflict {
                rejected_index,
                conflict_term,
                conflict_index,
            } => {
                let progress = &self.progress[&from];
                if rejected_index <= progress.match_index {
                    return; // stale: we already know a longer match
                }
                let next_index = match conflict_term {
                    Some(term) => self
                        .log
                        .last_index_of_term(term, rejected_index)
                        .map_or(conflict_index, |index| index + 1),
                    None => conflict_index,
                };
                let next_index = next_index.min(last_index + 1).max(1);
                debug!(
                    peer = from,
                    rejected_index, next_index, "append refused: backing up"
                );
                self.progress
                    .get_mut(&from)
                    .expect("progress of a voter")
                    .probe_from(next_index);
                self.send_append(from);
            }
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, read_seq: u64, last_index: LogIndex) {
        if self.role != Role::Leader {
            return;
        }
        self.note_contact(from, read_seq);
        let progress = self.progress.get_mut(&from).expect("progress of a voter");
        match progress.state {
            ReplicationState::Probe { .. } => {
                progress.state = ReplicationState::Probe { sent: false };
            }
            ReplicationState::Replicate => {
                // The follower answered a heartbeat sent after the appends
                // still counted in flight: those appends, or their answers,
                // were most likely lost, and a full window would stall this
                // follower for good. Probe again from what it holds.
                if !progress.inflight.is_empty() {
                    let next_index = progress.next_index.min(last_index + 1);
                    progress.probe_from(next_index);
                }
            }
            ReplicationState::Snapshot { .. } => {
                self.send_snapshot_chunk(from);
                return;
            }
        }
        if self.progress[&from].match_index < self.log.last_index() {
            self.send_append(from);
        }
    }

    fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        next_offset: u64,
        installed: bool,
        rejected: bool,
        read_seq: u64,
    ) {
        if self.role != Role::Leader {
            return;
        }
        self.note_contact(from, read_seq);
        let progress = self.progress.get_mut(&from).expect("progress of a voter");
        let ReplicationState::Snapshot {
            meta: sending,
            offset,
            ..
        } = &mut progress.state
        else {
            return;
        };
        if *sending != meta {
            return;
        }
        if installed {
            info!(
                peer = from,
                index = meta.last_index,
                "follower installed snapshot"
            );
            progress.match_index = progress.match_index.max(meta.last_index);
            progress.probe_from(meta.last_index + 1);
            if self.maybe_commit() {
                self.broadcast_commit();
            } else {
                self.send_append(from);
            }
            return;
        }
        *offset = if rejected { 0 } else { next_offset };
        self.send_snapshot_chunk(from);
    }

    fn note_contact(&mut self, from: NodeId, read_seq: u64) {
        let progress = self.progress.get_mut(&from).expect("progress of a voter");
        progress.recent_active = true;
        if read_seq > progress.read_seq_acked {
            progress.read_seq_acked = read_seq;
            self.confirm_reads();
        }
    }

    fn maybe_finish_transfer(&mut self, from: NodeId) {
        if let Some((target, _)) = self.transfer {
            if target == from && self.progress[&from].match_index == self.log.last_index() {
                self.send_timeout_now(target);
            }
        }
    }

    fn send_timeout_now(&mut self, target: NodeId) {
        info!(target, "handing leadership over");
        self.send(target, MessageBody::TimeoutNow);
    }

    /// Raises the commit index to the highest index a quorum holds, if that
    /// entry is of the current term (Raft §5.4.2). Returns whether it rose.
    fn maybe_commit(&mut self) -> bool {
        let mut matches: Vec<LogIndex> = self.progress.values().map(|p| p.match_index).collect();
        matches.push(self.log.persisted);
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_index = matches[self.quorum() - 1];
        if quorum_index <= self.log.commit || self.log.term(quorum_index) != Some(self.term) {
            return false;
        }
        self.log.commit_to(quorum_index);
        trace!(commit = quorum_index, "committed");
        true
    }

    // ----- replication: follower side ------------------------------------

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        read_seq: u64,
    ) {
        // Entries at or below our snapshot are committed, hence identical
        // to the leader's: skip them.
        let snapshot_index = self.log.snapshot.last_index;
        let (prev_index, prev_term, entries) = if prev_index < snapshot_index {
            let skip = (snapshot_index - prev_index) as usize;
            if skip >= entries.len() {
                let match_index = prev_index + entries.len() as u64;
                self.reply_append(from, AppendOutcome::Success { match_index }, read_seq);
                return;
            }
            (
                snapshot_index,
                self.log.snapshot.last_term,
                entries[skip..].to_vec(),
            )
        } else {
            (prev_index, prev_term, entries)
        };

        match self.log.term(prev_index) {
            Some(term) if term == prev_term => {}
            found => {
                let (conflict_term, conflict_index) = match found {
                    None => (None, self.log.last_index() + 1),
                    Some(term) => (Some(term), self.log.first_index_of_term_at(prev_index)),
                };
                debug!(
                    from,
                    prev_index,
                    prev_term,
                    ?conflict_term,
                    conflict_index,
                    "append refused"
                );
                self.reply_append(
                    from,
                    AppendOutcome::Conflict {
                        rejected_index: prev_index,
                        conflict_term,
                        conflict_index,
                    },
                    read_seq,
                );
                return;
            }
        }
        let match_index = self.log.merge(prev_index, &entries);
        let commit = leader_commit.min(match_index);
        self.log.commit_to(commit);
        self.reply_append(from, AppendOutcome::Success { match_index }, read_seq);
    }

    fn reply_append(&mut self, to: NodeId, outcome: AppendOutcome, read_seq: u64) {
        let last_index = self.log.last_index();
        self.send(
            to,
            MessageBody::AppendEntriesResponse {
                outcome,
                last_index,
                read_seq,
            },
        );
    }

    fn handle_heartbeat(&mut self, from: NodeId, leader_commit: LogIndex, read_seq: u64) {
        // The leader caps `leader_commit` at what it knows we hold, so every
        // entry up to it matches the leader's log.
        let commit = leader_commit.min(self.log.last_index());
        self.log.commit_to(commit);
        let last_index = self.log.last_index();
        self.send(
            from,
            MessageBody::HeartbeatResponse {
                read_seq,
                last_index,
            },
        );
    }

    fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
        read_seq: u64,
    ) {
        let reply = |next_offset: u64, installed: bool, rejected: bool| {
            MessageBody::InstallSnapshotResponse {
                meta,
                next_offset,
                installed,
                rejected,
                read_seq,
            }
        };
        if meta.last_index <= self.log.commit {
            // We already have everything it covers.
            self.incoming_snapshot = None;
            let body = reply(offset + data.len() as u64, true, false);
            self.send(from, body);
            return;
        }
        if offset == 0 {
            self.incoming_snapshot = Some(IncomingSnapshot {
                meta,
                data: BytesMut::new(),
            });
        }
        let Some(incoming) = self.incoming_snapshot.as_mut().filter(|s| s.meta == meta) else {
            let body = reply(0, false, true);
            self.send(from, body);
            return;
        };
        if offset != incoming.data.len() as u64 {
            let next = incoming.data.len() as u64;
            self.send(from, reply(next, false, false));
            return;
        }
        incoming.data.extend_from_slice(&data);
        let next_offset = incoming.data.len() as u64;
        if !done {
            self.send(from, reply(next_offset, false, false));
            return;
        }
        let incoming = self.incoming_snapshot.take().expect("checked above");
        info!(
            index = meta.last_index,
            term = meta.last_term,
            "installing snapshot from leader"
        );
        self.log.install(meta);
        self.reads.fail_all();
        let snapshot = Snapshot {
            meta,
            data: incoming.data.freeze(),
        };
        self.snapshot_to_install = Some(snapshot.clone());
        self.latest_snapshot = Some(snapshot);
        self.send(from, reply(next_offset, true, false));
    }

    // ----- reads ----------------------------------------------------------

    /// Starts a confirmation round for reads waiting for one, once this
    /// leader has committed an entry of its own term (Raft §8).
    fn can_start_read_round(&self) -> bool {
        self.role == Role::Leader
            && self.reads.has_unsent()
            && self.log.term(self.log.commit) == Some(self.term)
    }

    fn start_read_round(&mut self) {
        if !self.can_start_read_round() {
            return;
        }
        let seq = self.reads.start_round(self.log.commit);
        if self.voters.len() == 1 {
            self.confirm_reads();
            return;
        }
        for peer in self.peers() {
            let commit = self.log.commit.min(self.progress[&peer].match_index);
            self.send(
                peer,
                MessageBody::Heartbeat {
                    commit,
                    read_seq: seq,
                },
            );
        }
    }

    fn confirm_reads(&mut self) {
        let quorum = self.quorum();
        let mut acks: Vec<u64> = self.progress.values().map(|p| p.read_seq_acked).collect();
        acks.push(u64::MAX); // this node
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed_seq = acks[quorum - 1];
        self.reads.confirm_up_to(confirmed_seq);
    }

    // ----- output -----------------------------------------------------------

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_with_term(to, self.term, body);
    }

    fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let message = Message {
            from: self.id,
            to,
            term,
            body,
        };
        if let MessageBody::AppendEntries { commit, .. } | MessageBody::Heartbeat { commit, .. } =
            message.body
        {
            if let Some(progress) = self.progress.get_mut(&to) {
                progress.commit_sent = progress.commit_sent.max(commit);
            }
        }
        // A leader's term and vote are durable since its candidacy, so its
        // messages may leave at once; anyone else may be answering on the
        // strength of state not yet durable.
        if self.role == Role::Leader {
            self.messages.push(message);
        } else {
            self.persisted_messages.push(message);
        }
    }

    /// Whether [`Raft::ready`] has anything to hand out.
    pub fn has_ready(&self) -> bool {
        !self.messages.is_empty()
            || !self.persisted_messages.is_empty()
            || self.log.has_unwritten()
            || self.log.has_committed()
            || self.snapshot_to_install.is_some()
            || self.reads.has_output()
            || self.can_start_read_round()
            || self.hard_state_changed()
    }

    fn hard_state_changed(&self) -> bool {
        self.term != self.written_hard_state.term || self.vote != self.written_hard_state.vote
    }

    /// Takes the work accumulated since the last call. See [`Ready`] for
    /// what to do with it; call [`Raft::advance`] after persisting.
    pub fn ready(&mut self, committed_max: usize) -> Ready {
        self.start_read_round();
        let snapshot = self.snapshot_to_install.take();
        let entries = self.log.take_unwritten();
        let hard_state = if self.hard_state_changed() || !entries.is_empty() || snapshot.is_some() {
            Some(self.hard_state())
        } else {
            None
        };
        if let Some(hard_state) = hard_state {
            self.written_hard_state = hard_state;
        }
        let (reads, failed_reads) = self.reads.take_output();
        Ready {
            hard_state,
            snapshot,
            entries,
            messages: std::mem::take(&mut self.messages),
            persisted_messages: std::mem::take(&mut self.persisted_messages),
            committed: self.log.take_committed(committed_max),
            reads,
            failed_reads,
        }
    }

    /// The writes of the last [`Ready`] are durable; `last_entry` is the
    /// index and term of its last entry, if it had entries.
    pub fn advance(&mut self, last_entry: Option<(LogIndex, Term)>) {
        if let Some((index, term)) = last_entry {
            self.log.persisted_to(index, term);
        }
        if self.role == Role::Leader && self.maybe_commit() {
            self.broadcast_commit();
        }
    }
}
