//! What travels on a peer connection, besides frames of
//! [`raft_core::Message`]: the ALPN names, the hello exchange and the codes
//! a connection is closed with.
//!
//! # A peer connection
//!
//! ```text
//! dialer (lower id)                           acceptor (higher id)
//!   QUIC + TLS 1.3, ALPN "raft/1", both certificates checked
//!   open bidirectional stream ─── Hello { from, to } ──▶  check the certificate
//!                                                         names `from`; `to` is me
//!   ◀──────────────────────────── Hello { from, to } ───
//!   frames of Message both ways on that stream (small messages, in order)
//!   one unidirectional stream per bulk message, either way
//! ```
//!
//! Only the node with the lower id dials (see [`crate::QuicTransport`]), so
//! a pair of nodes shares one connection. A node closes a connection that
//! breaks any rule here with a code from this module and a reason text, and
//! logs it.

use raft_core::NodeId;
use serde::{Deserialize, Serialize};

/// ALPN protocol of node-to-node connections.
pub const PEER_ALPN: &[u8] = b"raft/1";

/// The default ALPN protocol of client connections, which a node hands to
/// the application (see [`crate::ClientConnections`]).
pub const CLIENT_ALPN: &[u8] = b"raft-client/1";

/// The first frame each side writes on a peer connection's first stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The node writing the hello; its certificate must name this id.
    pub from: NodeId,
    /// The node it believes it is talking to.
    pub to: NodeId,
}

/// Application close codes of peer and client connections.
pub mod close_code {
    /// The node is shutting down.
    pub const SHUTDOWN: u32 = 0;
    /// The peer broke the wire format: a bad frame or a bad hello.
    pub const PROTOCOL: u32 = 1;
    /// The peer claimed an identity its certificate does not prove.
    pub const IDENTITY: u32 = 2;
    /// A newer connection from the same peer replaced this one.
    pub const REPLACED: u32 = 3;
    /// The connection is not wanted: unknown node, wrong dialing direction,
    /// or a protocol this node does not serve.
    pub const UNWANTED: u32 = 4;
    /// The node cannot take more connections of this kind now.
    pub const BUSY: u32 = 5;
}
