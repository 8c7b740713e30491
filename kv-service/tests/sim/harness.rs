//! The simulation harness: a cluster of key-value servers on raft-core's
//! simulated network, clients that record a history, a nemesis that injects
//! faults, and the checks every run ends with.
//!
//! Environment variables:
//!
//! - `KV_SIM_SEEDS=N`: run N seeds per scenario instead of the default.
//! - `KV_SEED=S`: run seed S only (to replay a failure).
//! - `KV_HISTORY_DIR=DIR`: also write each checked history to
//!   `DIR/<scenario>-seed<S>.jsonl`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kv_clerk::{Clerk, ClerkConfig, RecordingClerk};
use kv_service::history::{Operation, Status};
use kv_service::linearizability::{check, CheckConfig, Explanation, Verdict};
use kv_service::sim::{KvCluster, SimConnector};
use kv_service::{HistoryRecorder, ServerConfig, SessionConfig};
use raft_core::testkit::{run_simulation, NetConfig, SimOptions};
use raft_core::{NodeId, Rng};
use tokio::time::{sleep, Instant};

/// Client ids start here, apart from server ids.
pub const CLIENT_ID_BASE: u64 = 1000;

/// Faults injected while the clients run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nemesis {
    /// No faults.
    None,
    /// Once: cut the leader and one follower (and client 0) off from the
    /// rest, for a while, then heal.
    LeaderMinority,
    /// Again and again: random partitions (two-sided, isolating one node,
    /// or one-way), each healed after a while.
    Partitions,
    /// Again and again: crash one random server, restart it after a while.
    CrashOne,
    /// Again and again: crash every server at once, restart them all.
    CrashAll,
    /// Again and again: any of the above.
    Everything,
}

/// One simulated run's shape.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Names the test in messages and history files.
    pub name: &'static str,
    pub nodes: usize,
    /// Logical clients, each with one operation in flight.
    pub clients: usize,
    /// How many logical clients share one `Clerk` (and its session).
    pub clients_per_clerk: usize,
    pub keys: usize,
    /// At most this many operations per client.
    pub ops_per_client: usize,
    /// Longest pause of a client between two operations (uniform).
    pub think_time_max: Duration,
    /// Virtual time after which clients stop starting operations.
    pub client_time_max: Duration,
    /// How long a clerk keeps trying one operation.
    pub op_deadline: Duration,
    pub network: NetConfig,
    pub nemesis: Nemesis,
    /// Snapshot after this many entries (small, to exercise snapshots).
    pub snapshot_entries: Option<u64>,
    /// The session rules of the servers.
    pub sessions: SessionConfig,
}

impl Scenario {
    pub fn new(name: &'static str) -> Scenario {
        Scenario {
            name,
            nodes: 3,
            clients: 1,
            clients_per_clerk: 1,
            keys: 3,
            ops_per_client: 100,
            think_time_max: Duration::from_millis(40),
            client_time_max: Duration::from_secs(30),
            op_deadline: Duration::from_secs(5),
            network: NetConfig::reliable(),
            nemesis: Nemesis::None,
            snapshot_entries: Some(200),
            sessions: SessionConfig::default(),
        }
    }
}

/// What a run did, for assertions beyond linearizability.
pub struct RunReport {
    pub history: Vec<Operation>,
    /// The logical clients that shared the first clerk: the ones the
    /// `LeaderMinority` partition places with the old leader.
    pub first_group: Vec<u64>,
    /// Nanoseconds (history clock) when the `LeaderMinority` partition
    /// started and healed.
    pub partition_window: Option<(u64, u64)>,
}

impl RunReport {
    pub fn count(&self, status: Status) -> usize {
        self.history.iter().filter(|op| op.status == status).count()
    }
}

/// The seeds to run: `KV_SEED` alone, or `0..KV_SIM_SEEDS` (default
/// `default_count`).
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("KV_SEED") {
        return vec![seed.parse().expect("KV_SEED must be an integer")];
    }
    let count = std::env::var("KV_SIM_SEEDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default_count);
    (0..count).collect()
}

