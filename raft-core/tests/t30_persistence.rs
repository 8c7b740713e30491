//! Crashes and restarts: a node restarts from what its storage holds
//! (Raft figure 2, "persistent state"), and the figure-8 scenario (§5.4.2).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use raft_core::testkit::{run_seeds, NetConfig, SimOptions};
use raft_core::NodeId;
use tokio::time::sleep;

#[test]
fn agreement_survives_crashes_of_all_nodes_the_leader_and_followers() {
    run_seeds("persist1", 0..20, |seed| async move {
        let mut cluster = start(seed, 3).await;
        one(&cluster, "11", 3).await;
        // Every node crashes and restarts.
        for id in cluster.ids() {
            cluster.crash(id);
        }
        for id in cluster.ids() {
            cluster.restart(id).await;
        }
        one(&cluster, "12", 3).await;
        // The leader crashes and comes back.
        let leader1 = leader(&cluster).await;
        cluster.restart(leader1).await;
        one(&cluster, "13", 3).await;
        // The leader crashes and stays down; the others go on.
        let leader2 = leader(&cluster).await;
        cluster.crash(leader2);
        one(&cluster, "14", 2).await;
        cluster.restart(leader2).await;
        // A follower crashes while the rest agree; it catches up.
        let leader3 = leader(&cluster).await;
        let follower = others(&cluster, leader3)[0];
        cluster.crash(follower);
        one(&cluster, "15", 2).await;
        cluster.restart(follower).await;
        let index = one(&cluster, "16", 3).await;
        // Every restarted machine replayed the whole history.
        for id in cluster.ids() {
            let applied = cluster.machine(id).applied().clone();
            let commands: Vec<&[u8]> = applied.iter().map(|(_, c)| c.as_ref()).collect();
            assert_eq!(
                commands,
                vec![&b"11"[..], b"12", b"13", b"14", b"15", b"16"],
                "seed {seed}: node {id}"
            );
            assert_eq!(applied.last().unwrap().0, index, "seed {seed}");
        }
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn agreement_survives_repeated_crashes_of_a_minority() {
    run_seeds("persist2", 0..10, |seed| async move {
        let mut cluster = start(seed, 5).await;
        let mut index = 1;
        for _round in 0..5 {
            one(&cluster, &format!("{index}"), 5).await;
            index += 1;
            let leader1 = leader(&cluster).await;
            let peers = others(&cluster, leader1);
            cluster.crash(peers[0]);
            cluster.crash(peers[1]);
            one(&cluster, &format!("{index}"), 3).await;
            index += 1;
            cluster.crash(leader1);
            cluster.crash(peers[2]);
            cluster.crash(peers[3]);
            cluster.restart(peers[0]).await;
            cluster.restart(peers[1]).await;
            sleep(ELECTION).await;
            cluster.restart(peers[2]).await;
            one(&cluster, &format!("{index}"), 3).await;
            index += 1;
            cluster.restart(peers[3]).await;
            cluster.restart(leader1).await;
        }
        one(&cluster, "1000", 5).await;
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn a_partitioned_leader_and_follower_crash_and_the_leader_restarts() {
    run_seeds("persist3", 0..20, |seed| async move {
        let mut cluster = start(seed, 3).await;
        one(&cluster, "101", 3).await;
        let leader1 = leader(&cluster).await;
        let peers = others(&cluster, leader1);
        cluster.network().isolate(peers[1]);
        one(&cluster, "102", 2).await;
        cluster.crash(leader1);
        cluster.crash(peers[0]);
        cluster.network().reconnect(peers[1]);
        cluster.restart(peers[0]).await;
        one(&cluster, "103", 2).await;
        cluster.restart(leader1).await;
        one(&cluster, "104", 3).await;
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

/// Proposes `command` on every running node, without waiting: only a
/// leader accepts, and its proposal may or may not commit.
fn propose_everywhere(cluster: &Cluster, command: &str) -> Option<NodeId> {
    let mut leader = None;
    for id in cluster.ids() {
        let Some(node) = cluster.node(id) else {
            continue;
        };
        if node.status().role == raft_core::Role::Leader {
            leader = Some(id);
        }
        let node = node.clone();
        let command = Bytes::copy_from_slice(command.as_bytes());
        tokio::spawn(async move { node.propose(command).await });
    }
    leader
}

async fn figure_8(seed: u64, network: NetConfig, iterations: u32) {
    let mut options = SimOptions::new(seed, 5);
    options.network = network;
    // One entry per append, so that a new leader's old-term entries can
    // reach a quorum before its own blank entry does: the figure-8 setup.
    options.config.append_entries_max = 1;
    let mut cluster = start_with(options).await;
    one(&cluster, "start", 1).await;
    let mut up: BTreeSet<NodeId> = cluster.ids().into_iter().collect();
    for iteration in 0..iterations {
        let leader = propose_everywhere(&cluster, &format!("f{iteration}"));
        let pause = if cluster.network().random(0, 1000) < 100 {
            cluster.network().random(0, 500)
        } else {
            cluster.network().random(0, 13)
        };
        sleep(Duration::from_millis(pause)).await;
        if let Some(leader) = leader {
            if up.len() > 1 {
                cluster.crash(leader);
                up.remove(&leader);
            }
        }
        if up.len() < 3 {
            let id = cluster.network().random(1, 6);
            if !up.contains(&id) {
                cluster.restart(id).await;
                up.insert(id);
            }
        }
    }
    cluster.recover_all().await;
    one(&cluster, "end", 5).await;
    cluster.assert_invariants();
    cluster.shutdown().await;
}

#[test]
fn figure_8_leaders_never_commit_entries_of_earlier_terms_by_counting() {
    run_seeds("figure8", 0..10, |seed| {
        figure_8(seed, NetConfig::reliable(), 200)
    });
}

#[test]
fn figure_8_on_an_unreliable_network() {
    run_seeds("figure8_unreliable", 0..10, |seed| {
        figure_8(seed, NetConfig::unreliable(), 200)
    });
}

/// Random crashes, restarts and partitions while clients propose; at the
/// end every acknowledged command is applied, once, on every node.
pub async fn churn(seed: u64, network: NetConfig, rounds: u32) {
    let mut options = SimOptions::new(seed, 5);
    options.network = network;
    let mut cluster = start_with(options).await;
    let acked: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    for round in 0..rounds {
        // Clients: a few proposals to every running node.
        for id in cluster.ids() {
            let Some(node) = cluster.node(id) else {
                continue;
            };
            for n in 0..3 {
                let node = node.clone();
                let acked = Arc::clone(&acked);
                let command = Bytes::from(format!("r{round}-n{id}-{n}"));
                tokio::spawn(async move {
                    if node.propose(command.clone()).await.is_ok() {
                        acked.lock().unwrap().push(command);
                    }
                });
            }
        }
        match cluster.network().random(0, 10) {
            0 | 1 => {
                let id = cluster.network().random(1, 6);
                cluster.crash(id);
            }
            2 | 3 => {
                let id = cluster.network().random(1, 6);
                if !cluster.is_running(id) {
                    cluster.restart(id).await;
                }
            }
            4 => {
                let id = cluster.network().random(1, 6);
                cluster.network().isolate(id);
            }
            5 => cluster.network().heal(),
            _ => {}
        }
        let pause = cluster.network().random(0, 300);
        sleep(Duration::from_millis(pause)).await;
    }
    cluster.recover_all().await;
    let last = one(&cluster, "churn-end", 5).await;
    let acked = acked.lock().unwrap().clone();
    for id in cluster.ids() {
        let applied = cluster.machine(id).applied().clone();
        assert!(
            applied.last().is_some_and(|(index, _)| *index >= last),
            "seed {seed}"
        );
    }
    assert_acknowledged_applied_once(&cluster, &acked);
    cluster.assert_invariants();
    cluster.shutdown().await;
}

#[test]
fn churn_with_crashes_restarts_and_partitions_loses_no_acknowledged_command() {
    run_seeds("churn", 0..10, |seed| {
        churn(seed, NetConfig::reliable(), 60)
    });
}

#[test]
fn churn_on_an_unreliable_network_loses_no_acknowledged_command() {
    run_seeds("churn_unreliable", 0..10, |seed| {
        churn(seed, NetConfig::unreliable(), 60)
    });
}
