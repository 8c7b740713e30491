//! Plain data shared by the core, the driver and every backend.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies a node of the cluster. Zero is reserved for "nobody".
pub type NodeId = u64;

/// A Raft term (Raft §5.1). Terms only ever grow on a node.
pub type Term = u64;

/// A position in the replicated log. The first entry has index 1; index 0 is
/// the empty prefix, whose term is 0.
pub type LogIndex = u64;

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryPayload {
    /// The entry a new leader appends to commit entries of earlier terms
    /// (Raft §5.4.2, §8). The state machine never sees it.
    Blank,
    /// An opaque command for the state machine.
    Command(Bytes),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Position of the entry in the log.
    pub index: LogIndex,
    /// What the entry carries.
    pub payload: EntryPayload,
}

impl Entry {
    /// Bytes of command data the entry carries, used for batching limits.
    pub fn payload_len(&self) -> usize {
        match &self.payload {
            EntryPayload::Blank => 0,
            EntryPayload::Command(data) => data.len(),
        }
    }
}

/// The part of a node's state that must survive a crash (Raft figure 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    /// Latest term this node has seen.
    pub term: Term,
    /// The node this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// A commit index known to this node. It may lag behind the real one: on
    /// restart the node learns the rest from the leader.
    pub commit: LogIndex,
}

/// Position of the last entry a snapshot covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot includes.
    pub last_index: LogIndex,
    /// Term of that entry.
    pub last_term: Term,
}

/// A state-machine snapshot and the log position it stands for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    /// The log position the data reflects.
    pub meta: SnapshotMeta,
    /// The state machine's own serialization of its state.
    pub data: Bytes,
}

/// What a node currently believes it is (Raft §5.2, plus pre-vote from the
/// Raft thesis §9.6).
///
/// ```text
///              timeout                 pre-votes from a quorum
///   Follower ───────────▶ PreCandidate ──────────────────────▶ Candidate
///      ▲  ▲                    │                                 │  │
///      │  └──── higher term ───┘          votes from a quorum    │  │
///      │       or a leader                ┌──────────────────────┘  │
///      │                                  ▼                         │
///      └───────── higher term ──────── Leader       timeout: retry ─┘
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader, or waits for one.
    Follower,
    /// Asks whether it could win an election, without raising its term.
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Replicates the log and serves requests.
    Leader,
}

/// A point-in-time view of a node, published by the driver after each step.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of in `term`.
    pub leader: Option<NodeId>,
    /// Highest log index known to be committed.
    pub commit: LogIndex,
    /// Highest log index applied to the state machine.
    pub applied: LogIndex,
    /// Index of the first entry still in the log (after the snapshot).
    pub first_index: LogIndex,
    /// Index of the last entry in the log.
    pub last_index: LogIndex,
    /// Highest index known to be durable in local storage.
    pub persisted_index: LogIndex,
    /// Last index the latest snapshot covers (0 without a snapshot).
    pub snapshot_index: LogIndex,
}
