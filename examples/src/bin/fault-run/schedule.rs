//! The seeded fault schedule: which fault, when, on which node, for how
//! long. The whole schedule is drawn from the seed before the run starts,
//! so `--seed` with the same duration and fault list replays it. Only a
//! target named "the leader" is resolved when the fault fires, since which
//! node leads depends on the run.

use std::fmt;
use std::time::Duration;

use raft_core::NodeId;

/// raft-core's seeded generator with the helpers the schedule and the
/// clients need: the same sequence on every machine for a seed.
#[derive(Clone, Debug)]
pub struct Rng {
    inner: raft_core::Rng,
}

impl Rng {
    /// A generator whose sequence depends only on `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng {
            inner: raft_core::Rng::new(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A number in `0..bound` (`bound` > 0). The modulo bias is far below
    /// anything a fault schedule could show.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "an empty range has no member");
        self.next_u64() % bound
    }

    /// A duration in `[low_ms, high_ms]` milliseconds.
    pub fn millis_between(&mut self, low_ms: u64, high_ms: u64) -> Duration {
        assert!(low_ms <= high_ms, "the range {low_ms}..={high_ms} is empty");
        Duration::from_millis(low_ms + self.below(high_ms - low_ms + 1))
    }

    /// An independent generator for one user (a client, the nemesis),
    /// derived from this one's seed and `salt`.
    pub fn derive(seed: u64, salt: u64) -> Rng {
        let mut mixer = Rng::new(seed ^ salt.wrapping_mul(0xd6e8_feb8_6659_fd93));
        Rng::new(mixer.next_u64())
    }
}

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum FaultKind {
    /// SIGKILL a node chosen by the seed, restart it on its data after the
    /// hold time.
    Kill,
    /// SIGKILL the node that leads when the fault fires, restart it later.
    KillLeader,
    /// SIGSTOP a node chosen by the seed, SIGCONT it after the hold time:
    /// to the others it looks cut off, and it wakes up with old beliefs.
    Pause,
    /// SIGSTOP the leader, SIGCONT it later.
    PauseLeader,
    /// SIGKILL all three nodes, restart them all after the hold time.
    KillAll,
    /// Cut a node chosen by the seed off from the other nodes (clients
    /// still reach it), heal after the hold time. Needs a network
    /// namespace (`--partitions`).
    Partition,
    /// Cut the leader off from the other nodes, heal later.
    PartitionLeader,
}

impl FaultKind {
    /// Every kind, in the order of the command line's default.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::KillLeader,
        FaultKind::Pause,
        FaultKind::PauseLeader,
        FaultKind::KillAll,
        FaultKind::Partition,
        FaultKind::PartitionLeader,
    ];

    /// Whether the fault cuts links (and so needs the network namespace).
    pub fn is_partition(self) -> bool {
        matches!(self, FaultKind::Partition | FaultKind::PartitionLeader)
    }

    /// Whether the target is whichever node leads when the fault fires.
    pub fn targets_leader(self) -> bool {
        matches!(
            self,
            FaultKind::KillLeader | FaultKind::PauseLeader | FaultKind::PartitionLeader
        )
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::Pause => "pause",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::KillAll => "kill-all",
            FaultKind::Partition => "partition",
            FaultKind::PartitionLeader => "partition-leader",
        }
    }

    /// How long the fault may last, in milliseconds: long enough for an
    /// election to happen (elections take 0.5 to 1 s with kv-server's
    /// default timing), short enough that a run sees many faults.
    fn hold_range_ms(self) -> (u64, u64) {
        match self {
            FaultKind::Kill | FaultKind::KillLeader => (500, 3_000),
            FaultKind::Pause | FaultKind::PauseLeader => (1_000, 4_000),
            FaultKind::KillAll => (500, 2_000),
            FaultKind::Partition | FaultKind::PartitionLeader => (1_000, 5_000),
        }
    }
}

