//! A state machine of fixed size for the space test: `SLOTS` values, each
//! overwritten again and again, so that its snapshot stays small however
//! long the run (raft-core's `LogMachine` records every command and grows).

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft_core::{LogIndex, SnapshotMeta, StateMachine, StateMachineError};

/// How many values the machine holds.
pub const SLOTS: usize = 100;

/// What the machine holds; clones of a [`SlotMachine`] share it, so a test
/// can read it while the node runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots {
    /// The index of the last command applied, or of the snapshot restored.
    pub applied_index: LogIndex,
    /// The value of each slot; empty until first written.
    pub values: Vec<Bytes>,
}

/// Applies commands `[slot: u8] ++ value`: the value replaces the slot's.
#[derive(Clone, Debug)]
pub struct SlotMachine {
    slots: Arc<Mutex<Slots>>,
}

impl SlotMachine {
    pub fn new() -> SlotMachine {
        SlotMachine {
            slots: Arc::new(Mutex::new(Slots {
                applied_index: 0,
                values: vec![Bytes::new(); SLOTS],
            })),
        }
    }

    pub fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The command that writes `value` into `slot`.
pub fn slot_command(slot: usize, value: &[u8]) -> Bytes {
    assert!(slot < SLOTS, "slot {slot} out of range");
    let mut command = BytesMut::with_capacity(1 + value.len());
    command.put_u8(slot as u8);
    command.put_slice(value);
    command.freeze()
}

fn malformed(operation: &str, detail: &'static str) -> StateMachineError {
    StateMachineError::new(operation, detail)
}

#[async_trait]
impl StateMachine for SlotMachine {
    type Response = ();

    async fn apply(&mut self, index: LogIndex, command: Bytes) {
        let mut slots = self.slots();
        slots.applied_index = index;
        // Commands come only from the test, which always names a slot.
        let Some((&slot, value)) = command.split_first() else {
            return;
        };
        if let Some(stored) = slots.values.get_mut(slot as usize) {
            *stored = command.slice(1..1 + value.len());
        }
    }

    async fn snapshot(&mut self, meta: SnapshotMeta) -> Result<Bytes, StateMachineError> {
        let slots = self.slots();
        // `meta` is the driver's last applied entry, which may be a blank
        // entry of a new leader after the last command this machine saw.
        assert!(meta.last_index >= slots.applied_index, "snapshot position");
        let mut data = BytesMut::new();
        data.put_u64(meta.last_index);
        for value in &slots.values {
            data.put_u32(value.len() as u32);
            data.put_slice(value);
        }
        Ok(data.freeze())
    }

    async fn restore(
        &mut self,
        meta: SnapshotMeta,
        mut data: Bytes,
    ) -> Result<(), StateMachineError> {
        const OPERATION: &str = "restore slots";
        if data.remaining() < 8 || data.get_u64() != meta.last_index {
            return Err(malformed(OPERATION, "snapshot names another position"));
        }
        let mut values = Vec::with_capacity(SLOTS);
        for _ in 0..SLOTS {
            if data.remaining() < 4 {
                return Err(malformed(OPERATION, "snapshot is truncated"));
            }
            let length = data.get_u32() as usize;
            if data.remaining() < length {
                return Err(malformed(OPERATION, "snapshot is truncated"));
            }
            values.push(data.split_to(length));
        }
        if data.has_remaining() {
            return Err(malformed(OPERATION, "snapshot has trailing bytes"));
        }
        *self.slots() = Slots {
            applied_index: meta.last_index,
            values,
        };
        Ok(())
    }
}

#[tokio::test]
async fn slot_machine_snapshot_restores_the_same_slots() {
    let mut machine = SlotMachine::new();
    for index in 1..=250u64 {
        let value = format!("value {index}");
        machine
            .apply(
                index,
                slot_command(index as usize % SLOTS, value.as_bytes()),
            )
            .await;
    }
    let meta = SnapshotMeta {
        last_index: 250,
        last_term: 3,
    };
    let data = machine.snapshot(meta).await.expect("snapshot");

    let mut restored = SlotMachine::new();
    restored.restore(meta, data.clone()).await.expect("restore");
    assert_eq!(*restored.slots(), *machine.slots());
    assert_eq!(&restored.slots().values[7][..], b"value 207");

    let truncated = data.slice(..data.len() - 1);
    assert!(restored.restore(meta, truncated).await.is_err());
    let elsewhere = SnapshotMeta {
        last_index: 249,
        last_term: 3,
    };
    assert!(restored.restore(elsewhere, data).await.is_err());
}
