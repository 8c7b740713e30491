//! A simulated network on tokio's (virtual) clock: loss, duplication,
//! delay and reordering from one seeded generator, partitions that may be
//! one way, and per-node inboxes.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::message::Message;
use crate::rng::Rng;
use crate::transport::{InboxSender, Transport};
use crate::types::NodeId;

/// How unreliable the simulated network is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetConfig {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Shortest one-way delay.
    pub delay_min: Duration,
    /// Longest one-way delay; delays are uniform in between, so messages
    /// overtake each other when the range is wide.
    pub delay_max: Duration,
}

impl NetConfig {
    /// A network that loses nothing and delays every message by 100–300 µs.
    pub fn reliable() -> NetConfig {
        NetConfig {
            loss: 0.0,
            duplicate: 0.0,
            delay_min: Duration::from_micros(100),
            delay_max: Duration::from_micros(300),
        }
    }

    /// A network that loses 10 % of messages, duplicates 5 % and reorders
    /// freely with delays of 0.1–30 ms.
    pub fn unreliable() -> NetConfig {
        NetConfig {
            loss: 0.1,
            duplicate: 0.05,
            delay_min: Duration::from_micros(100),
            delay_max: Duration::from_millis(30),
        }
    }
}

#[derive(Debug)]
struct NetState {
    rng: Rng,
    config: NetConfig,
    inboxes: BTreeMap<NodeId, InboxSender>,
    /// Directed links that are cut: (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Every address the network has seen, nodes and clients.
    members: BTreeSet<NodeId>,
    sent: u64,
    sent_by: BTreeMap<NodeId, u64>,
    sent_by_kind: BTreeMap<&'static str, u64>,
    delivered: u64,
    /// A running hash of every delivery, to show that a seed replays.
    fingerprint: u64,
}

/// The simulated network. Cheap to clone; clones share the network.
#[derive(Clone, Debug)]
pub struct SimNetwork {
    state: Arc<Mutex<NetState>>,
}

