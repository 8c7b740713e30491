//! The on-disk layout: column families, keys, and how a value is framed.
//!
//! ```text
//! column family "default" (metadata)
//!   "format_version" -> u32, big-endian (plain, so any version can read it)
//!   "hard_state"     -> record(HardState)
//!   "snapshot_meta"  -> record(SnapshotMeta)
//!   "snapshot_data"  -> record(raw snapshot bytes)
//! column family "entries"
//!   index as u64, big-endian -> record(Entry)
//!
//! record(x) = CRC-32 (IEEE) of payload, u32 big-endian ++ payload
//! payload   = rmp-serde encoding of x (raw bytes for snapshot data)
//! ```
//!
//! Big-endian keys sort in index order under RocksDB's bytewise comparator,
//! so a range of the log is a range of keys. RocksDB checksums its own
//! blocks and WAL records; the CRC in each record adds an end-to-end check
//! that names the damaged record, and the index stored inside an entry is
//! compared with its key, so a value under the wrong key is caught too.

use raft_core::LogIndex;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The on-disk format this build reads and writes. Raise it on any change
/// to the layout above; an older directory is then refused at open.
pub const FORMAT_VERSION: u32 = 1;

/// The column family of log entries.
pub(crate) const ENTRIES_CF: &str = "entries";
/// RocksDB's always-present column family, which holds the metadata keys.
pub(crate) const META_CF: &str = "default";

pub(crate) const FORMAT_VERSION_KEY: &[u8] = b"format_version";
pub(crate) const HARD_STATE_KEY: &[u8] = b"hard_state";
pub(crate) const SNAPSHOT_META_KEY: &[u8] = b"snapshot_meta";
pub(crate) const SNAPSHOT_DATA_KEY: &[u8] = b"snapshot_data";

/// Bytes of the CRC in front of every record.
const CRC_LEN: usize = 4;

/// The key of the entry at `index`.
pub(crate) fn entry_key(index: LogIndex) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index an entry key stands for.
pub(crate) fn decode_entry_key(key: &[u8]) -> Result<LogIndex, String> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| format!("entry key of {} bytes, expected 8", key.len()))?;
    Ok(LogIndex::from_be_bytes(bytes))
}

/// Frames `value` as a record: CRC, then its rmp-serde encoding.
///
/// `size_hint` is the expected payload size, so the buffer is allocated once.
pub(crate) fn encode_record<T: Serialize>(value: &T, size_hint: usize) -> Result<Vec<u8>, String> {
    let mut record = Vec::with_capacity(CRC_LEN + size_hint);
    record.extend_from_slice(&[0; CRC_LEN]);
    rmp_serde::encode::write(&mut record, value).map_err(|error| error.to_string())?;
    seal(&mut record);
    Ok(record)
}

/// Frames raw bytes as a record.
pub(crate) fn encode_raw_record(payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(CRC_LEN + payload.len());
    record.extend_from_slice(&[0; CRC_LEN]);
    record.extend_from_slice(payload);
    seal(&mut record);
    record
}

/// Decodes a record written by [`encode_record`].
pub(crate) fn decode_record<T: DeserializeOwned>(record: &[u8]) -> Result<T, String> {
    let payload = open_record(record)?;
    rmp_serde::from_slice(payload).map_err(|error| format!("undecodable record: {error}"))
}

/// Checks a record's CRC and returns its payload.
pub(crate) fn open_record(record: &[u8]) -> Result<&[u8], String> {
    if record.len() < CRC_LEN {
        return Err(format!(
            "record of {} bytes is shorter than its checksum",
            record.len()
        ));
    }
    let (crc_bytes, payload) = record.split_at(CRC_LEN);
    let crc_stored = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let crc_computed = crc32fast::hash(payload);
    if crc_stored != crc_computed {
        return Err(format!(
            "checksum mismatch (stored {crc_stored:#010x}, computed {crc_computed:#010x})"
        ));
    }
    Ok(payload)
}

/// Writes the CRC of `record[CRC_LEN..]` into its first bytes.
fn seal(record: &mut [u8]) {
    let crc = crc32fast::hash(&record[CRC_LEN..]);
    record[..CRC_LEN].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use raft_core::{Entry, EntryPayload};

    fn entry() -> Entry {
        Entry {
            term: 7,
            index: 42,
            payload: EntryPayload::Command(Bytes::from_static(b"payload")),
        }
    }

    #[test]
    fn entry_keys_sort_in_index_order() {
        let indexes = [0u64, 1, 255, 256, 65_536, u64::MAX / 2, u64::MAX];
        for pair in indexes.windows(2) {
            assert!(entry_key(pair[0]) < entry_key(pair[1]), "{pair:?}");
        }
        assert_eq!(decode_entry_key(&entry_key(300)), Ok(300));
        assert!(decode_entry_key(b"short").is_err());
    }

    #[test]
    fn record_round_trips() {
        let record = encode_record(&entry(), 0).expect("encode");
        assert_eq!(decode_record::<Entry>(&record), Ok(entry()));
        let raw = encode_raw_record(b"raw bytes");
        assert_eq!(open_record(&raw), Ok(&b"raw bytes"[..]));
    }

    #[test]
    fn flipped_bit_in_record_is_a_checksum_error() {
        let mut record = encode_record(&entry(), 0).expect("encode");
        let last = record.len() - 1;
        record[last] ^= 0x01;
        let error = decode_record::<Entry>(&record).expect_err("corrupted record decoded");
        assert!(error.contains("checksum mismatch"), "{error}");
    }

    #[test]
    fn truncated_record_is_an_error_not_a_panic() {
        let record = encode_record(&entry(), 0).expect("encode");
        for length in 0..record.len() {
            assert!(
                decode_record::<Entry>(&record[..length]).is_err(),
                "length {length}"
            );
        }
    }

    #[test]
    fn record_with_valid_checksum_but_garbage_payload_is_undecodable() {
        let garbage = encode_raw_record(&[0xc1, 0xff, 0x00]);
        let error = decode_record::<Entry>(&garbage).expect_err("garbage decoded");
        assert!(error.contains("undecodable"), "{error}");
    }
}
