//! Helpers shared by the test modules.

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, LogIndex, Snapshot, SnapshotMeta, Term};

/// A small seeded generator (SplitMix64), so that a failing seed replays.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// The entry the crash tests write at `index` in `term`: its payload is a
/// function of both, so a reader can tell a right entry from a torn or
/// stale one.
pub fn expected_entry(index: LogIndex, term: Term) -> Entry {
    let length = ((index * 37 + term * 11) % 600) as usize;
    let payload: Vec<u8> = (0..length)
        .map(|offset| (index as u8) ^ (term as u8).wrapping_mul(3) ^ (offset as u8))
        .collect();
    Entry {
        term,
        index,
        payload: EntryPayload::Command(Bytes::from(payload)),
    }
}

/// The snapshot the crash tests install at `last_index` in `last_term`.
pub fn expected_snapshot(last_index: LogIndex, last_term: Term) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            last_index,
            last_term,
        },
        data: Bytes::from(format!(
            "state machine up to {last_index} in term {last_term}"
        )),
    }
}

/// Whether this process runs as root, found without `unsafe` through the
/// owner of a file it creates.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::NamedTempFile::new().expect("create probe file");
    probe.as_file().metadata().expect("stat probe file").uid() == 0
}