/// One fault of the schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFault {
    /// When it starts, from the start of the workload.
    pub at: Duration,
    /// What it does.
    pub kind: FaultKind,
    /// The node it hits when the kind does not target the leader; for a
    /// leader target, the node hit when no leader is known.
    pub node: NodeId,
    /// How long it lasts before it is healed.
    pub hold: Duration,
}

impl fmt::Display for PlannedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>7.3} s  {:<16}",
            self.at.as_secs_f64(),
            self.kind.name()
        )?;
        match self.kind {
            FaultKind::KillAll => write!(f, " all nodes      ")?,
            kind if kind.targets_leader() => write!(f, " the leader     ")?,
            _ => write!(f, " node {:<10}", self.node)?,
        }
        write!(f, " for {:.3} s", self.hold.as_secs_f64())
    }
}

/// First fault no earlier than this: the clients get going first.
const WARM_UP_MS: (u64, u64) = (1_500, 3_000);

/// Quiet time between the heal of one fault and the next fault.
const GAP_MS: (u64, u64) = (1_000, 4_000);

/// Every fault is healed this long before the workload ends, so the last
/// operations see a healthy cluster.
const QUIET_TAIL: Duration = Duration::from_secs(2);

/// Draws the schedule for a workload of `duration` from `seed`: one fault
/// at a time, each healed before the next, with kinds drawn from `kinds`
/// and nodes from `nodes`. An empty `kinds` gives an empty schedule.
pub fn plan(
    seed: u64,
    duration: Duration,
    kinds: &[FaultKind],
    nodes: &[NodeId],
) -> Vec<PlannedFault> {
    assert!(!nodes.is_empty(), "a schedule needs nodes");
    let mut rng = Rng::derive(seed, 0x5c4e_d01e);
    let mut faults = Vec::new();
    if kinds.is_empty() {
        return faults;
    }
    let end = duration.saturating_sub(QUIET_TAIL);
    let mut at = rng.millis_between(WARM_UP_MS.0, WARM_UP_MS.1);
    loop {
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let (hold_min_ms, hold_max_ms) = kind.hold_range_ms();
        let hold = rng.millis_between(hold_min_ms, hold_max_ms);
        let node = nodes[rng.below(nodes.len() as u64) as usize];
        if at + hold > end {
            break;
        }
        faults.push(PlannedFault {
            at,
            kind,
            node,
            hold,
        });
        at += hold + rng.millis_between(GAP_MS.0, GAP_MS.1);
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_the_same_schedule() {
        let nodes = [1, 2, 3];
        let first = plan(17, Duration::from_secs(60), &FaultKind::ALL, &nodes);
        let second = plan(17, Duration::from_secs(60), &FaultKind::ALL, &nodes);
        let other = plan(18, Duration::from_secs(60), &FaultKind::ALL, &nodes);
        assert_eq!(first, second);
        assert_ne!(first, other);
    }

    #[test]
    fn faults_do_not_overlap_and_end_before_the_quiet_tail() {
        let duration = Duration::from_secs(60);
        for seed in 0..200 {
            let faults = plan(seed, duration, &FaultKind::ALL, &[1, 2, 3]);
            assert!(faults.len() >= 5, "seed {seed}: only {}", faults.len());
            for pair in faults.windows(2) {
                assert!(pair[0].at + pair[0].hold < pair[1].at, "seed {seed}");
            }
            let last = faults.last().expect("faults");
            assert!(last.at + last.hold <= duration - QUIET_TAIL, "seed {seed}");
        }
    }

    #[test]
    fn only_the_chosen_kinds_appear() {
        let faults = plan(3, Duration::from_secs(120), &[FaultKind::Pause], &[1, 2, 3]);
        assert!(!faults.is_empty());
        assert!(faults.iter().all(|fault| fault.kind == FaultKind::Pause));
        assert!(plan(3, Duration::from_secs(120), &[], &[1, 2, 3]).is_empty());
    }
}