/// Runs `simulation` for each seed on a paused clock; on a failure prints
/// how to replay it, then fails.
pub fn for_each_seed<F, Fut>(name: &str, default_count: u64, simulation: F)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    for seed in seeds(default_count) {
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| run_simulation(simulation(seed))));
        if let Err(panic) = result {
            let thread = std::thread::current();
            let test = thread.name().unwrap_or(name);
            eprintln!(
                "{name}: FAILED with seed {seed}; replay with \
                 KV_SEED={seed} cargo test -p kv-service --test sim -- --exact {test}"
            );
            std::panic::resume_unwind(panic);
        }
    }
}

/// A clerk configuration for simulations.
pub fn clerk_config(nodes: usize, seed: u64) -> ClerkConfig {
    let mut config = ClerkConfig::new((1..=nodes as NodeId).collect());
    config.attempt_timeout = Duration::from_millis(500);
    config.backoff_min = Duration::from_millis(5);
    config.backoff_max = Duration::from_millis(200);
    config.deadline = Duration::from_secs(5);
    config.seed = seed;
    config
}

/// Starts a cluster for `scenario` and waits for a leader.
pub async fn start_cluster(scenario: &Scenario, seed: u64) -> KvCluster {
    let mut options = SimOptions::new(seed, scenario.nodes);
    options.network = scenario.network;
    options.config.snapshot_entries_threshold = scenario.snapshot_entries;
    let server_config = ServerConfig {
        request_timeout: Duration::from_secs(2),
    };
    let cluster = KvCluster::start(options, scenario.sessions, server_config).await;
    cluster
        .sim()
        .await_leader(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("seed {seed}: no leader elected"));
    cluster
}

/// A recorder that writes to `KV_HISTORY_DIR` when set.
pub fn recorder(name: &str, seed: u64) -> Arc<HistoryRecorder> {
    match std::env::var_os("KV_HISTORY_DIR") {
        Some(dir) => {
            let path = PathBuf::from(dir).join(format!("{name}-seed{seed}.jsonl"));
            HistoryRecorder::with_file(&path)
                .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()))
        }
        None => HistoryRecorder::new(),
    }
}

/// Checks `history` and panics with an explanation unless it is
/// linearizable.
pub fn assert_linearizable(name: &str, seed: u64, history: &[Operation]) {
    let config = CheckConfig {
        steps_per_key_max: 20_000_000,
        time_max: Some(Duration::from_secs(60)),
    };
    let report = check(history, &config);
    if report.verdict != Verdict::Linearizable {
        let explanation = Explanation {
            report: &report,
            history,
        };
        panic!(
            "{name} seed {seed}: history is {:?}\n{explanation}",
            report.verdict
        );
    }
}

/// One logical client: random gets, puts and appends with unique values,
/// until `ops` are done or `stop_at` passes.
async fn client_loop(
    mut client: RecordingClerk<SimConnector>,
    id: u64,
    keys: usize,
    ops: usize,
    think_time_max: Duration,
    stop_at: Instant,
    seed: u64,
) {
    let mut rng = Rng::new(seed ^ (id << 20) ^ 0x636c_6965_6e74);
    for n in 0..ops {
        if Instant::now() >= stop_at {
            break;
        }
        let key = format!("k{}", rng.range(0, keys as u64));
        let value = format!("c{id}-{n};");
        // Results are recorded; the checker judges them.
        let _ = match rng.range(0, 10) {
            0..=3 => client.get(key).await.map(|_| ()),
            4..=5 => client.put(key, value).await,
            _ => client.append(key, value).await,
        };
        let think_micros = think_time_max.as_micros() as u64;
        sleep(Duration::from_micros(rng.range(0, think_micros + 1))).await;
    }
}

