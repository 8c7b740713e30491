//! How a clerk reaches a server: the [`Connector`] trait.
//!
//! The clerk knows no network. Tests plug in a simulated connector, and
//! production a QUIC one; both carry one [`Request`] to one server and bring
//! back its [`Response`].

use std::sync::Arc;

use async_trait::async_trait;

use crate::protocol::{Request, Response, ServerId};

/// Why a call brought back no response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The request certainly did not reach the server (for example, no
    /// connection could be made).
    #[error("request not sent: {reason}")]
    NotSent {
        /// What went wrong.
        reason: String,
    },
    /// The request may have reached the server, but no answer came back
    /// (for example, the connection broke after sending).
    #[error("no answer: {reason}")]
    NoAnswer {
        /// What went wrong.
        reason: String,
    },
}

/// Carries requests to the servers of one cluster.
///
/// `call` may take as long as it likes: the clerk puts its own timeout
/// around each call and drops the future when it fires, so a connector
/// must tolerate being cancelled at any await point. It must be usable from
/// many tasks at once.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Sends `request` to `server` and waits for its response.
    async fn call(&self, server: ServerId, request: Request) -> Result<Response, CallError>;
}

#[async_trait]
impl<C: Connector + ?Sized> Connector for Arc<C> {
    async fn call(&self, server: ServerId, request: Request) -> Result<Response, CallError> {
        (**self).call(server, request).await
    }
}
