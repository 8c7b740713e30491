//! A simulated cluster: real [`RaftNode`]s on [`MemStorage`] and a
//! [`SimNetwork`], under an [`InvariantChecker`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::node::{Observer, RaftNode};
use crate::rng::Rng;
use crate::state_machine::StateMachine;
use crate::transport::inbox;
use crate::types::{NodeId, Role, Status};

use super::invariants::InvariantChecker;
use super::mem_storage::MemStorage;
use super::network::{NetConfig, SimNetwork};

/// How to build a [`SimCluster`].
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The seed every random choice follows from.
    pub seed: u64,
    /// Number of voters; they get ids 1..=nodes.
    pub nodes: usize,
    /// The network's behaviour at start.
    pub network: NetConfig,
    /// How long a storage write takes to become durable (virtual time).
    pub write_delay: Duration,
    /// The configuration of every node; `id`, `voters` and `seed` are
    /// overwritten per node.
    pub config: Config,
}

impl SimOptions {
    /// Options for `nodes` voters on a reliable network, with storage
    /// writes of 200 µs and the default configuration.
    pub fn new(seed: u64, nodes: usize) -> SimOptions {
        SimOptions {
            seed,
            nodes,
            network: NetConfig::reliable(),
            write_delay: Duration::from_micros(200),
            config: Config::new(1, vec![1]),
        }
    }
}

/// A cluster of real nodes on simulated storage and network. The cluster
/// keeps a clone of each node's state machine, readable with
/// [`SimCluster::machine`]. Run it on a
/// current-thread tokio runtime with the clock paused (see
/// [`super::run_simulation`]), so that time is virtual and a seed replays.
pub struct SimCluster<M: StateMachine> {
    options: SimOptions,
    network: SimNetwork,
    checker: Arc<InvariantChecker>,
    storages: BTreeMap<NodeId, MemStorage>,
    nodes: BTreeMap<NodeId, RaftNode<M::Response>>,
    machines: BTreeMap<NodeId, M>,
    make_machine: Box<dyn FnMut(NodeId) -> M>,
    restarts: BTreeMap<NodeId, u64>,
    rng: Rng,
}

impl<M: StateMachine + Clone> SimCluster<M> {
    /// Starts every node. `make_machine` builds a node's state machine at
    /// start and at each restart; the machine is empty, and the node
    /// restores it from its snapshot.
    pub async fn start(
        options: SimOptions,
        make_machine: impl FnMut(NodeId) -> M + 'static,
    ) -> SimCluster<M> {
        let network = SimNetwork::new(options.seed, options.network);
        let mut cluster = SimCluster {
            rng: Rng::new(options.seed ^ 0x636C_7573_7465_7200),
            network,
            checker: InvariantChecker::new(),
            storages: BTreeMap::new(),
            nodes: BTreeMap::new(),
            machines: BTreeMap::new(),
            make_machine: Box::new(make_machine),
            restarts: BTreeMap::new(),
            options,
        };
        for id in cluster.ids() {
            let storage = MemStorage::with_write_delay(cluster.options.write_delay);
            cluster.storages.insert(id, storage);
            cluster.boot(id).await;
        }
        cluster
    }

