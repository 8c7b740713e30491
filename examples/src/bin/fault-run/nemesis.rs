//! The nemesis: carries out the fault schedule against the running nodes,
//! one fault at a time, and heals each fault after its hold time.
//!
//! It also watches for nodes that exit without being killed (a crash is a
//! finding: it is reported, counted, and the node is restarted so that the
//! run goes on).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kv_clerk::quic::QuicConnector;
use kv_clerk::Clerk;
use kv_service::HistoryRecorder;
use raft_core::NodeId;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::{describe_status, tail, Cluster};
use crate::netns;
use crate::schedule::{FaultKind, PlannedFault};

/// A fault as it happened.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FaultRecord {
    /// What it was.
    pub fault: &'static str,
    /// The nodes it hit.
    pub nodes: Vec<NodeId>,
    /// For a leader target: whether a leader was known (else a node of the
    /// schedule was hit instead).
    pub leader_known: Option<bool>,
    /// When it started, on the history's clock (nanoseconds).
    pub at_ns: u64,
    /// When it was healed, on the history's clock; `None` if healing failed.
    pub healed_ns: Option<u64>,
}

/// A node that exited although nobody killed it.
#[derive(Clone, Debug)]
pub struct UnexpectedExit {
    /// Which node.
    pub node: NodeId,
    /// When it was noticed, on the history's clock (nanoseconds).
    pub at_ns: u64,
    /// How it ended.
    pub status: String,
}

/// Everything the nemesis did and saw.
#[derive(Debug, Default)]
pub struct NemesisReport {
    /// The faults, in order.
    pub faults: Vec<FaultRecord>,
    /// Nodes that exited by themselves.
    pub unexpected_exits: Vec<UnexpectedExit>,
    /// Faults or heals that could not be carried out.
    pub errors: Vec<String>,
}

impl NemesisReport {
    /// How many faults of each kind ran.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for fault in &self.faults {
            *counts.entry(fault.fault).or_default() += 1;
        }
        counts
    }
}

/// Runs faults on a cluster it borrows.
pub struct Nemesis<'a> {
    cluster: &'a mut Cluster,
    /// A clerk that is not recorded, for finding the leader.
    probe: Clerk<QuicConnector>,
    /// The history's clock, so faults line up with operations; until the
    /// history starts, a clock of its own.
    clock: Arc<HistoryRecorder>,
    /// Whether partitions are in force and must be healed.
    partitioned: bool,
    /// What happened.
    pub report: NemesisReport,
}

/// The key the probe reads to learn the leader; the clients never use it.
const PROBE_KEY: &str = "fault-run-probe";

/// How often the nemesis looks for nodes that exited by themselves.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

