//! The storage conformance suite: one set of checks that every
//! [`LogStorage`] implementation must pass, so that backends are
//! interchangeable.
//!
//! A backend describes how to make and reopen its storage with a
//! [`StorageHarness`]; the suite then drives it through the trait only. Each
//! case is a public `async fn` named after the behaviour it proves, and
//! panics with a message that starts with ``storage conformance case `NAME` ``
//! when the storage breaks the contract. [`run_all`] runs every case in turn;
//! the [`storage_conformance_tests!`](crate::storage_conformance_tests) macro
//! writes one `#[tokio::test]` per case, so every backend runs the same tests
//! under the same names.
//!
//! ```text
//! use raft_core::testkit::conformance::StorageHarness;
//! use raft_core::testkit::MemStorage;
//! use raft_core::StorageError;
//!
//! struct MemHarness;
//!
//! #[async_trait::async_trait]
//! impl StorageHarness for MemHarness {
//!     type Storage = MemStorage;
//!
//!     async fn fresh(&mut self) -> Result<MemStorage, StorageError> {
//!         Ok(MemStorage::new())
//!     }
//!
//!     async fn reopen(&mut self, storage: MemStorage) -> Result<MemStorage, StorageError> {
//!         // A clone shares the "disk"; dropping the old handle is the crash.
//!         Ok(storage.clone())
//!     }
//! }
//!
//! // In a test file: one #[tokio::test] per case.
//! raft_core::storage_conformance_tests!(MemHarness);
//! ```
//!
//! What "reopen" means is the backend's business: for a disk store, close
//! the files and open the directory again, as a restarted process would.
//! Only durable state may be visible afterwards; the suite checks that
//! everything a returned call wrote is.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::StorageError;
use crate::storage::{LogStorage, LogWrite, StoredState};
use crate::types::{Entry, EntryPayload, HardState, LogIndex, Snapshot, SnapshotMeta, Term};

/// Makes the storages the suite tests.
///
/// Each case asks for a [`fresh`](StorageHarness::fresh) storage, so cases
/// never see each other's data, and may [`reopen`](StorageHarness::reopen)
/// it to check durability.
#[async_trait]
pub trait StorageHarness: Send {
    /// The storage under test.
    type Storage: LogStorage;

    /// Opens a new, empty storage that shares nothing with any storage made
    /// before.
    async fn fresh(&mut self) -> Result<Self::Storage, StorageError>;

    /// Closes `storage` and opens the same durable storage again, as a
    /// restarted process would: whatever `storage` held only in memory is
    /// gone, whatever its returned calls made durable is back.
    async fn reopen(&mut self, storage: Self::Storage) -> Result<Self::Storage, StorageError>;
}

/// Runs every case of the suite against storages from `harness`, in a fixed
/// order, and panics at the first one that fails.
pub async fn run_all<H: StorageHarness>(harness: &mut H) {
    empty_storage_loads_default_state(harness).await;
    appended_entries_read_back_in_order(harness).await;
    hard_state_round_trips(harness).await;
    empty_write_changes_nothing(harness).await;
    conflicting_suffix_is_replaced_in_one_write(harness).await;
    entries_and_hard_state_are_written_together(harness).await;
    large_batch_is_stored_whole(harness).await;
    snapshot_drops_covered_entries_and_keeps_matching_suffix(harness).await;
    snapshot_conflicting_with_log_drops_whole_log(harness).await;
    snapshot_beyond_log_end_drops_whole_log(harness).await;
    snapshot_round_trips_and_newer_one_replaces_it(harness).await;
    everything_survives_reopen(harness).await;
    truncation_and_compaction_survive_reopen(harness).await;
    entries_range_is_clamped_to_stored_log(harness).await;
}

