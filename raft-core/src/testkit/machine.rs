//! A state machine for tests: it records every command it applies.

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::StateMachineError;
use crate::state_machine::StateMachine;
use crate::types::{LogIndex, SnapshotMeta};

/// The commands a [`LogMachine`] applied, in order, with their indexes.
pub type AppliedLog = Vec<(LogIndex, Bytes)>;

/// Records every applied command; its response is the command's index. Its
/// snapshot is the whole record, so a restored machine knows the history.
/// Clones share the record, so a test can read it while the node runs.
#[derive(Clone, Debug, Default)]
pub struct LogMachine {
    applied: Arc<Mutex<AppliedLog>>,
}

impl LogMachine {
    /// An empty machine.
    pub fn new() -> LogMachine {
        LogMachine::default()
    }

    /// The commands applied so far.
    pub fn applied(&self) -> MutexGuard<'_, AppliedLog> {
        self.applied
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[async_trait]
impl StateMachine for LogMachine {
    type Response = LogIndex;

    async fn apply(&mut self, index: LogIndex, command: Bytes) -> LogIndex {
        self.applied().push((index, command));
        index
    }

    async fn snapshot(&mut self, _meta: SnapshotMeta) -> Result<Bytes, StateMachineError> {
        let applied = self.applied();
        let mut data = BytesMut::new();
        data.put_u64(applied.len() as u64);
        for (index, command) in applied.iter() {
            data.put_u64(*index);
            data.put_u32(command.len() as u32);
            data.put_slice(command);
        }
        Ok(data.freeze())
    }

    async fn restore(
        &mut self,
        _meta: SnapshotMeta,
        mut data: Bytes,
    ) -> Result<(), StateMachineError> {
        let corrupt = || StateMachineError::new("restore snapshot", "snapshot data is truncated");
        let mut restored = Vec::new();
        if data.remaining() < 8 {
            return Err(corrupt());
        }
        let count = data.get_u64();
        for _ in 0..count {
            if data.remaining() < 12 {
                return Err(corrupt());
            }
            let index = data.get_u64();
            let len = data.get_u32() as usize;
            if data.remaining() < len {
                return Err(corrupt());
            }
            restored.push((index, data.split_to(len)));
        }
        *self.applied() = restored;
        Ok(())
    }
}
