//! A write whose answer was lost is retried and takes effect once, also
//! across a leader crash; an expired session is replaced, never reused.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kv_clerk::{CallError, Clerk, Connector, RecordingClerk, Request, Response, ServerId};
use kv_service::sim::{KvCluster, SimConnector};
use kv_service::{ServerConfig, SessionConfig};
use raft_core::testkit::SimOptions;
use tokio::sync::Notify;
use tokio::time::sleep;

use crate::harness::{
    assert_linearizable, clerk_config, for_each_seed, recorder, start_cluster, Scenario,
    CLIENT_ID_BASE,
};

/// Passes calls through, but loses the answer to the first write that
/// succeeded (after the server applied it), and counts write attempts.
struct LoseFirstWriteAnswer {
    inner: SimConnector,
    lost: AtomicBool,
    write_attempts: AtomicUsize,
    answer_lost: Notify,
}

#[async_trait]
impl Connector for LoseFirstWriteAnswer {
    async fn call(&self, server: ServerId, request: Request) -> Result<Response, CallError> {
        let is_write = matches!(request, Request::Write { .. });
        let response = self.inner.call(server, request).await?;
        if is_write {
            self.write_attempts.fetch_add(1, Ordering::SeqCst);
            if response.is_ok() && !self.lost.swap(true, Ordering::SeqCst) {
                self.answer_lost.notify_one();
                std::future::pending::<()>().await;
            }
        }
        Ok(response)
    }
}

async fn retried_append_appears_once(seed: u64, crash_leader_meanwhile: bool) {
    let scenario = Scenario::new("retried_append");
    let mut cluster = start_cluster(&scenario, seed).await;
    let history = recorder(
        if crash_leader_meanwhile {
            "retried_append_leader_crash"
        } else {
            "retried_append"
        },
        seed,
    );
    let connector = Arc::new(LoseFirstWriteAnswer {
        inner: cluster.connector(CLIENT_ID_BASE),
        lost: AtomicBool::new(false),
        write_attempts: AtomicUsize::new(0),
        answer_lost: Notify::new(),
    });
    let clerk = Clerk::new(connector.clone(), clerk_config(3, seed)).unwrap();
    let mut client = RecordingClerk::new(clerk, CLIENT_ID_BASE, history.clone());

    client.append("k", "first;").await.unwrap();
    let append = {
        let mut client =
            RecordingClerk::new(client.clerk().clone(), CLIENT_ID_BASE + 1, history.clone());
        tokio::spawn(async move { client.append("k", "x;").await })
    };
    connector.answer_lost.notified().await;
    if crash_leader_meanwhile {
        let leader = cluster.sim().leader().expect("a leader applied the write");
        cluster.crash(leader);
        sleep(Duration::from_secs(3)).await;
        cluster.restart(leader).await;
    }
    append.await.unwrap().unwrap();
    let value = client.get("k").await.unwrap();

    assert_eq!(value, Some(Bytes::from("first;x;")), "seed {seed}");
    assert!(
        connector.write_attempts.load(Ordering::SeqCst) >= 3,
        "seed {seed}: the lost answer was retried"
    );
    assert_linearizable("retried_append", seed, &history.operations());
    cluster.sim().assert_invariants();
    cluster.shutdown().await;
}

#[test]
fn retried_append_whose_first_answer_was_lost_appears_once() {
    for_each_seed(
        "retried_append_whose_first_answer_was_lost_appears_once",
        5,
        |seed| retried_append_appears_once(seed, false),
    );
}

#[test]
fn retried_append_whose_answer_was_lost_appears_once_across_a_leader_crash() {
    for_each_seed(
        "retried_append_whose_answer_was_lost_appears_once_across_a_leader_crash",
        5,
        |seed| retried_append_appears_once(seed, true),
    );
}

#[test]
fn idle_clerk_whose_session_expired_opens_a_new_one_and_writes_once() {
    for_each_seed("idle_clerk_whose_session_expired", 2, |seed| async move {
        let sessions = SessionConfig {
            session_ttl: Duration::from_secs(2),
            sessions_max: 1000,
        };
        let mut cluster =
            KvCluster::start(SimOptions::new(seed, 3), sessions, ServerConfig::default()).await;
        cluster
            .sim()
            .await_leader(Duration::from_secs(10))
            .await
            .unwrap();
        let idle = Clerk::new(cluster.connector(CLIENT_ID_BASE), clerk_config(3, seed)).unwrap();
        let busy = Clerk::new(
            cluster.connector(CLIENT_ID_BASE + 1),
            clerk_config(3, seed + 1),
        )
        .unwrap();

        idle.append("k", "a;").await.unwrap();
        let first_session = idle.session().unwrap();
        // The other clerk's writes move the log clock past the ttl.
        for n in 0..5 {
            busy.put("other", format!("{n}")).await.unwrap();
            sleep(Duration::from_secs(1)).await;
        }
        idle.append("k", "b;").await.unwrap();

        assert_ne!(
            idle.session(),
            Some(first_session),
            "seed {seed}: a new session"
        );
        assert_eq!(idle.get("k").await.unwrap(), Some(Bytes::from("a;b;")));
        let leader = cluster.sim().leader().unwrap();
        let machine = cluster.server(leader).unwrap().machine().clone();
        assert_eq!(
            machine.session_count(),
            2,
            "seed {seed}: the expired session is gone"
        );
        cluster.shutdown().await;
    });
}