/// Runs `scenario` with `seed`: clients and nemesis together, then heal,
/// read every key once more (which must succeed), check the history, the
/// Raft invariants and that the replicas converged.
pub async fn run_scenario(scenario: &Scenario, seed: u64) -> RunReport {
    let started = Instant::now();
    let mut cluster = start_cluster(scenario, seed).await;
    let recorder = recorder(scenario.name, seed);
    let client_ids: Vec<u64> = (0..scenario.clients as u64)
        .map(|i| CLIENT_ID_BASE + i)
        .collect();
    let groups: Vec<Vec<u64>> = client_ids
        .chunks(scenario.clients_per_clerk.max(1))
        .map(<[u64]>::to_vec)
        .collect();
    // A clerk's link to the servers carries its group's first id.
    let links: Vec<u64> = groups.iter().map(|group| group[0]).collect();

    // Clients: each group of `clients_per_clerk` shares one clerk.
    let finished = Arc::new(AtomicUsize::new(0));
    let stop_at = Instant::now() + scenario.client_time_max;
    let mut tasks = Vec::new();
    for group in &groups {
        let connector = cluster.connector(group[0]);
        let mut config = clerk_config(scenario.nodes, seed ^ group[0]);
        config.deadline = scenario.op_deadline;
        let clerk = Clerk::new(connector, config).expect("valid clerk config");
        for &id in group {
            let client = RecordingClerk::new(clerk.clone(), id, recorder.clone());
            let finished = finished.clone();
            let (keys, ops) = (scenario.keys, scenario.ops_per_client);
            let think_time_max = scenario.think_time_max;
            tasks.push(tokio::spawn(async move {
                client_loop(client, id, keys, ops, think_time_max, stop_at, seed).await;
                finished.fetch_add(1, Ordering::SeqCst);
            }));
        }
    }

    let clients_done = || finished.load(Ordering::SeqCst) == client_ids.len();
    let partition_window = run_nemesis(
        &mut cluster,
        scenario,
        seed,
        &links,
        &recorder,
        clients_done,
    )
    .await;
    for task in tasks {
        task.await.expect("client task panicked");
    }

    // Heal everything and show the cluster still serves every key.
    cluster.network().heal();
    cluster.network().set_config(NetConfig::reliable());
    for id in cluster.sim().ids() {
        if !cluster.sim().is_running(id) {
            cluster.restart(id).await;
        }
    }
    let final_id = CLIENT_ID_BASE + 999;
    let connector = cluster.connector(final_id);
    let mut config = clerk_config(scenario.nodes, seed);
    config.deadline = Duration::from_secs(30);
    let clerk = Clerk::new(connector, config).expect("valid clerk config");
    let mut reader = RecordingClerk::new(clerk, final_id, recorder.clone());
    for key in 0..scenario.keys {
        if let Err(error) = reader.get(format!("k{key}")).await {
            panic!(
                "{} seed {seed}: final read after healing failed: {error}",
                scenario.name
            );
        }
    }

    let history = recorder.operations();
    let count = |status| history.iter().filter(|op| op.status == status).count();
    eprintln!(
        "{} seed {seed}: {} ok, {} info, {} fail, {:.1} s virtual",
        scenario.name,
        count(Status::Ok),
        count(Status::Info),
        count(Status::Fail),
        started.elapsed().as_secs_f64()
    );
    assert_linearizable(scenario.name, seed, &history);
    cluster.sim().assert_invariants();
    assert_replicas_converge(&cluster, seed).await;
    cluster.shutdown().await;
    RunReport {
        history,
        first_group: groups[0].clone(),
        partition_window,
    }
}

/// Waits until every server applied the same index, then compares maps.
async fn assert_replicas_converge(cluster: &KvCluster, seed: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let statuses = cluster.sim().statuses();
        let commit = statuses
            .iter()
            .map(|status| status.commit)
            .max()
            .unwrap_or(0);
        if statuses.iter().all(|status| status.applied == commit) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: replicas never caught up"
        );
        sleep(Duration::from_millis(50)).await;
    }
    let ids = cluster.sim().ids();
    let reference = cluster.sim().machine(ids[0]).entries();
    for id in &ids[1..] {
        assert!(
            cluster.sim().machine(*id).entries() == reference,
            "seed {seed}: replica {id} differs from replica {}",
            ids[0]
        );
    }
}

