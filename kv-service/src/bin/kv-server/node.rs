//! Starting, running and stopping one node.
//!
//! ```text
//!  certificates ─▶ runtime ─▶ QUIC endpoint ─▶ data directory ─▶ Raft node ─▶ serve
//!  (read, checked)             (bound)          (RocksDB, opened)  (restored)     │
//!                                                                               ▼
//!                       SIGTERM / Ctrl-C ─▶ stop clients, node, endpoint ─▶ exit 0
//!                       node stops by itself (disk failure) ─────────────▶ exit 1
//! ```
//!
//! The steps that can fail because of the machine or the configuration run
//! first and touch nothing they cannot undo: certificates are only read,
//! the port is bound before the data directory is opened, and the data
//! directory is created only with `--create-data-dir`, once the port is
//! bound.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kv_service::quic::serve_clients;
use kv_service::{KvServer, SystemClock};
use raft_core::NodeId;
use raft_storage::RocksStorage;
use raft_transport::{Identity, QuicTransport, TlsCredentials, TransportConfig, CLIENT_ALPN};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, info_span, warn, Instrument};

use super::config::Settings;

/// Messages from peers that may wait for the Raft node.
const INBOX_CAPACITY: usize = 4096;

/// How long a clean stop may take before the process gives up on it.
const SHUTDOWN_TIME_MAX: Duration = Duration::from_secs(10);

/// Why the node did not start, or stopped other than by a signal. Each
/// message is one line that says what and where.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A certificate or key file is missing, unreadable, malformed, or not
    /// issued by the CA. The transport's message names the file.
    #[error("tls: {0}")]
    Tls(raft_transport::Error),
    /// The certificate is valid but speaks for another party.
    #[error("tls: certificate {} does not name node {id} (it must carry {dns_name})",
        path.display())]
    CertificateIdentity {
        /// The certificate file.
        path: PathBuf,
        /// This node's id.
        id: NodeId,
        /// The name it must carry.
        dns_name: String,
    },
    /// The data directory cannot be used. The storage's message names it.
    #[error("{error}{hint}")]
    Storage {
        /// What the storage said.
        error: raft_storage::Error,
        /// What to do about it, when there is an obvious answer.
        hint: &'static str,
    },
    /// The tokio runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// The QUIC endpoint could not start (a port in use, for example). The
    /// transport's message names the address.
    #[error("{0}")]
    Transport(raft_transport::Error),
    /// The Raft node could not restore its state.
    #[error("{0}")]
    Node(kv_service::Error),
    /// The Raft node stopped by itself, after a storage or state-machine
    /// failure.
    #[error("the raft node stopped: {0}")]
    NodeStopped(String),
    /// A clean stop took too long.
    #[error("stopping took longer than {} s; exited without finishing", SHUTDOWN_TIME_MAX.as_secs())]
    ShutdownTimeout,
}

