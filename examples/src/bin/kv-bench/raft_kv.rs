//! The raft-kv backend: one `Clerk` with its own QUIC connection per client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kv_clerk::quic::QuicConnector;
use kv_clerk::{Clerk, ClerkConfig, ServerId};
use raft_transport::{TlsCredentials, TlsFiles};

use crate::workload::{Backend, BenchClient};

pub struct RaftKv {
    servers: BTreeMap<ServerId, SocketAddr>,
    files: TlsFiles,
    credentials: Arc<TlsCredentials>,
}

impl RaftKv {
    /// `endpoints` is `ID=HOST:PORT,...`; `certs` holds `ca.pem` and the
    /// client certificate `client-<name>.pem` / `.key.pem`.
    pub fn new(endpoints: &str, files: TlsFiles) -> Result<RaftKv, String> {
        let mut servers = BTreeMap::new();
        for part in endpoints.split(',').filter(|p| !p.is_empty()) {
            let (id, addr) = part
                .split_once('=')
                .ok_or_else(|| format!("endpoint {part:?} is not ID=HOST:PORT"))?;
            let id: ServerId = id.parse().map_err(|e| format!("endpoint id {id:?}: {e}"))?;
            let addr: SocketAddr = addr
                .parse()
                .map_err(|e| format!("endpoint {addr:?}: {e}"))?;
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "{addr} is not a loopback address: the benchmark loads only this machine"
                ));
            }
            servers.insert(id, addr);
        }
        if servers.is_empty() {
            return Err("no endpoints".into());
        }
        let credentials = TlsCredentials::load(&files).map_err(|e| e.to_string())?;
        Ok(RaftKv {
            servers,
            files,
            credentials: Arc::new(credentials),
        })
    }
}

pub struct RaftKvClient {
    clerk: Clerk<QuicConnector>,
}

fn text(error: kv_clerk::Error) -> String {
    error.to_string()
}

#[async_trait]
impl BenchClient for RaftKvClient {
    async fn put(&self, key: Bytes, value: Bytes) -> Result<(), String> {
        self.clerk.put(key, value).await.map_err(text)
    }

    async fn get(&self, key: Bytes) -> Result<Option<Bytes>, String> {
        self.clerk.get(key).await.map_err(text)
    }

    async fn append(&self, key: Bytes, value: Bytes) -> Result<(), String> {
        self.clerk.append(key, value).await.map_err(text)
    }
}

#[async_trait]
impl Backend for RaftKv {
    type Client = RaftKvClient;

    async fn connect(&self) -> Result<RaftKvClient, String> {
        let connector = QuicConnector::new(&self.credentials, self.servers.clone())
            .map_err(|e| e.to_string())?;
        let mut config = ClerkConfig::new(self.servers.keys().copied().collect());
        config.deadline = Duration::from_secs(10);
        let clerk = Clerk::new(connector, config).map_err(text)?;
        Ok(RaftKvClient { clerk })
    }

    fn name(&self) -> &'static str {
        "raft-kv"
    }

    fn describe(&self) -> String {
        let endpoints: Vec<String> = self
            .servers
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect();
        format!(
            "raft-kv {} via kv-clerk (QUIC, mutual TLS, client cert {}); endpoints={}; \
             reads=linearizable (ReadIndex); writes committed on a majority and fsynced (RocksDB)",
            env!("CARGO_PKG_VERSION"),
            self.files.cert.display(),
            endpoints.join(",")
        )
    }
}
