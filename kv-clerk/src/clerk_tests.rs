//! Tests of the clerk against a scripted in-memory service.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use crate::protocol::{Limit, Reply, Request, Response, ServerId, ServiceError, SessionId};
use crate::{CallError, Clerk, ClerkConfig, Connector, Error, OpEnd, OpRecord, Recorder};
use crate::{Op, RecordingClerk, WriteOp};

/// A one-process stand-in for the cluster, with knobs for failures.
#[derive(Default)]
struct FakeState {
    /// The server that leads; the others answer NotLeader with this hint.
    leader: ServerId,
    /// Servers that hang on every request.
    hanging: HashSet<ServerId>,
    /// Servers that refuse connections.
    unreachable: HashSet<ServerId>,
    next_session: SessionId,
    /// Applied sequence numbers per live session.
    sessions: HashMap<SessionId, HashSet<u64>>,
    store: HashMap<Bytes, Bytes>,
    /// Every request received: (server, request).
    calls: Vec<(ServerId, Request)>,
    /// Lose the answers of this many writes after applying them.
    lose_write_answers: u32,
    /// Expire the session of the next write right after applying it.
    expire_after_next_write: bool,
    /// Pause before answering.
    delay: Duration,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn with_leader(leader: ServerId) -> Fake {
        let fake = Fake::default();
        fake.state().leader = leader;
        fake.state().next_session = 100;
        fake
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }

    fn writes(&self) -> Vec<(SessionId, u64, u64)> {
        let state = self.state();
        let writes = state.calls.iter().filter_map(|(_, request)| match request {
            Request::Write {
                session,
                seq,
                seq_lowest_pending,
                ..
            } => Some((*session, *seq, *seq_lowest_pending)),
            _ => None,
        });
        writes.collect()
    }
}

