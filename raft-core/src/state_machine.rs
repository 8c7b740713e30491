//! The state-machine trait that applications implement.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::StateMachineError;
use crate::types::{LogIndex, SnapshotMeta};

/// The replicated application state, fed committed commands in log order.
///
/// The driver owns the state machine and calls it from one task. At start it
/// calls `restore` with the latest snapshot (if storage has one); then
/// `apply` for each committed command in index order, exactly once per index
/// per process life, interleaved with `snapshot` calls; and `restore` again
/// whenever the leader sends a snapshot.
///
/// `apply` must be deterministic: the same commands in the same order give
/// the same state and responses on every node. It must not depend on local
/// clocks or randomness. The state machine need not be durable: after a
/// restart it is rebuilt from the snapshot and the log.
#[async_trait]
pub trait StateMachine: Send + 'static {
    /// What applying a command returns to the proposer.
    type Response: Send + 'static;

    /// Applies the command committed at `index`.
    async fn apply(&mut self, index: LogIndex, command: Bytes) -> Self::Response;

    /// Serializes the current state, which reflects every command applied so
    /// far, up to the position `meta` (the driver's last applied entry).
    async fn snapshot(&mut self, meta: SnapshotMeta) -> Result<Bytes, StateMachineError>;

    /// Replaces the whole state with the one serialized in `data`, which
    /// stands for the log up to `meta`.
    async fn restore(&mut self, meta: SnapshotMeta, data: Bytes) -> Result<(), StateMachineError>;
}