impl SimNetwork {
    /// A network whose every random choice follows from `seed`.
    pub fn new(seed: u64, config: NetConfig) -> SimNetwork {
        SimNetwork {
            state: Arc::new(Mutex::new(NetState {
                rng: Rng::new(seed ^ 0x6E65_7477_6F72_6B00),
                config,
                inboxes: BTreeMap::new(),
                cut: BTreeSet::new(),
                members: BTreeSet::new(),
                sent: 0,
                sent_by: BTreeMap::new(),
                sent_by_kind: BTreeMap::new(),
                delivered: 0,
                fingerprint: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Attaches node `id`'s inbox (again, after a restart).
    pub fn attach(&self, id: NodeId, inbox: InboxSender) {
        let mut state = self.lock();
        state.members.insert(id);
        state.inboxes.insert(id, inbox);
    }

    /// Makes `id` known as an address (a client) without an inbox, so that
    /// partitions include it.
    pub fn add_member(&self, id: NodeId) {
        self.lock().members.insert(id);
    }

    /// The transport of node `id`.
    pub fn transport(&self, id: NodeId) -> SimTransport {
        self.lock().members.insert(id);
        SimTransport {
            network: self.clone(),
            from: id,
        }
    }

    /// Changes how unreliable the network is from now on.
    pub fn set_config(&self, config: NetConfig) {
        self.lock().config = config;
    }

    /// The current network configuration.
    pub fn config(&self) -> NetConfig {
        self.lock().config
    }

    /// Splits the members into `groups`: links between different groups
    /// are cut both ways, links inside a group work. Members in no group are
    /// cut off from everyone. Replaces any earlier partition.
    pub fn partition(&self, groups: &[Vec<NodeId>]) {
        let mut state = self.lock();
        let group_of = |id: NodeId| groups.iter().position(|group| group.contains(&id));
        let members: Vec<NodeId> = state.members.iter().copied().collect();
        state.cut.clear();
        for &from in &members {
            for &to in &members {
                let same = match (group_of(from), group_of(to)) {
                    (Some(a), Some(b)) => a == b,
                    _ => false,
                };
                if from != to && !same {
                    state.cut.insert((from, to));
                }
            }
        }
    }

    /// Cuts `id` off from every other member, both ways, keeping other cuts.
    pub fn isolate(&self, id: NodeId) {
        let mut state = self.lock();
        let members: Vec<NodeId> = state.members.iter().copied().collect();
        for other in members {
            if other != id {
                state.cut.insert((id, other));
                state.cut.insert((other, id));
            }
        }
    }

    /// Reconnects `id` with every other member, both ways.
    pub fn reconnect(&self, id: NodeId) {
        self.lock()
            .cut
            .retain(|(from, to)| *from != id && *to != id);
    }

    /// Cuts the link from `from` to `to` only: messages the other way pass.
    pub fn cut_one_way(&self, from: NodeId, to: NodeId) {
        self.lock().cut.insert((from, to));
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// Whether a message from `from` to `to` can currently pass.
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        !self.lock().cut.contains(&(from, to))
    }

    /// Messages handed to the network so far.
    pub fn messages_sent(&self) -> u64 {
        self.lock().sent
    }

    /// Messages node `id` handed to the network so far.
    pub fn messages_sent_by(&self, id: NodeId) -> u64 {
        self.lock().sent_by.get(&id).copied().unwrap_or(0)
    }

    /// Messages handed to the network so far, by kind
    /// ([`crate::MessageBody::kind`]).
    pub fn messages_sent_by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.lock().sent_by_kind.clone()
    }

    /// A hash of every delivery so far: equal for two runs of one seed.
    pub fn fingerprint(&self) -> u64 {
        self.lock().fingerprint
    }

    /// Draws a random number from the network's generator, for tests that
    /// want their choices in the same replayable stream.
    pub fn random(&self, low: u64, high: u64) -> u64 {
        self.lock().rng.range(low, high)
    }

    /// Simulates one message from `from` to `to` that is not a Raft message
    /// (a client request, say): waits the sampled delay and returns whether
    /// it arrives. Loss and cuts apply as for Raft messages; duplicates do
    /// not.
    pub async fn transit(&self, from: NodeId, to: NodeId) -> bool {
        let (passes, delay) = {
            let mut state = self.lock();
            let config = state.config;
            let passes = !state.cut.contains(&(from, to)) && !state.rng.chance(config.loss);
            let delay = sample_delay(&mut state);
            (passes, delay)
        };
        tokio::time::sleep(delay).await;
        passes && self.connected(from, to)
    }

    fn route(&self, message: Message) {
        let (from, to) = (message.from, message.to);
        let deliveries = {
            let mut state = self.lock();
            state.sent += 1;
            *state.sent_by.entry(from).or_default() += 1;
            *state.sent_by_kind.entry(message.body.kind()).or_default() += 1;
            let config = state.config;
            if state.cut.contains(&(from, to)) || state.rng.chance(config.loss) {
                return;
            }
            let copies = if state.rng.chance(config.duplicate) {
                2
            } else {
                1
            };
            (0..copies)
                .map(|_| sample_delay(&mut state))
                .collect::<Vec<_>>()
        };
        for delay in deliveries {
            let network = self.clone();
            let message = message.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                network.deliver(message);
            });
        }
    }

    fn deliver(&self, message: Message) {
        let mut state = self.lock();
        if state.cut.contains(&(message.from, message.to)) {
            return;
        }
        let Some(inbox) = state.inboxes.get(&message.to).cloned() else {
            return;
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        state.fingerprint.hash(&mut hasher);
        message.hash(&mut hasher);
        state.fingerprint = hasher.finish();
        state.delivered += 1;
        drop(state);
        inbox.deliver(message);
    }
}

fn sample_delay(state: &mut NetState) -> Duration {
    let low = state.config.delay_min.as_nanos() as u64;
    let high = state.config.delay_max.as_nanos() as u64;
    Duration::from_nanos(state.rng.range(low, high.max(low) + 1))
}

/// One node's end of the [`SimNetwork`].
#[derive(Clone, Debug)]
pub struct SimTransport {
    network: SimNetwork,
    from: NodeId,
}

impl Transport for SimTransport {
    fn send(&self, message: Message) {
        debug_assert_eq!(message.from, self.from);
        self.network.route(message);
    }
}
