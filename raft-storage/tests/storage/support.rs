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

/// What the data of every crash-test snapshot starts with.
const SNAPSHOT_MAGIC: &[u8; 8] = b"crashsn1";
/// Magic, last index, last term, body length.
const SNAPSHOT_HEADER_BYTES: usize = 8 + 8 + 8 + 8;
const SNAPSHOT_CRC_BYTES: usize = 4;

/// How long the body of the snapshot at `last_index` in `last_term` is:
/// mostly under 4 KiB, one in four between 64 and 512 KiB, so that large
/// ones span many of RocksDB's 32 KiB WAL blocks and a kill can land in
/// the middle of writing one.
fn snapshot_body_bytes(last_index: LogIndex, last_term: Term) -> usize {
    let mix = (last_index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ last_term)
        .wrapping_mul(0xbf58_476d_1ce4_e5b9)
        >> 20;
    if mix % 4 == 0 {
        (64 << 10) + (mix % (448 << 10)) as usize
    } else {
        (mix % (4 << 10)) as usize
    }
}

/// The snapshot the crash tests install at `last_index` in `last_term`.
///
/// Its data describes itself: a header with the position it stands for
/// and the body's length, a body that follows from the position, and a
/// CRC-32 of all of it. So [`snapshot_position`] tells, from the data
/// alone, a whole snapshot from a torn one, and its position from that of
/// the metadata stored beside it.
pub fn expected_snapshot(last_index: LogIndex, last_term: Term) -> Snapshot {
    let body_bytes = snapshot_body_bytes(last_index, last_term);
    let mut data = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body_bytes + SNAPSHOT_CRC_BYTES);
    data.extend_from_slice(SNAPSHOT_MAGIC);
    data.extend_from_slice(&last_index.to_be_bytes());
    data.extend_from_slice(&last_term.to_be_bytes());
    data.extend_from_slice(&(body_bytes as u64).to_be_bytes());
    data.extend((0..body_bytes).map(|offset| {
        (last_index as u8).wrapping_mul(31)
            ^ (last_term as u8)
            ^ (offset as u8)
            ^ (offset >> 8) as u8
    }));
    let crc = crc32fast::hash(&data);
    data.extend_from_slice(&crc.to_be_bytes());
    Snapshot {
        meta: SnapshotMeta {
            last_index,
            last_term,
        },
        data: Bytes::from(data),
    }
}

/// The position a crash-test snapshot's data says it stands for, once its
/// length and checksum show it whole.
pub fn snapshot_position(data: &[u8]) -> Result<SnapshotMeta, String> {
    let minimum = SNAPSHOT_HEADER_BYTES + SNAPSHOT_CRC_BYTES;
    if data.len() < minimum || !data.starts_with(SNAPSHOT_MAGIC) {
        return Err(format!("{} bytes without a snapshot header", data.len()));
    }
    let number = |at: usize| u64::from_be_bytes(data[at..at + 8].try_into().expect("8 bytes"));
    let (last_index, last_term, body_bytes) = (number(8), number(16), number(24));
    if data.len() as u64 != minimum as u64 + body_bytes {
        return Err(format!(
            "{} bytes for a body of {body_bytes}: torn or padded",
            data.len()
        ));
    }
    let (covered, crc) = data.split_at(data.len() - SNAPSHOT_CRC_BYTES);
    let crc_stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    if crc32fast::hash(covered) != crc_stored {
        return Err("checksum mismatch".into());
    }
    Ok(SnapshotMeta {
        last_index,
        last_term,
    })
}

#[test]
fn crash_snapshot_data_names_its_position_and_shows_damage() {
    for (index, term) in [(1, 1), (77, 3), (1_000_003, 9), (4, 4), (8, 2)] {
        let snapshot = expected_snapshot(index, term);
        assert_eq!(snapshot_position(&snapshot.data), Ok(snapshot.meta));
        let torn = &snapshot.data[..snapshot.data.len() - 1];
        assert!(snapshot_position(torn).is_err(), "{index} {term}: torn");
        let mut flipped = snapshot.data.to_vec();
        flipped[SNAPSHOT_HEADER_BYTES / 2] ^= 1;
        assert!(
            snapshot_position(&flipped).is_err(),
            "{index} {term}: flipped"
        );
    }
    let large = (1..200u64)
        .filter(|&index| expected_snapshot(index, 1).data.len() > 64 << 10)
        .count();
    assert!(large > 20, "only {large} of 199 snapshots are large");
}

/// Whether this process runs as root, found without `unsafe` through the
/// owner of a file it creates.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::NamedTempFile::new().expect("create probe file");
    probe.as_file().metadata().expect("stat probe file").uid() == 0
}
