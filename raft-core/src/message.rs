//! The messages nodes exchange. A transport moves them opaquely; they are
//! serde types so that any encoding works (the QUIC transport uses
//! rmp-serde).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::types::{Entry, LogIndex, NodeId, SnapshotMeta, Term};

/// One message from one node to another.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The sender's term; for a pre-vote request, the term it would stand in.
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// How a follower answers an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AppendOutcome {
    /// The follower's log now matches the leader's up to `match_index`.
    Success {
        /// Last index known to match the leader's log.
        match_index: LogIndex,
    },
    /// The entry before the append did not match. The hint lets the leader
    /// skip a whole term per round trip instead of one entry (Raft §5.3,
    /// "fast back-up").
    Conflict {
        /// The `prev_index` of the append that was refused, so the leader
        /// can tell a stale refusal from a current one.
        rejected_index: LogIndex,
        /// Term of the follower's entry at the append's `prev_index`, or `None`
        /// when the follower's log is shorter than that.
        conflict_term: Option<Term>,
        /// First index of `conflict_term` in the follower's log, or the
        /// follower's last index + 1 when `conflict_term` is `None`.
        conflict_index: LogIndex,
    },
}

/// The body of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageBody {
    /// Ask for a vote (Raft §5.2), or for a pre-vote (thesis §9.6).
    RequestVote {
        /// A pre-vote changes no state on the voter.
        pre_vote: bool,
        /// Index of the candidate's last entry (§5.4.1).
        last_log_index: LogIndex,
        /// Term of the candidate's last entry (§5.4.1).
        last_log_term: Term,
        /// Set when a leader handed leadership over: voters then ignore their
        /// leader lease (thesis §3.10).
        transfer: bool,
    },
    /// The answer to [`MessageBody::RequestVote`].
    RequestVoteResponse {
        /// Echoes the request's `pre_vote`.
        pre_vote: bool,
        /// Whether the vote is granted.
        granted: bool,
    },
    /// Replicate entries (Raft §5.3).
    AppendEntries {
        /// Index of the entry just before `entries`.
        prev_index: LogIndex,
        /// Term of that entry.
        prev_term: Term,
        /// Entries to append, contiguous from `prev_index + 1`. May be empty.
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: LogIndex,
        /// The leader's read round when it sent this; echoed in the reply to
        /// confirm leadership for ReadIndex.
        read_seq: u64,
    },
    /// The answer to [`MessageBody::AppendEntries`].
    AppendEntriesResponse {
        /// What the follower did.
        outcome: AppendOutcome,
        /// The follower's last log index after the append.
        last_index: LogIndex,
        /// Echo of the request's `read_seq`.
        read_seq: u64,
    },
    /// Keep followers from starting elections and tell them the commit index.
    Heartbeat {
        /// The leader's commit index, capped at what this follower is known
        /// to hold, so the follower may commit up to it without a log check.
        commit: LogIndex,
        /// The leader's read round; echoed in the reply.
        read_seq: u64,
    },
    /// The answer to [`MessageBody::Heartbeat`].
    HeartbeatResponse {
        /// Echo of the heartbeat's `read_seq`.
        read_seq: u64,
        /// The follower's last log index, so the leader can resume sending
        /// to a follower that fell behind.
        last_index: LogIndex,
    },
    /// One chunk of a snapshot, sent to a follower whose next entry the
    /// leader no longer has (Raft §7).
    InstallSnapshot {
        /// The position the snapshot stands for.
        meta: SnapshotMeta,
        /// Byte offset of `data` within the snapshot.
        offset: u64,
        /// The chunk.
        data: Bytes,
        /// Whether this is the last chunk.
        done: bool,
        /// The leader's read round; echoed in the reply.
        read_seq: u64,
    },
    /// The answer to [`MessageBody::InstallSnapshot`].
    InstallSnapshotResponse {
        /// The snapshot the answer is about.
        meta: SnapshotMeta,
        /// The offset the follower expects next; equal to the full length
        /// once the snapshot is installed.
        next_offset: u64,
        /// Whether the whole snapshot is installed.
        installed: bool,
        /// Whether the follower gave up on this transfer (an out-of-order
        /// chunk it cannot use) and the leader should restart at offset 0.
        rejected: bool,
        /// Echo of the chunk's `read_seq`.
        read_seq: u64,
    },
    /// Start an election at once: the leader hands leadership over.
    TimeoutNow,
}

impl MessageBody {
    /// A short name of the kind of message, for logs and statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::RequestVote { pre_vote: true, .. } => "pre_vote",
            MessageBody::RequestVote { .. } => "vote",
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => "pre_vote_response",
            MessageBody::RequestVoteResponse { .. } => "vote_response",
            MessageBody::AppendEntries { entries, .. } if entries.is_empty() => "append_empty",
            MessageBody::AppendEntries { .. } => "append",
            MessageBody::AppendEntriesResponse { .. } => "append_response",
            MessageBody::Heartbeat { .. } => "heartbeat",
            MessageBody::HeartbeatResponse { .. } => "heartbeat_response",
            MessageBody::InstallSnapshot { .. } => "install_snapshot",
            MessageBody::InstallSnapshotResponse { .. } => "install_snapshot_response",
            MessageBody::TimeoutNow => "timeout_now",
        }
    }
}

impl Message {
    /// Whether the message carries bulk data (a snapshot chunk) that a
    /// transport should move apart from small latency-sensitive messages.
    pub fn is_bulk(&self) -> bool {
        matches!(self.body, MessageBody::InstallSnapshot { .. })
    }

    /// Whether the message is a heartbeat or its answer: the first thing a
    /// transport may drop under pressure, since the next one supersedes it.
    pub fn is_heartbeat(&self) -> bool {
        matches!(
            self.body,
            MessageBody::Heartbeat { .. } | MessageBody::HeartbeatResponse { .. }
        )
    }
}
