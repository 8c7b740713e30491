//! Client connections: the hook through which an application (the
//! key-value service) serves its own clients on a node's endpoint, and the
//! helper with which a client connects.
//!
//! Clients and peers share one UDP port and one set of trust rules: every
//! party shows a certificate from the cluster CA (see [`crate::tls`]). The
//! ALPN protocol tells them apart: [`crate::wire::PEER_ALPN`] for nodes,
//! [`TransportConfig::client_alpn`](crate::TransportConfig::client_alpn)
//! (normally [`CLIENT_ALPN`]) for clients. The transport completes the TLS
//! handshake of a client connection and hands the `quinn::Connection` to
//! the application; what travels on it is the application's business. The
//! [`crate::frame`] codec is there to reuse, and
//! [`crate::tls::peer_has_identity`] tells which client connected.
//!
//! # Server side
//!
//! ```no_run
//! # async fn run(credentials: raft_transport::TlsCredentials) -> Result<(), raft_transport::Error> {
//! use raft_transport::{frame, QuicTransport, TransportConfig, CLIENT_ALPN};
//!
//! let mut config = TransportConfig::new(1, "127.0.0.1:7001".parse().unwrap(),
//!                                       Default::default(), credentials);
//! config.client_alpn = Some(CLIENT_ALPN.to_vec());
//! let (inbox_sender, inbox) = raft_core::inbox(4096);
//! let transport = QuicTransport::start(config, inbox_sender).await?;
//! let mut clients = transport.take_client_connections().expect("client_alpn is set");
//! // ... hand `transport.clone()` and `inbox` to raft_core::RaftNode::start ...
//! while let Some(connection) = clients.accept().await {
//!     tokio::spawn(async move {
//!         // One request per bidirectional stream; many streams at once.
//!         while let Ok((mut send, mut recv)) = connection.accept_bi().await {
//!             let request: Option<String> = frame::read_frame(&mut recv, 1 << 20).await?;
//!             frame::write_frame(&mut send, &request, 1 << 20).await?;
//!             let _ = send.finish();
//!         }
//!         Ok::<(), raft_transport::Error>(())
//!     });
//! }
//! # Ok(()) }
//! ```
//!
//! # Client side
//!
//! ```no_run
//! # async fn run() -> Result<(), raft_transport::Error> {
//! use raft_transport::{frame, Identity, QuicClient, TlsCredentials, TlsFiles};
//!
//! let files = TlsFiles::in_dir("certs", &Identity::client("alice")?);
//! let client = QuicClient::new(&TlsCredentials::load(&files)?, "0.0.0.0:0".parse().unwrap())?;
//! let connection = client.connect("127.0.0.1:7001".parse().unwrap()).await?;
//! let (mut send, mut recv) = connection.open_bi().await?;
//! frame::write_frame(&mut send, "get k", 1 << 20).await?;
//! let _ = send.finish();
//! let answer: Option<Option<String>> = frame::read_frame(&mut recv, 1 << 20).await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use raft_core::NodeId;
use tokio::sync::mpsc;

use crate::endpoint::{self, Timers};
use crate::error::Error;
use crate::tls::{Identity, TlsCredentials, CLUSTER_DNS_NAME};
pub use crate::wire::CLIENT_ALPN;

/// How long [`QuicClient::connect`] waits for the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Client connections accepted by a node's endpoint, TLS already verified,
/// in arrival order.
#[derive(Debug)]
pub struct ClientConnections {
    receiver: mpsc::Receiver<quinn::Connection>,
}

impl ClientConnections {
    pub(crate) fn new(receiver: mpsc::Receiver<quinn::Connection>) -> ClientConnections {
        ClientConnections { receiver }
    }

    /// The next client connection, or `None` once the transport has shut
    /// down. Connections that wait longer than
    /// [`TransportConfig::client_queue_max`](crate::TransportConfig::client_queue_max)
    /// allows are closed as busy, so keep calling this.
    pub async fn accept(&mut self) -> Option<quinn::Connection> {
        self.receiver.recv().await
    }
}

/// A client's endpoint: connects to nodes with a client certificate of the
/// cluster CA and trusts only node certificates of that CA.
#[derive(Debug)]
pub struct QuicClient {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
}

impl QuicClient {
    /// A client speaking [`CLIENT_ALPN`], bound to `bind_addr` (use
    /// `0.0.0.0:0` for IPv4 servers). Must run inside a tokio runtime.
    pub fn new(credentials: &TlsCredentials, bind_addr: SocketAddr) -> Result<QuicClient, Error> {
        QuicClient::with_alpn(credentials, bind_addr, CLIENT_ALPN)
    }

    /// A client speaking `alpn`, which must match the node's
    /// [`TransportConfig::client_alpn`](crate::TransportConfig::client_alpn).
    pub fn with_alpn(
        credentials: &TlsCredentials,
        bind_addr: SocketAddr,
        alpn: &[u8],
    ) -> Result<QuicClient, Error> {
        let config = endpoint::client_config(credentials, alpn, Timers::client_default())?;
        let endpoint = quinn::Endpoint::client(bind_addr).map_err(|source| Error::Bind {
            addr: bind_addr,
            source,
        })?;
        Ok(QuicClient { endpoint, config })
    }

    /// Connects to whichever node listens at `addr`: its certificate must be
    /// a node certificate of the cluster CA.
    pub async fn connect(&self, addr: SocketAddr) -> Result<quinn::Connection, Error> {
        self.connect_as(addr, CLUSTER_DNS_NAME).await
    }

    /// Connects to node `node` at `addr`: its certificate must name that
    /// node.
    pub async fn connect_to_node(
        &self,
        addr: SocketAddr,
        node: NodeId,
    ) -> Result<quinn::Connection, Error> {
        self.connect_as(addr, &Identity::Node(node).dns_name())
            .await
    }

    async fn connect_as(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<quinn::Connection, Error> {
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), addr, server_name)
            .map_err(|source| Error::Connect { addr, source })?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| Error::Timeout("connecting to a node"))??;
        Ok(connection)
    }

    /// The underlying endpoint.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Closes every connection of this client and waits (briefly) until
    /// the nodes have been told.
    pub async fn close(&self) {
        self.endpoint
            .close(crate::wire::close_code::SHUTDOWN.into(), b"client closing");
        let _ = tokio::time::timeout(Duration::from_millis(500), self.endpoint.wait_idle()).await;
    }
}
