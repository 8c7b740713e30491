//! ReadIndex (Raft thesis §6.4): a read is served at the commit index a
//! leader had when the read arrived, once a quorum has confirmed, after the
//! read arrived, that the leader still leads.
//!
//! Reads that arrive together share one confirmation round. Every message a
//! leader sends carries the number of its latest round (`read_seq`); a
//! follower echoes it, so an echo of round `s` proves contact after round
//! `s` began.

use std::collections::VecDeque;

use crate::types::LogIndex;

/// A read confirmed by a quorum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's id for the read.
    pub id: u64,
    /// The read may be served once the state machine has applied this index.
    pub index: LogIndex,
}

/// One confirmation round.
#[derive(Debug)]
struct Round {
    seq: u64,
    index: LogIndex,
    ids: Vec<u64>,
}

/// The leader's reads, from arrival to confirmation.
#[derive(Debug, Default)]
pub(crate) struct ReadQueue {
    /// Number of the latest round started.
    seq: u64,
    /// Reads that arrived since the latest round started.
    unsent: Vec<u64>,
    /// Rounds awaiting a quorum, oldest first.
    rounds: VecDeque<Round>,
    confirmed: Vec<ReadState>,
    failed: Vec<u64>,
}

impl ReadQueue {
    pub(crate) fn current_seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn push(&mut self, id: u64) {
        self.unsent.push(id);
    }

    pub(crate) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Starts a round for every unsent read, at commit index `index`.
    pub(crate) fn start_round(&mut self, index: LogIndex) -> u64 {
        debug_assert!(self.has_unsent());
        self.seq += 1;
        let ids = std::mem::take(&mut self.unsent);
        self.rounds.push_back(Round {
            seq: self.seq,
            index,
            ids,
        });
        self.seq
    }

    /// A quorum has answered round `seq` or a later one.
    pub(crate) fn confirm_up_to(&mut self, seq: u64) {
        while self.rounds.front().is_some_and(|round| round.seq <= seq) {
            let round = self.rounds.pop_front().expect("checked");
            let index = round.index;
            self.confirmed
                .extend(round.ids.into_iter().map(|id| ReadState { id, index }));
        }
    }

    /// Leadership is lost: no waiting read can be confirmed any more.
    pub(crate) fn fail_all(&mut self) {
        self.failed.append(&mut self.unsent);
        for round in self.rounds.drain(..) {
            self.failed.extend(round.ids);
        }
    }

    pub(crate) fn has_output(&self) -> bool {
        !self.confirmed.is_empty() || !self.failed.is_empty()
    }

    pub(crate) fn take_output(&mut self) -> (Vec<ReadState>, Vec<u64>) {
        (
            std::mem::take(&mut self.confirmed),
            std::mem::take(&mut self.failed),
        )
    }
}
