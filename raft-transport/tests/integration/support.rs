//! Shared helpers: certificates made once per test binary, free ports,
//! nodes with short timers, and message builders.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, Message, MessageBody, NodeId, SnapshotMeta};
use raft_transport::tls::IssuedCertificate;
use raft_transport::{
    CertificateAuthority, Identity, QuicTransport, TlsCredentials, TransportConfig,
};
use tokio::sync::mpsc;

/// Node ids with certificates from the cluster CA.
pub const NODES_MAX: NodeId = 6;

/// A cluster CA and certificates for nodes 1..=NODES_MAX and client "alice".
pub struct Certs {
    pub ca: CertificateAuthority,
    pub nodes: BTreeMap<NodeId, IssuedCertificate>,
    pub alice: IssuedCertificate,
}

pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let ca = CertificateAuthority::generate().unwrap();
        let nodes = (1..=NODES_MAX)
            .map(|id| (id, ca.issue(&Identity::Node(id)).unwrap()))
            .collect();
        let alice = ca.issue(&Identity::client("alice").unwrap()).unwrap();
        Certs { ca, nodes, alice }
    })
}

pub fn node_credentials(id: NodeId) -> TlsCredentials {
    let certs = certs();
    certs.nodes[&id].credentials(&certs.ca).unwrap()
}

/// Addresses on 127.0.0.1 whose UDP ports were free a moment ago.
pub fn free_addrs(count: usize) -> Vec<SocketAddr> {
    let sockets: Vec<UdpSocket> = (0..count)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    sockets
        .iter()
        .map(|socket| socket.local_addr().unwrap())
        .collect()
}

/// A configuration with timers short enough for tests.
pub fn test_config(id: NodeId, addrs: &BTreeMap<NodeId, SocketAddr>) -> TransportConfig {
    let peers = addrs
        .iter()
        .filter(|(&peer, _)| peer != id)
        .map(|(&peer, &addr)| (peer, addr))
        .collect();
    let mut config = TransportConfig::new(id, addrs[&id], peers, node_credentials(id));
    config.connect_timeout = Duration::from_millis(500);
    config.handshake_timeout = Duration::from_millis(500);
    config.reconnect_backoff_min = Duration::from_millis(20);
    config.reconnect_backoff_max = Duration::from_millis(200);
    config.keep_alive_interval = Duration::from_millis(100);
    config.idle_timeout = Duration::from_millis(1000);
    config.initial_rtt = Duration::from_millis(10);
    config.payload_bytes_max = 16 << 20;
    config
}

/// Logs to the test output, filtered by `RUST_LOG` (for example
/// `RUST_LOG=raft_transport=debug`); errors only without it.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Starts a transport delivering into an unbounded channel. Retries the
/// bind for a while: a port just released by a stopped node may linger.
pub async fn start_with(
    config: TransportConfig,
) -> (QuicTransport, mpsc::UnboundedReceiver<Message>) {
    init_tracing();
    let (sender, receiver) = mpsc::unbounded_channel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match QuicTransport::start(config.clone(), sender.clone()).await {
            Ok(transport) => return (transport, receiver),
            Err(raft_transport::Error::Bind { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("node {} did not start: {error}", config.id),
        }
    }
}

pub async fn start_node(
    id: NodeId,
    addrs: &BTreeMap<NodeId, SocketAddr>,
) -> (QuicTransport, mpsc::UnboundedReceiver<Message>) {
    start_with(test_config(id, addrs)).await
}

/// `ids` mapped to free addresses.
pub fn addr_map(ids: &[NodeId]) -> BTreeMap<NodeId, SocketAddr> {
    ids.iter().copied().zip(free_addrs(ids.len())).collect()
}

pub fn append(from: NodeId, to: NodeId, term: u64, command: &[u8]) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::AppendEntries {
            prev_index: 0,
            prev_term: 0,
            entries: vec![Entry {
                term,
                index: 1,
                payload: EntryPayload::Command(Bytes::copy_from_slice(command)),
            }],
            commit: 0,
            read_seq: 7,
        },
    }
}

pub fn heartbeat(from: NodeId, to: NodeId, term: u64) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::Heartbeat {
            commit: 0,
            read_seq: term,
        },
    }
}

pub fn snapshot_chunk(from: NodeId, to: NodeId, bytes: usize) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                last_index: 10,
                last_term: 1,
            },
            offset: 0,
            data: Bytes::from(vec![0x5a; bytes]),
            done: true,
            read_seq: 0,
        },
    }
}

/// The next message, failing the test after `within`.
pub async fn receive(receiver: &mut mpsc::UnboundedReceiver<Message>, within: Duration) -> Message {
    tokio::time::timeout(within, receiver.recv())
        .await
        .expect("no message arrived in time")
        .expect("transport dropped its sink")
}

/// Sends `make(attempt)` every 50 ms until a message arrives at `receiver`,
/// for at most `within`; returns what arrived. For links that are coming
/// back up, where early sends may be lost.
pub async fn send_until_received(
    sender: &QuicTransport,
    receiver: &mut mpsc::UnboundedReceiver<Message>,
    make: impl Fn(u64) -> Message,
    within: Duration,
) -> Message {
    use raft_core::Transport;
    let deadline = tokio::time::Instant::now() + within;
    let mut attempt = 0;
    loop {
        sender.send(make(attempt));
        attempt += 1;
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(50), receiver.recv()).await
        {
            return message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "link did not come back in time"
        );
    }
}

/// Polls `condition` every 10 ms for at most `within`.
pub async fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
