//! The QUIC transport: one endpoint per node, one connection per peer.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use raft_core::{Message, NodeId, Transport};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, trace, warn, Instrument};

use crate::client::ClientConnections;
use crate::config::TransportConfig;
use crate::endpoint::{self, Timers};
use crate::error::Error;
use crate::peer::{self, Peer};
use crate::queue::PushOutcome;
use crate::sink::MessageSink;
use crate::wire::{close_code, PEER_ALPN};

/// How long [`QuicTransport::shutdown`] waits for connections to close
/// cleanly before it lets go of the socket anyway.
const SHUTDOWN_DRAIN_MAX: Duration = Duration::from_millis(500);

/// A [`raft_core::Transport`] over QUIC with mutual TLS.
///
/// One quinn endpoint serves the node: it dials the peers with a higher id
/// than its own and accepts the peers with a lower one, so each pair of
/// nodes shares exactly one connection. A lost connection is dialed again
/// with exponential backoff by its dialer; a newer connection from a peer
/// replaces an older one. Small messages travel in order on one long-lived
/// stream per connection; bulk messages ([`Message::is_bulk`]) each on their
/// own unidirectional stream, so snapshot chunks never hold back heartbeats.
///
/// [`Transport::send`] never blocks: it appends to the peer's bounded
/// queue (see [`TransportConfig::peer_queue_messages_max`] for the drop
/// policy) and returns. Received messages are checked (sender must be the
/// authenticated peer, receiver this node) and handed to the
/// [`MessageSink`], normally the node's [`raft_core::InboxSender`].
///
/// Cloning is cheap; clones share the endpoint. The transport stops when
/// [`QuicTransport::shutdown`] is called or the last clone is dropped.
///
/// # Client connections
///
/// With [`TransportConfig::client_alpn`] set, the same endpoint also accepts
/// client connections under that ALPN protocol, with the same trust rules
/// (a certificate from the cluster CA). Take them with
/// [`QuicTransport::take_client_connections`] before handing the transport
/// to the node; see [`crate::client`] for the whole pattern.
#[derive(Clone)]
pub struct QuicTransport {
    /// The last clone's drop stops the transport.
    handle: Arc<Handle>,
}

/// Owner of the shared state on the application's side; dropping it stops
/// the tasks, which hold only [`Shared`].
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// State shared by the transport handle and its tasks.
pub(crate) struct Shared {
    /// This node.
    pub(crate) id: NodeId,
    /// The configuration the transport started with.
    pub(crate) config: TransportConfig,
    /// The address the endpoint is bound to.
    local_addr: SocketAddr,
    /// The endpoint; taken out at shutdown so that the socket is released.
    endpoint: Mutex<Option<quinn::Endpoint>>,
    /// How this node dials its peers.
    pub(crate) peer_client_config: quinn::ClientConfig,
    /// Every peer, by id.
    pub(crate) peers: BTreeMap<NodeId, Arc<Peer>>,
    /// Where received messages go.
    sink: Box<dyn MessageSink>,
    /// Set once, at shutdown.
    pub(crate) shutdown: watch::Sender<bool>,
    /// Every task the transport spawned, so shutdown can stop them all.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Hands accepted client connections to the application.
    client_sender: Option<mpsc::Sender<quinn::Connection>>,
    /// The application's end, until it takes it.
    client_receiver: Mutex<Option<mpsc::Receiver<quinn::Connection>>>,
    /// The node's span: every task runs inside it.
    pub(crate) span: tracing::Span,
    /// Connections refused (bad TLS, bad hello, unwanted).
    connections_rejected: AtomicU64,
    /// Messages dropped because the sink refused them (inbox full).
    messages_undeliverable: AtomicU64,
    /// Messages dropped because their receiver is not a known peer.
    messages_unroutable: AtomicU64,
}

/// Counters of one peer link. Every field counts since the transport started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Whether a connection to the peer is established now.
    pub connected: bool,
    /// Connections established (dialed or accepted), replacements included.
    pub connections_established: u64,
    /// Messages written to the peer's streams.
    pub messages_sent: u64,
    /// Messages dropped on the way out: queue overflow, unencodable, or a
    /// bulk stream that failed.
    pub messages_dropped: u64,
    /// Messages received from the peer and passed to the sink.
    pub messages_received: u64,
}

