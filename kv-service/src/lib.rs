//! Linearizable key-value service on raft-core.
//!
//! Keys and values are byte strings. `put` replaces a value, `append` adds
//! to its end (and acts as `put` on a missing key), `get` reads it (nothing
//! for a missing key). Each operation is linearizable, and a retried write
//! takes effect at most once.
//!
//! Main parts:
//!
//! - [`KvStateMachine`]: the replicated map and client sessions, as a
//!   [`raft_core::StateMachine`]. Writes go through the log with a session
//!   id and sequence number ([`sessions`]); snapshots hold map and sessions.
//! - [`KvServer`]: handles client requests ([`kv_clerk::protocol`]) through
//!   a [`raft_core::RaftNode`], generic over its storage and transport.
//!   Writes are proposed; reads pass a ReadIndex barrier and read locally; a
//!   follower answers "not the leader" at once, with a hint.
//! - [`history`] and [`linearizability`]: operation histories in the format
//!   of `shared/HISTORY.md`, and a checker that decides whether one is
//!   linearizable; [`HistoryRecorder`] records a clerk's operations.
//! - [`quic`]: the client protocol on a node's QUIC endpoint
//!   ([`quic::serve_clients`]); clerks connect with
//!   `kv_clerk::quic::QuicConnector`.
//! - `sim` (feature `testkit`): the service on raft-core's simulated
//!   network, for deterministic tests.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use kv_service::{KvServer, ServerConfig, SessionConfig, SystemClock};
//! # async fn serve<S: raft_core::LogStorage, T: raft_core::Transport>(
//! #     raft_config: raft_core::Config,
//! #     storage: S,
//! #     transport: T,
//! #     inbox: raft_core::Inbox,
//! #     request: kv_clerk::Request,
//! # ) -> Result<(), kv_service::Error> {
//! let server = KvServer::start(
//!     raft_config,
//!     storage,
//!     transport,
//!     inbox,
//!     SessionConfig::default(),
//!     Arc::new(SystemClock),
//!     ServerConfig::default(),
//! )
//! .await?;
//! // For each client request that arrives:
//! let response = server.handle(request).await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod clock;
mod command;
pub mod history;
pub mod linearizability;
pub mod quic;
mod recorder;
mod server;
pub mod sessions;
#[cfg(feature = "testkit")]
pub mod sim;
mod state_machine;
mod store;

pub use clock::{Clock, SystemClock, TokioClock};
pub use recorder::HistoryRecorder;
pub use server::{Error, KvServer, ServerConfig};
pub use sessions::SessionConfig;
pub use state_machine::KvStateMachine;
