//! Three kv-server processes: writes through kv-cli and the clerk, the
//! leader SIGKILLed and restarted, and every acknowledged write found on
//! every node; a client of another CA is refused.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kv_clerk::{Connector, Request, ServiceError};
use raft_core::NodeId;
use rustix::process::Signal;

use crate::replicas::replay;
use crate::support::{clerk, connector, TestCluster};

/// Writes through the clerk: `count` puts of their own keys and appends to
/// one shared key, each recorded in `expected` once acknowledged.
async fn write_batch<C: kv_clerk::Connector>(
    clerk: &kv_clerk::Clerk<C>,
    range: std::ops::Range<u32>,
    expected: &mut BTreeMap<Bytes, Bytes>,
) {
    for i in range {
        let key = Bytes::from(format!("key-{i:03}"));
        let value = Bytes::from(format!("value-{i}"));
        clerk
            .put(key.clone(), value.clone())
            .await
            .unwrap_or_else(|error| panic!("put {i} failed: {error}"));
        expected.insert(key, value);

        let suffix = format!("{i},");
        clerk
            .append("journal", suffix.clone())
            .await
            .unwrap_or_else(|error| panic!("append {i} failed: {error}"));
        let journal = expected.entry(Bytes::from_static(b"journal")).or_default();
        *journal = Bytes::from([journal.as_ref(), suffix.as_bytes()].concat());
    }
}

