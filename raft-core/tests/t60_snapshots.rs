//! Snapshots and log compaction (Raft §7): a bounded log, catch-up by
//! snapshot in chunks, restart from snapshot plus log, crashes mid-way.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use raft_core::testkit::{run_seeds, NetConfig, SimOptions};
use tokio::time::sleep;

fn snapshotting(seed: u64, nodes: usize, threshold: u64) -> SimOptions {
    let mut options = SimOptions::new(seed, nodes);
    options.config.snapshot_entries_threshold = Some(threshold);
    // Small chunks, so that a transfer takes many messages.
    options.config.snapshot_chunk_bytes = 64;
    options
}

#[test]
fn the_log_stays_bounded_by_the_snapshot_threshold() {
    run_seeds("bounded_log", 0..5, |seed| async move {
        let mut cluster = start_with(snapshotting(seed, 3, 20)).await;
        let first = leader(&cluster).await;
        let node = cluster.node(first).unwrap().clone();
        let mut longest = 0;
        for n in 0..300 {
            node.propose(Bytes::from(format!("v{n}"))).await.unwrap();
            for id in cluster.ids() {
                longest = longest.max(cluster.storage(id).disk().entries.len());
            }
        }
        // Threshold, plus entries applied while a snapshot is being taken,
        // plus the in-flight tail.
        assert!(longest <= 40, "seed {seed}: {longest} entries stored");
        assert!(
            cluster.storage(first).disk().snapshot.is_some(),
            "seed {seed}"
        );
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn a_follower_cut_off_for_many_snapshots_catches_up_by_snapshot_then_log() {
    run_seeds("snapshot_catch_up", 0..10, |seed| async move {
        let mut cluster = start_with(snapshotting(seed, 3, 10)).await;
        one(&cluster, "first", 3).await;
        let first = leader(&cluster).await;
        let lagging = others(&cluster, first)[0];
        cluster.network().isolate(lagging);
        for n in 0..100 {
            one(&cluster, &format!("cut-{n}"), 2).await;
        }
        let before = cluster.network().messages_sent_by_kind();
        cluster.network().reconnect(lagging);
        let index = one(&cluster, "last", 3).await;
        let after = cluster.network().messages_sent_by_kind();
        let chunks = after.get("install_snapshot").copied().unwrap_or(0)
            - before.get("install_snapshot").copied().unwrap_or(0);
        assert!(
            chunks > 1,
            "seed {seed}: caught up without a chunked snapshot"
        );
        let leader_record = cluster.machine(first).applied().clone();
        let lagging_record = cluster.machine(lagging).applied().clone();
        assert_eq!(lagging_record, leader_record, "seed {seed}: states differ");
        assert_eq!(lagging_record.last().unwrap().0, index, "seed {seed}");
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn nodes_restart_from_snapshot_plus_log() {
    run_seeds("restart_from_snapshot", 0..10, |seed| async move {
        let mut cluster = start_with(snapshotting(seed, 3, 7)).await;
        for n in 0..30 {
            one(&cluster, &format!("a{n}"), 3).await;
        }
        let expected = cluster.machine(1).applied().clone();
        for id in cluster.ids() {
            cluster.crash(id);
        }
        for id in cluster.ids() {
            assert!(cluster.storage(id).disk().snapshot.is_some(), "seed {seed}");
            cluster.restart(id).await;
        }
        one(&cluster, "b", 3).await;
        for id in cluster.ids() {
            let record = cluster.machine(id).applied().clone();
            assert_eq!(
                record[..expected.len()],
                expected[..],
                "seed {seed}: node {id}"
            );
        }
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn crashes_during_snapshot_creation_and_installation_keep_state_whole() {
    run_seeds("snapshot_crashes", 0..30, |seed| async move {
        let mut options = snapshotting(seed, 3, 3);
        options.network = NetConfig::unreliable();
        // Slow writes widen the window in which a crash interrupts a snapshot.
        options.write_delay = Duration::from_millis(2);
        let mut cluster = start_with(options).await;
        for round in 0..8 {
            let victim = cluster.network().random(1, 4);
            if round % 2 == 0 {
                cluster.network().isolate(victim);
            }
            for n in 0..6 {
                let leader = cluster.leader();
                if let Some(node) = leader.and_then(|id| cluster.node(id)).cloned() {
                    tokio::spawn(async move {
                        node.propose(Bytes::from(format!("r{round}-{n}"))).await
                    });
                }
                sleep(Duration::from_millis(cluster.network().random(1, 15))).await;
            }
            cluster.network().reconnect(victim);
            sleep(Duration::from_millis(cluster.network().random(0, 40))).await;
            // Crash at an arbitrary moment: maybe in the middle of taking,
            // writing or installing a snapshot.
            cluster.crash(victim);
            sleep(Duration::from_millis(cluster.network().random(0, 20))).await;
            cluster.restart(victim).await;
        }
        cluster.network().set_config(NetConfig::reliable());
        one(&cluster, "end", 3).await;
        let reference = cluster.machine(1).applied().clone();
        for id in cluster.ids() {
            assert_eq!(
                *cluster.machine(id).applied(),
                reference,
                "seed {seed}: node {id}"
            );
        }
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}
