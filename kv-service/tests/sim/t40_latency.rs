//! Latency by design, in virtual time: a commit must not wait for the next
//! heartbeat.
//!
//! Tokio's timers have a resolution of one millisecond, so under the paused
//! clock every simulated hop (network delay, storage write) costs at least
//! 1 ms: client to leader, leader to follower, the follower's write, its
//! acknowledgement and the answer to the client make about 5 ms per append.
//! A commit that waited for the next heartbeat (50 ms) would average 25 ms
//! or more.

use bytes::Bytes;
use kv_clerk::Clerk;
use tokio::time::Instant;

use crate::harness::{clerk_config, for_each_seed, start_cluster, Scenario, CLIENT_ID_BASE};

#[test]
fn sequential_appends_average_well_under_one_heartbeat_interval() {
    for_each_seed("sequential_appends_latency", 1, |seed| async move {
        let scenario = Scenario::new("latency");
        let mut cluster = start_cluster(&scenario, seed).await;
        let config = cluster.sim().config_of(1);
        let heartbeat = config.tick_interval * config.heartbeat_ticks;
        let clerk = Clerk::new(cluster.connector(CLIENT_ID_BASE), clerk_config(3, seed)).unwrap();
        // Open the session and find the leader before measuring.
        clerk.put("k", "").await.unwrap();

        let appends = 1000;
        let started = Instant::now();
        for n in 0..appends {
            clerk.append("k", format!("{n};")).await.unwrap();
        }
        let average = started.elapsed() / appends;

        let value = clerk.get("k").await.unwrap().unwrap();
        let expected: String = (0..appends).map(|n| format!("{n};")).collect();
        assert_eq!(value, Bytes::from(expected));
        eprintln!(
            "sequential append latency (virtual): average {average:?} over {appends} appends; \
             heartbeat interval {heartbeat:?}"
        );
        assert!(
            average < heartbeat / 4,
            "seed {seed}: average append {average:?} is not well under the heartbeat \
             interval {heartbeat:?}"
        );
        cluster.shutdown().await;
    });
}
