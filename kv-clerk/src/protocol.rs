//! The client protocol: what a clerk sends to a server and what comes back.
//!
//! These are serde types; a connector encodes them (the QUIC one with
//! rmp-serde in versioned, length-prefixed frames). Every write carries a
//! session id and a sequence number so that the service applies it at most
//! once however often it is retried:
//!
//! ```text
//!  clerk                                   service (state machine)
//!  OpenSession ──────────────────────────▶ new session, id = its log index
//!  Write{session, seq = 1, lowest = 1} ──▶ apply, remember answer of seq 1
//!  Write{session, seq = 1, lowest = 1} ──▶ (retry) same answer, no second apply
//!  Write{session, seq = 2, lowest = 2} ──▶ forget answers below 2, apply seq 2
//! ```

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies a server of the cluster (its Raft node id).
pub type ServerId = u64;

/// Identifies a client session. The service assigns it: it is the log index
/// of the entry that opened the session, so it is unique for the cluster's
/// life.
pub type SessionId = u64;

/// Longest key the service accepts, in bytes.
pub const KEY_BYTES_MAX: usize = 1024;

/// Longest value the service stores, in bytes. It bounds the value of a
/// `put`, the suffix of an `append` and the value that results from an
/// `append`.
pub const VALUE_BYTES_MAX: usize = 256 * 1024;

/// How far a session's sequence numbers may run ahead of the lowest one the
/// client still waits for: the bound on answers a server keeps per session.
pub const SESSION_WINDOW_MAX: u64 = 4096;

/// A change to the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Replace the value of `key` with `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Add `value` at the end of the value of `key`; on a missing key, acts
    /// as `Put`.
    Append {
        /// The key.
        key: Bytes,
        /// The suffix.
        value: Bytes,
    },
}

impl WriteOp {
    /// The key the operation changes.
    pub fn key(&self) -> &Bytes {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Append { key, .. } => key,
        }
    }

    /// The value or suffix the operation writes.
    pub fn value(&self) -> &Bytes {
        match self {
            WriteOp::Put { value, .. } | WriteOp::Append { value, .. } => value,
        }
    }

    /// Checks the size limits that do not depend on the stored state.
    pub fn check_limits(&self) -> Result<(), ServiceError> {
        check_key(self.key())?;
        let value_len = self.value().len();
        if value_len > VALUE_BYTES_MAX {
            return Err(ServiceError::TooLarge {
                what: Limit::Value,
                len: value_len as u64,
                max: VALUE_BYTES_MAX as u64,
            });
        }
        Ok(())
    }
}

/// Checks that `key` is within [`KEY_BYTES_MAX`].
pub fn check_key(key: &[u8]) -> Result<(), ServiceError> {
    if key.len() > KEY_BYTES_MAX {
        return Err(ServiceError::TooLarge {
            what: Limit::Key,
            len: key.len() as u64,
            max: KEY_BYTES_MAX as u64,
        });
    }
    Ok(())
}

/// A request from a clerk to a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Open a new session. Answered with [`Reply::SessionOpened`].
    OpenSession,
    /// Apply `op` at most once as number `seq` of `session`.
    Write {
        /// The session, from [`Reply::SessionOpened`].
        session: SessionId,
        /// The request's sequence number in the session, from 1. A retry
        /// carries the same number.
        seq: u64,
        /// The lowest sequence number whose answer the client still waits
        /// for (at most `seq`): the service may forget answers below it and
        /// refuses requests below it.
        seq_lowest_pending: u64,
        /// The change.
        op: WriteOp,
    },
    /// Read the value of `key` (linearizably, through ReadIndex).
    Get {
        /// The key.
        key: Bytes,
    },
    /// Ask the node about itself. Every node answers, leader or not, from
    /// its own view: [`Reply::Status`].
    Status,
}

/// One node's view of itself, for monitoring (`kv-cli status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub id: ServerId,
    /// `leader`, `follower`, `candidate` or `pre-candidate`.
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of in that term.
    pub leader: Option<ServerId>,
    /// Highest log index it knows committed.
    pub commit: u64,
    /// Highest log index its state machine applied.
    pub applied: u64,
    /// Index of the first entry still in its log.
    pub first_index: u64,
    /// Index of the last entry in its log.
    pub last_index: u64,
    /// Last index its latest snapshot covers (0 without one).
    pub snapshot_index: u64,
}

impl NodeStatus {
    /// How many entries its log holds (after the snapshot).
    pub fn log_entries(&self) -> u64 {
        (self.last_index + 1).saturating_sub(self.first_index)
    }
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A session was opened.
    SessionOpened {
        /// Its id.
        session: SessionId,
    },
    /// The write took effect (exactly once).
    Written,
    /// The value read; `None` when the key is missing.
    Value {
        /// The value.
        value: Option<Bytes>,
    },
    /// The answer to [`Request::Status`].
    Status(NodeStatus),
}