/// Waits (at most 10 s) until node `id` knows the current leader, which it
/// learns only from the leader's own messages. A follower answers any
/// request with "not the leader" and the leader it knows.
async fn wait_until_following(cluster: &TestCluster, id: NodeId) {
    let connector = connector(cluster);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let request = Request::Get {
            key: Bytes::from_static(b"journal"),
        };
        match connector.call(id, request).await {
            Ok(Err(ServiceError::NotLeader {
                leader_hint: Some(_),
            }))
            | Ok(Ok(_)) => return,
            answer => assert!(
                Instant::now() < deadline,
                "node {id} does not know a leader after 10 s: {answer:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn acknowledged_writes_survive_a_leader_sigkill_and_reach_every_node() {
    let started = Instant::now();
    let mut cluster = TestCluster::new(3);
    // Snapshots every 40 entries: the restarted node may catch up from a
    // snapshot, and the replay below starts from one.
    cluster
        .extra_flags
        .extend(["--snapshot-entries-threshold".to_string(), "40".to_string()]);
    cluster.start_all();
    let mut expected: BTreeMap<Bytes, Bytes> = BTreeMap::new();

    // Through the command-line client.
    let put = cluster.cli(&["put", "greeting", "hello"]);
    assert_success(&put, "kv-cli put");
    assert_eq!(stdout(&put), "OK\n");
    assert_success(
        &cluster.cli(&["append", "greeting", ", world"]),
        "kv-cli append",
    );
    let get = cluster.cli(&["get", "greeting"]);
    assert_success(&get, "kv-cli get");
    assert_eq!(stdout(&get), "hello, world\n");
    let json = cluster.cli(&["--json", "get", "greeting"]);
    assert_success(&json, "kv-cli --json get");
    let json: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("one JSON object");
    assert_eq!(
        json,
        serde_json::json!({"key": "greeting", "found": true, "value": "hello, world"})
    );
    let missing = cluster.cli(&["get", "no-such-key"]);
    assert_eq!(missing.status.code(), Some(1), "a missing key exits with 1");
    assert_eq!(stdout(&missing), "");
    expected.insert(
        Bytes::from_static(b"greeting"),
        Bytes::from_static(b"hello, world"),
    );

    // Through the clerk, then with the leader killed, then with it back.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let leader: NodeId = runtime.block_on(async {
        let clerk = clerk(&cluster);
        write_batch(&clerk, 0..20, &mut expected).await;
        clerk
            .leader()
            .expect("the clerk knows the leader after a write")
    });
    cluster.assert_running();
    let killed_at = Instant::now();
    cluster.kill(leader);
    runtime.block_on(async {
        let clerk = clerk(&cluster);
        write_batch(&clerk, 20..40, &mut expected).await;
        let new_leader = clerk.leader().expect("a new leader");
        assert_ne!(new_leader, leader, "the killed node cannot lead");
    });
    let failover = killed_at.elapsed();
    cluster.start(leader);
    runtime.block_on(async {
        let clerk = clerk(&cluster);
        write_batch(&clerk, 40..60, &mut expected).await;
        // Every acknowledged write reads back, linearizably, through the leader.
        for (key, value) in &expected {
            let read = clerk.get(key.clone()).await.expect("read back");
            assert_eq!(read.as_ref(), Some(value), "key {key:?}");
        }
    });
    cluster.assert_running();
    let cli_read = cluster.cli(&["get", "journal"]);
    assert_success(&cli_read, "kv-cli get journal");
    assert_eq!(
        stdout(&cli_read).trim_end().as_bytes(),
        expected[&Bytes::from_static(b"journal")].as_ref()
    );

    // Every node: stop each cleanly and replay its data directory. First
    // let the restarted node hear from the leader: when its id is the
    // higher of a pair, the other node dials it again only after its
    // reconnect backoff (up to 2 s). A node that has still not caught up
    // when stopped gets another round.
    runtime.block_on(wait_until_following(&cluster, leader));
    let mut rounds = 0;
    // (node, index its snapshot covers, last index) of the last round.
    let mut logs = Vec::new();
    loop {
        rounds += 1;
        std::thread::sleep(Duration::from_millis(500));
        let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
        for &id in &ids {
            // Node 1 gets Ctrl-C's signal, the others SIGTERM.
            let signal = if id == 1 { Signal::INT } else { Signal::TERM };
            let status = cluster.stop(id, signal);
            assert!(
                status.success(),
                "node {id} must stop cleanly on {signal:?}: {status}"
            );
            let log = std::fs::read_to_string(&cluster.nodes[&id].log).unwrap_or_default();
            assert!(log.contains("stopped cleanly"), "node {id} log:\n{log}");
        }
        let mut lagging = Vec::new();
        logs.clear();
        for &id in &ids {
            let replica = runtime.block_on(replay(&cluster.nodes[&id].data_dir));
            logs.push((id, replica.snapshot_index, replica.last_index));
            if replica.map != expected {
                let missing = expected
                    .iter()
                    .filter(|(key, value)| replica.map.get(*key) != Some(value))
                    .count();
                let extra = replica
                    .map
                    .keys()
                    .filter(|key| !expected.contains_key(*key))
                    .count();
                assert_eq!(extra, 0, "node {id} holds keys never written");
                lagging.push((id, missing, replica.last_index));
            }
        }
        if lagging.is_empty() {
            break;
        }
        eprintln!("e2e: round {rounds}: (node, writes missing, last index) {lagging:?}");
        assert!(
            rounds < 3,
            "nodes still miss acknowledged writes after {rounds} rounds \
             (node, writes missing, last index): {lagging:?}"
        );
        cluster.start_all();
        // Let the nodes reconnect and the leader bring everyone up to date.
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        logs.iter()
            .all(|(_, snapshot_index, _)| *snapshot_index > 0),
        "every node took or received a snapshot: {logs:?}"
    );
    eprintln!(
        "e2e: 122 acknowledged writes to {} keys, failover {failover:?}, {rounds} stop \
         round(s), (node, snapshot index, last index) {logs:?}, {:?} in all",
        expected.len(),
        started.elapsed()
    );
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    let good = cluster.cli(&["put", "k", "v"]);
    assert_success(&good, "kv-cli put with the cluster's certificate");

    let other = cluster.dir.path().join("other-ca");
    crate::support::make_certificates(&other, &[]);
    let client = |name: &str| other.join(name).display().to_string();
    let refused = cluster.cli_with_tls(
        &client("ca.pem"),
        &client(&format!("client-{}.pem", crate::support::CLIENT_NAME)),
        &client(&format!("client-{}.key.pem", crate::support::CLIENT_NAME)),
        &["--timeout-s", "2", "put", "k", "intruder"],
    );
    assert_eq!(
        refused.status.code(),
        Some(3),
        "refused, and certainly not applied: {}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The cluster CA for the server, another CA's certificate for the
    // client: the servers refuse the handshake.
    let refused = cluster.cli_with_tls(
        &cluster.certs.join("ca.pem").display().to_string(),
        &client(&format!("client-{}.pem", crate::support::CLIENT_NAME)),
        &client(&format!("client-{}.key.pem", crate::support::CLIENT_NAME)),
        &["--timeout-s", "2", "put", "k", "intruder"],
    );
    assert_eq!(refused.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");

    let read = cluster.cli(&["get", "k"]);
    assert_success(&read, "kv-cli get");
    assert_eq!(stdout(&read), "v\n", "the intruder's write did not happen");
    cluster.assert_running();
}
