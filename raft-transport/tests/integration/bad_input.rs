//! Bad input closes only the offending connection, with a reason, and the
//! node keeps serving its other peers.
//!
//! Node 5 is the target; nodes 1 and 2 are well-behaved peers that dial it.
//! A rogue holds node 4's certificate (node 5 lists node 4 as a peer) or
//! another CA's or a client's, and speaks the peer protocol by hand.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use raft_core::{Message, NodeId};
use raft_transport::frame::{self, VERSION};
use raft_transport::quinn;
use raft_transport::wire::{close_code, Hello, PEER_ALPN};
use raft_transport::{CertificateAuthority, Identity, QuicClient, QuicTransport, TlsCredentials};
use tokio::sync::mpsc;

use crate::support::*;

const WITHIN: Duration = Duration::from_secs(5);

struct Cluster {
    target: QuicTransport,
    inbox: mpsc::UnboundedReceiver<Message>,
    good: Vec<(QuicTransport, mpsc::UnboundedReceiver<Message>)>,
    addr: SocketAddr,
}

impl Cluster {
    async fn start() -> Cluster {
        let addrs = addr_map(&[1, 2, 4, 5]);
        let (target, inbox) = start_node(5, &addrs).await;
        let without_4: BTreeMap<_, _> = addrs
            .iter()
            .filter(|(&id, _)| id != 4)
            .map(|(&id, &a)| (id, a))
            .collect();
        let mut good = Vec::new();
        for id in [1, 2] {
            good.push(start_node(id, &without_4).await);
        }
        let mut cluster = Cluster {
            target,
            inbox,
            good,
            addr: addrs[&5],
        };
        cluster.assert_still_serving().await;
        cluster
    }

    /// Nodes 1 and 2 still reach node 5 and hear from it.
    async fn assert_still_serving(&mut self) {
        for (node, inbox) in &mut self.good {
            let id = node.id();
            let arrived =
                send_until_received(node, &mut self.inbox, |term| heartbeat(id, 5, term), WITHIN)
                    .await;
            assert_eq!(arrived.from, id);
            let arrived =
                send_until_received(&self.target, inbox, |term| heartbeat(5, id, term), WITHIN)
                    .await;
            assert_eq!(arrived.from, 5);
        }
        while self.inbox.try_recv().is_ok() {}
    }

    async fn shutdown(self) {
        self.target.shutdown().await;
        for (node, _) in self.good {
            node.shutdown().await;
        }
    }
}

/// A hand-driven peer connection to the target.
async fn rogue_connection(
    credentials: &TlsCredentials,
    target: SocketAddr,
    target_id: NodeId,
) -> quinn::Connection {
    let bind = "127.0.0.1:0".parse().unwrap();
    let client = QuicClient::with_alpn(credentials, bind, PEER_ALPN).unwrap();
    let connection = client.connect_to_node(target, target_id).await.unwrap();
    // Dropping the client's handle is fine: quinn keeps the endpoint
    // running while it has connections.
    drop(client);
    connection
}

/// Opens the long-lived stream and completes the hello as node 4.
async fn rogue_session(target: SocketAddr) -> (quinn::Connection, quinn::SendStream) {
    let connection = rogue_connection(&node_credentials(4), target, 5).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    frame::write_frame(&mut send, &Hello { from: 4, to: 5 }, 256)
        .await
        .unwrap();
    let answer: Option<Hello> = frame::read_frame(&mut recv, 256).await.unwrap();
    assert_eq!(answer, Some(Hello { from: 5, to: 4 }));
    (connection, send)
}

/// Waits for the target to close `connection`; returns its code and reason.
async fn closed_by_target(connection: &quinn::Connection) -> (u32, String) {
    let error = tokio::time::timeout(WITHIN, connection.closed())
        .await
        .expect("target did not close the connection");
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => (
            close.error_code.into_inner() as u32,
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("connection ended otherwise: {other}"),
    }
}

