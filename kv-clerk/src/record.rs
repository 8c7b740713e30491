//! Recording what a client did, for a linearizability check.
//!
//! [`RecordingClerk`] wraps a [`Clerk`] for one logical client (one
//! operation in flight at a time) and reports every operation, when it ends,
//! to a [`Recorder`]: what it was, when it was called, and how it ended.
//! The record carries instants of tokio's clock, which a simulation pauses,
//! so that virtual time appears in the history. `kv-service` turns records
//! into the JSON Lines of `shared/HISTORY.md`.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::clerk::{Clerk, Error, Op};
use crate::connector::Connector;

/// How a recorded operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpEnd {
    /// It completed at `at`. `output` is the value read by a get (`None`
    /// for a missing key), and `None` for a write.
    Ok {
        /// When the answer arrived.
        at: Instant,
        /// What a get read.
        output: Option<Bytes>,
    },
    /// It certainly had no effect; the clerk knew so at `at`.
    Fail {
        /// When the clerk gave up.
        at: Instant,
    },
    /// It may have had an effect or not: its fate is unknown.
    Unknown,
}

/// One finished operation of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord {
    /// The client that issued it.
    pub client: u64,
    /// What it was.
    pub op: Op,
    /// When it was called, just before the first request was sent.
    pub call: Instant,
    /// How it ended.
    pub end: OpEnd,
}

/// Receives the records of finished operations. Called from the task that
/// ran the operation, when it ends.
pub trait Recorder: Send + Sync + 'static {
    /// Takes one record.
    fn record(&self, record: OpRecord);
}

/// A clerk that records each operation of one logical client.
///
/// One `RecordingClerk` stands for one client of the history format: use it
/// from one task at a time (it takes `&mut self` to make that hold). Several
/// may share one [`Clerk`].
pub struct RecordingClerk<C> {
    clerk: Clerk<C>,
    client: u64,
    recorder: Arc<dyn Recorder>,
}

impl<C: Connector> RecordingClerk<C> {
    /// Records the operations of `client` run through `clerk`.
    pub fn new(clerk: Clerk<C>, client: u64, recorder: Arc<dyn Recorder>) -> RecordingClerk<C> {
        RecordingClerk {
            clerk,
            client,
            recorder,
        }
    }

    /// The wrapped clerk.
    pub fn clerk(&self) -> &Clerk<C> {
        &self.clerk
    }

    /// Runs `op` through the clerk, giving up at `deadline`, and records it.
    pub async fn execute(&mut self, op: Op, deadline: Instant) -> Result<Option<Bytes>, Error> {
        let is_read = matches!(op, Op::Get { .. });
        let call = Instant::now();
        let result = self.clerk.execute(op.clone(), deadline).await;
        let at = Instant::now();
        let end = match &result {
            Ok(output) => OpEnd::Ok {
                at,
                output: output.clone(),
            },
            // A read that timed out had no effect, but its answer is
            // unknown: the format wants timeouts as unknown, never failed.
            Err(Error::Timeout { .. }) if is_read => OpEnd::Unknown,
            Err(error) if error.may_have_happened() => OpEnd::Unknown,
            Err(_) => OpEnd::Fail { at },
        };
        self.recorder.record(OpRecord {
            client: self.client,
            op,
            call,
            end,
        });
        result
    }

    /// Reads `key`, recording it.
    pub async fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<Bytes>, Error> {
        let deadline = Instant::now() + self.clerk.config().deadline;
        let op = Op::Get { key: key.into() };
        self.execute(op, deadline).await
    }

    /// Sets `key` to `value`, recording it.
    pub async fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + self.clerk.config().deadline;
        let op = Op::Write(crate::protocol::WriteOp::Put {
            key: key.into(),
            value: value.into(),
        });
        self.execute(op, deadline).await.map(|_| ())
    }

    /// Appends `value` to `key`, recording it.
    pub async fn append(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + self.clerk.config().deadline;
        let op = Op::Write(crate::protocol::WriteOp::Append {
            key: key.into(),
            value: value.into(),
        });
        self.execute(op, deadline).await.map(|_| ())
    }
}