/// Counters of the whole transport.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Per peer.
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Connections refused: failed TLS handshakes, bad hellos, identities
    /// that do not match, unwanted connections.
    pub connections_rejected: u64,
    /// Received messages the sink refused (the node's inbox was full).
    pub messages_undeliverable: u64,
    /// Messages given to `send` for a node that is not a peer.
    pub messages_unroutable: u64,
}

impl QuicTransport {
    /// Binds the endpoint on [`TransportConfig::listen_addr`], starts
    /// dialing the peers with a higher id and accepting the others, and
    /// delivers what arrives to `sink`.
    ///
    /// Fails with [`Error::InvalidConfig`] for a configuration that cannot
    /// work (including a certificate that does not name this node) and with
    /// [`Error::Bind`] when the address cannot be bound, e.g. is in use.
    pub async fn start(
        config: TransportConfig,
        sink: impl MessageSink,
    ) -> Result<QuicTransport, Error> {
        config.validate()?;
        let timers = Timers {
            bidi_streams_max: config.concurrent_bidi_streams_max,
            uni_streams_max: config.concurrent_uni_streams_max,
            keep_alive_interval: config.keep_alive_interval,
            idle_timeout: config.idle_timeout,
            initial_rtt: config.initial_rtt,
        };
        let mut alpn_protocols = vec![PEER_ALPN.to_vec()];
        alpn_protocols.extend(config.client_alpn.clone());
        let server_config = endpoint::server_config(&config.credentials, alpn_protocols, timers)?;
        let peer_client_config = endpoint::client_config(&config.credentials, PEER_ALPN, timers)?;

        let endpoint =
            quinn::Endpoint::server(server_config, config.listen_addr).map_err(|source| {
                Error::Bind {
                    addr: config.listen_addr,
                    source,
                }
            })?;
        let local_addr = endpoint.local_addr().map_err(|source| Error::Bind {
            addr: config.listen_addr,
            source,
        })?;

        let span = tracing::info_span!("raft_transport", node = config.id);
        let mut accepted_receivers = Vec::new();
        let peers = config
            .peers
            .iter()
            .map(|(&id, &addr)| {
                let (peer, accepted) = Peer::new(id, addr, &config);
                accepted_receivers.push((peer.clone(), accepted));
                (id, peer)
            })
            .collect();
        let (client_sender, client_receiver) = match config.client_alpn {
            Some(_) => {
                let (sender, receiver) = mpsc::channel(config.client_queue_max);
                (Some(sender), Some(receiver))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            id: config.id,
            config,
            local_addr,
            endpoint: Mutex::new(Some(endpoint.clone())),
            peer_client_config,
            peers,
            sink: Box::new(sink),
            shutdown: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            client_sender,
            client_receiver: Mutex::new(client_receiver),
            span,
            connections_rejected: AtomicU64::new(0),
            messages_undeliverable: AtomicU64::new(0),
            messages_unroutable: AtomicU64::new(0),
        });

        info!(parent: &shared.span, %local_addr, peers = shared.peers.len(), "transport started");
        shared.spawn(accept_loop(shared.clone(), endpoint.clone()));
        for (peer, accepted) in accepted_receivers {
            let peer_span = tracing::info_span!(parent: &shared.span, "peer", peer = peer.id);
            shared.spawn(
                peer::run_link(shared.clone(), endpoint.clone(), peer.clone(), accepted)
                    .instrument(peer_span.clone()),
            );
            shared.spawn(peer::run_bulk_writer(shared.clone(), peer).instrument(peer_span));
        }
        Ok(QuicTransport {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared().id
    }

    /// The UDP address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared().local_addr
    }

    /// The underlying quinn endpoint, or `None` after shutdown. Dialing
    /// other services through it is fine; do not change its server
    /// configuration.
    pub fn endpoint(&self) -> Option<quinn::Endpoint> {
        lock(&self.shared().endpoint).clone()
    }

    /// The stream of client connections, once: `None` when
    /// [`TransportConfig::client_alpn`] is unset or it was taken before.
    pub fn take_client_connections(&self) -> Option<ClientConnections> {
        lock(&self.shared().client_receiver)
            .take()
            .map(ClientConnections::new)
    }

    /// Whether a connection to `peer` is established now.
    pub fn is_connected(&self, peer: NodeId) -> bool {
        self.shared()
            .peers
            .get(&peer)
            .is_some_and(|peer| peer.connection.borrow().is_some())
    }

    /// A snapshot of the transport's counters.
    pub fn stats(&self) -> TransportStats {
        let shared = self.shared();
        TransportStats {
            peers: shared
                .peers
                .iter()
                .map(|(&id, peer)| (id, peer.stats()))
                .collect(),
            connections_rejected: shared.connections_rejected.load(Ordering::Relaxed),
            messages_undeliverable: shared.messages_undeliverable.load(Ordering::Relaxed),
            messages_unroutable: shared.messages_unroutable.load(Ordering::Relaxed),
        }
    }

    /// Stops the transport: closes every connection (peers see code
    /// [`close_code::SHUTDOWN`]), stops every task, waits briefly for the
    /// close to reach the peers, and releases the UDP port. Messages still
    /// queued are dropped; `send` drops everything from now on. Calling it
    /// again does nothing.
    pub async fn shutdown(&self) {
        let shared = self.shared();
        let Some(endpoint) = shared.stop() else {
            return;
        };
        // FIXME(port-release): quinn keeps the UDP socket until closing
        // connections have drained (three probe timeouts, longer for a dial
        // still in its handshake), so binding the same port right after
        // shutdown may briefly fail with AddrInUse. Right: a quinn call that
        // drops the socket at once, or waiting out the drain here.
        let drained = tokio::time::timeout(SHUTDOWN_DRAIN_MAX, endpoint.wait_idle()).await;
        if drained.is_err() {
            debug!(parent: &shared.span, "connections did not drain in time");
        }
        let tasks = std::mem::take(&mut *lock(&shared.tasks));
        for task in tasks {
            // Every task was aborted; awaiting lets their state drop here.
            let _ = task.await;
        }
        info!(parent: &shared.span, "transport shut down");
    }
}

impl Transport for QuicTransport {
    fn send(&self, message: Message) {
        let shared = self.shared();
        let Some(peer) = shared.peers.get(&message.to) else {
            shared.messages_unroutable.fetch_add(1, Ordering::Relaxed);
            debug!(parent: &shared.span, to = message.to, "no such peer; message dropped");
            return;
        };
        if *shared.shutdown.borrow() {
            return;
        }
        let bulk = message.is_bulk();
        let outcome = lock(&peer.queue).push(message);
        if outcome != PushOutcome::Queued {
            peer.counters.dropped.fetch_add(1, Ordering::Relaxed);
            trace!(parent: &shared.span, peer = peer.id, ?outcome, "peer queue full");
        }
        if bulk {
            peer.bulk_ready.notify_one();
        } else {
            peer.small_ready.notify_one();
        }
    }
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("QuicTransport")
            .field("id", &self.id())
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

/// Locks a mutex whose critical sections never panic; a poisoned one is
/// still consistent, so take it anyway.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Spawns a task the transport owns (stopped at shutdown). After
    /// shutdown, spawns nothing.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        if *self.shutdown.borrow() {
            return;
        }
        // Short-lived tasks (one per bulk stream) finish by themselves;
        // forget them now and then so the list stays small.
        if tasks.len() >= 64 {
            tasks.retain(|task| !task.is_finished());
        }
        tasks.push(tokio::spawn(task));
    }

    /// Signals shutdown, closes the endpoint and aborts every task. Returns
    /// the endpoint the first time, `None` after.
    fn stop(&self) -> Option<quinn::Endpoint> {
        let endpoint = lock(&self.endpoint).take()?;
        {
            // Under the task lock, so that no task is spawned after the abort.
            let tasks = lock(&self.tasks);
            self.shutdown.send_replace(true);
            for task in tasks.iter() {
                task.abort();
            }
        }
        endpoint.close(close_code::SHUTDOWN.into(), b"node shutting down");
        Some(endpoint)
    }

    /// Counts a refused connection and closes it with `code` and a reason
    /// the peer can read.
    pub(crate) fn reject(&self, connection: &quinn::Connection, code: u32, reason: &str) {
        self.connections_rejected.fetch_add(1, Ordering::Relaxed);
        close(connection, code, reason);
    }

    /// Checks a message received from `peer` and hands it to the sink.
    /// Returns `false`, having closed the connection, when the message
    /// breaks the rules.
    pub(crate) fn accept_message(
        &self,
        peer: &Peer,
        connection: &quinn::Connection,
        message: Message,
    ) -> bool {
        if message.from != peer.id {
            warn!(
                peer = peer.id,
                claimed = message.from,
                "message claims another sender; closing the connection"
            );
            let reason = format!(
                "message claims to be from node {} on the connection of node {}",
                message.from, peer.id
            );
            self.reject(connection, close_code::IDENTITY, &reason);
            return false;
        }
        if message.to != self.id {
            warn!(
                peer = peer.id,
                to = message.to,
                "message for another node; closing the connection"
            );
            let reason = format!(
                "message addressed to node {}, this is node {}",
                message.to, self.id
            );
            self.reject(connection, close_code::PROTOCOL, &reason);
            return false;
        }
        peer.counters.received.fetch_add(1, Ordering::Relaxed);
        if !self.sink.deliver(message) {
            self.messages_undeliverable.fetch_add(1, Ordering::Relaxed);
            trace!(peer = peer.id, "sink full; message dropped");
        }
        true
    }

    /// Handles a read error on a stream of `peer`'s connection: the peer's
    /// fault (bad frame) closes the connection with a logged reason; a lost
    /// connection or reset stream is only noted.
    pub(crate) fn read_failed(&self, peer: NodeId, connection: &quinn::Connection, error: Error) {
        match error {
            Error::Io(error) => {
                debug!(peer, %error, "stream read ended");
            }
            error => {
                warn!(peer, %error, "bad input from peer; closing the connection");
                self.reject(connection, close_code::PROTOCOL, &error.to_string());
            }
        }
    }

    /// Hands an accepted client connection to the application, or closes it.
    fn offer_client(&self, connection: quinn::Connection) {
        let Some(sender) = &self.client_sender else {
            self.reject(
                &connection,
                close_code::UNWANTED,
                "client connections not served",
            );
            return;
        };
        let remote = connection.remote_address();
        match sender.try_send(connection) {
            Ok(()) => debug!(%remote, "client connection accepted"),
            Err(mpsc::error::TrySendError::Full(connection)) => {
                warn!(%remote, "too many client connections waiting; closing the new one");
                self.reject(
                    &connection,
                    close_code::BUSY,
                    "too many pending client connections",
                );
            }
            Err(mpsc::error::TrySendError::Closed(connection)) => {
                self.reject(
                    &connection,
                    close_code::UNWANTED,
                    "client connections not served",
                );
            }
        }
    }
}