/// Writes one `#[tokio::test]` per conformance case, each running that case
/// against storages from the harness that `$harness` (an expression, run
/// once per test) builds.
///
/// The caller needs `tokio` (with the `macros` and `rt` features) among its
/// dev-dependencies.
#[macro_export]
macro_rules! storage_conformance_tests {
    ($harness:expr) => {
        $crate::storage_conformance_tests!(@cases $harness;
            empty_storage_loads_default_state,
            appended_entries_read_back_in_order,
            hard_state_round_trips,
            empty_write_changes_nothing,
            conflicting_suffix_is_replaced_in_one_write,
            entries_and_hard_state_are_written_together,
            large_batch_is_stored_whole,
            snapshot_drops_covered_entries_and_keeps_matching_suffix,
            snapshot_conflicting_with_log_drops_whole_log,
            snapshot_beyond_log_end_drops_whole_log,
            snapshot_round_trips_and_newer_one_replaces_it,
            everything_survives_reopen,
            truncation_and_compaction_survive_reopen,
            entries_range_is_clamped_to_stored_log,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $case() {
                let mut harness = $harness;
                $crate::testkit::conformance::$case(&mut harness).await;
            }
        )*
    };
}

/// A fresh storage loads the default state: no hard state, no snapshot, no
/// entries.
pub async fn empty_storage_loads_default_state<H: StorageHarness>(harness: &mut H) {
    let case = Case("empty_storage_loads_default_state");
    let mut storage = case.fresh(harness).await;

    case.expect_state(&mut storage, "new storage", StoredState::default())
        .await;
    let snapshot = case.ok("read snapshot", storage.snapshot().await);
    case.expect_eq("snapshot of new storage", snapshot, None);
    case.expect_entries(&mut storage, 0, 100, &[]).await;
}

/// Entries written in several writes come back from `load` and `entries`
/// in index order, payloads intact.
pub async fn appended_entries_read_back_in_order<H: StorageHarness>(harness: &mut H) {
    let case = Case("appended_entries_read_back_in_order");
    let mut storage = case.fresh(harness).await;

    let first_batch = vec![
        blank(1, 1),
        command(1, 2, b"set x"),
        command(1, 3, b""),
        command(2, 4, &[0, 255, 7, 128]),
    ];
    case.write(
        &mut storage,
        "first batch",
        entries_only(first_batch.clone()),
    )
    .await;
    let second_batch = vec![command(2, 5, b"five"), blank(3, 6)];
    case.write(
        &mut storage,
        "second batch",
        entries_only(second_batch.clone()),
    )
    .await;

    let all: Vec<Entry> = first_batch.into_iter().chain(second_batch).collect();
    let expected = StoredState {
        entries: all.clone(),
        ..StoredState::default()
    };
    case.expect_state(&mut storage, "after two appends", expected)
        .await;
    case.expect_entries(&mut storage, 1, 7, &all).await;
    case.expect_entries(&mut storage, 3, 5, &all[2..4]).await;
}

/// A hard state written alone comes back, replaces the previous one, and
/// leaves the entries as they were.
pub async fn hard_state_round_trips<H: StorageHarness>(harness: &mut H) {
    let case = Case("hard_state_round_trips");
    let mut storage = case.fresh(harness).await;
    let entries = vec![command(1, 1, b"a")];
    case.write(&mut storage, "entry", entries_only(entries.clone()))
        .await;

    let voted = HardState {
        term: 3,
        vote: Some(2),
        commit: 1,
    };
    case.write(&mut storage, "hard state with vote", hard_state_only(voted))
        .await;
    let expected = StoredState {
        hard_state: voted,
        entries: entries.clone(),
        ..StoredState::default()
    };
    case.expect_state(&mut storage, "after first hard state", expected)
        .await;

    // A later term without a vote must replace the vote, not keep it.
    let no_vote = HardState {
        term: 4,
        vote: None,
        commit: 1,
    };
    case.write(
        &mut storage,
        "hard state without vote",
        hard_state_only(no_vote),
    )
    .await;
    let expected = StoredState {
        hard_state: no_vote,
        entries,
        ..StoredState::default()
    };
    case.expect_state(&mut storage, "after second hard state", expected)
        .await;
}

/// A write with nothing in it leaves the storage as it was.
pub async fn empty_write_changes_nothing<H: StorageHarness>(harness: &mut H) {
    let case = Case("empty_write_changes_nothing");
    let mut storage = case.fresh(harness).await;
    let hard_state = HardState {
        term: 1,
        vote: Some(1),
        commit: 0,
    };
    let entries = vec![command(1, 1, b"a"), command(1, 2, b"b")];
    let write = LogWrite {
        hard_state: Some(hard_state),
        entries: entries.clone(),
    };
    case.write(&mut storage, "setup", write).await;

    case.write(&mut storage, "empty write", LogWrite::default())
        .await;

    let expected = StoredState {
        hard_state,
        entries,
        snapshot: None,
    };
    case.expect_state(&mut storage, "after empty write", expected)
        .await;
}

