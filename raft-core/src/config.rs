//! Node configuration.

use std::time::Duration;

use crate::error::Error;
use crate::types::NodeId;

/// How a node behaves. The voters list is static: membership changes are not
/// supported (see the crate's known limitations).
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id; must be one of `voters`.
    pub id: NodeId,
    /// Every voting member of the cluster, this node included. Zero is not a
    /// valid id.
    pub voters: Vec<NodeId>,
    /// Length of one logical clock tick.
    pub tick_interval: Duration,
    /// Ticks between two heartbeats of a leader.
    pub heartbeat_ticks: u32,
    /// Lower bound of the randomized election timeout, in ticks. It is also
    /// the leader lease that check-quorum relies on.
    pub election_ticks_min: u32,
    /// Upper bound (exclusive) of the randomized election timeout, in ticks.
    pub election_ticks_max: u32,
    /// Run a pre-vote round before raising the term (Raft thesis §9.6), so a
    /// node rejoining after a partition cannot depose a healthy leader.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum for an election timeout
    /// steps down, and followers that heard from a leader within the minimum
    /// election timeout refuse votes (thesis §6.2, §4.2.3).
    pub check_quorum: bool,
    /// How many appends carrying entries may be in flight to one follower.
    pub inflight_appends_max: usize,
    /// Upper bound on the payload bytes of one append message (at least one
    /// entry is always sent).
    pub append_bytes_max: usize,
    /// Upper bound on the entries of one append message.
    pub append_entries_max: usize,
    /// Size of one snapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// Take a snapshot once this many applied entries follow the last one;
    /// `None` disables automatic snapshots.
    pub snapshot_entries_threshold: Option<u64>,
    /// How many requests (proposals and reads) may wait in the node before new
    /// ones are refused with [`Error::Overloaded`].
    pub pending_requests_max: usize,
    /// Seed of the randomized election timeouts. Nodes should use different
    /// seeds; the simulation derives them from its own seed.
    pub seed: u64,
}

impl Config {
    /// A configuration with sensible defaults for a cluster on one LAN:
    /// 10 ms ticks, heartbeats every 50 ms, elections after 500–1000 ms.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            tick_interval: Duration::from_millis(10),
            heartbeat_ticks: 5,
            election_ticks_min: 50,
            election_ticks_max: 100,
            pre_vote: true,
            check_quorum: true,
            inflight_appends_max: 64,
            append_bytes_max: 1 << 20,
            append_entries_max: 4096,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_entries_threshold: None,
            pending_requests_max: 65_536,
            seed: id,
        }
    }

    /// Checks the configuration for values that cannot work.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |text: String| Err(Error::InvalidConfig(text));
        if self.id == 0 {
            return invalid("node id 0 is reserved".into());
        }
        if self.voters.is_empty() {
            return invalid("the voters list is empty".into());
        }
        if self.voters.contains(&0) {
            return invalid("node id 0 in the voters list is reserved".into());
        }
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.voters.len() {
            return invalid("the voters list names a node twice".into());
        }
        if !self.voters.contains(&self.id) {
            return invalid(format!("node {} is not in the voters list", self.id));
        }
        if self.tick_interval.is_zero() {
            return invalid("tick_interval must be positive".into());
        }
        if self.heartbeat_ticks == 0 {
            return invalid("heartbeat_ticks must be positive".into());
        }
        if self.election_ticks_min <= self.heartbeat_ticks {
            return invalid(format!(
                "election_ticks_min ({}) must exceed heartbeat_ticks ({})",
                self.election_ticks_min, self.heartbeat_ticks
            ));
        }
        if self.election_ticks_max <= self.election_ticks_min {
            return invalid(format!(
                "election_ticks_max ({}) must exceed election_ticks_min ({})",
                self.election_ticks_max, self.election_ticks_min
            ));
        }
        if self.inflight_appends_max == 0 {
            return invalid("inflight_appends_max must be positive".into());
        }
        if self.append_entries_max == 0 || self.append_bytes_max == 0 {
            return invalid("append_entries_max and append_bytes_max must be positive".into());
        }
        if self.snapshot_chunk_bytes == 0 {
            return invalid("snapshot_chunk_bytes must be positive".into());
        }
        if self.snapshot_entries_threshold == Some(0) {
            return invalid("snapshot_entries_threshold must be positive when set".into());
        }
        if self.pending_requests_max == 0 {
            return invalid("pending_requests_max must be positive".into());
        }
        Ok(())
    }
}
