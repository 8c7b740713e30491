//! Log replication: Raft §5.3 and §5.4, in the spirit of the well-known
//! lab suites.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use raft_core::testkit::{run_seeds, NetConfig, SimOptions};
use raft_core::{Error, Role};
use tokio::time::{sleep, timeout};

#[test]
fn basic_agreement_applies_each_command_at_consecutive_indexes_on_all_nodes() {
    run_seeds("basic_agreement", 0..20, |seed| async move {
        let mut cluster = start(seed, 5).await;
        leader(&cluster).await;
        let mut previous = 0;
        for n in 1..=10 {
            let index = one(&cluster, &format!("cmd-{n}"), 5).await;
            assert!(
                index > previous,
                "seed {seed}: index {index} after {previous}"
            );
            previous = index;
        }
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn agreement_continues_with_one_follower_cut_off_and_catches_it_up() {
    run_seeds("fail_agree", 0..20, |seed| async move {
        let mut cluster = start(seed, 3).await;
        one(&cluster, "a", 3).await;
        let first = leader(&cluster).await;
        let follower = others(&cluster, first)[0];
        cluster.network().isolate(follower);
        one(&cluster, "b", 2).await;
        one(&cluster, "c", 2).await;
        sleep(ELECTION).await;
        one(&cluster, "d", 2).await;
        cluster.network().reconnect(follower);
        one(&cluster, "e", 3).await;
        let index = one(&cluster, "f", 3).await;
        assert!(applied_count(&cluster, index, b"f") == 3, "seed {seed}");
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn nothing_commits_without_a_majority() {
    run_seeds("fail_no_agree", 0..20, |seed| async move {
        let mut cluster = start(seed, 5).await;
        one(&cluster, "a", 5).await;
        let first = leader(&cluster).await;
        let cut = others(&cluster, first);
        for id in &cut[..3] {
            cluster.network().isolate(*id);
        }
        let node = cluster.node(first).unwrap().clone();
        let proposal = timeout(Duration::from_secs(2), node.propose(Bytes::from("x")));
        assert!(
            proposal.await.is_err(),
            "seed {seed}: committed without a majority"
        );
        let status = node.status();
        assert!(
            cluster.checker().committed_index() < status.last_index,
            "seed {seed}: entry counted committed"
        );
        cluster.network().heal();
        one(&cluster, "after", 5).await;
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn concurrent_proposals_all_commit_at_distinct_indexes() {
    run_seeds("concurrent_starts", 0..20, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        let node = cluster.node(first).unwrap().clone();
        let mut tasks = Vec::new();
        for n in 0..50 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                node.propose(Bytes::from(format!("c{n}"))).await
            }));
        }
        let mut indexes = Vec::new();
        for task in tasks {
            indexes.push(
                task.await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}")),
            );
        }
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(indexes.len(), 50, "seed {seed}: indexes collide");
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn deposed_leader_rejoins_and_its_uncommitted_entries_are_replaced() {
    run_seeds("rejoin", 0..20, |seed| async move {
        let mut cluster = start(seed, 3).await;
        one(&cluster, "101", 3).await;
        let leader1 = leader(&cluster).await;
        cluster.network().isolate(leader1);
        // The cut-off leader accepts commands it can never commit.
        let node1 = cluster.node(leader1).unwrap().clone();
        let mut stranded = Vec::new();
        for n in 0..3 {
            let node1 = node1.clone();
            stranded.push(tokio::spawn(async move {
                node1.propose(Bytes::from(format!("x{n}"))).await
            }));
        }
        one(&cluster, "103", 2).await;
        let leader2 = leader(&cluster).await;
        cluster.network().isolate(leader2);
        cluster.network().reconnect(leader1);
        one(&cluster, "104", 2).await;
        cluster.network().reconnect(leader2);
        one(&cluster, "105", 3).await;
        for task in stranded {
            let result = task.await.unwrap();
            assert!(
                matches!(result, Err(Error::ProposalDropped)),
                "seed {seed}: stranded proposal ended {result:?}"
            );
        }
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn leader_backs_up_quickly_over_a_long_divergent_log() {
    run_seeds("backup", 0..10, |seed| async move {
        let mut cluster = start(seed, 5).await;
        one(&cluster, "start", 5).await;
        let leader1 = leader(&cluster).await;
        let peers = others(&cluster, leader1);
        // Leader and one follower form a minority and pile up entries.
        cluster
            .network()
            .partition(&[vec![leader1, peers[0]], peers[1..].to_vec()]);
        let node1 = cluster.node(leader1).unwrap().clone();
        for n in 0..50 {
            let node1 = node1.clone();
            tokio::spawn(async move { node1.propose(Bytes::from(format!("lost{n}"))).await });
        }
        sleep(Duration::from_millis(500)).await;
        // The majority commits many entries of its own.
        for n in 0..50 {
            one(&cluster, &format!("maj{n}"), 3).await;
        }
        let sent_before = cluster.network().messages_sent();
        cluster.network().heal();
        let index = one(&cluster, "converged", 5).await;
        let sent = cluster.network().messages_sent() - sent_before;
        assert!(
            applied_count(&cluster, index, b"converged") == 5,
            "seed {seed}"
        );
        // Fast back-up skips a term per round trip rather than an entry.
        assert!(sent < 400, "seed {seed}: {sent} messages to converge");
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn an_agreement_costs_a_bounded_number_of_messages() {
    run_seeds("count", 0..20, |seed| async move {
        let mut cluster = start(seed, 3).await;
        leader(&cluster).await;
        // Election: a pre-vote and a vote round, each out and back.
        let election = cluster.network().messages_sent();
        assert!(election < 30, "seed {seed}: {election} messages to elect");
        let first = leader(&cluster).await;
        let node = cluster.node(first).unwrap().clone();
        let before = cluster.network().messages_sent();
        for n in 0..10 {
            node.propose(Bytes::from(format!("c{n}"))).await.unwrap();
        }
        let per_agreement = (cluster.network().messages_sent() - before) as f64 / 10.0;
        // Append and answer per follower, plus the commit notice and answer.
        assert!(
            per_agreement <= 8.0,
            "seed {seed}: {per_agreement} messages per agreement"
        );
        // Idle: only heartbeats, 2 followers × 2 messages per 50 ms.
        let idle_before = cluster.network().messages_sent();
        sleep(Duration::from_secs(1)).await;
        let idle = cluster.network().messages_sent() - idle_before;
        assert!(idle <= 100, "seed {seed}: {idle} messages idle for 1 s");
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn followers_learn_the_commit_index_without_waiting_for_a_heartbeat() {
    run_seeds("commit_notice", 0..10, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        let node = cluster.node(first).unwrap().clone();
        let index = node.propose(Bytes::from("c")).await.unwrap();
        // Well under one heartbeat interval (50 ms).
        sleep(Duration::from_millis(5)).await;
        assert_eq!(applied_count(&cluster, index, b"c"), 3, "seed {seed}");
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn unreliable_network_still_reaches_agreement() {
    run_seeds("unreliable_agree", 0..10, |seed| async move {
        let mut options = SimOptions::new(seed, 5);
        options.network = NetConfig::unreliable();
        let mut cluster = start_with(options).await;
        let mut tasks = Vec::new();
        for n in 0..20 {
            let index = one(&cluster, &format!("u{n}"), 1).await;
            tasks.push(index);
        }
        cluster.network().set_config(NetConfig::reliable());
        one(&cluster, "final", 5).await;
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn a_follower_refuses_proposals_and_names_the_leader() {
    run_seeds("not_leader", 0..5, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        let follower = others(&cluster, first)[0];
        let node = cluster.node(follower).unwrap().clone();
        assert_eq!(node.status().role, Role::Follower);
        match node.propose(Bytes::from("x")).await {
            Err(Error::NotLeader { leader_hint }) => assert_eq!(leader_hint, Some(first)),
            other => panic!("seed {seed}: {other:?}"),
        }
        cluster.shutdown().await;
    });
}

#[test]
fn proposals_that_arrive_together_share_one_durable_write() {
    run_seeds("group_commit", 0..10, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        one(&cluster, "warm", 3).await;
        let node = cluster.node(first).unwrap().clone();
        let writes_before = cluster.storage(first).disk().writes;
        let tasks: Vec<_> = (0..100)
            .map(|n| {
                let node = node.clone();
                tokio::spawn(async move { node.propose(Bytes::from(format!("g{n}"))).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let writes = cluster.storage(first).disk().writes - writes_before;
        assert!(
            writes <= 3,
            "seed {seed}: 100 proposals took {writes} writes"
        );
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn a_slow_follower_does_not_slow_the_others() {
    run_seeds("slow_follower", 0..10, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        let slow = others(&cluster, first)[0];
        // The slow follower takes 100 ms per write, 500 times the others.
        cluster
            .storage(slow)
            .set_write_delay(Duration::from_millis(100));
        let node = cluster.node(first).unwrap().clone();
        let started = tokio::time::Instant::now();
        for n in 0..100 {
            node.propose(Bytes::from(format!("s{n}"))).await.unwrap();
        }
        let per_proposal = started.elapsed() / 100;
        // A healthy agreement takes about 3 ms here (tokio's timers round
        // each delay up to a millisecond); waiting for the slow follower
        // would take over 100 ms.
        assert!(
            per_proposal < Duration::from_millis(10),
            "seed {seed}: {per_proposal:?} per proposal with one slow follower"
        );
        // It still catches up in the end.
        cluster
            .storage(slow)
            .set_write_delay(Duration::from_micros(200));
        let index = one(&cluster, "end", 3).await;
        assert_eq!(applied_count(&cluster, index, b"end"), 3, "seed {seed}");
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}
