//! Messages between real nodes on loopback: round trips, restarts, a
//! dropped link, and a send path that never blocks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_core::{MessageBody, Transport};
use tokio::net::UdpSocket;

use crate::support::*;

const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn message_round_trip_between_two_nodes() {
    let addrs = addr_map(&[1, 2]);
    let (node_1, mut inbox_1) = start_node(1, &addrs).await;
    let (node_2, mut inbox_2) = start_node(2, &addrs).await;

    // Node 1 dials (lower id); node 2 answers on the same connection.
    let request = append(1, 2, 3, b"put k v");
    node_1.send(request.clone());
    assert_eq!(receive(&mut inbox_2, WITHIN).await, request);
    let answer = heartbeat(2, 1, 3);
    node_2.send(answer.clone());
    assert_eq!(receive(&mut inbox_1, WITHIN).await, answer);

    // A bulk message travels on its own stream, intact, both ways.
    let chunk = snapshot_chunk(1, 2, 1 << 20);
    node_1.send(chunk.clone());
    assert_eq!(receive(&mut inbox_2, WITHIN).await, chunk);
    let chunk = snapshot_chunk(2, 1, 1000);
    node_2.send(chunk.clone());
    assert_eq!(receive(&mut inbox_1, WITHIN).await, chunk);

    let stats = node_1.stats();
    assert_eq!(stats.peers[&2].connections_established, 1);
    assert_eq!(stats.peers[&2].messages_sent, 2);
    assert_eq!(stats.peers[&2].messages_received, 2);
    assert_eq!(node_2.stats().peers[&1].connections_established, 1);
    node_1.shutdown().await;
    node_2.shutdown().await;
}

#[tokio::test]
async fn messages_on_the_long_lived_stream_arrive_in_order() {
    let addrs = addr_map(&[1, 2]);
    let (node_1, _inbox_1) = start_node(1, &addrs).await;
    let (node_2, mut inbox_2) = start_node(2, &addrs).await;

    for term in 1..=500 {
        node_1.send(heartbeat(1, 2, term));
    }
    for term in 1..=500 {
        assert_eq!(receive(&mut inbox_2, WITHIN).await.term, term);
    }
    node_1.shutdown().await;
    node_2.shutdown().await;
}

#[tokio::test]
async fn heartbeat_sent_after_a_large_snapshot_chunk_is_not_held_back() {
    let addrs = addr_map(&[1, 2]);
    let (node_1, _inbox_1) = start_node(1, &addrs).await;
    let (node_2, mut inbox_2) = start_node(2, &addrs).await;
    send_until_received(&node_1, &mut inbox_2, |_| heartbeat(1, 2, 1), WITHIN).await;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), inbox_2.recv()).await {}

    // 12 MiB on its own stream takes many round trips; the heartbeat
    // behind it on the long-lived stream must not wait for them.
    node_1.send(snapshot_chunk(1, 2, 12 << 20));
    node_1.send(heartbeat(1, 2, 2));
    let first = receive(&mut inbox_2, WITHIN).await;
    assert!(first.is_heartbeat(), "the chunk arrived first");
    let second = receive(&mut inbox_2, WITHIN).await;
    assert!(second.is_bulk());
    node_1.shutdown().await;
    node_2.shutdown().await;
}

#[tokio::test]
async fn peer_that_stops_and_restarts_is_reconnected() {
    let addrs = addr_map(&[1, 2]);
    let (node_1, mut inbox_1) = start_node(1, &addrs).await;
    let (node_2, mut inbox_2) = start_node(2, &addrs).await;
    send_until_received(&node_1, &mut inbox_2, |term| heartbeat(1, 2, term), WITHIN).await;

    // The accepting side (node 2) goes away and comes back on its port.
    node_2.shutdown().await;
    drop(node_2);
    wait_until(WITHIN, "node 1 to notice", || !node_1.is_connected(2)).await;
    let (node_2, mut inbox_2) = start_node(2, &addrs).await;
    send_until_received(&node_1, &mut inbox_2, |term| heartbeat(1, 2, term), WITHIN).await;
    send_until_received(&node_2, &mut inbox_1, |term| heartbeat(2, 1, term), WITHIN).await;
    assert!(node_1.stats().peers[&2].connections_established >= 2);

    // The dialing side (node 1) goes away and comes back: node 2 takes the
    // new connection in place of the dead one.
    node_1.shutdown().await;
    drop(node_1);
    let (node_1, mut inbox_1) = start_node(1, &addrs).await;
    send_until_received(&node_2, &mut inbox_1, |term| heartbeat(2, 1, term), WITHIN).await;
    send_until_received(&node_1, &mut inbox_2, |term| heartbeat(1, 2, term), WITHIN).await;
    assert!(node_2.stats().peers[&1].connections_established >= 2);
    node_1.shutdown().await;
    node_2.shutdown().await;
}

