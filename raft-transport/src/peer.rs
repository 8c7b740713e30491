//! One peer link: dialing or accepting its connection, the hello exchange,
//! and the tasks that write and read its streams.
//!
//! ```text
//!                 dial ok / accepted
//!   NoConnection ─────────────────────▶ Connected ── newer connection accepted ──┐
//!     ▲    │ dial failed:                 │   ▲                                   │
//!     │    └─ wait backoff, double it     │   └───────── replace, close old ──────┘
//!     └──────── connection lost ──────────┘
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use raft_core::{Message, NodeId};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn, Instrument};

use crate::config::TransportConfig;
use crate::error::Error;
use crate::frame::{self, FrameReader};
use crate::queue::PeerQueue;
use crate::tls::{peer_has_identity, Identity};
use crate::transport::{close, lock, PeerStats, Shared};
use crate::wire::{close_code, Hello};

/// quinn send priority of bulk streams; the long-lived stream keeps 0.
const BULK_STREAM_PRIORITY: i32 = -1;

/// The largest hello frame accepted; a hello is a few bytes.
const HELLO_BYTES_MAX: usize = 256;

/// One other node, as this node sees it.
pub(crate) struct Peer {
    /// Its id.
    pub(crate) id: NodeId,
    /// Where to dial it (used only when this node dials).
    addr: SocketAddr,
    /// Messages waiting to go out.
    pub(crate) queue: Mutex<PeerQueue>,
    /// Signalled when a small message is queued.
    pub(crate) small_ready: Notify,
    /// Signalled when a bulk message is queued.
    pub(crate) bulk_ready: Notify,
    /// Accepted, hello-checked connections from this peer, for its link task.
    accepted: mpsc::Sender<Session>,
    /// The current connection, if any: read by the bulk writer and
    /// [`crate::QuicTransport::is_connected`].
    pub(crate) connection: watch::Sender<Option<quinn::Connection>>,
    /// Counters for [`PeerStats`].
    pub(crate) counters: PeerCounters,
}

/// Counters of one peer.
#[derive(Default)]
pub(crate) struct PeerCounters {
    pub(crate) connections: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) received: AtomicU64,
}

/// An established, hello-checked connection and its long-lived stream.
pub(crate) struct Session {
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: FrameReader<quinn::RecvStream>,
}

impl Peer {
    pub(crate) fn new(
        id: NodeId,
        addr: SocketAddr,
        config: &TransportConfig,
    ) -> (Arc<Peer>, mpsc::Receiver<Session>) {
        // Room for one replacement while the link task switches over.
        let (accepted, accepted_receiver) = mpsc::channel(2);
        let peer = Peer {
            id,
            addr,
            queue: Mutex::new(PeerQueue::new(
                config.peer_queue_messages_max,
                config.peer_queue_bulk_max,
            )),
            small_ready: Notify::new(),
            bulk_ready: Notify::new(),
            accepted,
            connection: watch::channel(None).0,
            counters: PeerCounters::default(),
        };
        (Arc::new(peer), accepted_receiver)
    }

    pub(crate) fn stats(&self) -> PeerStats {
        PeerStats {
            connected: self.connection.borrow().is_some(),
            connections_established: self.counters.connections.load(Ordering::Relaxed),
            messages_sent: self.counters.sent.load(Ordering::Relaxed),
            messages_dropped: self.counters.dropped.load(Ordering::Relaxed),
            messages_received: self.counters.received.load(Ordering::Relaxed),
        }
    }
}

