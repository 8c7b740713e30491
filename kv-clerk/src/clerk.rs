//! The clerk: linearizable get, put and append against a cluster, with
//! retries that never apply a write twice.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, trace};

use crate::backoff::{backoff_delay, Rng};
use crate::connector::{CallError, Connector};
use crate::protocol::{
    check_key, NodeStatus, Reply, Request, ServerId, ServiceError, SessionId, WriteOp,
    SESSION_WINDOW_MAX,
};

/// How a clerk behaves.
#[derive(Clone, Debug)]
pub struct ClerkConfig {
    /// The servers of the cluster. The clerk starts with the first and
    /// learns the leader from the answers.
    pub servers: Vec<ServerId>,
    /// How long one attempt at one server may take before the clerk counts
    /// it as lost and tries again (with the same sequence number).
    pub attempt_timeout: Duration,
    /// The first pause after a failed round of attempts.
    pub backoff_min: Duration,
    /// The longest pause between attempts.
    pub backoff_max: Duration,
    /// How long [`Clerk::get`], [`Clerk::put`] and [`Clerk::append`] keep
    /// trying before they give up; the `*_by` forms take their own deadline.
    pub deadline: Duration,
    /// How many writes may be in flight on the session at once (at most
    /// [`SESSION_WINDOW_MAX`]); more wait for a slot.
    pub writes_in_flight_max: u64,
    /// Seed of the backoff jitter, so that a simulation replays exactly.
    pub seed: u64,
}

impl ClerkConfig {
    /// Defaults for a cluster on one LAN: attempts of one second, backoff
    /// from 10 ms to 500 ms, operations that give up after 30 seconds.
    pub fn new(servers: Vec<ServerId>) -> ClerkConfig {
        ClerkConfig {
            servers,
            attempt_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(500),
            deadline: Duration::from_secs(30),
            writes_in_flight_max: 1024,
            seed: 0,
        }
    }
}

/// Why an operation did not succeed. Each variant says whether the
/// operation may have taken effect ([`Error::may_have_happened`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The deadline passed before any server confirmed the operation.
    #[error("gave up at the deadline (may have happened: {may_have_happened}; last error: {last_error})")]
    Timeout {
        /// Whether a write may have taken effect (never for a read).
        may_have_happened: bool,
        /// The last failure seen, for the log.
        last_error: String,
    },
    /// The service refused the operation.
    #[error("refused by the service (may have happened: {may_have_happened}): {error}")]
    Rejected {
        /// What the service said.
        error: ServiceError,
        /// Whether an earlier attempt of the same write may still have taken
        /// effect; false when the refusal is one every attempt would get
        /// (too large).
        may_have_happened: bool,
    },
    /// The session expired while an attempt of this write was in doubt, so
    /// the service can no longer say whether it took effect. Later
    /// operations use a new session.
    #[error("session expired while the write was in doubt; it may have happened")]
    SessionExpired,
    /// A server answered with a reply of the wrong kind (a bug).
    #[error("unexpected reply {reply:?} (may have happened: {may_have_happened})")]
    UnexpectedReply {
        /// The reply.
        reply: Reply,
        /// Whether the operation may have taken effect.
        may_have_happened: bool,
    },
    /// The configuration cannot work.
    #[error("invalid clerk configuration: {0}")]
    InvalidConfig(String),
}

impl Error {
    /// Whether the operation may have taken effect. `false` means it
    /// certainly did not.
    pub fn may_have_happened(&self) -> bool {
        match self {
            Error::Timeout {
                may_have_happened, ..
            }
            | Error::Rejected {
                may_have_happened, ..
            }
            | Error::UnexpectedReply {
                may_have_happened, ..
            } => *may_have_happened,
            Error::SessionExpired => true,
            Error::InvalidConfig(_) => false,
        }
    }
}

/// One operation, as [`Clerk::execute`] takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read a key.
    Get {
        /// The key.
        key: Bytes,
    },
    /// Change a key.
    Write(WriteOp),
}

/// The session a clerk writes through.
#[derive(Debug)]
struct Session {
    /// The id the service gave it.
    id: SessionId,
    /// The sequence number the next write gets.
    seq_next: u64,
    /// Sequence numbers of writes still waiting for their answer.
    in_flight: BTreeSet<u64>,
}

impl Session {
    fn seq_lowest_pending(&self) -> u64 {
        self.in_flight.first().copied().unwrap_or(self.seq_next)
    }
}

/// Why one round of attempts ended without a reply.
enum Failure {
    /// The deadline passed.
    Deadline { last_error: String },
    /// The service refused in a way that retrying cannot change.
    Refused(ServiceError),
}

