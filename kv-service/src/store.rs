//! The replicated state: the key-value map, the sessions, and the log clock.
//! Applying a command here is pure and deterministic; the async state
//! machine around it lives in [`crate::state_machine`].

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kv_clerk::protocol::{
    Limit, Reply, Response, ServiceError, SessionId, WriteOp, SESSION_WINDOW_MAX, VALUE_BYTES_MAX,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::command::{Command, CommandBody};
use crate::sessions::{Session, SessionConfig, Sessions};

/// The version byte of the snapshot encoding.
pub(crate) const SNAPSHOT_FORMAT_VERSION: u8 = 1;

/// Everything the log determines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Store {
    /// The keys and their values.
    pub(crate) map: BTreeMap<Bytes, Bytes>,
    /// The live client sessions.
    pub(crate) sessions: Sessions,
    /// The highest leader clock reading seen in the log, in milliseconds.
    pub(crate) clock_ms: u64,
}

/// A snapshot's contents, as read back.
#[derive(Deserialize)]
struct SnapshotData {
    clock_ms: u64,
    map: BTreeMap<Bytes, Bytes>,
    sessions: BTreeMap<SessionId, Session>,
}

/// A snapshot's contents, as written: the same fields, borrowed.
#[derive(Serialize)]
struct SnapshotDataRef<'a> {
    clock_ms: u64,
    map: &'a BTreeMap<Bytes, Bytes>,
    sessions: &'a BTreeMap<SessionId, Session>,
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotDecodeError {
    #[error("empty snapshot")]
    Empty,
    #[error("snapshot format version {0} is not supported (expected {SNAPSHOT_FORMAT_VERSION})")]
    Version(u8),
    #[error("snapshot does not decode: {0}")]
    Body(#[from] rmp_serde::decode::Error),
}

impl Store {
    /// Applies the log entry at `index` and returns the answer for the
    /// client that proposed it.
    pub(crate) fn apply(&mut self, index: u64, entry: &[u8], config: &SessionConfig) -> Response {
        let command = match Command::decode(entry) {
            Ok(command) => command,
            Err(error) => {
                // Only this crate proposes, so this is a version mismatch
                // or a bug; every replica refuses the entry alike.
                warn!(index, %error, "log entry is not a command");
                return Err(ServiceError::Malformed {
                    reason: error.to_string(),
                });
            }
        };

        // Time moves on only through the log, and never back.
        self.clock_ms = self.clock_ms.max(command.timestamp_ms);
        let ttl_ms = config.session_ttl.as_millis().min(u64::MAX as u128) as u64;
        let expired = self.sessions.expire(self.clock_ms, ttl_ms);
        if expired > 0 {
            debug!(index, expired, clock_ms = self.clock_ms, "sessions expired");
        }

        match command.body {
            CommandBody::OpenSession => {
                self.sessions
                    .open(index, self.clock_ms, config.sessions_max);
                Ok(Reply::SessionOpened { session: index })
            }
            CommandBody::Write {
                session,
                seq,
                seq_lowest_pending,
                op,
            } => self.apply_write(session, seq, seq_lowest_pending, &op),
        }
    }

    fn apply_write(
        &mut self,
        session_id: SessionId,
        seq: u64,
        seq_lowest_pending: u64,
        op: &WriteOp,
    ) -> Response {
        let clock_ms = self.clock_ms;
        let Some(session) = self.sessions.touch(session_id, clock_ms) else {
            return Err(ServiceError::SessionExpired {
                session: session_id,
            });
        };
        session.acknowledge_below(seq_lowest_pending.min(seq));
        if seq < session.seq_lowest_pending {
            return Err(ServiceError::StaleSequence {
                seq,
                seq_lowest_pending: session.seq_lowest_pending,
            });
        }
        if let Some(answer) = session.answers.get(&seq) {
            debug!(
                session = session_id,
                seq, "duplicate write answered from the session"
            );
            return answer.clone();
        }
        if seq - session.seq_lowest_pending >= SESSION_WINDOW_MAX {
            return Err(ServiceError::WindowExceeded {
                seq,
                seq_lowest_pending: session.seq_lowest_pending,
            });
        }

        let answer = write(&mut self.map, op);
        session.answers.insert(seq, answer.clone());
        answer
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.map.get(key).cloned()
    }

    /// Serializes the whole state.
    ///
    /// FIXME(snapshot-copy): the caller holds the read lock while this
    /// encodes the whole map, so applying waits, and the encoded copy
    /// briefly doubles the memory. A persistent map (or copy-on-write chunks) would let
    /// the snapshot encode a frozen version while applying goes on.
    pub(crate) fn to_snapshot(&self) -> Bytes {
        let data = SnapshotDataRef {
            clock_ms: self.clock_ms,
            map: &self.map,
            sessions: self.sessions.sessions(),
        };
        let mut bytes = vec![SNAPSHOT_FORMAT_VERSION];
        rmp_serde::encode::write(&mut bytes, &data).expect("a snapshot always encodes to a Vec");
        Bytes::from(bytes)
    }

    /// Reads a state serialized by [`Store::to_snapshot`].
    pub(crate) fn from_snapshot(bytes: &[u8]) -> Result<Store, SnapshotDecodeError> {
        let (&version, body) = bytes.split_first().ok_or(SnapshotDecodeError::Empty)?;
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotDecodeError::Version(version));
        }
        let data: SnapshotData = rmp_serde::from_slice(body)?;
        Ok(Store {
            map: data.map,
            sessions: Sessions::from_sessions(data.sessions),
            clock_ms: data.clock_ms,
        })
    }
}

