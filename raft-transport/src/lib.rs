//! QUIC transport with mutual TLS for raft-core.
//!
//! [`QuicTransport`] implements [`raft_core::Transport`] over quinn (with
//! the `ring` crypto provider): one QUIC connection per pair of nodes,
//! mutual TLS under a cluster certificate authority, messages in versioned,
//! length-prefixed rmp-serde frames.
//!
//! # Main types
//!
//! - [`QuicTransport`] and its [`TransportConfig`]: the node-to-node
//!   transport. Incoming messages go to a [`MessageSink`], normally the
//!   node's [`raft_core::InboxSender`].
//! - [`frame`]: the frame codec, reusable for any serde type over any tokio
//!   byte stream (quinn streams, TCP).
//! - [`tls`]: identities, certificate generation ([`CertificateAuthority`],
//!   [`tls::generate_cluster_files`], the `raft-certs` command) and loading
//!   ([`TlsCredentials`], [`TlsFiles`]).
//! - [`client`]: how an application serves its own clients on the node's
//!   endpoint ([`ClientConnections`]) and how a client connects
//!   ([`QuicClient`]).
//! - [`wire`]: ALPN names, the hello exchange and close codes.
//!
//! # Using it
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use raft_transport::{Identity, QuicTransport, TlsCredentials, TlsFiles, TransportConfig};
//!
//! // Certificates from `raft-certs --out certs --nodes 1,2,3`.
//! let credentials = TlsCredentials::load(&TlsFiles::in_dir("certs", &Identity::Node(1)))?;
//! let peers = [(2, "127.0.0.1:7002".parse()?), (3, "127.0.0.1:7003".parse()?)].into();
//! let config = TransportConfig::new(1, "127.0.0.1:7001".parse()?, peers, credentials);
//! let (inbox_sender, inbox) = raft_core::inbox(4096);
//! let transport = QuicTransport::start(config, inbox_sender).await?;
//! // raft_core::RaftNode::start(node_config, storage, transport.clone(), state_machine, inbox)
//! # Ok(()) }
//! ```
//!
//! # Behaviour under faults
//!
//! `send` never blocks; each peer has a bounded queue that drops the oldest
//! heartbeats first. Lost connections are dialed again with exponential
//! backoff. Bad input from a peer (bytes that are not frames, a truncated or
//! oversized frame, an unknown version, a certificate from another CA, a
//! claim to be another node) closes that connection with a logged reason
//! and a close code from [`wire::close_code`]; the node keeps serving the
//! others. Nothing here panics on input.
#![deny(missing_docs)]

pub mod client;
mod config;
mod endpoint;
mod error;
pub mod frame;
mod peer;
mod queue;
mod sink;
pub mod tls;
mod transport;
pub mod wire;

pub use client::{ClientConnections, QuicClient};
pub use config::TransportConfig;
pub use error::Error;
pub use sink::MessageSink;
pub use tls::{CertificateAuthority, Identity, TlsCredentials, TlsFiles};
pub use transport::{PeerStats, QuicTransport, TransportStats};
pub use wire::{CLIENT_ALPN, PEER_ALPN};

/// quinn, re-exported so that applications use the same version (and its
/// `rustls` re-export) as this crate.
pub use quinn;
