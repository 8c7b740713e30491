//! Transport configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use raft_core::NodeId;

use crate::error::Error;
use crate::frame;
use crate::tls::{Identity, TlsCredentials};

/// How a [`crate::QuicTransport`] behaves. [`TransportConfig::new`] fills in
/// defaults for a cluster on one LAN.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// This node's id; its certificate must name it.
    pub id: NodeId,
    /// The UDP address the endpoint binds (port 0 picks a free port; see
    /// [`crate::QuicTransport::local_addr`]).
    pub listen_addr: SocketAddr,
    /// Every other node and its address. Messages to nodes not listed are
    /// dropped; connections from them are refused.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The cluster CA and this node's certificate and key.
    pub credentials: TlsCredentials,
    /// The largest frame payload sent or accepted, in bytes. A message that
    /// encodes larger is dropped (and logged); a peer announcing a larger
    /// frame is disconnected.
    pub payload_bytes_max: usize,
    /// Small (non-bulk) messages that may wait for one peer. When full, the
    /// oldest queued heartbeat goes first, then the new message if it is a
    /// heartbeat, then the oldest message.
    pub peer_queue_messages_max: usize,
    /// Bulk messages (snapshot chunks) that may wait for one peer; when
    /// full, the oldest goes.
    pub peer_queue_bulk_max: usize,
    /// How long a dial may take, TLS handshake and hello included.
    pub connect_timeout: Duration,
    /// How long an accepted connection may take to finish TLS and its hello.
    pub handshake_timeout: Duration,
    /// First wait before dialing again after a failure; doubles per failure.
    pub reconnect_backoff_min: Duration,
    /// Longest wait between two dials.
    pub reconnect_backoff_max: Duration,
    /// QUIC keep-alive period, which also lets a restarted peer's endpoint
    /// answer with a reset soon.
    pub keep_alive_interval: Duration,
    /// A connection silent for this long is considered lost.
    pub idle_timeout: Duration,
    /// The round-trip time QUIC assumes before it has measured one. It paces
    /// handshake retransmissions (to a peer that is not up yet) and the
    /// drain after a close. RFC 9002 suggests 333 ms for unknown paths; a
    /// cluster on one LAN can assume far less.
    pub initial_rtt: Duration,
    /// Concurrent bidirectional streams a remote may open on one
    /// connection. Peers use one; client connections may use many (one per
    /// request in flight), so this is high.
    pub concurrent_bidi_streams_max: u32,
    /// Concurrent unidirectional streams a remote may open (bulk messages).
    pub concurrent_uni_streams_max: u32,
    /// When set, the endpoint also serves client connections with this ALPN
    /// protocol and hands them to the application
    /// ([`crate::QuicTransport::take_client_connections`]).
    pub client_alpn: Option<Vec<u8>>,
    /// Client connections that may wait for the application to take them;
    /// beyond it new ones are closed as busy.
    pub client_queue_max: usize,
}

impl TransportConfig {
    /// A configuration with defaults: 64 MiB frames, 4096 queued messages
    /// and 16 queued snapshot chunks per peer, 2 s connect timeout,
    /// reconnect backoff from 50 ms to 2 s, 500 ms keep-alive, 5 s idle
    /// timeout, 50 ms initial RTT, no client connections.
    pub fn new(
        id: NodeId,
        listen_addr: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        credentials: TlsCredentials,
    ) -> TransportConfig {
        TransportConfig {
            id,
            listen_addr,
            peers,
            credentials,
            payload_bytes_max: frame::DEFAULT_PAYLOAD_BYTES_MAX,
            peer_queue_messages_max: 4096,
            peer_queue_bulk_max: 16,
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(2),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            keep_alive_interval: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(5),
            initial_rtt: Duration::from_millis(50),
            concurrent_bidi_streams_max: 1024,
            concurrent_uni_streams_max: 256,
            client_alpn: None,
            client_queue_max: 128,
        }
    }

    /// Checks for values that cannot work.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |text: String| Err(Error::InvalidConfig(text));
        if self.id == 0 {
            return invalid("node id 0 is reserved".into());
        }
        if self.peers.contains_key(&self.id) {
            return invalid(format!("node {} lists itself as a peer", self.id));
        }
        if self.peers.contains_key(&0) {
            return invalid("peer id 0 is reserved".into());
        }
        if !self.credentials.has_identity(&Identity::Node(self.id)) {
            return invalid(format!(
                "the certificate does not name node {} ({})",
                self.id,
                Identity::Node(self.id).dns_name()
            ));
        }
        if self.payload_bytes_max == 0 || self.payload_bytes_max > frame::PAYLOAD_BYTES_LIMIT {
            return invalid(format!(
                "payload_bytes_max must be within 1..={}",
                frame::PAYLOAD_BYTES_LIMIT
            ));
        }
        if self.peer_queue_messages_max == 0 || self.peer_queue_bulk_max == 0 {
            return invalid("peer queues must hold at least one message".into());
        }
        if self.reconnect_backoff_min.is_zero()
            || self.reconnect_backoff_max < self.reconnect_backoff_min
        {
            return invalid("reconnect backoff must satisfy 0 < min <= max".into());
        }
        if self.keep_alive_interval.is_zero() || self.idle_timeout <= self.keep_alive_interval {
            return invalid("idle_timeout must exceed a positive keep_alive_interval".into());
        }
        if self.connect_timeout.is_zero()
            || self.handshake_timeout.is_zero()
            || self.initial_rtt.is_zero()
        {
            return invalid("timeouts must be positive".into());
        }
        if self.concurrent_uni_streams_max == 0 || self.concurrent_bidi_streams_max == 0 {
            return invalid("stream limits must be positive".into());
        }
        if let Some(alpn) = &self.client_alpn {
            if alpn.is_empty() || alpn == crate::wire::PEER_ALPN {
                return invalid(
                    "client_alpn must be non-empty and differ from the peer ALPN".into(),
                );
            }
            if self.client_queue_max == 0 {
                return invalid("client_queue_max must be positive".into());
            }
        }
        Ok(())
    }
}