fn seeded_bytes(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed;
    (0..length)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

#[tokio::test]
async fn random_bytes_instead_of_a_hello_close_the_connection() {
    let mut cluster = Cluster::start().await;
    let connection = rogue_connection(&node_credentials(4), cluster.addr, 5).await;
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    let mut garbage = seeded_bytes(1, 4096);
    garbage[0] = 0xa7; // Not the frame version.
    send.write_all(&garbage).await.unwrap();

    let (code, reason) = closed_by_target(&connection).await;
    assert_eq!(code, close_code::PROTOCOL);
    assert!(reason.contains("unsupported frame version 167"), "{reason}");
    cluster.assert_still_serving().await;
    assert!(cluster.target.stats().connections_rejected >= 1);
    cluster.shutdown().await;
}

#[tokio::test]
async fn random_bytes_after_the_hello_close_the_connection() {
    let mut cluster = Cluster::start().await;
    let (connection, mut send) = rogue_session(cluster.addr).await;
    // A valid header, then a payload that is no message.
    let mut garbage = vec![VERSION, 0, 0, 0x10, 0];
    garbage.extend(seeded_bytes(2, 0x1000));
    send.write_all(&garbage).await.unwrap();

    let (code, reason) = closed_by_target(&connection).await;
    assert_eq!(code, close_code::PROTOCOL);
    assert!(reason.contains("cannot decode frame payload"), "{reason}");
    cluster.assert_still_serving().await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn truncated_frame_closes_the_connection() {
    let mut cluster = Cluster::start().await;
    let (connection, mut send) = rogue_session(cluster.addr).await;
    let whole = frame::encode(&heartbeat(4, 5, 1), 1 << 20).unwrap();
    send.write_all(&whole[..whole.len() - 2]).await.unwrap();
    send.finish().unwrap();

    let (code, reason) = closed_by_target(&connection).await;
    assert_eq!(code, close_code::PROTOCOL);
    assert!(reason.contains("stream ended inside a frame"), "{reason}");
    cluster.assert_still_serving().await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn oversized_frame_length_closes_the_connection() {
    let mut cluster = Cluster::start().await;
    let (connection, mut send) = rogue_session(cluster.addr).await;
    // Announce 4 GiB - 1, more than the 16 MiB the target accepts.
    send.write_all(&[VERSION, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();

    let (code, reason) = closed_by_target(&connection).await;
    assert_eq!(code, close_code::PROTOCOL);
    assert!(reason.contains("exceeds the maximum"), "{reason}");
    cluster.assert_still_serving().await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn unknown_frame_version_closes_the_connection() {
    let mut cluster = Cluster::start().await;
    let (connection, mut send) = rogue_session(cluster.addr).await;
    let mut bytes = frame::encode(&heartbeat(4, 5, 1), 1 << 20)
        .unwrap()
        .to_vec();
    bytes[0] = VERSION + 1;
    send.write_all(&bytes).await.unwrap();

    let (code, reason) = closed_by_target(&connection).await;
    assert_eq!(code, close_code::PROTOCOL);
    assert!(
        reason.contains(&format!("unsupported frame version {}", VERSION + 1)),
        "{reason}"
    );
    cluster.assert_still_serving().await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn garbage_on_a_bulk_stream_closes_the_connection() {
    let mut cluster = Cluster::start().await;
    let (connection, _send) = rogue_session(cluster.addr).await;
    let mut stream = connection.open_uni().await.unwrap();
    let mut garbage = seeded_bytes(3, 300);
    garbage[0] = 0;
    stream.write_all(&garbage).await.unwrap();
    stream.finish().unwrap();

    let (code, reason) = closed_by_target(&connection).await;
    assert_eq!(code, close_code::PROTOCOL);
    assert!(reason.contains("unsupported frame version 0"), "{reason}");
    cluster.assert_still_serving().await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let mut cluster = Cluster::start().await;
    let other_ca = CertificateAuthority::generate().unwrap();
    let impostor = other_ca
        .issue(&Identity::Node(4))
        .unwrap()
        .credentials(&other_ca)
        .unwrap();
    let client =
        QuicClient::with_alpn(&impostor, "127.0.0.1:0".parse().unwrap(), PEER_ALPN).unwrap();

    // The target's certificate is not from the impostor's CA either, so the
    // handshake fails on both ends.
    let result = client.connect_to_node(cluster.addr, 5).await;
    assert!(result.is_err(), "handshake with another CA succeeded");
    wait_until(WITHIN, "the target to count the refusal", || {
        cluster.target.stats().connections_rejected >= 1
    })
    .await;
    cluster.assert_still_serving().await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn hello_claiming_another_nodes_id_is_refused() {
    let mut cluster = Cluster::start().await;
    // Node 4's certificate, claiming to be node 1.
    let connection = rogue_connection(&node_credentials(4), cluster.addr, 5).await;
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    frame::write_frame(&mut send, &Hello { from: 1, to: 5 }, 256)
        .await
        .unwrap();

    let (code, reason) = closed_by_target(&connection).await;
    assert_eq!(code, close_code::IDENTITY);
    assert!(reason.contains("claims to be node 1"), "{reason}");
    // The real node 1 keeps its connection.
    cluster.assert_still_serving().await;
    assert_eq!(cluster.target.stats().peers[&1].connections_established, 1);
    cluster.shutdown().await;
}

#[tokio::test]
async fn message_claiming_another_sender_is_refused() {
    let mut cluster = Cluster::start().await;
    let (connection, mut send) = rogue_session(cluster.addr).await;
    let forged = frame::encode(&append(1, 5, 9, b"forged"), 1 << 20).unwrap();
    send.write_all(&forged).await.unwrap();

    let (code, reason) = closed_by_target(&connection).await;
    assert_eq!(code, close_code::IDENTITY);
    assert!(reason.contains("claims to be from node 1"), "{reason}");
    // The forged message never reached the node.
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Ok(message) = cluster.inbox.try_recv() {
        assert_ne!(message.term, 9, "forged message delivered");
    }
    cluster.assert_still_serving().await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn client_certificate_cannot_pose_as_a_node() {
    let mut cluster = Cluster::start().await;
    let certs = certs();
    let alice = certs.alice.credentials(&certs.ca).unwrap();
    let connection = rogue_connection(&alice, cluster.addr, 5).await;
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    frame::write_frame(&mut send, &Hello { from: 4, to: 5 }, 256)
        .await
        .unwrap();

    let (code, _reason) = closed_by_target(&connection).await;
    assert_eq!(code, close_code::IDENTITY);
    cluster.assert_still_serving().await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn higher_id_dialing_a_lower_one_is_refused() {
    let addrs = addr_map(&[1, 2]);
    let (node_1, _inbox_1) = start_node(1, &addrs).await;
    // Node 2 must wait for node 1 to dial; a connection it opens is refused.
    let connection = rogue_connection(&node_credentials(2), addrs[&1], 1).await;
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    frame::write_frame(&mut send, &Hello { from: 2, to: 1 }, 256)
        .await
        .unwrap();

    let (code, reason) = closed_by_target(&connection).await;
    assert_eq!(code, close_code::UNWANTED);
    assert!(reason.contains("the lower id dials"), "{reason}");
    node_1.shutdown().await;
}

#[tokio::test]
async fn dialer_refuses_a_server_whose_certificate_names_another_node() {
    // Node 1 believes node 2 listens where node 3 does.
    let addrs = addr_map(&[1, 3]);
    let (node_3, _inbox_3) = start_node(3, &addrs).await;
    let misdirected = BTreeMap::from([(1, addrs[&1]), (2, addrs[&3])]);
    let (node_1, _inbox_1) = start_node(1, &misdirected).await;

    wait_until(WITHIN, "node 3 to see the failed handshakes", || {
        node_3.stats().connections_rejected >= 1
    })
    .await;
    assert!(!node_1.is_connected(2));
    assert_eq!(node_1.stats().peers[&2].connections_established, 0);
    node_1.shutdown().await;
    node_3.shutdown().await;
}

#[tokio::test]
async fn node_outside_the_peer_list_is_refused() {
    let mut cluster = Cluster::start().await;
    // Node 3 has a valid certificate but is not one of node 5's peers.
    let connection = rogue_connection(&node_credentials(3), cluster.addr, 5).await;
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    frame::write_frame(&mut send, &Hello { from: 3, to: 5 }, 256)
        .await
        .unwrap();

    let (code, reason) = closed_by_target(&connection).await;
    assert_eq!(code, close_code::UNWANTED);
    assert!(reason.contains("node 3 is not a peer"), "{reason}");
    cluster.assert_still_serving().await;
    cluster.shutdown().await;
}
