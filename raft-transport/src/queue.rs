//! The bounded per-peer send queue and its drop policy.

use std::collections::VecDeque;

use raft_core::Message;

/// What happened to a message handed to [`PeerQueue::push`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushOutcome {
    /// Queued; nothing was dropped.
    Queued,
    /// Queued, and an older message was dropped to make room.
    QueuedDroppingOlder,
    /// The new message itself was dropped.
    Dropped,
}

/// Messages waiting for one peer: small ones for the long-lived stream and
/// bulk ones (snapshot chunks) for their own streams, each bounded.
#[derive(Debug)]
pub(crate) struct PeerQueue {
    /// Small messages, oldest first.
    small: VecDeque<Message>,
    /// Bulk messages, oldest first.
    bulk: VecDeque<Message>,
    /// Bound of `small`.
    small_max: usize,
    /// Bound of `bulk`.
    bulk_max: usize,
}

impl PeerQueue {
    pub(crate) fn new(small_max: usize, bulk_max: usize) -> PeerQueue {
        assert!(small_max > 0 && bulk_max > 0);
        PeerQueue {
            small: VecDeque::new(),
            bulk: VecDeque::new(),
            small_max,
            bulk_max,
        }
    }

    /// Queues `message`, making room by the drop policy: for small
    /// messages, the oldest queued heartbeat first (the next heartbeat
    /// supersedes it), then the new message if it is a heartbeat, then the
    /// oldest message; for bulk messages, the oldest.
    pub(crate) fn push(&mut self, message: Message) -> PushOutcome {
        if message.is_bulk() {
            let outcome = if self.bulk.len() >= self.bulk_max {
                self.bulk.pop_front();
                PushOutcome::QueuedDroppingOlder
            } else {
                PushOutcome::Queued
            };
            self.bulk.push_back(message);
            debug_assert!(self.bulk.len() <= self.bulk_max);
            return outcome;
        }

        let mut outcome = PushOutcome::Queued;
        if self.small.len() >= self.small_max {
            if let Some(position) = self.small.iter().position(Message::is_heartbeat) {
                self.small.remove(position);
            } else if message.is_heartbeat() {
                return PushOutcome::Dropped;
            } else {
                self.small.pop_front();
            }
            outcome = PushOutcome::QueuedDroppingOlder;
        }
        self.small.push_back(message);
        debug_assert!(self.small.len() <= self.small_max);
        outcome
    }

    /// Moves every queued small message into `batch`, oldest first.
    pub(crate) fn drain_small(&mut self, batch: &mut Vec<Message>) {
        batch.extend(self.small.drain(..));
    }

    /// Takes the oldest bulk message.
    pub(crate) fn pop_bulk(&mut self) -> Option<Message> {
        self.bulk.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raft_core::{MessageBody, SnapshotMeta};

    use super::*;

    fn heartbeat(term: u64) -> Message {
        Message {
            from: 1,
            to: 2,
            term,
            body: MessageBody::Heartbeat {
                commit: 0,
                read_seq: 0,
            },
        }
    }

    fn vote(term: u64) -> Message {
        Message {
            from: 1,
            to: 2,
            term,
            body: MessageBody::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            },
        }
    }

    fn chunk(offset: u64) -> Message {
        Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::InstallSnapshot {
                meta: SnapshotMeta::default(),
                offset,
                data: Bytes::from_static(b"chunk"),
                done: false,
                read_seq: 0,
            },
        }
    }

    fn drained_terms(queue: &mut PeerQueue) -> Vec<u64> {
        let mut batch = Vec::new();
        queue.drain_small(&mut batch);
        batch.iter().map(|message| message.term).collect()
    }

    #[test]
    fn full_queue_drops_the_oldest_heartbeat_before_any_other_message() {
        let mut queue = PeerQueue::new(3, 1);
        assert_eq!(queue.push(vote(1)), PushOutcome::Queued);
        assert_eq!(queue.push(heartbeat(2)), PushOutcome::Queued);
        assert_eq!(queue.push(heartbeat(3)), PushOutcome::Queued);
        assert_eq!(queue.push(vote(4)), PushOutcome::QueuedDroppingOlder);
        assert_eq!(drained_terms(&mut queue), vec![1, 3, 4]);
    }

    #[test]
    fn full_queue_without_heartbeats_drops_a_new_heartbeat() {
        let mut queue = PeerQueue::new(2, 1);
        queue.push(vote(1));
        queue.push(vote(2));
        assert_eq!(queue.push(heartbeat(3)), PushOutcome::Dropped);
        assert_eq!(drained_terms(&mut queue), vec![1, 2]);
    }

    #[test]
    fn full_queue_without_heartbeats_drops_the_oldest_message_for_a_new_one() {
        let mut queue = PeerQueue::new(2, 1);
        queue.push(vote(1));
        queue.push(vote(2));
        assert_eq!(queue.push(vote(3)), PushOutcome::QueuedDroppingOlder);
        assert_eq!(drained_terms(&mut queue), vec![2, 3]);
    }

    #[test]
    fn bulk_messages_queue_apart_and_drop_oldest() {
        let mut queue = PeerQueue::new(1, 2);
        queue.push(vote(1));
        queue.push(chunk(0));
        queue.push(chunk(1));
        assert_eq!(queue.push(chunk(2)), PushOutcome::QueuedDroppingOlder);
        assert_eq!(drained_terms(&mut queue), vec![1]);
        let offsets: Vec<u64> = std::iter::from_fn(|| queue.pop_bulk())
            .map(|message| match message.body {
                MessageBody::InstallSnapshot { offset, .. } => offset,
                _ => unreachable!("only chunks are bulk"),
            })
            .collect();
        assert_eq!(offsets, vec![1, 2]);
    }
}
