//! The commands the service puts in the Raft log, and their encoding.
//!
//! A log entry is one version byte followed by the rmp-serde encoding of a
//! [`Command`]. Every command carries the proposing leader's clock reading,
//! which drives session expiry identically on every replica (see
//! [`crate::sessions`]).

use bytes::Bytes;
use kv_clerk::protocol::{SessionId, WriteOp};
use serde::{Deserialize, Serialize};

/// The version byte of the command encoding.
pub(crate) const COMMAND_FORMAT_VERSION: u8 = 1;

/// One entry of the service's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Command {
    /// Milliseconds on the proposing leader's clock when it proposed.
    pub(crate) timestamp_ms: u64,
    /// What to do.
    pub(crate) body: CommandBody,
}

/// What a [`Command`] does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CommandBody {
    /// Open a session; its id is the entry's log index.
    OpenSession,
    /// Apply `op` at most once as number `seq` of `session`.
    Write {
        session: SessionId,
        seq: u64,
        seq_lowest_pending: u64,
        op: WriteOp,
    },
}

/// Why a log entry could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("empty command")]
    Empty,
    #[error("command format version {0} is not supported (expected {COMMAND_FORMAT_VERSION})")]
    Version(u8),
    #[error("command does not decode: {0}")]
    Body(#[from] rmp_serde::decode::Error),
}

impl Command {
    /// Encodes the command for the log.
    pub(crate) fn encode(&self) -> Bytes {
        let mut bytes = vec![COMMAND_FORMAT_VERSION];
        rmp_serde::encode::write(&mut bytes, self).expect("a command always encodes to a Vec");
        Bytes::from(bytes)
    }

    /// Decodes a log entry.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != COMMAND_FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        Ok(rmp_serde::from_slice(body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trips() {
        let command = Command {
            timestamp_ms: 42,
            body: CommandBody::Write {
                session: 7,
                seq: 3,
                seq_lowest_pending: 2,
                op: WriteOp::Append {
                    key: Bytes::from_static(b"k"),
                    value: Bytes::from_static(b"\x00\xff"),
                },
            },
        };
        assert_eq!(Command::decode(&command.encode()).unwrap(), command);
    }

    #[test]
    fn unknown_version_and_garbage_are_refused() {
        let mut bytes = Command {
            timestamp_ms: 1,
            body: CommandBody::OpenSession,
        }
        .encode()
        .to_vec();
        bytes[0] = 9;
        assert!(matches!(
            Command::decode(&bytes),
            Err(DecodeError::Version(9))
        ));
        assert!(matches!(Command::decode(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            Command::decode(&[COMMAND_FORMAT_VERSION, 0xc1]),
            Err(DecodeError::Body(_))
        ));
    }
}