/// Closes `connection` with `code` and `reason`, the reason cut to fit a
/// packet.
pub(crate) fn close(connection: &quinn::Connection, code: u32, reason: &str) {
    let mut end = reason.len().min(200);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    connection.close(code.into(), &reason.as_bytes()[..end]);
}

/// Accepts incoming connections until the endpoint closes.
async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let task = handle_incoming(shared.clone(), incoming).instrument(shared.span.clone());
        shared.spawn(task);
    }
}

/// Completes the TLS handshake of one incoming connection and routes it by
/// ALPN: to the peer protocol or to the application's client channel.
async fn handle_incoming(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(error) => {
            shared.connections_rejected.fetch_add(1, Ordering::Relaxed);
            warn!(%remote, %error, "incoming connection failed");
            return;
        }
    };
    let connection = match tokio::time::timeout(shared.config.handshake_timeout, connecting).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            // A certificate from another CA, or none, ends up here.
            shared.connections_rejected.fetch_add(1, Ordering::Relaxed);
            warn!(%remote, %error, "tls handshake failed; connection refused");
            return;
        }
        Err(_) => {
            shared.connections_rejected.fetch_add(1, Ordering::Relaxed);
            warn!(%remote, "tls handshake timed out; connection refused");
            return;
        }
    };

    let alpn = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol);
    match alpn {
        Some(protocol) if protocol == PEER_ALPN => peer::accept_peer(&shared, connection).await,
        Some(protocol) if Some(&protocol) == shared.config.client_alpn.as_ref() => {
            shared.offer_client(connection)
        }
        _ => {
            warn!(%remote, "connection with an unknown protocol refused");
            shared.reject(&connection, close_code::UNWANTED, "unknown alpn protocol");
        }
    }
}
