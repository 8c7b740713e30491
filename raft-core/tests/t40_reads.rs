//! ReadIndex (Raft thesis §6.4): reads need a quorum round that began
//! after they arrived, share rounds, and never complete on a deposed leader.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use raft_core::testkit::run_seeds;
use raft_core::Error;
use tokio::time::timeout;

#[test]
fn a_read_after_a_write_returns_an_index_that_covers_the_write() {
    run_seeds("read_after_write", 0..20, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        let node = cluster.node(first).unwrap().clone();
        for n in 0..10 {
            let index = node.propose(Bytes::from(format!("w{n}"))).await.unwrap();
            let read = node.read_index().await.unwrap();
            assert!(
                read >= index,
                "seed {seed}: read index {read} before write {index}"
            );
            let applied = cluster.machine(first).applied().last().unwrap().0;
            assert!(
                applied >= index,
                "seed {seed}: state machine behind the read"
            );
        }
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn a_follower_refuses_reads_and_names_the_leader() {
    run_seeds("read_on_follower", 0..5, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        let follower = cluster.node(others(&cluster, first)[0]).unwrap().clone();
        match follower.read_index().await {
            Err(Error::NotLeader { leader_hint }) => assert_eq!(leader_hint, Some(first)),
            other => panic!("seed {seed}: {other:?}"),
        }
        cluster.shutdown().await;
    });
}

#[test]
fn a_leader_cut_off_in_a_minority_serves_no_read() {
    run_seeds("no_stale_read", 0..20, |seed| async move {
        let mut cluster = start(seed, 5).await;
        one(&cluster, "before", 5).await;
        let old = leader(&cluster).await;
        let old_node = cluster.node(old).unwrap().clone();
        let peers = others(&cluster, old);
        cluster
            .network()
            .partition(&[vec![old, peers[0]], peers[1..].to_vec()]);
        // The majority elects a new leader and writes.
        let new = cluster
            .await_leader(ELECTION)
            .await
            .expect("majority elects");
        assert_ne!(new, old, "seed {seed}");
        one(&cluster, "after", 3).await;
        // The old leader, which may still believe it leads, must not answer.
        let read = timeout(Duration::from_secs(3), old_node.read_index()).await;
        match read {
            Err(_) | Ok(Err(_)) => {}
            Ok(Ok(index)) => panic!("seed {seed}: deposed leader served a read at {index}"),
        }
        cluster.network().heal();
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn concurrent_reads_share_confirmation_rounds() {
    run_seeds("read_batching", 0..10, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        one(&cluster, "w", 3).await;
        let node = cluster.node(first).unwrap().clone();
        let before = cluster.network().messages_sent();
        let reads: Vec<_> = (0..200)
            .map(|_| {
                let node = node.clone();
                tokio::spawn(async move { node.read_index().await })
            })
            .collect();
        for read in reads {
            read.await
                .unwrap()
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
        let sent = cluster.network().messages_sent() - before;
        // 200 reads, one round (or a few): 2 heartbeats and 2 answers each.
        assert!(sent <= 20, "seed {seed}: {sent} messages for 200 reads");
        cluster.shutdown().await;
    });
}
