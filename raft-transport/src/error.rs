//! The crate's error type.

use std::net::SocketAddr;
use std::path::PathBuf;

use raft_core::NodeId;

/// Everything that can go wrong in this crate: framing, certificates,
/// endpoints and connections.
///
/// Frame errors (`FrameVersion`, `FrameTooLarge`, `FrameTruncated`,
/// `Decode`) mean the other side sent bytes that do not follow the wire
/// format; the transport closes such a connection and keeps serving others.
/// Certificate errors name the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A frame starts with a version byte this build does not speak.
    #[error("unsupported frame version {found} (this build speaks version {expected})")]
    FrameVersion {
        /// The version byte received.
        found: u8,
        /// The version this build writes and accepts.
        expected: u8,
    },
    /// A frame announces (or a value would need) more payload bytes than allowed.
    #[error("frame payload of {length} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Payload bytes announced or needed.
        length: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame: {received} of {expected} bytes received")]
    FrameTruncated {
        /// Bytes of the frame (header included) that arrived.
        received: usize,
        /// Bytes the frame needed (header included), as far as known.
        expected: usize,
    },
    /// A frame's payload is not a valid rmp-serde encoding of the expected type.
    #[error("cannot decode frame payload: {0}")]
    Decode(String),
    /// A value could not be encoded.
    #[error("cannot encode frame payload: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// An I/O error on a stream or socket.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// A certificate or key file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file does not hold what it should (no certificate, no private key,
    /// malformed PEM).
    #[error("bad pem in {}: {reason}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate was not issued by the cluster CA, or is not valid for
    /// the identity it is meant to carry.
    #[error("certificate {} rejected: {reason}", path.display())]
    CertificateRejected {
        /// The certificate file (or a description when it came from memory).
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// Generating a key or certificate failed.
    #[error("certificate generation failed: {0}")]
    CertificateGeneration(#[from] rcgen::Error),
    /// The TLS library refused a configuration (for example a key that does
    /// not match its certificate).
    #[error("tls configuration: {0}")]
    Tls(String),
    /// A name cannot be used as a client identity.
    #[error("invalid client name {name:?}: use 1 to 63 characters of a-z, 0-9 and '-'")]
    InvalidClientName {
        /// The rejected name.
        name: String,
    },

    /// The configuration cannot work.
    #[error("invalid transport configuration: {0}")]
    InvalidConfig(String),
    /// The endpoint could not bind its UDP socket (for example, the port is in use).
    #[error("cannot bind quic endpoint to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A connection could not be started.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The remote address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: quinn::ConnectError,
    },
    /// A connection failed or was closed.
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The peer did not complete a step in time.
    #[error("timed out while {0}")]
    Timeout(&'static str),
    /// The peer broke the connection protocol (bad handshake, wrong ALPN, a
    /// message from or to the wrong node).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The remote is not wanted here: not a peer of this node, or a peer
    /// dialing against the rule that the lower id dials.
    #[error("connection refused: {0}")]
    Refused(String),
    /// The peer's certificate does not prove the identity it claims.
    #[error("peer claims to be node {claimed} but its certificate does not say so")]
    IdentityMismatch {
        /// The node id the peer claimed.
        claimed: NodeId,
    },
    /// The transport has shut down.
    #[error("transport shut down")]
    Shutdown,
}

impl From<quinn::WriteError> for Error {
    fn from(error: quinn::WriteError) -> Error {
        Error::Io(error.into())
    }
}
