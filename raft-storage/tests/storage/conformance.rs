//! raft-core's storage conformance suite against RocksDB: the same cases,
//! under the same names, as `raft-core/tests/storage_conformance.rs` runs
//! against the in-memory storage.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

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

/// On a multi-threaded runtime the calls run in `block_in_place` on a
/// worker thread (the suite runs in a spawned task, so on a worker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_passes_on_multi_thread_runtime_worker() {
    let suite = tokio::spawn(async { conformance::run_all(&mut RocksHarness::new()).await });
    suite.await.expect("the suite's task panicked");
}

/// Polled outside any tokio runtime, the calls simply run.
#[test]
fn whole_suite_passes_outside_any_runtime() {
    block_on_without_runtime(conformance::run_all(&mut RocksHarness::new()));
}

/// Polls `future` to completion on this thread, with no runtime around.
fn block_on_without_runtime<F: Future>(future: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