/// Injects the scenario's faults until the clients are done. Returns the
/// `LeaderMinority` partition's window on the history clock.
async fn run_nemesis(
    cluster: &mut KvCluster,
    scenario: &Scenario,
    seed: u64,
    links: &[u64],
    recorder: &HistoryRecorder,
    clients_done: impl Fn() -> bool,
) -> Option<(u64, u64)> {
    let mut rng = Rng::new(seed ^ 0x006e_656d_6573_6973);
    let mut window = None;
    let ids = cluster.sim().ids();

    if scenario.nemesis == Nemesis::LeaderMinority {
        sleep(Duration::from_secs(1)).await;
        let leader = cluster
            .sim()
            .await_leader(Duration::from_secs(10))
            .await
            .expect("a leader before the partition");
        let follower = *ids.iter().find(|id| **id != leader).unwrap();
        let mut minority = vec![leader, follower, links[0]];
        let mut majority: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| !minority.contains(id))
            .collect();
        majority.extend(&links[1..]);
        majority.push(CLIENT_ID_BASE + 999);
        minority.sort_unstable();
        cluster.network().partition(&[minority, majority]);
        let start = recorder.nanos(Instant::now());
        sleep(Duration::from_secs(8)).await;
        cluster.network().heal();
        window = Some((start, recorder.nanos(Instant::now())));
    }

    while !clients_done() {
        sleep(Duration::from_millis(rng.range(200, 1500))).await;
        if clients_done() {
            break;
        }
        if std::env::var_os("KV_DEBUG").is_some() {
            eprintln!(
                "nemesis at {:?}: statuses {:?}",
                recorder.nanos(Instant::now()) / 1_000_000,
                cluster
                    .sim()
                    .statuses()
                    .iter()
                    .map(|s| (s.id, s.role, s.term, s.commit, s.applied))
                    .collect::<Vec<_>>()
            );
        }
        let kind = match scenario.nemesis {
            Nemesis::None | Nemesis::LeaderMinority => continue,
            Nemesis::Everything => match rng.range(0, 3) {
                0 => Nemesis::Partitions,
                1 => Nemesis::CrashOne,
                _ => Nemesis::CrashAll,
            },
            kind => kind,
        };
        match kind {
            Nemesis::Partitions => {
                random_partition(cluster, &mut rng, links);
                sleep(Duration::from_millis(rng.range(300, 3000))).await;
                cluster.network().heal();
            }
            Nemesis::CrashOne => {
                let victim = ids[rng.range(0, ids.len() as u64) as usize];
                cluster.crash(victim);
                sleep(Duration::from_millis(rng.range(100, 2000))).await;
                cluster.restart(victim).await;
            }
            Nemesis::CrashAll => {
                for &id in &ids {
                    cluster.crash(id);
                }
                sleep(Duration::from_millis(rng.range(50, 1000))).await;
                for &id in &ids {
                    cluster.restart(id).await;
                }
            }
            Nemesis::None | Nemesis::LeaderMinority | Nemesis::Everything => unreachable!(),
        }
    }
    window
}

fn random_partition(cluster: &KvCluster, rng: &mut Rng, links: &[u64]) {
    let ids = cluster.sim().ids();
    match rng.range(0, 3) {
        0 => {
            // Two sides; clients land on either.
            let mut sides = (Vec::new(), Vec::new());
            for id in ids.iter().chain(links) {
                if rng.chance(0.5) {
                    sides.0.push(*id);
                } else {
                    sides.1.push(*id);
                }
            }
            cluster.network().partition(&[sides.0, sides.1]);
        }
        1 => cluster
            .network()
            .isolate(ids[rng.range(0, ids.len() as u64) as usize]),
        _ => {
            let from = ids[rng.range(0, ids.len() as u64) as usize];
            let to = ids[rng.range(0, ids.len() as u64) as usize];
            if from != to {
                cluster.network().cut_one_way(from, to);
            }
        }
    }
}