    /// The ids of all voters, running or not.
    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.options.nodes as NodeId).collect()
    }

    /// The configuration node `id` runs with.
    pub fn config_of(&self, id: NodeId) -> Config {
        let restarts = self.restarts.get(&id).copied().unwrap_or(0);
        let mut config = self.options.config.clone();
        config.id = id;
        config.voters = self.ids();
        config.seed = self.options.seed ^ (id << 32) ^ restarts.wrapping_mul(0x9E37_79B9);
        config
    }

    async fn boot(&mut self, id: NodeId) {
        let (sender, receiver) = inbox(4096);
        self.network.attach(id, sender);
        let machine = (self.make_machine)(id);
        self.machines.insert(id, machine.clone());
        let observer: Arc<dyn Observer> = self.checker.clone();
        let node = RaftNode::start_observed(
            self.config_of(id),
            self.storages[&id].clone(),
            self.network.transport(id),
            machine,
            receiver,
            Some(observer),
        )
        .await
        .unwrap_or_else(|error| panic!("node {id} failed to start: {error}"));
        self.nodes.insert(id, node);
    }

    /// The state machine node `id` runs (or last ran): the clone the
    /// cluster kept when it started the node. Machines whose clones share
    /// state, like [`super::LogMachine`], can be read through it.
    pub fn machine(&self, id: NodeId) -> &M {
        &self.machines[&id]
    }

    /// The running node `id`; `None` while it is crashed.
    pub fn node(&self, id: NodeId) -> Option<&RaftNode<M::Response>> {
        self.nodes.get(&id)
    }

    /// The storage ("disk") of node `id`, which survives its crashes.
    pub fn storage(&self, id: NodeId) -> &MemStorage {
        &self.storages[&id]
    }

    /// The network.
    pub fn network(&self) -> &SimNetwork {
        &self.network
    }

    /// The invariant checker every node reports to.
    pub fn checker(&self) -> &InvariantChecker {
        &self.checker
    }

    /// The cluster's generator, for tests' own random choices.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Crashes node `id`: its tasks stop where they are, its memory is gone,
    /// and a storage write in flight is lost.
    pub fn crash(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.remove(&id) {
            node.abort();
        }
    }

    /// Restarts a crashed node from its storage, with a fresh state machine.
    pub async fn restart(&mut self, id: NodeId) {
        self.crash(id);
        *self.restarts.entry(id).or_default() += 1;
        self.checker.node_restarted(id);
        self.boot(id).await;
    }

    /// Ends every fault: heals the network, makes it reliable, and restarts
    /// every crashed node. Tests call it before checking that the cluster
    /// converges.
    pub async fn recover_all(&mut self) {
        self.network.heal();
        self.network.set_config(NetConfig::reliable());
        for id in self.ids() {
            if !self.is_running(id) {
                self.restart(id).await;
            }
        }
    }

    /// Whether node `id` is running.
    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.contains_key(&id)
    }

    /// Statuses of the running nodes.
    pub fn statuses(&self) -> Vec<Status> {
        self.nodes.values().map(|node| node.status()).collect()
    }

    /// The running leader with the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.statuses()
            .into_iter()
            .filter(|status| status.role == Role::Leader)
            .max_by_key(|status| status.term)
            .map(|status| status.id)
    }

    /// Waits up to `timeout` (virtual) for a leader that a majority of
    /// the cluster follows in its term, counting only nodes linked to it
    /// both ways.
    pub async fn await_leader(&self, timeout: Duration) -> Option<NodeId> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = self.stable_leader() {
                return Some(leader);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn stable_leader(&self) -> Option<NodeId> {
        let statuses = self.statuses();
        let leader = self.leader()?;
        let term = statuses.iter().find(|s| s.id == leader)?.term;
        let linked = |id: NodeId| {
            id == leader
                || (self.network.connected(leader, id) && self.network.connected(id, leader))
        };
        let followers = statuses
            .iter()
            .filter(|s| s.term == term && s.leader == Some(leader) && linked(s.id))
            .count();
        (followers > self.options.nodes / 2).then_some(leader)
    }

    /// Invariant violations found so far.
    pub fn violations(&self) -> Vec<String> {
        self.checker.violations()
    }

    /// Panics, with the seed, if any invariant was violated.
    pub fn assert_invariants(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "seed {}: invariants violated: {:#?}",
            self.options.seed,
            violations
        );
    }

    /// The seed of this cluster.
    pub fn seed(&self) -> u64 {
        self.options.seed
    }

    /// Stops every running node cleanly.
    pub async fn shutdown(&mut self) {
        for (_, node) in std::mem::take(&mut self.nodes) {
            node.shutdown().await;
        }
    }
}
