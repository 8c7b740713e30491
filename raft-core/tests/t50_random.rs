//! Randomized runs: many seeds of crashes, restarts, partitions, loss,
//! duplication and reordering, with the invariant checker on every turn.
//! `RAFT_SEEDS=N` runs N seeds (the soak); `RAFT_SEED=S` replays one.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use raft_core::testkit::{
    run_seeds, run_simulation, seed_count, NetConfig, SimNetwork, SimOptions,
};
use raft_core::{Error, LogIndex, NodeId, RaftNode};
use tokio::time::{sleep, timeout};

type Handles = Arc<Mutex<BTreeMap<NodeId, RaftNode<LogIndex>>>>;

/// Keeps `handles` equal to the cluster's running nodes, for the clients.
fn publish(cluster: &Cluster, handles: &Handles) {
    let mut handles = handles.lock().unwrap();
    handles.clear();
    for id in cluster.ids() {
        if let Some(node) = cluster.node(id) {
            handles.insert(id, node.clone());
        }
    }
}

/// A client: proposes unique commands one after another to whichever node
/// it believes leads, following leader hints, until `stop` is set or it
/// made 300 attempts. Records the commands acknowledged.
async fn client(
    client_id: u64,
    handles: Handles,
    network: SimNetwork,
    nodes: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Bytes>>>,
) {
    let mut target = network.random(1, nodes + 1);
    for attempt in 0..300 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let node = handles.lock().unwrap().get(&target).cloned();
        let Some(node) = node else {
            target = network.random(1, nodes + 1);
            sleep(Duration::from_millis(10)).await;
            continue;
        };
        let command = Bytes::from(format!("c{client_id}-{attempt}"));
        match timeout(Duration::from_millis(500), node.propose(command.clone())).await {
            Ok(Ok(_)) => acked.lock().unwrap().push(command),
            Ok(Err(Error::NotLeader {
                leader_hint: Some(leader),
            })) => target = leader,
            _ => target = network.random(1, nodes + 1),
        }
        sleep(Duration::from_millis(network.random(0, 20))).await;
    }
}

/// One randomized life of a cluster: 3 or 5 nodes, a random network,
/// thirty random faults (crashes of a minority or rarely of all, restarts,
/// partitions, one-way cuts) while three clients write. Then everything heals, and every acknowledged
/// command must be applied exactly once on every node.
async fn random_run(seed: u64) -> (u64, Duration) {
    let began = tokio::time::Instant::now();
    let mut options = SimOptions::new(seed, if seed % 2 == 0 { 3 } else { 5 });
    options.network = if seed % 3 == 0 {
        NetConfig::reliable()
    } else {
        NetConfig::unreliable()
    };
    options.config.append_entries_max = 1 + (seed % 8) as usize;
    options.config.snapshot_entries_threshold = (seed % 4 == 1).then_some(10);
    let nodes = options.nodes as u64;
    let mut cluster = start_with(options).await;
    let handles: Handles = Arc::default();
    publish(&cluster, &handles);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let clients: Vec<_> = (0..3)
        .map(|client_id| {
            tokio::spawn(client(
                client_id,
                Arc::clone(&handles),
                cluster.network().clone(),
                nodes,
                Arc::clone(&stop),
                Arc::clone(&acked),
            ))
        })
        .collect();
    for _step in 0..30 {
        let id = cluster.network().random(1, nodes + 1);
        let down: Vec<NodeId> = cluster
            .ids()
            .into_iter()
            .filter(|i| !cluster.is_running(*i))
            .collect();
        match cluster.network().random(0, 10) {
            // Crash while a majority stays up; now and then, all at once.
            0 if (down.len() as u64) < nodes / 2 => cluster.crash(id),
            1 if cluster.network().random(0, 10) == 0 => {
                for id in cluster.ids() {
                    cluster.crash(id);
                }
            }
            2 | 3 => {
                let id = down.first().copied().unwrap_or(id);
                cluster.restart(id).await;
            }
            4 => cluster.network().isolate(id),
            5 => {
                let other = cluster.network().random(1, nodes + 1);
                cluster.network().cut_one_way(id, other);
            }
            6 | 7 => cluster.network().heal(),
            _ => {}
        }
        publish(&cluster, &handles);
        let pause = cluster.network().random(0, 400);
        sleep(Duration::from_millis(pause)).await;
    }
    cluster.recover_all().await;
    publish(&cluster, &handles);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    one(&cluster, "end", nodes as usize).await;
    let acked = acked.lock().unwrap().clone();
    assert_acknowledged_applied_once(&cluster, &acked);
    cluster.assert_invariants();
    if std::env::var_os("RAFT_STATS").is_some() {
        eprintln!(
            "seed {seed}: {} acknowledged, {} messages, commit {}",
            acked.len(),
            cluster.network().messages_sent(),
            cluster.checker().committed_index()
        );
    }
    let fingerprint = cluster.network().fingerprint();
    cluster.shutdown().await;
    (fingerprint, began.elapsed())
}

#[test]
fn randomized_faults_never_break_safety_or_lose_acknowledged_commands() {
    let seeds = seed_count(500);
    let started = std::time::Instant::now();
    let simulated = Arc::new(Mutex::new(Duration::ZERO));
    run_seeds("randomized", 0..seeds, |seed| {
        let simulated = Arc::clone(&simulated);
        async move {
            let (_, elapsed) = random_run(seed).await;
            *simulated.lock().unwrap() += elapsed;
        }
    });
    let simulated = *simulated.lock().unwrap();
    eprintln!(
        "randomized: {seeds} seeds, {:.1} simulated minutes, in {:.1} s",
        simulated.as_secs_f64() / 60.0,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 11, 42] {
        let first = run_simulation(random_run(seed));
        let second = run_simulation(random_run(seed));
        assert_eq!(first, second, "seed {seed}: two runs differ");
    }
}