/// Resolves when the transport shuts down.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means shutdown.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Keeps the link to `peer` up until shutdown: dials (this node has the
/// lower id) or waits for the peer's connection, then runs the session.
pub(crate) async fn run_link(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    peer: Arc<Peer>,
    mut accepted: mpsc::Receiver<Session>,
) {
    // FIXME(dialing): only the lower id dials, so a pair where only the
    // higher id can open a path to the lower one (a one-way firewall) never
    // connects. Right: let both dial and, when two connections meet, keep
    // the one the lower id opened.
    let dials = shared.id < peer.id;
    let backoff_min = shared.config.reconnect_backoff_min;
    let backoff_max = shared.config.reconnect_backoff_max;
    let mut backoff = backoff_min;
    let mut shutdown = shared.shutdown.subscribe();
    let mut next: Option<Session> = None;
    let mut failures: u64 = 0;

    loop {
        let session = match next.take() {
            Some(session) => session,
            None if dials => {
                let attempt = tokio::select! {
                    attempt = dial(&shared, &endpoint, &peer) => attempt,
                    _ = stopped(&mut shutdown) => return,
                };
                match attempt {
                    Ok(session) => {
                        backoff = backoff_min;
                        failures = 0;
                        session
                    }
                    Err(error) => {
                        // The first failure says why; a peer that stays
                        // down should not flood the log.
                        failures += 1;
                        if failures == 1 {
                            warn!(addr = %peer.addr, %error, "cannot connect to peer; retrying");
                        } else {
                            debug!(addr = %peer.addr, %error, failures, "cannot connect to peer");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stopped(&mut shutdown) => return,
                        }
                        backoff = (backoff * 2).min(backoff_max);
                        continue;
                    }
                }
            }
            None => tokio::select! {
                session = accepted.recv() => match session {
                    Some(session) => session,
                    None => return,
                },
                _ = stopped(&mut shutdown) => return,
            },
        };

        next = run_session(&shared, &peer, session, &mut accepted, &mut shutdown).await;
        if *shutdown.borrow() {
            return;
        }
        if next.is_none() && dials {
            // Give a peer that is going away a moment before dialing again.
            tokio::select! {
                _ = tokio::time::sleep(backoff_min) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }
}

/// Dials `peer`, checks its certificate names it (TLS does, by server
/// name), and exchanges hellos.
async fn dial(shared: &Shared, endpoint: &quinn::Endpoint, peer: &Peer) -> Result<Session, Error> {
    let server_name = Identity::Node(peer.id).dns_name();
    let connecting = endpoint
        .connect_with(shared.peer_client_config.clone(), peer.addr, &server_name)
        .map_err(|source| Error::Connect {
            addr: peer.addr,
            source,
        })?;
    let handshake = async {
        let connection = connecting.await?;
        match hello_as_dialer(shared, peer, &connection).await {
            Ok((send, recv)) => Ok(Session {
                connection,
                send,
                recv,
            }),
            Err(error) => {
                close(&connection, close_code::PROTOCOL, &error.to_string());
                Err(error)
            }
        }
    };
    tokio::time::timeout(shared.config.connect_timeout, handshake)
        .await
        .map_err(|_| Error::Timeout("connecting to a peer"))?
}

async fn hello_as_dialer(
    shared: &Shared,
    peer: &Peer,
    connection: &quinn::Connection,
) -> Result<(quinn::SendStream, FrameReader<quinn::RecvStream>), Error> {
    let (mut send, recv) = connection.open_bi().await?;
    let hello = Hello {
        from: shared.id,
        to: peer.id,
    };
    frame::write_frame(&mut send, &hello, HELLO_BYTES_MAX).await?;

    let mut reader = FrameReader::new(recv, HELLO_BYTES_MAX);
    let answer: Hello = match reader.read().await {
        Ok(Some(answer)) => answer,
        Ok(None) => {
            return Err(Error::Protocol(
                "peer closed the stream before its hello".into(),
            ))
        }
        // The acceptor refused us: report its reason rather than the reset.
        Err(Error::Io(error)) => match connection.close_reason() {
            Some(reason) => return Err(reason.into()),
            None => return Err(Error::Io(error)),
        },
        Err(error) => return Err(error),
    };
    if answer
        != (Hello {
            from: peer.id,
            to: shared.id,
        })
    {
        return Err(Error::Protocol(format!(
            "unexpected hello from {} to {}",
            answer.from, answer.to
        )));
    }
    reader.set_payload_bytes_max(shared.config.payload_bytes_max);
    Ok((send, reader))
}

/// Checks an incoming peer connection (hello, identity, dialing direction)
/// and hands it to the peer's link task; closes it with a logged reason
/// otherwise.
pub(crate) async fn accept_peer(shared: &Arc<Shared>, connection: quinn::Connection) {
    let remote = connection.remote_address();
    let checked = tokio::time::timeout(
        shared.config.handshake_timeout,
        hello_as_acceptor(shared, &connection),
    )
    .await
    .unwrap_or(Err(Error::Timeout("waiting for a peer's hello")));
    let (peer, send, recv) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            let code = match error {
                Error::IdentityMismatch { .. } => close_code::IDENTITY,
                Error::Refused(_) => close_code::UNWANTED,
                _ => close_code::PROTOCOL,
            };
            warn!(%remote, %error, "peer connection refused");
            shared.reject(&connection, code, &error.to_string());
            return;
        }
    };

    let session = Session {
        connection: connection.clone(),
        send,
        recv,
    };
    if peer.accepted.try_send(session).is_err() {
        warn!(
            peer = peer.id,
            "peer reconnects too fast; connection refused"
        );
        shared.reject(
            &connection,
            close_code::BUSY,
            "too many connections from this node",
        );
    }
}

