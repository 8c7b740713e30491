//! What a leader knows about each follower's log (Raft figure 2,
//! `nextIndex` and `matchIndex`), and how it paces sending to it.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::types::{LogIndex, SnapshotMeta};

/// How the leader sends to one follower.
///
/// ```text
///            append accepted                 next entry compacted
///   Probe ───────────────────▶ Replicate     Probe ─────────────────▶ Snapshot
///     ▲                            │           ▲                         │
///     └──────── append refused ────┘           └─── snapshot installed ──┘
/// ```
#[derive(Clone, Debug)]
pub(crate) enum ReplicationState {
    /// One append at a time until the follower's match is found.
    Probe {
        /// An append is in flight; wait for its answer or a heartbeat answer.
        sent: bool,
    },
    /// Appends stream optimistically, up to a window.
    Replicate,
    /// The follower needs a snapshot; chunks go one at a time.
    Snapshot {
        /// The snapshot being sent.
        meta: SnapshotMeta,
        /// Its data.
        data: Bytes,
        /// Offset of the chunk in flight (or to send next).
        offset: u64,
    },
}

/// The leader's view of one follower.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// Highest index known to match the leader's log.
    pub(crate) match_index: LogIndex,
    /// Next index to send.
    pub(crate) next_index: LogIndex,
    /// How sending proceeds.
    pub(crate) state: ReplicationState,
    /// Last index of each append in flight, oldest first (Replicate only).
    pub(crate) inflight: VecDeque<LogIndex>,
    /// Heard from the follower since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// Highest read round the follower has answered.
    pub(crate) read_seq_acked: u64,
    /// Highest commit index sent to the follower.
    pub(crate) commit_sent: LogIndex,
}

impl Progress {
    pub(crate) fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ReplicationState::Probe { sent: false },
            inflight: VecDeque::new(),
            recent_active: false,
            read_seq_acked: 0,
            commit_sent: 0,
        }
    }

    /// Records an accepted append; returns whether `match_index` grew.
    pub(crate) fn accept(&mut self, match_index: LogIndex) -> bool {
        let grew = match_index > self.match_index;
        if grew {
            self.match_index = match_index;
        }
        self.next_index = self.next_index.max(match_index + 1);
        while self
            .inflight
            .front()
            .is_some_and(|last| *last <= match_index)
        {
            self.inflight.pop_front();
        }
        if let ReplicationState::Probe { .. } = self.state {
            self.state = ReplicationState::Replicate;
            self.inflight.clear();
        }
        grew
    }

    /// Falls back to probing from `next_index`.
    pub(crate) fn probe_from(&mut self, next_index: LogIndex) {
        self.next_index = next_index.max(self.match_index + 1);
        self.state = ReplicationState::Probe { sent: false };
        self.inflight.clear();
    }

    /// Whether the leader may send another append now.
    pub(crate) fn can_send(&self, inflight_max: usize) -> bool {
        match self.state {
            ReplicationState::Probe { sent } => !sent,
            ReplicationState::Replicate => self.inflight.len() < inflight_max,
            ReplicationState::Snapshot { .. } => false,
        }
    }
}
