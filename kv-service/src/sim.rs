//! The key-value service on raft-core's simulated world (feature `testkit`).
//!
//! [`KvCluster`] runs a [`SimCluster`] of [`KvStateMachine`]s with a
//! [`KvServer`] in front of each node, and hands out [`SimConnector`]s
//! through which clerks reach the servers over the same simulated network:
//! each request and each answer crosses it as one message, with its delay,
//! loss and partitions. Run it on a paused clock
//! ([`raft_core::testkit::run_simulation`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use kv_clerk::{CallError, Connector, Request, Response, ServerId};
use raft_core::testkit::{SimCluster, SimNetwork, SimOptions};
use raft_core::NodeId;

use crate::clock::{Clock, TokioClock};
use crate::server::{KvServer, ServerConfig};
use crate::sessions::SessionConfig;
use crate::state_machine::KvStateMachine;

type Servers = Arc<Mutex<BTreeMap<NodeId, KvServer>>>;

fn lock(servers: &Servers) -> MutexGuard<'_, BTreeMap<NodeId, KvServer>> {
    servers.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// A simulated cluster of key-value servers.
pub struct KvCluster {
    sim: SimCluster<KvStateMachine>,
    servers: Servers,
    clock: Arc<dyn Clock>,
    server_config: ServerConfig,
}

impl KvCluster {
    /// Starts `options.nodes` servers. Every server stamps commands with
    /// one virtual clock.
    pub async fn start(
        options: SimOptions,
        sessions: SessionConfig,
        server_config: ServerConfig,
    ) -> KvCluster {
        let sim = SimCluster::start(options, move |_| KvStateMachine::new(sessions)).await;
        let mut cluster = KvCluster {
            sim,
            servers: Arc::default(),
            clock: Arc::new(TokioClock::new()),
            server_config,
        };
        for id in cluster.sim.ids() {
            cluster.serve(id);
        }
        cluster
    }

    fn serve(&mut self, id: NodeId) {
        let node = self.sim.node(id).expect("node just started").clone();
        let machine = self.sim.machine(id).clone();
        let server = KvServer::from_node(
            node,
            machine,
            self.clock.clone(),
            self.server_config.clone(),
        );
        lock(&self.servers).insert(id, server);
    }

    /// The underlying Raft cluster.
    pub fn sim(&self) -> &SimCluster<KvStateMachine> {
        &self.sim
    }

    /// The simulated network.
    pub fn network(&self) -> &SimNetwork {
        self.sim.network()
    }

    /// The running server `id`.
    pub fn server(&self, id: NodeId) -> Option<KvServer> {
        lock(&self.servers).get(&id).cloned()
    }

    /// A connector for client `client`, which becomes an address of the
    /// network (so partitions place it). Use ids apart from the servers'.
    pub fn connector(&self, client: u64) -> SimConnector {
        assert!(
            !self.sim.ids().contains(&client),
            "client id {client} is a server id"
        );
        self.network().add_member(client);
        SimConnector {
            network: self.network().clone(),
            servers: self.servers.clone(),
            client,
        }
    }

    /// Crashes server `id` (see [`SimCluster::crash`]); its clients get
    /// refused connections.
    pub fn crash(&mut self, id: NodeId) {
        lock(&self.servers).remove(&id);
        self.sim.crash(id);
    }

    /// Restarts server `id` from its storage.
    pub async fn restart(&mut self, id: NodeId) {
        lock(&self.servers).remove(&id);
        self.sim.restart(id).await;
        self.serve(id);
    }

    /// Stops every server.
    pub async fn shutdown(&mut self) {
        lock(&self.servers).clear();
        self.sim.shutdown().await;
    }
}

/// A client's link to the simulated servers.
///
/// A request crosses the network to the server (or is lost, and the call
/// never returns: the clerk's attempt timeout fires), the server handles it
/// in a task of its own (a clerk that gives up does not cancel the server's
/// work), and the answer crosses back (or is lost). A crashed server
/// refuses the connection.
#[derive(Clone)]
pub struct SimConnector {
    network: SimNetwork,
    servers: Servers,
    client: u64,
}

#[async_trait]
impl Connector for SimConnector {
    async fn call(&self, server: ServerId, request: Request) -> Result<Response, CallError> {
        if !self.network.transit(self.client, server).await {
            std::future::pending::<()>().await;
        }
        let Some(handler) = lock(&self.servers).get(&server).cloned() else {
            return Err(CallError::NotSent {
                reason: format!("server {server} is down"),
            });
        };
        let handling = tokio::spawn(async move { handler.handle(request).await });
        let Ok(response) = handling.await else {
            return Err(CallError::NoAnswer {
                reason: format!("server {server} failed while handling the request"),
            });
        };
        if !self.network.transit(server, self.client).await {
            std::future::pending::<()>().await;
        }
        Ok(response)
    }
}