#[async_trait]
impl Connector for Fake {
    async fn call(&self, server: ServerId, request: Request) -> Result<Response, CallError> {
        let delay = self.state().delay;
        let (hanging, unreachable) = {
            let state = self.state();
            (
                state.hanging.contains(&server),
                state.unreachable.contains(&server),
            )
        };
        if unreachable {
            return Err(CallError::NotSent {
                reason: "connection refused".into(),
            });
        }
        if hanging {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(delay).await;

        let mut state = self.state();
        state.calls.push((server, request.clone()));
        if server != state.leader {
            let leader_hint = Some(state.leader);
            return Ok(Err(ServiceError::NotLeader { leader_hint }));
        }
        match request {
            Request::OpenSession => {
                state.next_session += 1;
                let session = state.next_session;
                state.sessions.insert(session, HashSet::new());
                Ok(Ok(Reply::SessionOpened { session }))
            }
            Request::Get { key } => Ok(Ok(Reply::Value {
                value: state.store.get(&key).cloned(),
            })),
            Request::Status => Ok(Err(ServiceError::Malformed {
                reason: "the fake cluster keeps no status".into(),
            })),
            Request::Write {
                session, seq, op, ..
            } => {
                let Some(applied) = state.sessions.get_mut(&session) else {
                    return Ok(Err(ServiceError::SessionExpired { session }));
                };
                if applied.insert(seq) {
                    let slot = state.store.entry(op.key().clone()).or_default();
                    *slot = match &op {
                        WriteOp::Put { value, .. } => value.clone(),
                        WriteOp::Append { value, .. } => [&slot[..], &value[..]].concat().into(),
                    };
                }
                if state.expire_after_next_write {
                    state.expire_after_next_write = false;
                    state.sessions.remove(&session);
                }
                if state.lose_write_answers > 0 {
                    state.lose_write_answers -= 1;
                    return Err(CallError::NoAnswer {
                        reason: "connection reset".into(),
                    });
                }
                Ok(Ok(Reply::Written))
            }
        }
    }
}

fn config() -> ClerkConfig {
    let mut config = ClerkConfig::new(vec![1, 2, 3]);
    config.attempt_timeout = Duration::from_millis(100);
    config.deadline = Duration::from_secs(2);
    config
}

#[tokio::test(start_paused = true)]
async fn clerk_follows_the_leader_hint_and_then_goes_straight_to_the_leader() {
    let fake = Fake::with_leader(3);
    let clerk = Clerk::new(fake.clone(), config()).unwrap();

    clerk.put("k", "v").await.unwrap();
    assert_eq!(clerk.leader(), Some(3));
    let first_calls = fake.state().calls.len();
    assert_eq!(fake.state().calls[0].0, 1, "starts at the first server");

    assert_eq!(clerk.get("k").await.unwrap(), Some(Bytes::from("v")));
    let calls = &fake.state().calls;
    assert_eq!(
        calls.len(),
        first_calls + 1,
        "one call once the leader is known"
    );
    assert_eq!(calls.last().unwrap().0, 3);
}

#[tokio::test(start_paused = true)]
async fn retried_append_whose_answer_was_lost_is_applied_once() {
    let fake = Fake::with_leader(1);
    fake.state().lose_write_answers = 1;
    let clerk = Clerk::new(fake.clone(), config()).unwrap();

    clerk.append("k", "x").await.unwrap();

    assert_eq!(fake.state().store[&Bytes::from("k")], Bytes::from("x"));
    let writes = fake.writes();
    assert!(writes.len() >= 2, "{writes:?}");
    assert!(
        writes.iter().all(|write| *write == writes[0]),
        "every retry carries the same session and sequence: {writes:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn write_to_an_unreachable_cluster_times_out_as_certainly_not_applied() {
    let fake = Fake::with_leader(1);
    fake.state().unreachable.extend([1, 2, 3]);
    let clerk = Clerk::new(fake.clone(), config()).unwrap();

    let started = Instant::now();
    let error = clerk.put("k", "v").await.unwrap_err();

    assert!(matches!(error, Error::Timeout { .. }), "{error}");
    assert!(!error.may_have_happened());
    assert!(
        started.elapsed() >= config().deadline,
        "gives up only at the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn write_to_a_silent_leader_times_out_as_maybe_applied() {
    let fake = Fake::with_leader(1);
    let clerk = Clerk::new(fake.clone(), config()).unwrap();
    clerk.put("k", "v1").await.unwrap();
    fake.state().hanging.extend([1, 2, 3]);

    let deadline = Instant::now() + Duration::from_millis(500);
    let op = WriteOp::Put {
        key: "k".into(),
        value: "v2".into(),
    };
    let error = clerk.write_by(op, deadline).await.unwrap_err();

    assert!(error.may_have_happened(), "{error}");
    assert!(Instant::now() >= deadline);
}

#[tokio::test(start_paused = true)]
async fn session_expired_before_any_attempt_is_replaced_transparently() {
    let fake = Fake::with_leader(1);
    let clerk = Clerk::new(fake.clone(), config()).unwrap();
    clerk.put("k", "v1").await.unwrap();
    let old_session = clerk.session().unwrap();
    fake.state().sessions.clear();

    clerk.append("k", "v2").await.unwrap();

    assert_ne!(clerk.session(), Some(old_session));
    assert_eq!(fake.state().store[&Bytes::from("k")], Bytes::from("v1v2"));
}

#[tokio::test(start_paused = true)]
async fn session_expired_after_a_doubtful_attempt_reports_may_have_happened() {
    let fake = Fake::with_leader(1);
    let clerk = Clerk::new(fake.clone(), config()).unwrap();
    clerk.put("k", "v1").await.unwrap();
    {
        let mut state = fake.state();
        state.lose_write_answers = 1;
        state.expire_after_next_write = true;
    }

    let error = clerk.append("k", "v2").await.unwrap_err();

    assert!(matches!(error, Error::SessionExpired), "{error}");
    assert!(error.may_have_happened());
    // It did happen, once.
    assert_eq!(fake.state().store[&Bytes::from("k")], Bytes::from("v1v2"));
    // The next write opens a new session and works.
    clerk.append("k", "v3").await.unwrap();
    assert_eq!(fake.state().store[&Bytes::from("k")], Bytes::from("v1v2v3"));
}

#[tokio::test(start_paused = true)]
async fn concurrent_writes_take_distinct_sequences_and_report_the_lowest_pending() {
    let fake = Fake::with_leader(1);
    fake.state().delay = Duration::from_millis(10);
    let clerk = Clerk::new(fake.clone(), config()).unwrap();

    let tasks: Vec<_> = (0..10)
        .map(|n| {
            let clerk = clerk.clone();
            tokio::spawn(async move { clerk.append("k", format!("{n};")).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    let writes = fake.writes();
    let sessions: HashSet<_> = writes.iter().map(|(session, _, _)| *session).collect();
    assert_eq!(sessions.len(), 1, "one session for all tasks");
    let mut seqs: Vec<u64> = writes.iter().map(|(_, seq, _)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    assert!(writes.iter().all(|(_, seq, lowest)| lowest <= seq));
    assert!(
        writes.iter().any(|(_, seq, lowest)| lowest < seq),
        "writes overlapped"
    );

    // Nothing is pending any more: the next write's floor is itself.
    clerk.append("k", "last").await.unwrap();
    let (_, seq, lowest) = *fake.writes().last().unwrap();
    assert_eq!((seq, lowest), (11, 11));
}

#[tokio::test(start_paused = true)]
async fn oversized_key_is_refused_without_a_call() {
    let fake = Fake::with_leader(1);
    let clerk = Clerk::new(fake.clone(), config()).unwrap();
    let key = vec![b'k'; crate::protocol::KEY_BYTES_MAX + 1];

    let error = clerk.put(key.clone(), "v").await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Rejected {
                error: ServiceError::TooLarge {
                    what: Limit::Key,
                    ..
                },
                may_have_happened: false,
            }
        ),
        "{error}"
    );
    assert!(clerk.get(key).await.is_err());
    assert!(fake.state().calls.is_empty());
}

#[test]
fn empty_server_list_is_an_invalid_config() {
    let result = Clerk::new(Fake::default(), ClerkConfig::new(Vec::new()));
    assert!(matches!(result, Err(Error::InvalidConfig(_))));
}

#[derive(Default)]
struct Collect(Mutex<Vec<OpRecord>>);

impl Recorder for Collect {
    fn record(&self, record: OpRecord) {
        self.0.lock().unwrap().push(record);
    }
}

#[tokio::test(start_paused = true)]
async fn recording_clerk_marks_doubtful_writes_unknown_and_refusals_failed() {
    let fake = Fake::with_leader(1);
    let records = Arc::new(Collect::default());
    let clerk = Clerk::new(fake.clone(), config()).unwrap();
    let mut client = RecordingClerk::new(clerk, 7, records.clone());

    client.put("k", "v1").await.unwrap();
    assert_eq!(client.get("k").await.unwrap(), Some(Bytes::from("v1")));
    let oversized = Bytes::from(vec![0; crate::protocol::VALUE_BYTES_MAX + 1]);
    client.append("k", oversized).await.unwrap_err();
    fake.state().hanging.extend([1, 2, 3]);
    let deadline = Instant::now() + Duration::from_millis(300);
    let op = Op::Write(WriteOp::Append {
        key: "k".into(),
        value: "v2".into(),
    });
    client.execute(op, deadline).await.unwrap_err();

    let records = records.0.lock().unwrap();
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|record| record.client == 7));
    assert!(matches!(records[0].end, OpEnd::Ok { output: None, .. }));
    assert_eq!(
        records[1].end,
        OpEnd::Ok {
            at: match records[1].end {
                OpEnd::Ok { at, .. } => at,
                _ => unreachable!(),
            },
            output: Some(Bytes::from("v1")),
        }
    );
    assert!(matches!(records[2].end, OpEnd::Fail { .. }));
    assert_eq!(records[3].end, OpEnd::Unknown);
    assert!(records[3].call >= records[2].call);
}