async fn hello_as_acceptor(
    shared: &Shared,
    connection: &quinn::Connection,
) -> Result<(Arc<Peer>, quinn::SendStream, FrameReader<quinn::RecvStream>), Error> {
    let (mut send, recv) = connection.accept_bi().await?;
    let mut reader = FrameReader::new(recv, HELLO_BYTES_MAX);
    let Some(hello): Option<Hello> = reader.read().await? else {
        return Err(Error::Protocol("stream closed before the hello".into()));
    };

    // Identity first: a peer that lies about who it is should hear that,
    // whatever else is wrong.
    if !peer_has_identity(connection, &Identity::Node(hello.from)) {
        return Err(Error::IdentityMismatch {
            claimed: hello.from,
        });
    }
    if hello.to != shared.id {
        return Err(Error::Protocol(format!(
            "hello addressed to node {}, this is node {}",
            hello.to, shared.id
        )));
    }
    let Some(peer) = shared.peers.get(&hello.from) else {
        return Err(Error::Refused(format!("node {} is not a peer", hello.from)));
    };
    if hello.from > shared.id {
        return Err(Error::Refused(format!(
            "node {} must not dial node {}: the lower id dials",
            hello.from, shared.id
        )));
    }

    let answer = Hello {
        from: shared.id,
        to: hello.from,
    };
    frame::write_frame(&mut send, &answer, HELLO_BYTES_MAX).await?;
    reader.set_payload_bytes_max(shared.config.payload_bytes_max);
    Ok((peer.clone(), send, reader))
}

/// Why a session's writer stopped.
enum SessionEnd {
    /// The connection closed; the error says how.
    Lost(quinn::ConnectionError),
    /// Writing to the long-lived stream failed.
    WriteFailed(quinn::WriteError),
    /// A newer connection from the peer arrived.
    Replaced(Session),
    /// The transport is shutting down.
    Shutdown,
}

