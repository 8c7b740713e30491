//! The client protocol over real QUIC with mutual TLS on 127.0.0.1: three
//! nodes (in-memory logs), a clerk through `QuicConnector`, a leader that
//! stops, and a request that is not a frame.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kv_clerk::quic::{QuicConnector, CLIENT_FRAME_BYTES_MAX};
use kv_clerk::{Clerk, ClerkConfig};
use kv_service::quic::serve_clients;
use kv_service::{KvServer, ServerConfig, SessionConfig, SystemClock};
use raft_core::testkit::MemStorage;
use raft_core::{Config, NodeId, Role};
use raft_transport::{
    frame, CertificateAuthority, Identity, QuicClient, QuicTransport, TransportConfig, CLIENT_ALPN,
};
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

struct Node {
    server: KvServer,
    transport: QuicTransport,
    clients: JoinHandle<()>,
}

fn free_addr() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
    socket.local_addr().unwrap()
}

async fn start_node(
    ca: &CertificateAuthority,
    id: NodeId,
    addresses: &BTreeMap<NodeId, SocketAddr>,
) -> Node {
    let credentials = ca
        .issue(&Identity::Node(id))
        .unwrap()
        .credentials(ca)
        .unwrap();
    let peers = addresses
        .iter()
        .filter(|(peer, _)| **peer != id)
        .map(|(peer, addr)| (*peer, *addr))
        .collect();
    let mut config = TransportConfig::new(id, addresses[&id], peers, credentials);
    config.client_alpn = Some(CLIENT_ALPN.to_vec());
    let (inbox_sender, inbox) = raft_core::inbox(4096);
    let transport = QuicTransport::start(config, inbox_sender).await.unwrap();
    let raft_config = Config::new(id, addresses.keys().copied().collect());
    let server = KvServer::start(
        raft_config,
        MemStorage::new(),
        transport.clone(),
        inbox,
        SessionConfig::default(),
        Arc::new(SystemClock),
        ServerConfig::default(),
    )
    .await
    .unwrap();
    let connections = transport.take_client_connections().unwrap();
    let clients = tokio::spawn(serve_clients(server.clone(), connections));
    Node {
        server,
        transport,
        clients,
    }
}

async fn await_leader(nodes: &BTreeMap<NodeId, Node>) -> NodeId {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leader = nodes
            .iter()
            .find(|(_, node)| node.server.node().status().role == Role::Leader);
        if let Some((id, _)) = leader {
            return *id;
        }
        assert!(Instant::now() < deadline, "no leader within 10 s");
        sleep(Duration::from_millis(20)).await;
    }
}

async fn stop(node: Node) {
    node.clients.abort();
    node.server.shutdown().await;
    node.transport.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerk_over_quic_writes_once_and_reads_through_a_leader_change() {
    let ca = CertificateAuthority::generate().unwrap();
    let addresses: BTreeMap<NodeId, SocketAddr> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = BTreeMap::new();
    for &id in addresses.keys() {
        nodes.insert(id, start_node(&ca, id, &addresses).await);
    }
    let client_credentials = ca
        .issue(&Identity::client("test").unwrap())
        .unwrap()
        .credentials(&ca)
        .unwrap();
    let connector = QuicConnector::new(&client_credentials, addresses.clone()).unwrap();
    let mut config = ClerkConfig::new(connector.servers().keys().copied().collect());
    config.deadline = Duration::from_secs(15);
    let clerk = Clerk::new(Arc::new(connector), config).unwrap();

    let first_leader = await_leader(&nodes).await;
    clerk.put("k", "a;").await.unwrap();
    clerk.append("k", "b;").await.unwrap();
    assert_eq!(clerk.get("k").await.unwrap(), Some(Bytes::from("a;b;")));
    assert_eq!(clerk.get("missing").await.unwrap(), None);

    // The leader stops; the clerk finds the new one and goes on.
    stop(nodes.remove(&first_leader).unwrap()).await;
    clerk.append("k", "c;").await.unwrap();
    assert_eq!(clerk.get("k").await.unwrap(), Some(Bytes::from("a;b;c;")));
    assert_ne!(clerk.leader(), Some(first_leader));

    for (_, node) in std::mem::take(&mut nodes) {
        stop(node).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_that_is_not_a_request_fails_alone_and_the_node_serves_on() {
    let ca = CertificateAuthority::generate().unwrap();
    let addresses: BTreeMap<NodeId, SocketAddr> = [(1, free_addr())].into();
    let nodes: BTreeMap<NodeId, Node> = [(1, start_node(&ca, 1, &addresses).await)].into();
    await_leader(&nodes).await;
    let client_credentials = ca
        .issue(&Identity::client("test").unwrap())
        .unwrap()
        .credentials(&ca)
        .unwrap();
    let client = QuicClient::new(&client_credentials, "127.0.0.1:0".parse().unwrap()).unwrap();
    let connection = client.connect_to_node(addresses[&1], 1).await.unwrap();

    // A frame whose payload is not a request: no answer on that stream.
    let (mut send, mut receive) = connection.open_bi().await.unwrap();
    let garbage = frame::encode(&("not", "a", "request"), 1024).unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut send, &garbage)
        .await
        .unwrap();
    let _ = send.finish();
    let answer =
        frame::read_frame::<_, kv_clerk::Response>(&mut receive, CLIENT_FRAME_BYTES_MAX).await;
    assert!(!matches!(answer, Ok(Some(_))), "{answer:?}");

    // The connection and the node still serve.
    let (mut send, mut receive) = connection.open_bi().await.unwrap();
    let request = kv_clerk::Request::Get { key: "k".into() };
    frame::write_frame(&mut send, &request, 1 << 20)
        .await
        .unwrap();
    let _ = send.finish();
    let answer: Option<kv_clerk::Response> =
        frame::read_frame(&mut receive, CLIENT_FRAME_BYTES_MAX)
            .await
            .unwrap();
    assert!(
        matches!(answer, Some(Ok(kv_clerk::Reply::Value { value: None }))),
        "{answer:?}"
    );

    client.close().await;
    for (_, node) in nodes {
        stop(node).await;
    }
}
