//! The production [`Connector`]: the client protocol over QUIC with mutual
//! TLS, on the nodes' own endpoints (feature `quic`, on by default).
//!
//! Each call opens a new bidirectional stream on a cached connection to the
//! server, writes one framed [`Request`] and reads one framed [`Response`]
//! (frames from `raft_transport::frame`: a version byte, a length, an
//! rmp-serde payload). A connection that fails is dropped from the cache and
//! dialed again on the next call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use async_trait::async_trait;
use raft_transport::{frame, quinn, QuicClient, TlsCredentials};

use crate::connector::{CallError, Connector};
use crate::protocol::{Request, Response, ServerId};

/// Largest frame a client sends or accepts: the largest key and value of
/// the protocol, plus room for the rest of the message.
pub const CLIENT_FRAME_BYTES_MAX: usize =
    crate::protocol::KEY_BYTES_MAX + crate::protocol::VALUE_BYTES_MAX + (64 << 10);

/// Reaches the servers of one cluster over QUIC.
pub struct QuicConnector {
    client: QuicClient,
    servers: BTreeMap<ServerId, SocketAddr>,
    connections: Mutex<BTreeMap<ServerId, quinn::Connection>>,
}

impl QuicConnector {
    /// A connector for the cluster whose servers listen at `servers`,
    /// authenticating with `credentials` (a client certificate of the
    /// cluster's CA). Must run inside a tokio runtime.
    pub fn new(
        credentials: &TlsCredentials,
        servers: BTreeMap<ServerId, SocketAddr>,
    ) -> Result<QuicConnector, raft_transport::Error> {
        let bind: SocketAddr = if servers.values().any(SocketAddr::is_ipv6) {
            "[::]:0".parse().expect("valid address")
        } else {
            "0.0.0.0:0".parse().expect("valid address")
        };
        Ok(QuicConnector {
            client: QuicClient::new(credentials, bind)?,
            servers,
            connections: Mutex::new(BTreeMap::new()),
        })
    }

    /// The servers this connector knows, by id.
    pub fn servers(&self) -> &BTreeMap<ServerId, SocketAddr> {
        &self.servers
    }

    fn cached(&self, server: ServerId) -> Option<quinn::Connection> {
        let connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        connections
            .get(&server)
            .filter(|connection| connection.close_reason().is_none())
            .cloned()
    }

    fn forget(&self, server: ServerId, connection: &quinn::Connection) {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if connections
            .get(&server)
            .is_some_and(|c| c.stable_id() == connection.stable_id())
        {
            connections.remove(&server);
        }
    }

    async fn connection(&self, server: ServerId) -> Result<quinn::Connection, CallError> {
        if let Some(connection) = self.cached(server) {
            return Ok(connection);
        }
        let addr = *self
            .servers
            .get(&server)
            .ok_or_else(|| CallError::NotSent {
                reason: format!("server {server} is not in the connector's list"),
            })?;
        let connection = self
            .client
            .connect_to_node(addr, server)
            .await
            .map_err(|error| CallError::NotSent {
                reason: format!("connecting to server {server} at {addr}: {error}"),
            })?;
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        connections.insert(server, connection.clone());
        Ok(connection)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.client.close().await;
    }
}

/// Forgets the connection of a call that was cancelled before it ended:
/// the clerk cancels a call that got no answer in time, and the usual cause
/// is a server that died (a restarted one cannot reset the old connection,
/// which would otherwise linger until QUIC's idle timeout).
struct ForgetUnlessFinished<'a> {
    connector: &'a QuicConnector,
    server: ServerId,
    connection: quinn::Connection,
    finished: bool,
}

impl Drop for ForgetUnlessFinished<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.connector.forget(self.server, &self.connection);
        }
    }
}

#[async_trait]
impl Connector for QuicConnector {
    async fn call(&self, server: ServerId, request: Request) -> Result<Response, CallError> {
        let connection = self.connection(server).await?;
        let mut guard = ForgetUnlessFinished {
            connector: self,
            server,
            connection: connection.clone(),
            finished: false,
        };
        let result = self.call_on(server, &connection, request).await;
        guard.finished = true;
        result
    }
}

impl QuicConnector {
    async fn call_on(
        &self,
        server: ServerId,
        connection: &quinn::Connection,
        request: Request,
    ) -> Result<Response, CallError> {
        let (mut send, mut receive) = match connection.open_bi().await {
            Ok(streams) => streams,
            Err(error) => {
                self.forget(server, connection);
                return Err(CallError::NotSent {
                    reason: format!("opening a stream to server {server}: {error}"),
                });
            }
        };
        // Once a byte may have left, the outcome is unknown.
        let no_answer = |what: &str, error: &dyn std::fmt::Display| CallError::NoAnswer {
            reason: format!("{what} server {server}: {error}"),
        };
        frame::write_frame(&mut send, &request, CLIENT_FRAME_BYTES_MAX)
            .await
            .map_err(|error| no_answer("writing to", &error))?;
        send.finish()
            .map_err(|error| no_answer("finishing the request to", &error))?;
        let response = frame::read_frame::<_, Response>(&mut receive, CLIENT_FRAME_BYTES_MAX).await;
        match response {
            Ok(Some(response)) => Ok(response),
            Ok(None) => {
                self.forget(server, connection);
                Err(no_answer("no response from", &"stream closed"))
            }
            Err(error) => {
                self.forget(server, connection);
                Err(no_answer("reading from", &error))
            }
        }
    }
}