/// Runs one connection until it ends: readers in their own tasks, the
/// small-message writer here. Returns the session that replaced it, if any.
async fn run_session(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    session: Session,
    accepted: &mut mpsc::Receiver<Session>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Session> {
    let Session {
        connection,
        mut send,
        recv,
    } = session;
    let remote = connection.remote_address();
    peer.counters.connections.fetch_add(1, Ordering::Relaxed);
    peer.connection.send_replace(Some(connection.clone()));
    info!(%remote, "peer connected");

    let span = tracing::Span::current();
    shared.spawn(
        read_stream(shared.clone(), peer.clone(), connection.clone(), recv, true)
            .instrument(span.clone()),
    );
    shared.spawn(
        accept_bulk_streams(shared.clone(), peer.clone(), connection.clone()).instrument(span),
    );

    let end = write_small(shared, peer, &connection, &mut send, accepted, shutdown).await;
    peer.connection.send_replace(None);
    match end {
        SessionEnd::Lost(reason) => {
            info!(%remote, %reason, "peer connection lost");
            None
        }
        SessionEnd::WriteFailed(error) => {
            info!(%remote, %error, "writing to peer failed; closing the connection");
            close(
                &connection,
                close_code::PROTOCOL,
                "long-lived stream failed",
            );
            None
        }
        SessionEnd::Replaced(newer) => {
            info!(%remote, newer = %newer.connection.remote_address(), "peer connection replaced");
            close(
                &connection,
                close_code::REPLACED,
                "replaced by a newer connection",
            );
            Some(newer)
        }
        SessionEnd::Shutdown => None,
    }
}

/// Writes queued small messages to the long-lived stream, in batches.
async fn write_small(
    shared: &Shared,
    peer: &Peer,
    connection: &quinn::Connection,
    send: &mut quinn::SendStream,
    accepted: &mut mpsc::Receiver<Session>,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let payload_bytes_max = shared.config.payload_bytes_max;
    let mut batch: Vec<Message> = Vec::new();
    let mut buffer = BytesMut::new();
    loop {
        // Register interest before looking, so a message queued in between
        // still wakes us.
        let ready = peer.small_ready.notified();
        lock(&peer.queue).drain_small(&mut batch);
        if batch.is_empty() {
            tokio::select! {
                _ = ready => continue,
                reason = connection.closed() => return SessionEnd::Lost(reason),
                newer = accepted.recv() => return match newer {
                    Some(newer) => SessionEnd::Replaced(newer),
                    None => SessionEnd::Shutdown,
                },
                _ = stopped(shutdown) => return SessionEnd::Shutdown,
            }
        }

        let mut framed: u64 = 0;
        for message in batch.drain(..) {
            match frame::encode_into(&message, payload_bytes_max, &mut buffer) {
                Ok(()) => framed += 1,
                Err(error) => {
                    peer.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    warn!(%error, "message cannot be framed; dropped");
                }
            }
        }
        if let Err(error) = send.write_chunk(buffer.split().freeze()).await {
            peer.counters.dropped.fetch_add(framed, Ordering::Relaxed);
            return SessionEnd::WriteFailed(error);
        }
        peer.counters.sent.fetch_add(framed, Ordering::Relaxed);
    }
}

/// Reads frames of messages from one stream of `peer`'s connection until it
/// ends. The long-lived stream (`long_lived`) ending closes the connection.
async fn read_stream(
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    connection: quinn::Connection,
    mut reader: FrameReader<quinn::RecvStream>,
    long_lived: bool,
) {
    loop {
        match reader.read::<Message>().await {
            Ok(Some(message)) => {
                if !shared.accept_message(&peer, &connection, message) {
                    return;
                }
            }
            Ok(None) => {
                if long_lived {
                    debug!("peer finished its long-lived stream; closing the connection");
                    close(
                        &connection,
                        close_code::SHUTDOWN,
                        "long-lived stream finished",
                    );
                }
                return;
            }
            Err(error) => {
                shared.read_failed(peer.id, &connection, error);
                return;
            }
        }
    }
}

/// Accepts the unidirectional streams (bulk messages) `peer` opens.
async fn accept_bulk_streams(shared: Arc<Shared>, peer: Arc<Peer>, connection: quinn::Connection) {
    let payload_bytes_max = shared.config.payload_bytes_max;
    while let Ok(recv) = connection.accept_uni().await {
        let reader = FrameReader::new(recv, payload_bytes_max);
        let task = read_stream(
            shared.clone(),
            peer.clone(),
            connection.clone(),
            reader,
            false,
        );
        shared.spawn(task.instrument(tracing::Span::current()));
    }
}

/// Sends bulk messages to `peer`, each on a new unidirectional stream of
/// the current connection, until shutdown.
pub(crate) async fn run_bulk_writer(shared: Arc<Shared>, peer: Arc<Peer>) {
    let payload_bytes_max = shared.config.payload_bytes_max;
    let mut shutdown = shared.shutdown.subscribe();
    let mut connections = peer.connection.subscribe();
    loop {
        let ready = peer.bulk_ready.notified();
        let next = lock(&peer.queue).pop_bulk();
        let Some(message) = next else {
            tokio::select! {
                _ = ready => continue,
                _ = stopped(&mut shutdown) => return,
            }
        };

        // Wait for a connection; the queue bound drops chunks meanwhile.
        let connection = loop {
            if let Some(connection) = connections.borrow_and_update().clone() {
                break connection;
            }
            tokio::select! {
                changed = connections.changed() => if changed.is_err() { return },
                _ = stopped(&mut shutdown) => return,
            }
        };
        match send_bulk(&connection, &message, payload_bytes_max).await {
            Ok(()) => peer.counters.sent.fetch_add(1, Ordering::Relaxed),
            Err(error) => {
                debug!(%error, "bulk message lost");
                peer.counters.dropped.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

async fn send_bulk(
    connection: &quinn::Connection,
    message: &Message,
    payload_bytes_max: usize,
) -> Result<(), Error> {
    let bytes = frame::encode(message, payload_bytes_max)?;
    let mut send = connection.open_uni().await?;
    // Below the long-lived stream's priority (0): when both have data,
    // quinn sends the small messages first.
    let _ = send.set_priority(BULK_STREAM_PRIORITY);
    send.write_chunk(bytes).await?;
    // Finishing fails only if the stream was already reset; the data is
    // then lost like any other dropped message.
    send.finish()
        .map_err(|_| Error::Protocol("bulk stream reset by peer".into()))?;
    Ok(())
}