struct Inner<C> {
    connector: C,
    config: ClerkConfig,
    /// The server believed to lead; 0 when none is known.
    leader: AtomicU64,
    /// The current session, if one is open.
    session: Mutex<Option<Session>>,
    /// Woken when a write ends or the session changes, for writes waiting
    /// for a slot in the window.
    window: Notify,
    /// Held while opening a session, so that concurrent writes open one.
    opening: tokio::sync::Mutex<()>,
    /// Jitter for the backoff.
    rng: Mutex<Rng>,
}

/// A client of the key-value service. Cheap to clone; clones share the
/// leader guess and the session, and may be used from many tasks at once.
pub struct Clerk<C> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for Clerk<C> {
    fn clone(&self) -> Self {
        Clerk {
            inner: Arc::clone(&self.inner),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl<C: Connector> Clerk<C> {
    /// A clerk that reaches the cluster through `connector`.
    pub fn new(connector: C, config: ClerkConfig) -> Result<Clerk<C>, Error> {
        if config.servers.is_empty() {
            return Err(Error::InvalidConfig("the servers list is empty".into()));
        }
        if config.attempt_timeout.is_zero() {
            return Err(Error::InvalidConfig(
                "attempt_timeout must be positive".into(),
            ));
        }
        if config.backoff_min.is_zero() || config.backoff_max < config.backoff_min {
            return Err(Error::InvalidConfig(
                "backoff_min must be positive and at most backoff_max".into(),
            ));
        }
        if config.writes_in_flight_max == 0 || config.writes_in_flight_max > SESSION_WINDOW_MAX {
            return Err(Error::InvalidConfig(format!(
                "writes_in_flight_max must be in 1..={SESSION_WINDOW_MAX}"
            )));
        }
        let rng = Rng::new(config.seed);
        Ok(Clerk {
            inner: Arc::new(Inner {
                connector,
                config,
                leader: AtomicU64::new(0),
                session: Mutex::new(None),
                window: Notify::new(),
                opening: tokio::sync::Mutex::new(()),
                rng: Mutex::new(rng),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClerkConfig {
        &self.inner.config
    }

    /// The server the clerk believes leads, if it knows one.
    pub fn leader(&self) -> Option<ServerId> {
        match self.inner.leader.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    /// The session the clerk writes through, if one is open.
    pub fn session(&self) -> Option<SessionId> {
        lock(&self.inner.session).as_ref().map(|session| session.id)
    }

    fn default_deadline(&self) -> Instant {
        Instant::now() + self.inner.config.deadline
    }

    /// Reads `key`: its value, or `None` when it is missing.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, Error> {
        self.get_by(key, self.default_deadline()).await
    }

    /// Asks `server` itself (not the leader) for its status, in one attempt
    /// bounded by the attempt timeout.
    pub async fn status(&self, server: ServerId) -> Result<NodeStatus, Error> {
        let timeout = self.inner.config.attempt_timeout;
        let call = self.inner.connector.call(server, Request::Status);
        let last_error = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(Ok(Reply::Status(status)))) => return Ok(status),
            Ok(Ok(Ok(reply))) => {
                return Err(Error::UnexpectedReply {
                    reply,
                    may_have_happened: false,
                })
            }
            Ok(Ok(Err(error))) => error.to_string(),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        Err(Error::Timeout {
            may_have_happened: false,
            last_error,
        })
    }

    /// Like [`Clerk::get`], giving up at `deadline`.
    pub async fn get_by(
        &self,
        key: impl Into<Bytes>,
        deadline: Instant,
    ) -> Result<Option<Bytes>, Error> {
        let key = key.into();
        check_key(&key).map_err(|error| Error::Rejected {
            error,
            may_have_happened: false,
        })?;

        let mut unused = false;
        let request = || Request::Get { key: key.clone() };
        match self.call_until(deadline, request, &mut unused).await {
            Ok(Reply::Value { value }) => Ok(value),
            Ok(reply) => Err(Error::UnexpectedReply {
                reply,
                may_have_happened: false,
            }),
            Err(Failure::Deadline { last_error }) => Err(Error::Timeout {
                may_have_happened: false,
                last_error,
            }),
            Err(Failure::Refused(error)) => Err(Error::Rejected {
                error,
                may_have_happened: false,
            }),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<(), Error> {
        let op = WriteOp::Put {
            key: key.into(),
            value: value.into(),
        };
        self.write_by(op, self.default_deadline()).await
    }

    /// Adds `value` at the end of the value of `key` (sets it when missing).
    pub async fn append(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), Error> {
        let op = WriteOp::Append {
            key: key.into(),
            value: value.into(),
        };
        self.write_by(op, self.default_deadline()).await
    }

    /// Runs `op`, giving up at `deadline`: a read returns the value read,
    /// a write `None`.
    pub async fn execute(&self, op: Op, deadline: Instant) -> Result<Option<Bytes>, Error> {
        match op {
            Op::Get { key } => self.get_by(key, deadline).await,
            Op::Write(op) => self.write_by(op, deadline).await.map(|()| None),
        }
    }

    /// Applies `op` exactly once, or reports whether it may have happened,
    /// giving up at `deadline`.
    ///
    /// Every attempt carries the same session and sequence number, so the
    /// service applies the write at most once. When the session turns out
    /// to have expired before any attempt could have taken effect, the
    /// clerk opens a new session and starts over; when an attempt was in
    /// doubt, it returns [`Error::SessionExpired`].
    pub async fn write_by(&self, op: WriteOp, deadline: Instant) -> Result<(), Error> {
        op.check_limits().map_err(|error| Error::Rejected {
            error,
            may_have_happened: false,
        })?;

        let mut may_have_happened = false;
        loop {
            let (session, seq) = match self.begin_write(deadline).await {
                Ok(slot) => slot,
                Err(last_error) => {
                    return Err(Error::Timeout {
                        may_have_happened,
                        last_error,
                    })
                }
            };
            let request = || Request::Write {
                session,
                seq,
                seq_lowest_pending: self.seq_lowest_pending(session, seq),
                op: op.clone(),
            };
            let result = self
                .call_until(deadline, request, &mut may_have_happened)
                .await;
            self.end_write(session, seq);

            let error = match result {
                Ok(Reply::Written) => return Ok(()),
                Ok(reply) => {
                    return Err(Error::UnexpectedReply {
                        reply,
                        may_have_happened: true,
                    })
                }
                Err(Failure::Deadline { last_error }) => {
                    return Err(Error::Timeout {
                        may_have_happened,
                        last_error,
                    })
                }
                Err(Failure::Refused(error)) => error,
            };
            match error {
                ServiceError::SessionExpired { .. } => {
                    self.forget_session(session);
                    if may_have_happened {
                        return Err(Error::SessionExpired);
                    }
                    debug!(
                        session,
                        seq, "session expired before the write; opening a new one"
                    );
                }
                // The same answer every attempt of this write gets.
                ServiceError::TooLarge { .. } => {
                    return Err(Error::Rejected {
                        error,
                        may_have_happened: false,
                    })
                }
                error => {
                    return Err(Error::Rejected {
                        error,
                        may_have_happened,
                    })
                }
            }
        }
    }

    /// Takes a sequence number in the current session, opening a session
    /// when there is none and waiting while the window is full. Fails with
    /// the last error seen when the deadline passes first.
    async fn begin_write(&self, deadline: Instant) -> Result<(SessionId, u64), String> {
        loop {
            let window_freed = self.inner.window.notified();
            {
                let mut guard = lock(&self.inner.session);
                if let Some(session) = guard.as_mut() {
                    let window = session.seq_next - session.seq_lowest_pending();
                    if window < self.inner.config.writes_in_flight_max {
                        let seq = session.seq_next;
                        session.seq_next += 1;
                        session.in_flight.insert(seq);
                        return Ok((session.id, seq));
                    }
                }
            }
            if self.session().is_some() {
                trace!("write window full; waiting");
                if tokio::time::timeout_at(deadline, window_freed)
                    .await
                    .is_err()
                {
                    return Err("the write window stayed full".into());
                }
                continue;
            }
            self.open_session(deadline).await?;
        }
    }

    /// Opens a session unless another task has just done so.
    async fn open_session(&self, deadline: Instant) -> Result<(), String> {
        let Ok(_opening) = tokio::time::timeout_at(deadline, self.inner.opening.lock()).await
        else {
            return Err("timed out waiting for another task to open a session".into());
        };
        if self.session().is_some() {
            return Ok(());
        }
        let mut unused = false;
        match self
            .call_until(deadline, || Request::OpenSession, &mut unused)
            .await
        {
            Ok(Reply::SessionOpened { session }) => {
                debug!(session, "session opened");
                *lock(&self.inner.session) = Some(Session {
                    id: session,
                    seq_next: 1,
                    in_flight: BTreeSet::new(),
                });
                self.inner.window.notify_waiters();
                Ok(())
            }
            Ok(reply) => Err(format!("unexpected reply to open a session: {reply:?}")),
            Err(Failure::Deadline { last_error }) => Err(last_error),
            Err(Failure::Refused(error)) => Err(format!("opening a session: {error}")),
        }
    }

    fn seq_lowest_pending(&self, session_id: SessionId, seq: u64) -> u64 {
        match lock(&self.inner.session).as_ref() {
            Some(session) if session.id == session_id => session.seq_lowest_pending().min(seq),
            _ => seq,
        }
    }

    fn end_write(&self, session_id: SessionId, seq: u64) {
        if let Some(session) = lock(&self.inner.session).as_mut() {
            if session.id == session_id {
                session.in_flight.remove(&seq);
            }
        }
        self.inner.window.notify_waiters();
    }

    fn forget_session(&self, session_id: SessionId) {
        let mut guard = lock(&self.inner.session);
        if guard
            .as_ref()
            .is_some_and(|session| session.id == session_id)
        {
            *guard = None;
        }
        drop(guard);
        self.inner.window.notify_waiters();
    }

    fn first_target(&self) -> ServerId {
        self.leader()
            .unwrap_or_else(|| self.inner.config.servers[0])
    }

    fn next_after(&self, server: ServerId) -> ServerId {
        let servers = &self.inner.config.servers;
        let position = servers
            .iter()
            .position(|s| *s == server)
            .unwrap_or(servers.len() - 1);
        servers[(position + 1) % servers.len()]
    }

    /// Sends the request `make_request` builds until a server answers with
    /// a reply, the service refuses it for good, or `deadline` passes.
    /// Follows leader hints, rotates through the servers, and backs off
    /// after failures. Sets `may_have_happened` when an attempt may have
    /// reached a server that could have acted on it.
    async fn call_until(
        &self,
        deadline: Instant,
        mut make_request: impl FnMut() -> Request,
        may_have_happened: &mut bool,
    ) -> Result<Reply, Failure> {
        let config = &self.inner.config;
        let mut target = self.first_target();
        let mut failures: u32 = 0;
        let mut last_error = String::from("no attempt finished");
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Failure::Deadline { last_error });
            }
            let attempt_deadline = (now + config.attempt_timeout).min(deadline);
            let call = self.inner.connector.call(target, make_request());
            let outcome = tokio::time::timeout_at(attempt_deadline, call).await;

            // Where to go next: a fresh hint, the same server, or the next.
            let mut hint = None;
            let mut stay = false;
            match outcome {
                Ok(Ok(Ok(reply))) => {
                    self.inner.leader.store(target, Ordering::Relaxed);
                    return Ok(reply);
                }
                Ok(Ok(Err(error))) => {
                    *may_have_happened |= !error.is_definitely_not_applied();
                    match &error {
                        ServiceError::NotLeader { leader_hint }
                        | ServiceError::LeadershipLost { leader_hint } => hint = *leader_hint,
                        ServiceError::Overloaded | ServiceError::WindowExceeded { .. } => {
                            stay = true
                        }
                        ServiceError::Timeout | ServiceError::ShuttingDown => {}
                        ServiceError::TooLarge { .. }
                        | ServiceError::SessionExpired { .. }
                        | ServiceError::StaleSequence { .. }
                        | ServiceError::Malformed { .. } => return Err(Failure::Refused(error)),
                    }
                    last_error = format!("server {target}: {error}");
                }
                Ok(Err(CallError::NotSent { reason })) => {
                    last_error = format!("server {target}: not sent: {reason}");
                }
                Ok(Err(CallError::NoAnswer { reason })) => {
                    *may_have_happened = true;
                    last_error = format!("server {target}: no answer: {reason}");
                }
                Err(_elapsed) => {
                    *may_have_happened = true;
                    last_error = format!("server {target}: no answer within the attempt timeout");
                }
            }
            trace!(target, %last_error, "attempt failed");
            failures += 1;

            let hint = hint.filter(|h| *h != target && config.servers.contains(h));
            if let Some(leader) = hint {
                self.inner.leader.store(leader, Ordering::Relaxed);
            } else if !stay {
                // The guess failed: forget it unless another task replaced it.
                let _ = self.inner.leader.compare_exchange(
                    target,
                    0,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            let next = match hint {
                Some(leader) => leader,
                None if stay => target,
                None => self.next_after(target),
            };

            // Follow a fresh hint at once, but back off at least once per
            // round through the servers so that stale hints cannot spin.
            let round = failures.saturating_sub(1) / config.servers.len() as u32;
            let pause_needed = hint.is_none() || failures % config.servers.len() as u32 == 0;
            if pause_needed {
                let pause = {
                    let mut rng = lock(&self.inner.rng);
                    backoff_delay(config.backoff_min, config.backoff_max, round, &mut rng)
                };
                tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
            }
            target = next;
        }
    }
}