/// A write whose first entry is at or below the last stored index drops the
/// stored suffix from that index on and appends the new entries (Raft
/// §5.3), including when the new entries are fewer than the dropped ones
/// and when they replace the whole log.
pub async fn conflicting_suffix_is_replaced_in_one_write<H: StorageHarness>(harness: &mut H) {
    let case = Case("conflicting_suffix_is_replaced_in_one_write");
    let mut storage = case.fresh(harness).await;
    let original = terms_entries(1, &[1, 1, 1, 1, 1]);
    case.write(
        &mut storage,
        "entries 1..=5",
        entries_only(original.clone()),
    )
    .await;

    // Entries 3 and 4 of term 2 replace 3, 4 and 5 of term 1: entry 5 must
    // not survive even though nothing new is written at index 5.
    let replacement = terms_entries(3, &[2, 2]);
    case.write(
        &mut storage,
        "entries 3..=4 of term 2",
        entries_only(replacement.clone()),
    )
    .await;
    let expected: Vec<Entry> = original[..2].iter().cloned().chain(replacement).collect();
    case.expect_entries(&mut storage, 1, 10, &expected).await;
    let loaded = case.load(&mut storage).await;
    case.expect_eq(
        "entries after partial truncation",
        loaded.entries,
        expected.clone(),
    );

    // A write right after the last entry only appends.
    let appended = terms_entries(5, &[2]);
    case.write(
        &mut storage,
        "append at last + 1",
        entries_only(appended.clone()),
    )
    .await;
    let expected: Vec<Entry> = expected.into_iter().chain(appended).collect();
    case.expect_entries(&mut storage, 1, 10, &expected).await;

    // A write at index 1 replaces the whole log.
    let whole = terms_entries(1, &[3]);
    case.write(
        &mut storage,
        "entry 1 of term 3",
        entries_only(whole.clone()),
    )
    .await;
    case.expect_entries(&mut storage, 1, 10, &whole).await;
    let loaded = case.load(&mut storage).await;
    case.expect_eq("entries after whole-log truncation", loaded.entries, whole);
}

/// Entries and a hard state in one write are both stored, and both are
/// there after a reopen.
pub async fn entries_and_hard_state_are_written_together<H: StorageHarness>(harness: &mut H) {
    let case = Case("entries_and_hard_state_are_written_together");
    let mut storage = case.fresh(harness).await;

    let hard_state = HardState {
        term: 2,
        vote: Some(3),
        commit: 2,
    };
    let entries = terms_entries(1, &[1, 2, 2]);
    let write = LogWrite {
        hard_state: Some(hard_state),
        entries: entries.clone(),
    };
    case.write(&mut storage, "entries with hard state", write)
        .await;

    let expected = StoredState {
        hard_state,
        entries,
        snapshot: None,
    };
    case.expect_state(&mut storage, "before reopen", expected.clone())
        .await;
    let mut storage = case.reopen(harness, storage).await;
    case.expect_state(&mut storage, "after reopen", expected)
        .await;
}

/// Many entries in one write (as the driver batches them) are all stored.
pub async fn large_batch_is_stored_whole<H: StorageHarness>(harness: &mut H) {
    let case = Case("large_batch_is_stored_whole");
    let mut storage = case.fresh(harness).await;

    let entries: Vec<Entry> = (1..=1000)
        .map(|index| Entry {
            term: 1 + index / 300,
            index,
            payload: EntryPayload::Command(Bytes::from(vec![(index % 251) as u8; 256])),
        })
        .collect();
    case.write(&mut storage, "1000 entries", entries_only(entries.clone()))
        .await;

    case.expect_entries(&mut storage, 1, 1001, &entries).await;
    let mut storage = case.reopen(harness, storage).await;
    let loaded = case.load(&mut storage).await;
    case.expect_eq("entries after reopen", loaded.entries.len(), 1000);
    case.expect_eq("entries after reopen", loaded.entries, entries);
}