/// Runs the node until a signal stops it (`Ok`) or it fails.
pub fn run(settings: Settings) -> Result<(), Failure> {
    let credentials = TlsCredentials::load(&settings.tls).map_err(Failure::Tls)?;
    let identity = Identity::Node(settings.id);
    if !credentials.has_identity(&identity) {
        return Err(Failure::CertificateIdentity {
            path: settings.tls.cert.clone(),
            id: settings.id,
            dns_name: identity.dns_name(),
        });
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kv-server")
        .build()
        .map_err(Failure::Runtime)?;
    let span = info_span!("kv_server", node = settings.id);
    let outcome = runtime.block_on(serve(settings, credentials).instrument(span));
    // Tasks still running (connections being closed) get a moment to end.
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// Why [`serve`] stops.
enum Stop {
    /// A signal asked for a clean stop.
    Signal(&'static str),
    /// The node stopped by itself.
    NodeStopped,
}

async fn serve(settings: Settings, credentials: TlsCredentials) -> Result<(), Failure> {
    // Signal handlers first, so that a signal during start-up stops the
    // node cleanly instead of killing it halfway.
    let mut terminate = signal(SignalKind::terminate()).map_err(Failure::Runtime)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Failure::Runtime)?;

    let mut transport_config = TransportConfig::new(
        settings.id,
        settings.listen,
        settings.peers.clone(),
        credentials,
    );
    transport_config.client_alpn = Some(CLIENT_ALPN.to_vec());
    let (inbox_sender, inbox) = raft_core::inbox(INBOX_CAPACITY);
    let transport = QuicTransport::start(transport_config, inbox_sender)
        .await
        .map_err(Failure::Transport)?;

    // The port is ours: only now may the data directory be created, so that
    // a start that fails for the port leaves no new directory behind.
    let storage = match open_storage(&settings).await {
        Ok(storage) => storage,
        Err(failure) => {
            transport.shutdown().await;
            return Err(failure);
        }
    };

    let started = KvServer::start(
        settings.raft.clone(),
        storage,
        transport.clone(),
        inbox,
        settings.session,
        Arc::new(SystemClock),
        settings.server.clone(),
    )
    .await;
    let server = match started {
        Ok(server) => server,
        Err(error) => {
            transport.shutdown().await;
            return Err(Failure::Node(error));
        }
    };
    let clients = transport
        .take_client_connections()
        .expect("client_alpn is set, and the connections are taken only here");
    let client_task = tokio::spawn(serve_clients(server.clone(), clients).in_current_span());
    info!(
        listen = %transport.local_addr(),
        peers = ?settings.peers,
        data_dir = %settings.data_dir.display(),
        "serving"
    );

    let stop = tokio::select! {
        _ = terminate.recv() => Stop::Signal("SIGTERM"),
        _ = interrupt.recv() => Stop::Signal("SIGINT"),
        () = node_stopped(&server) => Stop::NodeStopped,
    };
    if let Stop::Signal(name) = stop {
        info!(signal = name, "stopping");
        // A second signal means: do not wait for the clean stop.
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
            warn!("second signal: exiting without a clean stop");
            std::process::exit(i32::from(super::EXIT_FAILURE));
        });
    }

    let stopped = tokio::time::timeout(SHUTDOWN_TIME_MAX, async {
        client_task.abort();
        let _ = client_task.await;
        server.shutdown().await;
        transport.shutdown().await;
    })
    .await;
    let status = server.node().status();
    if stopped.is_err() {
        return Err(Failure::ShutdownTimeout);
    }
    match stop {
        Stop::Signal(_) => {
            info!(
                term = status.term,
                commit = status.commit,
                applied = status.applied,
                last_index = status.last_index,
                "stopped cleanly"
            );
            Ok(())
        }
        Stop::NodeStopped => Err(Failure::NodeStopped(
            server
                .node()
                .fatal_error()
                .unwrap_or_else(|| "no reason given".into()),
        )),
    }
}

/// Opens (or, with `--create-data-dir`, creates) the node's RocksDB log.
async fn open_storage(settings: &Settings) -> Result<RocksStorage, Failure> {
    let options = settings.storage.clone();
    let data_dir = settings.data_dir.clone();
    // RocksDB's open blocks for a few milliseconds.
    let opened = tokio::task::spawn_blocking(move || RocksStorage::open(&data_dir, options))
        .await
        .expect("opening the storage does not panic");
    opened.map_err(|error| {
        let hint = match error {
            raft_storage::Error::Missing { .. } if !settings.create_data_dir => {
                "; on the node's first start, pass --create-data-dir"
            }
            _ => "",
        };
        Failure::Storage { error, hint }
    })
}

/// Resolves once the Raft node has stopped: its status channel closes when
/// its driver ends, which outside a shutdown means a fatal error.
async fn node_stopped(server: &KvServer) {
    let mut status = server.node().status_watch();
    while status.changed().await.is_ok() {}
}
