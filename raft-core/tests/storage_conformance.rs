//! The storage conformance suite against the in-memory [`MemStorage`]: the
//! reference for what every backend must do. `raft-storage` runs the same
//! cases, under the same names, against RocksDB.

use async_trait::async_trait;
use raft_core::testkit::conformance::{self, StorageHarness};
use raft_core::testkit::MemStorage;
use raft_core::StorageError;

/// Makes in-memory storages; a reopen is a new handle on the same "disk",
/// after the old handle is dropped.
struct MemHarness;

#[async_trait]
impl StorageHarness for MemHarness {
    type Storage = MemStorage;

    async fn fresh(&mut self) -> Result<MemStorage, StorageError> {
        Ok(MemStorage::new())
    }

    async fn reopen(&mut self, storage: MemStorage) -> Result<MemStorage, StorageError> {
        let reopened = storage.clone();
        drop(storage);
        Ok(reopened)
    }
}

raft_core::storage_conformance_tests!(MemHarness);

/// `run_all` is the entry point for backends that want one test; it must
/// pass on the reference storage as the single cases do.
#[tokio::test]
async fn whole_suite_passes_in_one_run() {
    conformance::run_all(&mut MemHarness).await;
}

/// A storage that forgets everything on reopen must fail the suite, with a
/// message naming the case: the suite really checks durability.
#[tokio::test]
#[should_panic(expected = "storage conformance case `entries_and_hard_state_are_written_together`")]
async fn storage_that_forgets_on_reopen_fails_the_suite() {
    struct ForgetfulHarness;

    #[async_trait]
    impl StorageHarness for ForgetfulHarness {
        type Storage = MemStorage;

        async fn fresh(&mut self) -> Result<MemStorage, StorageError> {
            Ok(MemStorage::new())
        }

        async fn reopen(&mut self, _storage: MemStorage) -> Result<MemStorage, StorageError> {
            Ok(MemStorage::new())
        }
    }

    conformance::entries_and_hard_state_are_written_together(&mut ForgetfulHarness).await;
}
