//! Turns a clerk's operation records into a history (`shared/HISTORY.md`).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use kv_clerk::{Op, OpEnd, OpRecord, Recorder, WriteOp};
use tokio::time::Instant;
use tracing::error;

use crate::history::{HistoryError, HistoryWriter, OpKind, Operation, Output, Status};

/// A [`kv_clerk::Recorder`] that keeps the history in memory and, when
/// given a file, also writes each operation there as it ends.
///
/// Times are nanoseconds since the recorder's origin on tokio's clock, so
/// all clients that share a recorder share a clock. Keys and values become
/// strings; bytes that are not UTF-8 are replaced (tests use printable
/// keys and values, as the format asks).
pub struct HistoryRecorder {
    origin: Instant,
    operations: Mutex<Vec<Operation>>,
    file: Option<Mutex<HistoryWriter<BufWriter<File>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl HistoryRecorder {
    /// A recorder whose clock reads zero now.
    pub fn new() -> Arc<HistoryRecorder> {
        Arc::new(HistoryRecorder {
            origin: Instant::now(),
            operations: Mutex::new(Vec::new()),
            file: None,
        })
    }

    /// A recorder that also writes every operation to a new file at `path`
    /// as it ends.
    pub fn with_file(path: impl AsRef<Path>) -> Result<Arc<HistoryRecorder>, HistoryError> {
        let file = File::create(path)?;
        Ok(Arc::new(HistoryRecorder {
            origin: Instant::now(),
            operations: Mutex::new(Vec::new()),
            file: Some(Mutex::new(HistoryWriter::new(BufWriter::new(file)))),
        }))
    }

    /// The operations recorded so far, in the order they ended.
    pub fn operations(&self) -> Vec<Operation> {
        lock(&self.operations).clone()
    }

    /// Nanoseconds from the recorder's origin to `at`, on the clock of the
    /// history (0 for instants before the origin).
    pub fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// Converts one clerk record to a history operation.
    pub fn operation(&self, record: &OpRecord) -> Operation {
        let text = |bytes: &Bytes| String::from_utf8_lossy(bytes).into_owned();
        let (op, key, value) = match &record.op {
            Op::Get { key } => (OpKind::Get, key, None),
            Op::Write(WriteOp::Put { key, value }) => (OpKind::Put, key, Some(text(value))),
            Op::Write(WriteOp::Append { key, value }) => (OpKind::Append, key, Some(text(value))),
        };
        let (status, output, return_at) = match &record.end {
            OpEnd::Ok { at, output } => {
                let output = (op == OpKind::Get)
                    .then(|| Output::Text(output.as_ref().map(text).unwrap_or_default()));
                (Status::Ok, output, Some(self.nanos(*at)))
            }
            OpEnd::Fail { at } => (Status::Fail, None, Some(self.nanos(*at))),
            OpEnd::Unknown => (Status::Info, None, None),
        };
        Operation {
            client: record.client,
            op,
            key: text(key),
            value,
            expected: None,
            output,
            call: self.nanos(record.call),
            return_at,
            status,
        }
    }
}

impl Recorder for HistoryRecorder {
    fn record(&self, record: OpRecord) {
        let operation = self.operation(&record);
        if let Some(file) = &self.file {
            if let Err(error) = lock(file).write(&operation) {
                error!(%error, "history file write failed");
            }
        }
        lock(&self.operations).push(operation);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn records_become_operations_of_the_format() {
        let recorder = HistoryRecorder::new();
        let call = Instant::now() + Duration::from_micros(5);
        let at = call + Duration::from_micros(7);
        let get = OpRecord {
            client: 4,
            op: Op::Get { key: "k".into() },
            call,
            end: OpEnd::Ok { at, output: None },
        };
        let append = OpRecord {
            client: 4,
            op: Op::Write(WriteOp::Append {
                key: "k".into(),
                value: "x".into(),
            }),
            call,
            end: OpEnd::Unknown,
        };
        recorder.record(get);
        recorder.record(append);

        let operations = recorder.operations();
        assert_eq!(operations[0].op, OpKind::Get);
        assert_eq!(operations[0].output, Some(Output::Text(String::new())));
        assert_eq!(
            (operations[0].call, operations[0].return_at),
            (5_000, Some(12_000))
        );
        assert_eq!(operations[1].status, Status::Info);
        assert_eq!(operations[1].return_at, None);
        assert_eq!(operations[1].value.as_deref(), Some("x"));
        for operation in &operations {
            operation.validate().unwrap();
        }
    }
}
