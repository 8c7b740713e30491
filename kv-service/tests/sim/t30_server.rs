//! The server's answers, request by request.

use std::time::Duration;

use bytes::Bytes;
use kv_clerk::protocol::{Limit, Reply, Request, ServiceError, WriteOp, KEY_BYTES_MAX};
use kv_clerk::Clerk;
use raft_core::Role;
use tokio::time::Instant;

use crate::harness::{clerk_config, for_each_seed, start_cluster, Scenario, CLIENT_ID_BASE};

#[test]
fn follower_answers_not_leader_at_once_with_the_leader_hint() {
    for_each_seed("follower_answers_not_leader", 2, |seed| async move {
        let mut cluster = start_cluster(&Scenario::new("follower"), seed).await;
        let leader = cluster.sim().leader().unwrap();
        let follower = cluster
            .sim()
            .ids()
            .into_iter()
            .find(|id| *id != leader)
            .unwrap();
        let server = cluster.server(follower).unwrap();
        assert_eq!(server.node().status().role, Role::Follower);

        let started = Instant::now();
        let get = server.handle(Request::Get { key: "k".into() }).await;
        let open = server.handle(Request::OpenSession).await;

        assert_eq!(started.elapsed(), Duration::ZERO, "answers without waiting");
        let expected = Err(ServiceError::NotLeader {
            leader_hint: Some(leader),
        });
        assert_eq!(get, expected);
        assert_eq!(open, expected);
        cluster.shutdown().await;
    });
}

#[test]
fn reads_add_no_log_entries() {
    for_each_seed("reads_add_no_log_entries", 2, |seed| async move {
        let mut cluster = start_cluster(&Scenario::new("reads"), seed).await;
        let clerk = Clerk::new(cluster.connector(CLIENT_ID_BASE), clerk_config(3, seed)).unwrap();
        clerk.put("k", "v").await.unwrap();
        let leader = cluster.sim().leader().unwrap();
        let last_index_before = cluster.server(leader).unwrap().node().status().last_index;

        for _ in 0..50 {
            assert_eq!(clerk.get("k").await.unwrap(), Some(Bytes::from("v")));
        }
        assert_eq!(clerk.get("missing").await.unwrap(), None);

        let last_index_after = cluster.server(leader).unwrap().node().status().last_index;
        assert_eq!(last_index_after, last_index_before, "seed {seed}");
        cluster.shutdown().await;
    });
}

#[test]
fn oversized_requests_are_refused_with_too_large() {
    for_each_seed("oversized_requests", 1, |seed| async move {
        let mut cluster = start_cluster(&Scenario::new("oversized"), seed).await;
        let leader = cluster.sim().leader().unwrap();
        let server = cluster.server(leader).unwrap();
        let key = Bytes::from(vec![b'k'; KEY_BYTES_MAX + 1]);

        let get = server.handle(Request::Get { key: key.clone() }).await;
        let write = server
            .handle(Request::Write {
                session: 1,
                seq: 1,
                seq_lowest_pending: 1,
                op: WriteOp::Put {
                    key,
                    value: Bytes::new(),
                },
            })
            .await;

        for answer in [get, write] {
            assert!(
                matches!(
                    answer,
                    Err(ServiceError::TooLarge {
                        what: Limit::Key,
                        ..
                    })
                ),
                "{answer:?}"
            );
        }
        cluster.shutdown().await;
    });
}

#[test]
fn write_on_a_session_never_opened_is_refused_as_expired() {
    for_each_seed("write_on_unknown_session", 1, |seed| async move {
        let mut cluster = start_cluster(&Scenario::new("unknown_session"), seed).await;
        let leader = cluster.sim().leader().unwrap();
        let server = cluster.server(leader).unwrap();
        let write = Request::Write {
            session: 123_456,
            seq: 1,
            seq_lowest_pending: 1,
            op: WriteOp::Append {
                key: "k".into(),
                value: "x".into(),
            },
        };

        let answer = server.handle(write).await;

        assert_eq!(
            answer,
            Err(ServiceError::SessionExpired { session: 123_456 })
        );
        let read = server.handle(Request::Get { key: "k".into() }).await;
        assert_eq!(read, Ok(Reply::Value { value: None }));
        cluster.shutdown().await;
    });
}

#[test]
fn every_node_answers_status_from_its_own_view() {
    for_each_seed("status", 2, |seed| async move {
        let mut cluster = start_cluster(&Scenario::new("status"), seed).await;
        let clerk = Clerk::new(cluster.connector(CLIENT_ID_BASE), clerk_config(3, seed)).unwrap();
        clerk.put("k", "v").await.unwrap();
        let leader = cluster.sim().leader().unwrap();
        for id in cluster.sim().ids() {
            let status = clerk
                .status(id)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let own = cluster.server(id).unwrap().node().status();
            assert_eq!(status.id, id, "seed {seed}");
            assert_eq!(status.term, own.term, "seed {seed}");
            assert_eq!(status.leader, Some(leader), "seed {seed}");
            let role = if id == leader { "leader" } else { "follower" };
            assert_eq!(status.role, role, "seed {seed}");
            assert!(
                status.log_entries() >= 2,
                "seed {seed}: blank entry and the session"
            );
        }
        let leader_status = clerk.status(leader).await.unwrap();
        assert!(
            leader_status.commit >= 3,
            "seed {seed}: session, put committed"
        );
        cluster.shutdown().await;
    });
}
