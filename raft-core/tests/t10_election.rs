//! Elections: Raft §5.2, pre-vote (thesis §9.6) and check-quorum (§6.2).

mod common;

use std::time::Duration;

use common::*;
use raft_core::testkit::run_seeds;
use raft_core::Role;
use tokio::time::sleep;

#[test]
fn initial_election_elects_exactly_one_leader_and_keeps_it() {
    run_seeds("initial_election", 0..20, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        let term = cluster.node(first).unwrap().status().term;
        // With no failures the leader and term stay put, held by heartbeats
        // (every 50 ms to each of two followers, and their answers).
        let sent_before = cluster.network().messages_sent();
        sleep(Duration::from_secs(5)).await;
        let heartbeats = cluster.network().messages_sent() - sent_before;
        assert!(
            (300..=500).contains(&heartbeats),
            "seed {seed}: {heartbeats} messages in 5 s"
        );
        assert_eq!(cluster.leader(), Some(first), "seed {seed}: leader changed");
        assert_eq!(
            cluster.node(first).unwrap().status().term,
            term,
            "seed {seed}: term changed"
        );
        let leaders = cluster
            .statuses()
            .iter()
            .filter(|s| s.role == Role::Leader)
            .count();
        assert_eq!(leaders, 1, "seed {seed}");
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn reelection_after_leader_is_cut_off() {
    run_seeds("reelection", 0..20, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        cluster.network().isolate(first);
        let second = leader(&cluster).await;
        assert_ne!(first, second, "seed {seed}");
        // The old leader rejoins: one leader stays in charge.
        cluster.network().reconnect(first);
        let third = leader(&cluster).await;
        // Cut off two of three: no majority, no leader among them.
        cluster.network().isolate(third);
        let other = others(&cluster, third)[0];
        cluster.network().isolate(other);
        sleep(ELECTION).await;
        let leaders_with_quorum = cluster.await_leader(Duration::from_secs(1)).await;
        assert_eq!(
            leaders_with_quorum, None,
            "seed {seed}: leader without a majority"
        );
        cluster.network().heal();
        leader(&cluster).await;
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn many_elections_under_random_disconnects_keep_one_leader_per_term() {
    run_seeds("many_elections", 0..10, |seed| async move {
        let mut cluster = start(seed, 7).await;
        leader(&cluster).await;
        for _ in 0..10 {
            // Disconnect three of seven at random; four still form a majority.
            let mut cut = Vec::new();
            while cut.len() < 3 {
                let id = cluster.network().random(1, 8);
                if !cut.contains(&id) {
                    cut.push(id);
                }
            }
            for id in &cut {
                cluster.network().isolate(*id);
            }
            leader(&cluster).await;
            cluster.network().heal();
        }
        leader(&cluster).await;
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn pre_vote_keeps_a_rejoining_node_from_deposing_a_healthy_leader() {
    run_seeds("pre_vote_rejoin", 0..20, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        let term = cluster.node(first).unwrap().status().term;
        let follower = others(&cluster, first)[0];
        cluster.network().isolate(follower);
        // Long enough for many election timeouts on the isolated node.
        sleep(Duration::from_secs(10)).await;
        let isolated = cluster.node(follower).unwrap().status();
        assert_eq!(
            isolated.term, term,
            "seed {seed}: pre-vote must not raise the term"
        );
        cluster.network().reconnect(follower);
        sleep(Duration::from_secs(2)).await;
        assert_eq!(
            cluster.leader(),
            Some(first),
            "seed {seed}: healthy leader deposed"
        );
        assert_eq!(
            cluster.node(first).unwrap().status().term,
            term,
            "seed {seed}"
        );
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn check_quorum_makes_a_cut_off_leader_step_down_within_an_election_timeout() {
    run_seeds("check_quorum", 0..20, |seed| async move {
        let mut cluster = start(seed, 5).await;
        let first = leader(&cluster).await;
        cluster.network().isolate(first);
        // The election timeout is at most 100 ticks of 10 ms; check-quorum
        // runs every minimum timeout, so two of them suffice.
        sleep(Duration::from_millis(2 * 1000 + 50)).await;
        let status = cluster.node(first).unwrap().status();
        assert_ne!(
            status.role,
            Role::Leader,
            "seed {seed}: cut-off leader still leads"
        );
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}

#[test]
fn leadership_transfer_hands_over_to_the_named_follower() {
    run_seeds("transfer", 0..20, |seed| async move {
        let mut cluster = start(seed, 3).await;
        let first = leader(&cluster).await;
        one(&cluster, "before", 3).await;
        let target = others(&cluster, first)[1];
        cluster
            .node(first)
            .unwrap()
            .transfer_leadership(target)
            .await
            .unwrap_or_else(|error| panic!("seed {seed}: transfer failed: {error}"));
        let now = leader(&cluster).await;
        assert_eq!(now, target, "seed {seed}");
        one(&cluster, "after", 3).await;
        cluster.assert_invariants();
        cluster.shutdown().await;
    });
}
