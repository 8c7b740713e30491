//! Three kv-server processes: writes through kv-cli and the clerk, the
//! leader SIGKILLed and restarted, and every acknowledged write found on
//! every node; a client of another CA is refused.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kv_clerk::NodeStatus;
use raft_core::NodeId;
use rustix::process::Signal;

use crate::replicas::replay;
use crate::support::{clerk, TestCluster};

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

/// Waits (at most 15 s) until every node answers `status` with the same
/// term and leader and has applied everything the leader committed, and
/// returns their statuses.
async fn wait_until_converged(cluster: &TestCluster) -> Vec<NodeStatus> {
    let clerk = clerk(cluster);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut statuses = Vec::new();
        for &id in cluster.nodes.keys() {
            if let Ok(status) = clerk.status(id).await {
                statuses.push(status);
            }
        }
        let leader = statuses.iter().find(|status| status.role == "leader");
        let converged = leader.is_some_and(|leader| {
            statuses.len() == cluster.nodes.len()
                && statuses.iter().all(|status| {
                    status.term == leader.term
                        && status.leader == Some(leader.id)
                        && status.applied == leader.commit
                        && status.last_index == leader.last_index
                })
        });
        if converged {
            return statuses;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not converge in 15 s: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `nodes` of `kv-cli --json status`.
fn status_nodes(output: &Output) -> Vec<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_str(&stdout(output)).expect("one JSON object");
    json["nodes"].as_array().expect("a nodes array").clone()
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
    let status = cluster.cli(&["status"]);
    assert_eq!(status.status.code(), Some(3), "a node does not answer");
    let table = stdout(&status);
    assert_eq!(
        table.lines().count(),
        4,
        "a header and a line per node:\n{table}"
    );
    assert!(table.contains("no answer"), "{table}");
    let leading = table
        .lines()
        .filter(|line| line.split_whitespace().nth(2) == Some("leader"))
        .count();
    assert_eq!(leading, 1, "{table}");
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

    // kv-cli status sees the three nodes, one leading, all in one term.
    let converged = runtime.block_on(wait_until_converged(&cluster));
    let status = cluster.cli(&["--json", "status"]);
    assert_success(&status, "kv-cli --json status");
    let nodes = status_nodes(&status);
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert_eq!(
        nodes.iter().filter(|node| node["role"] == "leader").count(),
        1,
        "{nodes:?}"
    );
    assert!(
        nodes.iter().all(|node| node["term"] == nodes[0]["term"]),
        "{nodes:?}"
    );

    // Every node: once each has applied all the leader committed, stop
    // each cleanly and replay its data directory (its snapshot, then its
    // log) the way it would restart: each must hold exactly the
    // acknowledged writes.
    for &id in converged.iter().map(|status| &status.id) {
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
    let mut logs = Vec::new();
    for status in &converged {
        let id = status.id;
        let replica = runtime.block_on(replay(&cluster.nodes[&id].data_dir));
        logs.push((id, replica.snapshot_index, replica.last_index));
        let missing: Vec<&Bytes> = expected
            .iter()
            .filter(|(key, value)| replica.map.get(*key) != Some(*value))
            .map(|(key, _)| key)
            .collect();
        assert!(
            missing.is_empty(),
            "node {id} lacks or differs on {missing:?}"
        );
        assert_eq!(
            replica.map.len(),
            expected.len(),
            "node {id} holds keys never written"
        );
        assert!(
            replica.snapshot_index > 0,
            "node {id} took or received a snapshot"
        );
    }
    eprintln!(
        "e2e: 122 acknowledged writes to {} keys on every node, failover {failover:?}, \
         (node, snapshot index, last index) {logs:?}, {:?} in all",
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
