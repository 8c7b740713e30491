//! The server: answers client requests through a Raft node.
//!
//! ```text
//!  Request::Get ──────▶ leader? ─no──▶ NotLeader{hint}
//!                         │yes
//!                         ▼
//!                     read_index (quorum confirms leadership, local apply
//!                         │        catches up) ──▶ read the local map
//!  Request::Write ────▶ leader? ─no──▶ NotLeader{hint}
//!  Request::OpenSession   │yes
//!                         ▼
//!                     propose(command stamped with the leader clock)
//!                         │ committed and applied here
//!                         ▼
//!                     the state machine's answer (deduplicated per session)
//! ```

use std::sync::Arc;
use std::time::Duration;

use kv_clerk::protocol::{check_key, Reply, Request, Response, ServiceError};
use raft_core::{Config, Inbox, LogStorage, NodeId, RaftNode, Role, Transport};
use tracing::{debug, trace};

use crate::clock::Clock;
use crate::command::{Command, CommandBody};
use crate::sessions::SessionConfig;
use crate::state_machine::KvStateMachine;

/// How a server behaves (apart from Raft and the session rules).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How long a request may wait for its commit or read barrier before
    /// the server answers [`ServiceError::Timeout`].
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    /// Requests wait at most five seconds.
    fn default() -> ServerConfig {
        ServerConfig {
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Raft node failed to start.
    #[error("raft node failed to start: {0}")]
    Raft(#[from] raft_core::Error),
}

/// One server of the key-value service: a Raft node running the
/// [`KvStateMachine`], and the request handler in front of it. Cheap to
/// clone; clones serve the same node.
#[derive(Clone)]
pub struct KvServer {
    node: RaftNode<Response>,
    machine: KvStateMachine,
    clock: Arc<dyn Clock>,
    config: ServerConfig,
}

impl KvServer {
    /// Starts a Raft node on `storage` and `transport` with a fresh
    /// [`KvStateMachine`] (restored from the storage's snapshot and log),
    /// and serves it. The storage and transport are any implementations of
    /// raft-core's traits.
    pub async fn start<S: LogStorage, T: Transport>(
        raft_config: Config,
        storage: S,
        transport: T,
        inbox: Inbox,
        session_config: SessionConfig,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
    ) -> Result<KvServer, Error> {
        let machine = KvStateMachine::new(session_config);
        let node = RaftNode::start(raft_config, storage, transport, machine.clone(), inbox).await?;
        Ok(KvServer::from_node(node, machine, clock, config))
    }

    /// Serves a node that is already running `machine` (a clone of the
    /// state machine handed to the node).
    pub fn from_node(
        node: RaftNode<Response>,
        machine: KvStateMachine,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
    ) -> KvServer {
        KvServer {
            node,
            machine,
            clock,
            config,
        }
    }

    /// The Raft node.
    pub fn node(&self) -> &RaftNode<Response> {
        &self.node
    }

    /// The state machine (its applied state).
    pub fn machine(&self) -> &KvStateMachine {
        &self.machine
    }

    /// This server's id.
    pub fn id(&self) -> NodeId {
        self.node.id()
    }

    /// Stops the node; requests still waiting fail with
    /// [`ServiceError::ShuttingDown`].
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
    }

    /// Answers one client request.
    pub async fn handle(&self, request: Request) -> Response {
        let status = self.node.status();
        if let Request::Status = request {
            return Ok(Reply::Status(node_status(&status)));
        }
        // A follower answers at once, with the leader it knows.
        if status.role != Role::Leader {
            let leader_hint = status.leader.filter(|leader| *leader != status.id);
            trace!(?leader_hint, "not the leader");
            return Err(ServiceError::NotLeader { leader_hint });
        }

        match request {
            Request::Status => Ok(Reply::Status(node_status(&status))),
            Request::Get { key } => {
                check_key(&key)?;
                self.read_barrier().await?;
                Ok(Reply::Value {
                    value: self.machine.get(&key),
                })
            }
            Request::OpenSession => self.propose(CommandBody::OpenSession).await,
            Request::Write {
                session,
                seq,
                seq_lowest_pending,
                op,
            } => {
                op.check_limits()?;
                if seq == 0 || seq_lowest_pending > seq {
                    return Err(ServiceError::Malformed {
                        reason: format!(
                            "sequence {seq} must be positive and at least the lowest pending \
                             sequence {seq_lowest_pending}"
                        ),
                    });
                }
                let body = CommandBody::Write {
                    session,
                    seq,
                    seq_lowest_pending,
                    op,
                };
                self.propose(body).await
            }
        }
    }

    /// Waits until a read of the local state is linearizable: a quorum
    /// confirmed, after this call, that this node still leads, and the
    /// state machine applied everything committed before (ReadIndex).
    async fn read_barrier(&self) -> Result<(), ServiceError> {
        match tokio::time::timeout(self.config.request_timeout, self.node.read_index()).await {
            Ok(Ok(_index)) => Ok(()),
            Ok(Err(error)) => Err(self.service_error(error)),
            Err(_elapsed) => Err(ServiceError::Timeout),
        }
    }

    async fn propose(&self, body: CommandBody) -> Response {
        let command = Command {
            timestamp_ms: self.clock.now_ms(),
            body,
        };
        let proposal = self.node.propose(command.encode());
        match tokio::time::timeout(self.config.request_timeout, proposal).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => Err(self.service_error(error)),
            Err(_elapsed) => {
                debug!("proposal timed out");
                Err(ServiceError::Timeout)
            }
        }
    }

    /// Translates a Raft error for the client, keeping whether the request
    /// may still take effect.
    fn service_error(&self, error: raft_core::Error) -> ServiceError {
        use raft_core::Error as RaftError;
        debug!(%error, "request failed in raft");
        let own = self.node.id();
        let known_leader = || self.node.status().leader.filter(|leader| *leader != own);
        match error {
            RaftError::NotLeader { leader_hint } => ServiceError::NotLeader {
                leader_hint: leader_hint.filter(|leader| *leader != own),
            },
            // Certainly not applied: another leader's entry replaced it, or
            // leadership is moving.
            RaftError::ProposalDropped | RaftError::TransferInProgress => ServiceError::NotLeader {
                leader_hint: known_leader(),
            },
            RaftError::LeadershipLost { leader_hint } => ServiceError::LeadershipLost {
                leader_hint: leader_hint.filter(|leader| *leader != own),
            },
            RaftError::Overloaded => ServiceError::Overloaded,
            RaftError::Stopped | RaftError::Storage(_) | RaftError::StateMachine(_) => {
                ServiceError::ShuttingDown
            }
            // Errors of leadership transfers and configuration do not come
            // from proposals or reads; if one ever does, keep its meaning.
            other if other.is_definitely_not_applied() => ServiceError::NotLeader {
                leader_hint: known_leader(),
            },
            _ => ServiceError::LeadershipLost {
                leader_hint: known_leader(),
            },
        }
    }
}

/// The protocol's view of a node's Raft status.
fn node_status(status: &raft_core::Status) -> kv_clerk::protocol::NodeStatus {
    let role = match status.role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    };
    kv_clerk::protocol::NodeStatus {
        id: status.id,
        role: role.to_string(),
        term: status.term,
        leader: status.leader,
        commit: status.commit,
        applied: status.applied,
        first_index: status.first_index,
        last_index: status.last_index,
        snapshot_index: status.snapshot_index,
    }
}