/// A UDP relay between node 1 and node 2 that can black-hole every packet.
struct Relay {
    addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(server: SocketAddr) -> Relay {
        let outer = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let inner = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = outer.local_addr().unwrap();
        let blocked = Arc::new(AtomicBool::new(false));
        let task = {
            let blocked = blocked.clone();
            tokio::spawn(async move {
                let mut client: Option<SocketAddr> = None;
                let mut from_client = vec![0u8; 65536];
                let mut from_server = vec![0u8; 65536];
                loop {
                    tokio::select! {
                        received = outer.recv_from(&mut from_client) => {
                            let Ok((length, source)) = received else { return };
                            client = Some(source);
                            if !blocked.load(Ordering::Relaxed) {
                                let _ = inner.send_to(&from_client[..length], server).await;
                            }
                        }
                        received = inner.recv_from(&mut from_server) => {
                            let Ok((length, _)) = received else { return };
                            if let (Some(client), false) = (client, blocked.load(Ordering::Relaxed)) {
                                let _ = outer.send_to(&from_server[..length], client).await;
                            }
                        }
                    }
                }
            })
        };
        Relay {
            addr,
            blocked,
            task,
        }
    }
}

#[tokio::test]
async fn dropped_link_is_detected_and_reestablished() {
    let mut addrs = addr_map(&[1, 2]);
    let (node_2, mut inbox_2) = start_node(2, &addrs).await;
    let relay = Relay::start(addrs[&2]).await;
    // Node 1 reaches node 2 only through the relay.
    addrs.insert(2, relay.addr);
    let (node_1, mut inbox_1) = start_node(1, &addrs).await;
    send_until_received(&node_1, &mut inbox_2, |term| heartbeat(1, 2, term), WITHIN).await;
    send_until_received(&node_2, &mut inbox_1, |term| heartbeat(2, 1, term), WITHIN).await;

    // Cut the link for longer than the idle timeout: both sides give up on
    // the connection.
    relay.blocked.store(true, Ordering::Relaxed);
    wait_until(WITHIN, "both sides to notice", || {
        !node_1.is_connected(2) && !node_2.is_connected(1)
    })
    .await;
    for term in 0..10 {
        node_1.send(heartbeat(1, 2, term));
    }

    // Mend it: node 1 dials again and messages flow both ways.
    relay.blocked.store(false, Ordering::Relaxed);
    while inbox_2.try_recv().is_ok() {}
    send_until_received(&node_1, &mut inbox_2, |term| heartbeat(1, 2, term), WITHIN).await;
    send_until_received(&node_2, &mut inbox_1, |term| heartbeat(2, 1, term), WITHIN).await;
    assert_eq!(node_1.stats().peers[&2].connections_established, 2);
    assert_eq!(node_2.stats().peers[&1].connections_established, 2);
    relay.task.abort();
    node_1.shutdown().await;
    node_2.shutdown().await;
}

#[tokio::test]
async fn send_never_blocks_on_a_dead_peer_and_bounds_its_queue() {
    let addrs = addr_map(&[1, 2]);
    let mut config = test_config(1, &addrs);
    config.peer_queue_messages_max = 100;
    let (node_1, _inbox_1) = start_with(config).await;

    // Node 2 never starts: every send must return at once.
    let started = Instant::now();
    for term in 0..20_000 {
        node_1.send(append(1, 2, term, b"value"));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "20000 sends took {elapsed:?}"
    );
    let stats = node_1.stats();
    assert_eq!(stats.peers[&2].messages_dropped, 20_000 - 100);
    assert_eq!(stats.peers[&2].messages_sent, 0);
    node_1.shutdown().await;
}

#[tokio::test]
async fn queued_messages_go_out_once_the_peer_appears() {
    let addrs = addr_map(&[1, 2]);
    let (node_1, _inbox_1) = start_node(1, &addrs).await;
    for term in 1..=5 {
        node_1.send(append(1, 2, term, b"early"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (node_2, mut inbox_2) = start_node(2, &addrs).await;
    for term in 1..=5 {
        let message = receive(&mut inbox_2, WITHIN).await;
        assert_eq!(message.term, term);
        assert!(matches!(message.body, MessageBody::AppendEntries { .. }));
    }
    node_1.shutdown().await;
    node_2.shutdown().await;
}

#[tokio::test]
async fn message_for_an_unknown_node_is_dropped_and_counted() {
    let addrs = addr_map(&[1, 2]);
    let (node_1, _inbox_1) = start_node(1, &addrs).await;
    node_1.send(heartbeat(1, 9, 1));
    assert_eq!(node_1.stats().messages_unroutable, 1);
    node_1.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_the_port_and_stops_sending() {
    let addrs = addr_map(&[1, 2]);
    let (node_1, _inbox_1) = start_node(1, &addrs).await;
    let clone = node_1.clone();
    node_1.shutdown().await;
    node_1.shutdown().await;
    clone.send(heartbeat(1, 2, 1));
    assert!(node_1.endpoint().is_none());
    // The port is free again once closing connections have drained, even
    // though a clone of the handle lives on.
    wait_until(WITHIN, "the port to be released", || {
        std::net::UdpSocket::bind(addrs[&1]).is_ok()
    })
    .await;
}
