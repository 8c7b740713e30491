//! Client library for the linearizable key-value service.
//!
//! An application talks to the cluster through a [`Clerk`]: `get`, `put` and
//! `append` on byte-string keys, each linearizable. The clerk finds and
//! caches the leader, retries lost or failed attempts with the same session
//! and sequence number (so a write takes effect at most once), rotates
//! through the servers with backoff, and gives up only at a deadline the
//! caller sets, with an [`Error`] that says whether the operation may have
//! happened.
//!
//! The clerk knows no network: it reaches servers through a [`Connector`].
//! The wire types of the client protocol live in [`protocol`]; the service
//! (`kv-service`) shares them, and nothing else, with this crate.
//!
//! ```no_run
//! # use kv_clerk::{CallError, Clerk, ClerkConfig, Connector, Request, Response, ServerId};
//! # struct QuicConnector;
//! # #[async_trait::async_trait]
//! # impl Connector for QuicConnector {
//! #     async fn call(&self, _: ServerId, _: Request) -> Result<Response, CallError> {
//! #         Err(CallError::NotSent { reason: "example".into() })
//! #     }
//! # }
//! # async fn example(connector: QuicConnector) -> Result<(), kv_clerk::Error> {
//! let clerk = Clerk::new(connector, ClerkConfig::new(vec![1, 2, 3]))?;
//! clerk.put("k", "v1").await?;
//! clerk.append("k", "v2").await?;
//! assert_eq!(clerk.get("k").await?.as_deref(), Some(&b"v1v2"[..]));
//! # Ok(())
//! # }
//! ```
//!
//! [`RecordingClerk`] records each operation for a linearizability check.
#![deny(missing_docs)]

mod backoff;
mod clerk;
mod connector;
pub mod protocol;
#[cfg(feature = "quic")]
pub mod quic;
mod record;

pub use clerk::{Clerk, ClerkConfig, Error, Op};
pub use connector::{CallError, Connector};
pub use protocol::{
    NodeStatus, Reply, Request, Response, ServerId, ServiceError, SessionId, WriteOp,
};
pub use record::{OpEnd, OpRecord, Recorder, RecordingClerk};

#[cfg(test)]
mod clerk_tests;