/// Applies one write to the map. Every check here depends only on the map
/// and the request, so all replicas answer alike.
fn write(map: &mut BTreeMap<Bytes, Bytes>, op: &WriteOp) -> Response {
    op.check_limits()?;
    match op {
        WriteOp::Put { key, value } => {
            map.insert(key.clone(), value.clone());
        }
        WriteOp::Append { key, value } => {
            let current = map.get(key).map_or(0, Bytes::len);
            let total = current + value.len();
            if total > VALUE_BYTES_MAX {
                return Err(ServiceError::TooLarge {
                    what: Limit::StoredValue,
                    len: total as u64,
                    max: VALUE_BYTES_MAX as u64,
                });
            }
            let slot = map.entry(key.clone()).or_default();
            if slot.is_empty() {
                *slot = value.clone();
            } else {
                let mut joined = BytesMut::with_capacity(total);
                joined.extend_from_slice(slot);
                joined.extend_from_slice(value);
                *slot = joined.freeze();
            }
        }
    }
    Ok(Reply::Written)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const CONFIG: SessionConfig = SessionConfig {
        session_ttl: Duration::from_millis(1000),
        sessions_max: 100,
    };

    fn entry(timestamp_ms: u64, body: CommandBody) -> Bytes {
        Command { timestamp_ms, body }.encode()
    }

    fn append(session: u64, seq: u64, lowest: u64, value: &'static str) -> CommandBody {
        CommandBody::Write {
            session,
            seq,
            seq_lowest_pending: lowest,
            op: WriteOp::Append {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(value.as_bytes()),
            },
        }
    }

    fn open(store: &mut Store, index: u64, timestamp_ms: u64) -> SessionId {
        match store.apply(
            index,
            &entry(timestamp_ms, CommandBody::OpenSession),
            &CONFIG,
        ) {
            Ok(Reply::SessionOpened { session }) => session,
            other => panic!("{other:?}"),
        }
    }

    fn value(store: &Store) -> Option<&[u8]> {
        store.map.get(&b"k"[..]).map(|v| &v[..])
    }

    #[test]
    fn session_id_is_the_log_index_of_its_opening() {
        let mut store = Store::default();
        assert_eq!(open(&mut store, 17, 0), 17);
    }

    #[test]
    fn append_on_missing_key_acts_as_put_then_concatenates() {
        let mut store = Store::default();
        let s = open(&mut store, 1, 0);
        assert_eq!(
            store.apply(2, &entry(0, append(s, 1, 1, "a")), &CONFIG),
            Ok(Reply::Written)
        );
        assert_eq!(value(&store), Some(&b"a"[..]));
        store
            .apply(3, &entry(0, append(s, 2, 2, "b")), &CONFIG)
            .unwrap();
        assert_eq!(value(&store), Some(&b"ab"[..]));
        let put = CommandBody::Write {
            session: s,
            seq: 3,
            seq_lowest_pending: 3,
            op: WriteOp::Put {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"z"),
            },
        };
        store.apply(4, &entry(0, put), &CONFIG).unwrap();
        assert_eq!(value(&store), Some(&b"z"[..]));
        assert_eq!(store.get(b"missing"), None);
    }

    #[test]
    fn retried_append_committed_twice_takes_effect_once() {
        let mut store = Store::default();
        let s = open(&mut store, 1, 0);
        // The first attempt committed but its answer was lost; the retry
        // committed too, at a later index.
        let first = store.apply(2, &entry(0, append(s, 1, 1, "x")), &CONFIG);
        let retry = store.apply(3, &entry(5, append(s, 1, 1, "x")), &CONFIG);
        assert_eq!(first, Ok(Reply::Written));
        assert_eq!(retry, first);
        assert_eq!(value(&store), Some(&b"x"[..]));
    }

    #[test]
    fn concurrent_writes_of_one_session_are_each_applied_once_in_any_order() {
        let mut store = Store::default();
        let s = open(&mut store, 1, 0);
        store
            .apply(2, &entry(0, append(s, 2, 1, "b")), &CONFIG)
            .unwrap();
        store
            .apply(3, &entry(0, append(s, 1, 1, "a")), &CONFIG)
            .unwrap();
        store
            .apply(4, &entry(0, append(s, 2, 1, "b")), &CONFIG)
            .unwrap();
        store
            .apply(5, &entry(0, append(s, 1, 1, "a")), &CONFIG)
            .unwrap();
        assert_eq!(value(&store), Some(&b"ba"[..]));
    }

    #[test]
    fn answers_below_the_lowest_pending_are_dropped_and_late_duplicates_refused() {
        let mut store = Store::default();
        let s = open(&mut store, 1, 0);
        store
            .apply(2, &entry(0, append(s, 1, 1, "a")), &CONFIG)
            .unwrap();
        store
            .apply(3, &entry(0, append(s, 2, 2, "b")), &CONFIG)
            .unwrap();
        let session = &store.sessions.sessions()[&s];
        assert_eq!(session.answers.keys().copied().collect::<Vec<_>>(), [2]);

        // A delayed copy of seq 1 arrives after the client moved on.
        let late = store.apply(4, &entry(0, append(s, 1, 1, "a")), &CONFIG);
        assert_eq!(
            late,
            Err(ServiceError::StaleSequence {
                seq: 1,
                seq_lowest_pending: 2
            })
        );
        assert_eq!(value(&store), Some(&b"ab"[..]));
    }

    #[test]
    fn write_on_expired_session_is_refused_not_applied_again() {
        let mut store = Store::default();
        let s = open(&mut store, 1, 0);
        store
            .apply(2, &entry(100, append(s, 1, 1, "x")), &CONFIG)
            .unwrap();
        // Another session's write moves the log clock past the ttl.
        let other = open(&mut store, 3, 1101);
        assert_ne!(other, s);

        let retry = store.apply(4, &entry(1101, append(s, 1, 1, "x")), &CONFIG);
        assert_eq!(retry, Err(ServiceError::SessionExpired { session: s }));
        assert_eq!(value(&store), Some(&b"x"[..]));
    }

    #[test]
    fn log_clock_never_goes_back_so_a_lagging_leader_clock_cannot_revive_sessions() {
        let mut store = Store::default();
        let s = open(&mut store, 1, 5000);
        store
            .apply(2, &entry(7000, CommandBody::OpenSession), &CONFIG)
            .unwrap();
        // A new leader whose clock is behind proposes a write on s.
        let late = store.apply(3, &entry(10, append(s, 1, 1, "x")), &CONFIG);
        assert_eq!(late, Err(ServiceError::SessionExpired { session: s }));
        assert_eq!(store.clock_ms, 7000);
    }

    #[test]
    fn unknown_session_is_refused() {
        let mut store = Store::default();
        let answer = store.apply(1, &entry(0, append(99, 1, 1, "x")), &CONFIG);
        assert_eq!(answer, Err(ServiceError::SessionExpired { session: 99 }));
        assert_eq!(value(&store), None);
    }

    #[test]
    fn append_that_would_pass_the_value_limit_is_refused_and_remembered() {
        let mut store = Store::default();
        let s = open(&mut store, 1, 0);
        let big = Bytes::from(vec![b'x'; VALUE_BYTES_MAX]);
        let put = |seq, value: Bytes| CommandBody::Write {
            session: s,
            seq,
            seq_lowest_pending: 1,
            op: WriteOp::Append {
                key: Bytes::from_static(b"k"),
                value,
            },
        };
        store.apply(2, &entry(0, put(1, big)), &CONFIG).unwrap();
        let over = store.apply(3, &entry(0, put(2, Bytes::from_static(b"y"))), &CONFIG);
        assert!(matches!(
            over,
            Err(ServiceError::TooLarge {
                what: Limit::StoredValue,
                ..
            })
        ));
        // A retry gets the remembered answer.
        let retry = store.apply(4, &entry(0, put(2, Bytes::from_static(b"y"))), &CONFIG);
        assert_eq!(retry, over);
        assert_eq!(store.map[&b"k"[..]].len(), VALUE_BYTES_MAX);
    }

    #[test]
    fn window_beyond_the_lowest_pending_is_bounded() {
        let mut store = Store::default();
        let s = open(&mut store, 1, 0);
        let far = store.apply(
            2,
            &entry(0, append(s, SESSION_WINDOW_MAX + 1, 1, "x")),
            &CONFIG,
        );
        assert!(matches!(far, Err(ServiceError::WindowExceeded { .. })));
        assert_eq!(value(&store), None);
    }

    #[test]
    fn malformed_entry_is_refused_alike_everywhere() {
        let mut store = Store::default();
        let answer = store.apply(1, b"\x01garbage", &CONFIG);
        assert!(matches!(answer, Err(ServiceError::Malformed { .. })));
    }

    #[test]
    fn snapshot_round_trips_map_sessions_and_clock() {
        let mut store = Store::default();
        let s = open(&mut store, 1, 3);
        store
            .apply(2, &entry(9, append(s, 1, 1, "a")), &CONFIG)
            .unwrap();
        let restored = Store::from_snapshot(&store.to_snapshot()).unwrap();
        assert_eq!(restored, store);

        // And the restored copy still deduplicates the retry.
        let mut restored = restored;
        let retry = restored.apply(3, &entry(9, append(s, 1, 1, "a")), &CONFIG);
        assert_eq!(retry, Ok(Reply::Written));
        assert_eq!(value(&restored), Some(&b"a"[..]));
    }

    #[test]
    fn corrupt_snapshot_is_refused() {
        assert!(matches!(
            Store::from_snapshot(&[]),
            Err(SnapshotDecodeError::Empty)
        ));
        assert!(matches!(
            Store::from_snapshot(&[7, 1, 2]),
            Err(SnapshotDecodeError::Version(7))
        ));
        assert!(matches!(
            Store::from_snapshot(&[SNAPSHOT_FORMAT_VERSION, 0xc1]),
            Err(SnapshotDecodeError::Body(_))
        ));
    }
}
