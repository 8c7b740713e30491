//! Damaged records: each read that meets one fails with `Corrupted`, naming
//! the directory and the record, and nothing panics. The damage is done
//! through RocksDB directly, with the layout from the README.

use std::path::Path;

use raft_core::{LogStorage, LogWrite, StorageError};
use raft_storage::{Error, OpenOptions, RocksStorage};
use rocksdb::{ColumnFamilyDescriptor, Options, DB};

use crate::support::expected_entry;

/// Creates a storage in `path` holding entries 1..=5 and a hard state.
async fn five_entries(path: &Path) {
    let mut storage = RocksStorage::open(path, OpenOptions::new().create_if_missing(true))
        .expect("create storage");
    let write = LogWrite {
        hard_state: Some(raft_core::HardState {
            term: 1,
            vote: Some(1),
            commit: 3,
        }),
        entries: (1..=5).map(|index| expected_entry(index, 1)).collect(),
    };
    storage.write(write).await.expect("write");
}

/// Opens the storage's database directly and lets `damage` change it.
fn damage(path: &Path, damage: impl FnOnce(&DB)) {
    let families =
        ["default", "entries"].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&Options::default(), path, families).expect("open raw");
    damage(&db);
}

fn entry_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Asserts that `result` failed with `Corrupted` in `path`, with a message
/// containing `detail`.
fn assert_corrupted<T: std::fmt::Debug>(
    result: Result<T, StorageError>,
    path: &Path,
    detail: &str,
) {
    let error = result.expect_err("read damaged data without an error");
    let source = error
        .source
        .downcast_ref::<Error>()
        .expect("a raft_storage::Error");
    assert!(matches!(source, Error::Corrupted { .. }), "{source:?}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains(detail),
        "expected {detail:?} in: {message}"
    );
}

#[tokio::test]
async fn flipped_bit_in_an_entry_is_reported_with_its_index() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("store");
    five_entries(&path).await;
    damage(&path, |db| {
        let entries = db.cf_handle("entries").expect("entries family");
        let mut record = db
            .get_cf(entries, entry_key(3))
            .expect("get")
            .expect("entry 3");
        let last = record.len() - 1;
        record[last] ^= 0x10;
        db.put_cf(entries, entry_key(3), record).expect("put");
    });

    let mut storage = RocksStorage::open(&path, OpenOptions::new()).expect("open");
    assert_corrupted(storage.load().await, &path, "entry 3: checksum mismatch");
    assert_corrupted(storage.entries(1, 6).await, &path, "entry 3");
    // Entries before the damage still read.
    let first_two = storage.entries(1, 3).await.expect("read undamaged entries");
    assert_eq!(first_two, vec![expected_entry(1, 1), expected_entry(2, 1)]);
}

#[tokio::test]
async fn entry_under_the_wrong_key_is_reported() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("store");
    five_entries(&path).await;
    damage(&path, |db| {
        let entries = db.cf_handle("entries").expect("entries family");
        let record = db
            .get_cf(entries, entry_key(2))
            .expect("get")
            .expect("entry 2");
        db.put_cf(entries, entry_key(4), record).expect("put");
    });

    let mut storage = RocksStorage::open(&path, OpenOptions::new()).expect("open");
    assert_corrupted(
        storage.load().await,
        &path,
        "under index 4 says it is entry 2",
    );
}

#[tokio::test]
async fn gap_in_the_log_is_reported() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("store");
    five_entries(&path).await;
    damage(&path, |db| {
        let entries = db.cf_handle("entries").expect("entries family");
        db.delete_cf(entries, entry_key(2)).expect("delete");
    });

    let mut storage = RocksStorage::open(&path, OpenOptions::new()).expect("open");
    assert_corrupted(storage.load().await, &path, "gap");
}

#[tokio::test]
async fn damaged_hard_state_is_reported() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("store");
    five_entries(&path).await;
    damage(&path, |db| {
        db.put(b"hard_state", b"\x00\x01").expect("put");
    });

    let mut storage = RocksStorage::open(&path, OpenOptions::new()).expect("open");
    assert_corrupted(storage.load().await, &path, "hard state");
}