/// A snapshot drops the entries it covers and keeps the ones after it when
/// the stored entry at its last index has its last term; the hard state
/// stays, and writes continue after the snapshot.
pub async fn snapshot_drops_covered_entries_and_keeps_matching_suffix<H: StorageHarness>(
    harness: &mut H,
) {
    let case = Case("snapshot_drops_covered_entries_and_keeps_matching_suffix");
    let mut storage = case.fresh(harness).await;
    let hard_state = HardState {
        term: 2,
        vote: Some(1),
        commit: 8,
    };
    let entries = terms_entries(1, &[1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
    let write = LogWrite {
        hard_state: Some(hard_state),
        entries: entries.clone(),
    };
    case.write(&mut storage, "entries 1..=10", write).await;

    let snapshot = snapshot_at(5, 2, b"state up to 5");
    case.install(&mut storage, "snapshot at 5", &snapshot).await;

    let expected = StoredState {
        hard_state,
        snapshot: Some(snapshot.meta),
        entries: entries[5..].to_vec(),
    };
    case.expect_state(&mut storage, "after snapshot at 5", expected)
        .await;
    case.expect_entries(&mut storage, 1, 11, &entries[5..])
        .await;

    // The first index after the snapshot can be rewritten (a conflict right
    // after it), and the log grows from there.
    let rewritten = terms_entries(6, &[3, 3]);
    case.write(
        &mut storage,
        "entries 6..=7 of term 3",
        entries_only(rewritten.clone()),
    )
    .await;
    case.expect_entries(&mut storage, 1, 20, &rewritten).await;
    let loaded = case.load(&mut storage).await;
    case.expect_eq(
        "entries after rewrite at first index",
        loaded.entries,
        rewritten,
    );
}

/// A snapshot whose last entry is stored with another term conflicts with
/// the log: the whole log is dropped.
pub async fn snapshot_conflicting_with_log_drops_whole_log<H: StorageHarness>(harness: &mut H) {
    let case = Case("snapshot_conflicting_with_log_drops_whole_log");
    let mut storage = case.fresh(harness).await;
    let entries = terms_entries(1, &[1, 1, 1, 1, 1, 1, 1, 1]);
    case.write(&mut storage, "entries 1..=8", entries_only(entries))
        .await;

    let snapshot = snapshot_at(5, 2, b"state of term 2");
    case.install(&mut storage, "snapshot at 5 of term 2", &snapshot)
        .await;

    let expected = StoredState {
        snapshot: Some(snapshot.meta),
        ..StoredState::default()
    };
    case.expect_state(&mut storage, "after conflicting snapshot", expected)
        .await;
    case.expect_entries(&mut storage, 1, 20, &[]).await;

    // The log starts again right after the snapshot.
    let next = terms_entries(6, &[2]);
    case.write(&mut storage, "entry 6", entries_only(next.clone()))
        .await;
    case.expect_entries(&mut storage, 1, 20, &next).await;
}

/// A snapshot past the end of the log drops the whole log.
pub async fn snapshot_beyond_log_end_drops_whole_log<H: StorageHarness>(harness: &mut H) {
    let case = Case("snapshot_beyond_log_end_drops_whole_log");
    let mut storage = case.fresh(harness).await;
    let entries = terms_entries(1, &[1, 1, 1]);
    case.write(&mut storage, "entries 1..=3", entries_only(entries))
        .await;

    let snapshot = snapshot_at(20, 4, b"far ahead");
    case.install(&mut storage, "snapshot at 20", &snapshot)
        .await;

    let expected = StoredState {
        snapshot: Some(snapshot.meta),
        ..StoredState::default()
    };
    case.expect_state(&mut storage, "after snapshot past the end", expected)
        .await;
    let next = terms_entries(21, &[4, 5]);
    case.write(&mut storage, "entries 21..=22", entries_only(next.clone()))
        .await;
    case.expect_entries(&mut storage, 1, 100, &next).await;
}

/// `snapshot` returns what `install_snapshot` stored, data included, and a
/// later snapshot replaces it.
pub async fn snapshot_round_trips_and_newer_one_replaces_it<H: StorageHarness>(harness: &mut H) {
    let case = Case("snapshot_round_trips_and_newer_one_replaces_it");
    let mut storage = case.fresh(harness).await;
    let entries = terms_entries(1, &[1, 1, 1, 1, 1, 1]);
    case.write(&mut storage, "entries 1..=6", entries_only(entries))
        .await;

    let first = snapshot_at(2, 1, b"");
    case.install(&mut storage, "empty snapshot at 2", &first)
        .await;
    let stored = case.ok("read snapshot", storage.snapshot().await);
    case.expect_eq("first snapshot", stored, Some(first));

    let data: Vec<u8> = (0..65_536u32).map(|i| (i * 31 % 256) as u8).collect();
    let second = Snapshot {
        meta: SnapshotMeta {
            last_index: 4,
            last_term: 1,
        },
        data: Bytes::from(data),
    };
    case.install(&mut storage, "64 KiB snapshot at 4", &second)
        .await;
    let stored = case.ok("read snapshot", storage.snapshot().await);
    case.expect_eq("second snapshot", stored, Some(second.clone()));
    let loaded = case.load(&mut storage).await;
    case.expect_eq(
        "snapshot position in load",
        loaded.snapshot,
        Some(second.meta),
    );
}

/// Hard state, entries and snapshot all come back after a reopen.
pub async fn everything_survives_reopen<H: StorageHarness>(harness: &mut H) {
    let case = Case("everything_survives_reopen");
    let mut storage = case.fresh(harness).await;
    let hard_state = HardState {
        term: 5,
        vote: Some(2),
        commit: 7,
    };
    let entries = terms_entries(1, &[1, 2, 3, 3, 4, 5, 5, 5, 5]);
    let write = LogWrite {
        hard_state: Some(hard_state),
        entries: entries.clone(),
    };
    case.write(&mut storage, "entries 1..=9", write).await;
    let snapshot = snapshot_at(3, 3, b"three");
    case.install(&mut storage, "snapshot at 3", &snapshot).await;

    let mut storage = case.reopen(harness, storage).await;

    let expected = StoredState {
        hard_state,
        snapshot: Some(snapshot.meta),
        entries: entries[3..].to_vec(),
    };
    case.expect_state(&mut storage, "after reopen", expected)
        .await;
    let stored = case.ok("read snapshot", storage.snapshot().await);
    case.expect_eq("snapshot after reopen", stored, Some(snapshot));
    case.expect_entries(&mut storage, 4, 10, &entries[3..])
        .await;

    // The reopened storage keeps working where the old one stopped.
    let next = terms_entries(10, &[5]);
    case.write(
        &mut storage,
        "entry 10 after reopen",
        entries_only(next.clone()),
    )
    .await;
    let mut storage = case.reopen(harness, storage).await;
    let expected_entries: Vec<Entry> = entries[3..].iter().cloned().chain(next).collect();
    let loaded = case.load(&mut storage).await;
    case.expect_eq(
        "entries after second reopen",
        loaded.entries,
        expected_entries,
    );
}

/// Entries dropped by a truncation or by a snapshot stay dropped after a
/// reopen.
pub async fn truncation_and_compaction_survive_reopen<H: StorageHarness>(harness: &mut H) {
    let case = Case("truncation_and_compaction_survive_reopen");
    let mut storage = case.fresh(harness).await;
    let entries = terms_entries(1, &[1, 1, 1, 1, 1, 1]);
    case.write(&mut storage, "entries 1..=6", entries_only(entries.clone()))
        .await;
    let replacement = terms_entries(4, &[2]);
    case.write(
        &mut storage,
        "entry 4 of term 2",
        entries_only(replacement.clone()),
    )
    .await;
    let snapshot = snapshot_at(2, 1, b"two");
    case.install(&mut storage, "snapshot at 2", &snapshot).await;

    let mut storage = case.reopen(harness, storage).await;

    let expected_entries: Vec<Entry> = entries[2..3].iter().cloned().chain(replacement).collect();
    let expected = StoredState {
        hard_state: HardState::default(),
        snapshot: Some(snapshot.meta),
        entries: expected_entries.clone(),
    };
    case.expect_state(&mut storage, "after reopen", expected)
        .await;
    case.expect_entries(&mut storage, 1, 10, &expected_entries)
        .await;
}

/// `entries(low, high)` returns the stored entries in `low..high` only:
/// clamped to the log, empty for an empty or reversed range, and empty for
/// indexes a snapshot covers.
pub async fn entries_range_is_clamped_to_stored_log<H: StorageHarness>(harness: &mut H) {
    let case = Case("entries_range_is_clamped_to_stored_log");
    let mut storage = case.fresh(harness).await;
    let entries = terms_entries(1, &[1, 1, 2, 2, 2, 3, 3, 3]);
    case.write(&mut storage, "entries 1..=8", entries_only(entries.clone()))
        .await;
    let snapshot = snapshot_at(2, 1, b"");
    case.install(&mut storage, "snapshot at 2", &snapshot).await;
    let stored = &entries[2..];

    case.expect_entries(&mut storage, 0, u64::MAX, stored).await;
    case.expect_entries(&mut storage, 3, 9, stored).await;
    case.expect_entries(&mut storage, 4, 6, &entries[3..5])
        .await;
    case.expect_entries(&mut storage, 8, 9, &entries[7..8])
        .await;
    case.expect_entries(&mut storage, 1, 3, &[]).await;
    case.expect_entries(&mut storage, 1, 4, &entries[2..3])
        .await;
    case.expect_entries(&mut storage, 5, 5, &[]).await;
    case.expect_entries(&mut storage, 6, 4, &[]).await;
    case.expect_entries(&mut storage, 9, 20, &[]).await;
}

/// The name of the running case, carried into every failure message.
#[derive(Clone, Copy)]
struct Case(&'static str);

impl Case {
    fn fail(self, what: &str, detail: impl Debug) -> ! {
        panic!(
            "storage conformance case `{}` failed: {what}: {detail:?}",
            self.0
        )
    }

    fn ok<T>(self, what: &str, result: Result<T, StorageError>) -> T {
        match result {
            Ok(value) => value,
            Err(error) => self.fail(&format!("{what} returned an error"), error.to_string()),
        }
    }

    fn expect_eq<T: Debug + PartialEq>(self, what: &str, actual: T, expected: T) {
        if actual != expected {
            panic!(
                "storage conformance case `{}` failed: {what}:\n  expected {expected:?}\n  \
                 actual   {actual:?}",
                self.0
            );
        }
    }

    async fn fresh<H: StorageHarness>(self, harness: &mut H) -> H::Storage {
        self.ok("open fresh storage", harness.fresh().await)
    }

    async fn reopen<H: StorageHarness>(self, harness: &mut H, storage: H::Storage) -> H::Storage {
        self.ok("reopen storage", harness.reopen(storage).await)
    }

    async fn load<S: LogStorage>(self, storage: &mut S) -> StoredState {
        self.ok("load", storage.load().await)
    }

    async fn write<S: LogStorage>(self, storage: &mut S, what: &str, write: LogWrite) {
        self.ok(&format!("write ({what})"), storage.write(write).await);
    }

    async fn install<S: LogStorage>(self, storage: &mut S, what: &str, snapshot: &Snapshot) {
        self.ok(
            &format!("install_snapshot ({what})"),
            storage.install_snapshot(snapshot).await,
        );
    }

    async fn expect_state<S: LogStorage>(self, storage: &mut S, what: &str, expected: StoredState) {
        let loaded = self.load(storage).await;
        self.expect_eq(&format!("loaded state {what}"), loaded, expected);
    }

    async fn expect_entries<S: LogStorage>(
        self,
        storage: &mut S,
        low: LogIndex,
        high: LogIndex,
        expected: &[Entry],
    ) {
        let what = format!("entries({low}, {high})");
        let actual = self.ok(&what, storage.entries(low, high).await);
        self.expect_eq(&what, actual.as_slice(), expected);
    }
}

fn blank(term: Term, index: LogIndex) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Blank,
    }
}

fn command(term: Term, index: LogIndex, data: &[u8]) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Command(Bytes::copy_from_slice(data)),
    }
}

/// Entries from `first_index` on, one per term in `terms`, each carrying a
/// command that names its index and term so that a mix-up shows.
fn terms_entries(first_index: LogIndex, terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(offset, &term)| {
            let index = first_index + offset as LogIndex;
            command(
                term,
                index,
                format!("entry {index} of term {term}").as_bytes(),
            )
        })
        .collect()
}

fn entries_only(entries: Vec<Entry>) -> LogWrite {
    LogWrite {
        hard_state: None,
        entries,
    }
}

fn hard_state_only(hard_state: HardState) -> LogWrite {
    LogWrite {
        hard_state: Some(hard_state),
        entries: Vec::new(),
    }
}

fn snapshot_at(last_index: LogIndex, last_term: Term, data: &[u8]) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            last_index,
            last_term,
        },
        data: Bytes::copy_from_slice(data),
    }
}