/// What a server answers.
pub type Response = Result<Reply, ServiceError>;

/// Which size limit a request broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    /// [`KEY_BYTES_MAX`].
    Key,
    /// [`VALUE_BYTES_MAX`] for the value or suffix sent.
    Value,
    /// [`VALUE_BYTES_MAX`] for the value an `append` would leave.
    StoredValue,
}

/// Why a server did not carry out a request.
///
/// [`ServiceError::is_definitely_not_applied`] says whether the request
/// certainly had no effect; a clerk retries the others with the same
/// sequence number, which is always safe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ServiceError {
    /// This server is not the leader; `leader_hint` is the one it knows of.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this server knows of, if any.
        leader_hint: Option<ServerId>,
    },
    /// The server gave up waiting for the request to commit; it may still
    /// take effect.
    #[error("timed out waiting for the request to commit")]
    Timeout,
    /// The server lost leadership while the request waited; it may still
    /// take effect.
    #[error("leadership lost while the request waited (leader hint: {leader_hint:?})")]
    LeadershipLost {
        /// The leader this server knows of, if any.
        leader_hint: Option<ServerId>,
    },
    /// A key or value is over its limit; nothing changed.
    #[error("{what:?} of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// Which limit.
        what: Limit,
        /// The size that was refused.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The server is shutting down; a write it had accepted may still take
    /// effect.
    #[error("server shutting down")]
    ShuttingDown,
    /// The session is unknown to the service: it expired (or was never
    /// opened). This request had no effect; open a new session.
    #[error("session {session} expired or unknown")]
    SessionExpired {
        /// The session named in the request.
        session: SessionId,
    },
    /// The request's sequence number is below the lowest one the client
    /// said it still waits for: it is a late duplicate and had no effect.
    #[error("sequence {seq} is below the session's lowest pending sequence {seq_lowest_pending}")]
    StaleSequence {
        /// The request's sequence number.
        seq: u64,
        /// The session's lowest pending sequence number.
        seq_lowest_pending: u64,
    },
    /// The request's sequence number is [`SESSION_WINDOW_MAX`] or more past
    /// the session's lowest pending one; nothing changed.
    #[error("sequence {seq} is too far ahead of the lowest pending sequence {seq_lowest_pending}")]
    WindowExceeded {
        /// The request's sequence number.
        seq: u64,
        /// The session's lowest pending sequence number.
        seq_lowest_pending: u64,
    },
    /// Too many requests are waiting in the server; nothing changed.
    #[error("server overloaded")]
    Overloaded,
    /// The request could not be decoded or makes no sense; nothing changed.
    #[error("malformed request: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
}

impl ServiceError {
    /// Whether this request certainly had no effect on the store. (An
    /// earlier attempt of the same write may still have had one.)
    pub fn is_definitely_not_applied(&self) -> bool {
        !matches!(
            self,
            ServiceError::Timeout
                | ServiceError::LeadershipLost { .. }
                | ServiceError::ShuttingDown
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_over_the_limit_is_refused_with_its_size() {
        let key = Bytes::from(vec![b'k'; KEY_BYTES_MAX + 1]);
        let op = WriteOp::Put {
            key,
            value: Bytes::new(),
        };
        assert_eq!(
            op.check_limits(),
            Err(ServiceError::TooLarge {
                what: Limit::Key,
                len: KEY_BYTES_MAX as u64 + 1,
                max: KEY_BYTES_MAX as u64,
            })
        );
    }

    #[test]
    fn value_at_the_limit_is_accepted_and_one_more_byte_refused() {
        let key = Bytes::from_static(b"k");
        let at_limit = WriteOp::Append {
            key: key.clone(),
            value: Bytes::from(vec![0; VALUE_BYTES_MAX]),
        };
        assert_eq!(at_limit.check_limits(), Ok(()));
        let over = WriteOp::Append {
            key,
            value: Bytes::from(vec![0; VALUE_BYTES_MAX + 1]),
        };
        assert!(matches!(
            over.check_limits(),
            Err(ServiceError::TooLarge {
                what: Limit::Value,
                ..
            })
        ));
    }

    #[test]
    fn only_errors_after_acceptance_leave_the_outcome_open() {
        assert!(!ServiceError::Timeout.is_definitely_not_applied());
        assert!(!ServiceError::ShuttingDown.is_definitely_not_applied());
        assert!(!ServiceError::LeadershipLost { leader_hint: None }.is_definitely_not_applied());
        assert!(ServiceError::NotLeader {
            leader_hint: Some(2)
        }
        .is_definitely_not_applied());
        assert!(ServiceError::SessionExpired { session: 3 }.is_definitely_not_applied());
        assert!(ServiceError::Overloaded.is_definitely_not_applied());
    }
}
