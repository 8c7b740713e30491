//! raft-core's storage conformance suite against RocksDB: the same cases,
//! under the same names, as `raft-core/tests/storage_conformance.rs` runs
//! against the in-memory storage.

use async_trait::async_trait;
use raft_core::testkit::conformance::{self, StorageHarness};
use raft_core::StorageError;
use raft_storage::{OpenOptions, RocksStorage};

/// Makes each storage in its own directory under one temporary root; a
/// reopen drops the storage (closing RocksDB and its lock) and opens the
/// directory again without `create_if_missing`, as a restart would.
struct RocksHarness {
    root: tempfile::TempDir,
    stores_made: u32,
}

impl RocksHarness {
    fn new() -> RocksHarness {
        RocksHarness {
            root: tempfile::tempdir().expect("create temporary directory"),
            stores_made: 0,
        }
    }
}

#[async_trait]
impl StorageHarness for RocksHarness {
    type Storage = RocksStorage;

    async fn fresh(&mut self) -> Result<RocksStorage, StorageError> {
        self.stores_made += 1;
        let path = self.root.path().join(format!("store-{}", self.stores_made));
        let options = OpenOptions::new().create_if_missing(true);
        RocksStorage::open(&path, options)
            .map_err(|error| StorageError::new("open", path.display().to_string(), error))
    }

    async fn reopen(&mut self, storage: RocksStorage) -> Result<RocksStorage, StorageError> {
        let path = storage.path().to_path_buf();
        drop(storage);
        RocksStorage::open(&path, OpenOptions::new())
            .map_err(|error| StorageError::new("reopen", path.display().to_string(), error))
    }
}

raft_core::storage_conformance_tests!(RocksHarness::new());

#[tokio::test]
async fn whole_suite_passes_in_one_run() {
    conformance::run_all(&mut RocksHarness::new()).await;
}

/// The storage's calls run on the blocking pool, so they work on a
/// multi-threaded runtime as well as on the current-thread one above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_passes_on_multi_thread_runtime() {
    conformance::run_all(&mut RocksHarness::new()).await;
}
