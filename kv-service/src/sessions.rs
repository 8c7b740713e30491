//! Client sessions: what makes a retried write take effect once.
//!
//! Each session remembers, for the sequence numbers its client still waits
//! for, which writes were applied and what they answered. A retry of an
//! applied write gets the stored answer instead of a second application.
//! The client says with each write the lowest sequence number it still
//! waits for; answers below it are dropped, and requests below it refused.
//!
//! # Expiry, driven by the log
//!
//! Sessions cannot live for ever, and replicas must agree on when one ends,
//! so expiry never reads a local clock. Each command carries the proposing
//! leader's clock; the state machine keeps the highest reading seen in the
//! log (`clock_ms`, which therefore never goes back). Before applying a
//! command it expires every session whose last write is more than
//! `session_ttl` older than `clock_ms`. It also keeps at most
//! `sessions_max` sessions, expiring the least recently active one when a
//! new one would pass the bound. Both rules depend only on the log, so
//! every replica expires the same sessions at the same index.
//!
//! A write on an expired (or unknown) session is refused with
//! `SessionExpired` and not applied: the service cannot tell a first
//! attempt from a retry any more, so it never guesses.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kv_clerk::protocol::{Response, SessionId};
use serde::{Deserialize, Serialize};

/// Rules for sessions. They shape the replicated state, so every replica
/// of a cluster must use the same values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session with no write for this long (by the leaders' clocks, as
    /// recorded in the log) expires.
    pub session_ttl: Duration,
    /// At most this many sessions live at once; opening one more expires
    /// the least recently active.
    pub sessions_max: usize,
}

impl Default for SessionConfig {
    /// Sessions live one hour after their last write; at most 100,000.
    fn default() -> SessionConfig {
        SessionConfig {
            session_ttl: Duration::from_secs(3600),
            sessions_max: 100_000,
        }
    }
}

/// One client session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// `clock_ms` when the session last opened or wrote.
    pub(crate) last_active_ms: u64,
    /// The lowest sequence number the client still waits for. Every write
    /// below it was answered or abandoned; its answer is gone.
    pub(crate) seq_lowest_pending: u64,
    /// Answers of applied writes at or above `seq_lowest_pending`.
    pub(crate) answers: BTreeMap<u64, Response>,
}

/// Every live session, with an index by activity for expiry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    by_id: BTreeMap<SessionId, Session>,
    /// (last_active_ms, id) of every session: oldest first.
    by_activity: BTreeSet<(u64, SessionId)>,
}

impl Sessions {
    /// Rebuilds the table from its sessions (after a snapshot restore).
    pub(crate) fn from_sessions(by_id: BTreeMap<SessionId, Session>) -> Sessions {
        let by_activity = by_id
            .iter()
            .map(|(id, session)| (session.last_active_ms, *id))
            .collect();
        Sessions { by_id, by_activity }
    }

    /// The sessions by id, for a snapshot.
    pub(crate) fn sessions(&self) -> &BTreeMap<SessionId, Session> {
        &self.by_id
    }

    /// How many sessions live.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether `id` lives.
    #[cfg(test)]
    pub(crate) fn contains(&self, id: SessionId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Expires every session whose last activity is more than `ttl_ms`
    /// before `clock_ms`. Returns how many expired.
    pub(crate) fn expire(&mut self, clock_ms: u64, ttl_ms: u64) -> usize {
        let mut expired = 0;
        while let Some(&(last_active_ms, id)) = self.by_activity.first() {
            if last_active_ms.saturating_add(ttl_ms) >= clock_ms {
                break;
            }
            self.by_activity.pop_first();
            self.by_id.remove(&id);
            expired += 1;
        }
        expired
    }

    /// Opens session `id` at `clock_ms`, first expiring the least recently
    /// active sessions so that at most `sessions_max` live afterwards.
    pub(crate) fn open(&mut self, id: SessionId, clock_ms: u64, sessions_max: usize) {
        assert!(!self.by_id.contains_key(&id), "session {id} opened twice");
        while self.by_id.len() >= sessions_max.max(1) {
            let (_, oldest) = self.by_activity.pop_first().expect("index matches table");
            self.by_id.remove(&oldest);
        }
        let session = Session {
            last_active_ms: clock_ms,
            seq_lowest_pending: 1,
            answers: BTreeMap::new(),
        };
        self.by_id.insert(id, session);
        self.by_activity.insert((clock_ms, id));
        debug_assert_eq!(self.by_id.len(), self.by_activity.len());
    }

    /// The live session `id`, marked active at `clock_ms`; `None` when it
    /// expired or never existed.
    pub(crate) fn touch(&mut self, id: SessionId, clock_ms: u64) -> Option<&mut Session> {
        let session = self.by_id.get_mut(&id)?;
        let removed = self.by_activity.remove(&(session.last_active_ms, id));
        debug_assert!(removed, "index matches table");
        session.last_active_ms = clock_ms;
        self.by_activity.insert((clock_ms, id));
        Some(session)
    }
}

impl Session {
    /// Raises the floor below which the client waits for nothing, and drops
    /// the answers below it. A lower value than the current floor changes
    /// nothing (requests may arrive out of order).
    pub(crate) fn acknowledge_below(&mut self, seq_lowest_pending: u64) {
        if seq_lowest_pending <= self.seq_lowest_pending {
            return;
        }
        self.seq_lowest_pending = seq_lowest_pending;
        self.answers = self.answers.split_off(&seq_lowest_pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_idle_past_the_ttl_expire_and_active_ones_stay() {
        let mut sessions = Sessions::default();
        sessions.open(1, 0, 10);
        sessions.open(2, 0, 10);
        sessions.touch(2, 900).unwrap();

        assert_eq!(sessions.expire(1000, 1000), 0, "exactly at the ttl stays");
        assert_eq!(sessions.expire(1001, 1000), 1);
        assert!(!sessions.contains(1));
        assert!(sessions.contains(2));
        assert_eq!(sessions.expire(1900, 1000), 0);
        assert_eq!(sessions.expire(1901, 1000), 1);
        assert_eq!(sessions.len(), 0);
    }

    #[test]
    fn opening_past_the_bound_expires_the_least_recently_active() {
        let mut sessions = Sessions::default();
        sessions.open(1, 10, 2);
        sessions.open(2, 20, 2);
        sessions.touch(1, 30).unwrap();
        sessions.open(3, 40, 2);
        assert!(sessions.contains(1));
        assert!(!sessions.contains(2));
        assert!(sessions.contains(3));
    }

    #[test]
    fn acknowledging_drops_answers_below_and_never_goes_back() {
        let mut session = Session {
            seq_lowest_pending: 1,
            ..Session::default()
        };
        for seq in 1..=5 {
            session.answers.insert(seq, Ok(kv_clerk::Reply::Written));
        }
        session.acknowledge_below(4);
        assert_eq!(session.answers.keys().copied().collect::<Vec<_>>(), [4, 5]);
        session.acknowledge_below(2);
        assert_eq!(session.seq_lowest_pending, 4);
    }

    #[test]
    fn table_rebuilt_from_snapshot_expires_like_the_original() {
        let mut sessions = Sessions::default();
        sessions.open(1, 5, 10);
        sessions.open(2, 50, 10);
        let mut rebuilt = Sessions::from_sessions(sessions.sessions().clone());
        assert_eq!(rebuilt, sessions);
        rebuilt.expire(100, 60);
        sessions.expire(100, 60);
        assert_eq!(rebuilt, sessions);
        assert!(!rebuilt.contains(1) && rebuilt.contains(2));
    }
}
