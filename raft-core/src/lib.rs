//! Raft consensus, deterministic at its core, pluggable at its edges.
//!
//! The crate has two layers:
//!
//! 1. [`Raft`], the core: a pure state machine that does no I/O, holds no
//!    clock and spawns no tasks. Feed it messages, ticks, proposals and read
//!    requests; take a [`Ready`] that says what to persist, what to send and
//!    what to apply; report back what became durable.
//! 2. [`RaftNode`], the driver: runs the core on tokio, generic over three
//!    traits you implement or pick from other crates:
//!    [`LogStorage`] (durable log), [`StateMachine`] (your application) and
//!    [`Transport`] (the network).
//!
//! Nothing here knows a disk, a socket or a key-value store. The feature
//! `testkit` adds in-memory storage, a simulated network on virtual time, a
//! cluster harness with an invariant checker, and a conformance suite for
//! storage implementations.
//!
//! # Using it
//!
//! ```text
//! let config = raft_core::Config::new(1, vec![1, 2, 3]);
//! let (inbox_sender, inbox) = raft_core::inbox(4096);
//! let transport = MyTransport::new(inbox_sender);        // delivers to the inbox
//! let node = raft_core::RaftNode::start(config, my_storage, transport, my_state_machine, inbox)
//!     .await?;
//! let response = node.propose(command_bytes).await?;     // applied on a quorum
//! node.read_index().await?;                              // now read your state
//! ```
//!
//! # Known limitations
//!
//! - Membership is static: the voters list is fixed at start.
//! - The core keeps the log after the latest snapshot in memory (as etcd
//!   does); snapshots bound it.
#![deny(missing_docs)]

mod config;
mod error;
mod message;
mod node;
mod raft;
mod rng;
mod state_machine;
mod storage;
mod transport;
mod types;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::Config;
pub use error::{Error, StateMachineError, StorageError};
pub use message::{AppendOutcome, Message, MessageBody};
pub use node::{Observer, RaftNode};
pub use raft::{Raft, ReadState, Ready};
pub use rng::Rng;
pub use state_machine::StateMachine;
pub use storage::{LogStorage, LogWrite, StoredState};
pub use transport::{inbox, Inbox, InboxSender, Transport};
pub use types::{
    Entry, EntryPayload, HardState, LogIndex, NodeId, Role, Snapshot, SnapshotMeta, Status, Term,
};
