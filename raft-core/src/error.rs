//! Errors of the core and the driver.

use crate::types::NodeId;

/// A failure of a [`crate::LogStorage`] call. It records what was being done
/// and on what, so that a log line names the file or key at fault.
#[derive(Debug, thiserror::Error)]
#[error("storage failed to {operation} {object}: {source}")]
pub struct StorageError {
    /// What the storage was doing, such as `"append entries"`.
    pub operation: String,
    /// What it was doing it on, such as a path or an index range.
    pub object: String,
    /// The cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StorageError {
    /// Builds a storage error from its parts.
    pub fn new(
        operation: impl Into<String>,
        object: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StorageError {
        StorageError {
            operation: operation.into(),
            object: object.into(),
            source: source.into(),
        }
    }
}

/// A failure of a [`crate::StateMachine`] call (snapshot or restore).
#[derive(Debug, thiserror::Error)]
#[error("state machine failed to {operation}: {source}")]
pub struct StateMachineError {
    /// What the state machine was doing, such as `"restore snapshot"`.
    pub operation: String,
    /// The cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StateMachineError {
    /// Builds a state-machine error from its parts.
    pub fn new(
        operation: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StateMachineError {
        StateMachineError {
            operation: operation.into(),
            source: source.into(),
        }
    }
}

/// Errors that [`crate::RaftNode`] returns.
///
/// Callers may retry the first group elsewhere or later; `Storage`,
/// `StateMachine` and `Stopped` mean this node no longer serves.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This node is not the leader; `leader_hint` is the leader it knows of.
    /// The request certainly had no effect.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader_hint: Option<NodeId>,
    },
    /// The proposal was appended but replaced by another leader's entry, so
    /// it will never be applied.
    #[error("proposal dropped: a new leader replaced it")]
    ProposalDropped,
    /// The node lost leadership (or the leader changed) while the request
    /// waited; a proposal may still be applied later, a read was not served.
    #[error("leadership lost while the request was pending (leader hint: {leader_hint:?})")]
    LeadershipLost {
        /// The leader this node knows of, if any.
        leader_hint: Option<NodeId>,
    },
    /// A leadership transfer is under way; proposals are refused until it ends.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// A leadership transfer did not complete within an election timeout.
    #[error("leadership transfer to node {0} timed out")]
    TransferTimedOut(NodeId),
    /// The target of a leadership transfer is not a voter of the cluster.
    #[error("node {0} is not a voter of this cluster")]
    UnknownNode(NodeId),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Too many requests are waiting in this node.
    #[error("node overloaded: too many pending requests")]
    Overloaded,
    /// Log storage failed; the node stopped.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The state machine failed; the node stopped.
    #[error(transparent)]
    StateMachine(#[from] StateMachineError),
    /// The node has shut down.
    #[error("raft node stopped")]
    Stopped,
}

impl Error {
    /// Whether the request certainly had no effect on the replicated state.
    pub fn is_definitely_not_applied(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. }
                | Error::ProposalDropped
                | Error::TransferInProgress
                | Error::UnknownNode(_)
                | Error::InvalidConfig(_)
                | Error::Overloaded
        )
    }
}