impl<'a> Nemesis<'a> {
    /// A nemesis for `cluster`; `probe` finds the leader.
    pub fn new(cluster: &'a mut Cluster, probe: Clerk<QuicConnector>) -> Nemesis<'a> {
        Nemesis {
            cluster,
            probe,
            clock: HistoryRecorder::new(),
            partitioned: false,
            report: NemesisReport::default(),
        }
    }

    /// From now on, tells times on the clock of `recorder`'s history.
    pub fn use_clock_of(&mut self, recorder: Arc<HistoryRecorder>) {
        self.clock = recorder;
    }

    /// Nanoseconds since the history's origin.
    fn now_ns(&self) -> u64 {
        self.clock.nanos(Instant::now())
    }

    fn say(&self, text: &str) {
        println!("[{:>8.3} s] {text}", self.now_ns() as f64 / 1e9);
    }

    /// Reads through the probe clerk: the node that answers as leader.
    pub async fn find_leader(&self, time_max: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + time_max;
        self.probe.get_by(PROBE_KEY, deadline).await.ok()?;
        self.probe.leader()
    }

    /// Reports the nodes that exited by themselves and, with `restart`,
    /// starts them again; returns how many exited.
    fn watch_exits_and(&mut self, restart: bool) -> usize {
        let exited = self.cluster.reap_exited();
        let count = exited.len();
        for (node, status) in exited {
            let status = describe_status(&status);
            self.say(&format!(
                "UNEXPECTED: node {node} exited by itself ({status}); its log ends with:\n{}",
                tail(&self.cluster.node(node).log, 15)
            ));
            self.report.unexpected_exits.push(UnexpectedExit {
                node,
                at_ns: self.now_ns(),
                status,
            });
            if !restart {
                continue;
            }
            if let Err(error) = self.cluster.start(node) {
                self.report
                    .errors
                    .push(format!("cannot restart node {node}: {error:#}"));
            }
        }
        count
    }

    /// Reports and restarts the nodes that exited by themselves.
    fn watch_exits(&mut self) {
        self.watch_exits_and(true);
    }

    /// The log file of node `node`.
    pub fn log_of(&self, node: NodeId) -> std::path::PathBuf {
        self.cluster.node(node).log.clone()
    }

    /// Waits until `at`, watching the nodes; false when `stop` fired first.
    async fn wait_until(&mut self, at: Instant, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            self.watch_exits();
            if *stop.borrow() {
                return false;
            }
            let now = Instant::now();
            if now >= at {
                return true;
            }
            let wake = at.min(now + WATCH_INTERVAL);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Carries out `schedule` (times from `start`), until it ends or `stop`
    /// fires; every fault is healed before this returns.
    pub async fn run(
        &mut self,
        schedule: &[PlannedFault],
        start: Instant,
        mut stop: watch::Receiver<bool>,
    ) {
        for planned in schedule {
            if !self.wait_until(start + planned.at, &mut stop).await {
                break;
            }
            let (nodes, leader_known) = self.targets(planned).await;
            let at_ns = self.now_ns();
            let injected = self.inject(planned.kind, &nodes);
            let mut record = FaultRecord {
                fault: planned.kind.name(),
                nodes: nodes.clone(),
                leader_known,
                at_ns,
                healed_ns: None,
            };
            if let Err(error) = injected {
                self.report
                    .errors
                    .push(format!("{} on {nodes:?}: {error:#}", planned.kind.name()));
                self.report.faults.push(record);
                continue;
            }
            let describe = match (planned.kind, leader_known) {
                (FaultKind::KillAll, _) => "all nodes".to_string(),
                (_, Some(true)) => format!("node {} (the leader)", nodes[0]),
                (_, Some(false)) => format!("node {} (no leader known)", nodes[0]),
                (_, None) => format!("node {}", nodes[0]),
            };
            self.say(&format!(
                "{} {describe} for {:.3} s",
                planned.kind.name(),
                planned.hold.as_secs_f64()
            ));

            let heal_at = Instant::now() + planned.hold;
            // Heal on time, or at once when the run is stopped.
            let _ = self.wait_until(heal_at, &mut stop).await;
            match self.heal(planned.kind, &nodes) {
                Ok(()) => {
                    record.healed_ns = Some(self.now_ns());
                    self.say(&format!("healed {} {describe}", planned.kind.name()));
                }
                Err(error) => self.report.errors.push(format!(
                    "healing {} on {nodes:?}: {error:#}",
                    planned.kind.name()
                )),
            }
            self.report.faults.push(record);
        }
        // The quiet tail: keep watching the nodes until the workload ends.
        while self
            .wait_until(Instant::now() + WATCH_INTERVAL, &mut stop)
            .await
        {
            if stop.has_changed().is_err() {
                break;
            }
        }
    }

    /// The nodes a fault hits, and for a leader target whether the leader
    /// was known.
    async fn targets(&self, planned: &PlannedFault) -> (Vec<NodeId>, Option<bool>) {
        if planned.kind == FaultKind::KillAll {
            return (self.cluster.ids(), None);
        }
        if !planned.kind.targets_leader() {
            return (vec![planned.node], None);
        }
        match self.find_leader(Duration::from_secs(1)).await {
            Some(leader) => (vec![leader], Some(true)),
            None => (vec![planned.node], Some(false)),
        }
    }

    fn inject(&mut self, kind: FaultKind, nodes: &[NodeId]) -> anyhow::Result<()> {
        match kind {
            FaultKind::Kill | FaultKind::KillLeader | FaultKind::KillAll => {
                for &node in nodes {
                    self.cluster.kill(node);
                }
            }
            FaultKind::Pause | FaultKind::PauseLeader => {
                for &node in nodes {
                    self.cluster.pause(node);
                }
            }
            FaultKind::Partition | FaultKind::PartitionLeader => {
                let isolated = nodes[0];
                let others: Vec<u16> = self
                    .cluster
                    .ids()
                    .into_iter()
                    .filter(|&id| id != isolated)
                    .map(|id| self.cluster.node(id).addr.port())
                    .collect();
                self.partitioned = true;
                netns::isolate(self.cluster.node(isolated).addr.port(), &others)?;
            }
        }
        Ok(())
    }

    fn heal(&mut self, kind: FaultKind, nodes: &[NodeId]) -> anyhow::Result<()> {
        match kind {
            FaultKind::Kill | FaultKind::KillLeader | FaultKind::KillAll => {
                for &node in nodes {
                    if !self.cluster.is_up(node) {
                        self.cluster.start(node)?;
                    }
                }
            }
            FaultKind::Pause | FaultKind::PauseLeader => {
                for &node in nodes {
                    self.cluster.resume(node);
                }
            }
            FaultKind::Partition | FaultKind::PartitionLeader => {
                netns::heal()?;
                self.partitioned = false;
            }
        }
        Ok(())
    }

    /// Heals everything, whatever state a stopped run left: resumes paused
    /// nodes, starts nodes that are down, removes partitions.
    pub fn heal_all(&mut self) {
        self.watch_exits();
        if self.partitioned {
            match netns::heal() {
                Ok(()) => self.partitioned = false,
                Err(error) => self.report.errors.push(format!("final heal: {error:#}")),
            }
        }
        for node in self.cluster.ids() {
            if self.cluster.is_paused(node) {
                self.cluster.resume(node);
            }
            if !self.cluster.is_up(node) {
                if let Err(error) = self.cluster.start(node) {
                    self.report
                        .errors
                        .push(format!("final heal: cannot start node {node}: {error:#}"));
                }
            }
        }
    }

    /// Waits until the cluster answers a read through the probe, at most
    /// `time_max`, watching the nodes meanwhile. Returns how long it took,
    /// or `None` on time-out, or at once when `give_up_on_exit` is set and
    /// a node exits by itself (at start-up, it would only exit again).
    pub async fn wait_until_ready(
        &mut self,
        time_max: Duration,
        give_up_on_exit: bool,
    ) -> Option<Duration> {
        let started = Instant::now();
        let deadline = started + time_max;
        while Instant::now() < deadline {
            if self.watch_exits_and(!give_up_on_exit) > 0 && give_up_on_exit {
                return None;
            }
            let attempt = Duration::from_secs(1).min(deadline - Instant::now());
            if self.find_leader(attempt).await.is_some() {
                return Some(started.elapsed());
            }
        }
        None
    }
}
