//! [`RocksStorage`]: the async [`LogStorage`] face of [`Store`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use raft_core::{Entry, LogIndex, LogStorage, LogWrite, Snapshot, StorageError, StoredState};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Mutex;
use tokio::task;

use crate::error::Error;
use crate::options::OpenOptions;
use crate::store::Store;

/// Durable [`LogStorage`] in a RocksDB database.
///
/// Every mutating call is one RocksDB write batch, synced (`fdatasync` of
/// the WAL) before the call returns: the entries of one [`LogWrite`] share
/// one sync, which is the storage's group commit, and the truncation of a
/// conflicting suffix or the compaction under a snapshot is atomic with the
/// rest of its batch.
///
/// RocksDB calls block (a synced write takes a disk flush, a fraction of a
/// millisecond), so a call must not hold up the runtime's other tasks:
///
/// - on a multi-threaded tokio runtime it runs in
///   [`tokio::task::block_in_place`]: the calling worker hands its other
///   tasks to another thread and does the write itself, which saves the two
///   thread switches of `spawn_blocking` (about 15 µs a call, measured);
/// - on a current-thread runtime it runs on the blocking pool
///   ([`tokio::task::spawn_blocking`]), as `block_in_place` is not allowed
///   there;
/// - polled outside any runtime, it simply runs.
///
/// **Cancellation.** On the blocking pool, dropping a call's future before
/// it finishes does not stop the RocksDB write it started: the write may
/// still become durable, as a write interrupted by a crash after its sync
/// may. Calls are serialised by a fair lock that the blocking task holds
/// until it ends, so a later call never overtakes an abandoned earlier one.
///
/// The directory's lock is held until the storage is dropped (and any
/// abandoned call has finished).
pub struct RocksStorage {
    /// The open database, shared with the blocking task of a running call.
    store: Arc<Mutex<Store>>,
    /// The data directory, for error messages and [`RocksStorage::path`].
    path: PathBuf,
    /// Set when a blocking task died (a panic or runtime shutdown): its
    /// call's effect on the disk is unknown, so later calls are refused.
    failed: bool,
}

impl RocksStorage {
    /// Opens the storage in the data directory `path`, creating it when it
    /// is missing or empty and `options` allow it.
    ///
    /// Fails, without writing anything, when the directory (or its parent,
    /// when creating) is missing, is not a directory, is not writable, is
    /// locked by another open storage in this or another process, holds
    /// other data or a damaged database, or has another format version.
    /// Creation is atomic: a crash leaves either no storage or an empty,
    /// complete one.
    ///
    /// This call blocks on file I/O for a few milliseconds; from async code,
    /// call it inside `tokio::task::spawn_blocking`.
    pub fn open(path: impl AsRef<Path>, options: OpenOptions) -> Result<RocksStorage, Error> {
        let store = Store::open(path.as_ref(), &options)?;
        Ok(RocksStorage {
            path: store.path().to_path_buf(),
            store: Arc::new(Mutex::new(store)),
            failed: false,
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `call` on the store, one call at a time, without stalling the
    /// async runtime (see the type's docs), and wraps a failure in a
    /// [`StorageError`] naming `operation` and `object`.
    async fn run<T, F>(
        &mut self,
        operation: &'static str,
        object: String,
        call: F,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, Error> + Send + 'static,
    {
        if self.failed {
            let error = Error::Failed {
                path: self.path.clone(),
            };
            return Err(StorageError::new(operation, object, error));
        }
        let mut store = Arc::clone(&self.store).lock_owned().await;
        let flavor = Handle::try_current().map(|handle| handle.runtime_flavor());
        let outcome = match flavor {
            Ok(RuntimeFlavor::MultiThread) => Ok(task::block_in_place(|| call(&mut store))),
            Ok(_) => task::spawn_blocking(move || call(&mut store)).await,
            // Polled outside any runtime: blocking the caller stalls nobody.
            Err(_) => Ok(call(&mut store)),
        };
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StorageError::new(operation, object, error)),
            Err(join_error) => {
                self.failed = true;
                tracing::error!(
                    path = %self.path.display(),
                    operation,
                    error = %join_error,
                    "storage task died"
                );
                Err(StorageError::new(operation, object, join_error))
            }
        }
    }
}

impl std::fmt::Debug for RocksStorage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RocksStorage")
            .field("path", &self.path)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl LogStorage for RocksStorage {
    async fn load(&mut self) -> Result<StoredState, StorageError> {
        self.run("load", "log".into(), |store| store.load()).await
    }

    async fn write(&mut self, write: LogWrite) -> Result<(), StorageError> {
        let object = describe_write(&write);
        self.run("write", object, move |store| store.write(write))
            .await
    }

    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let object = format!(
            "snapshot at index {} term {}",
            snapshot.meta.last_index, snapshot.meta.last_term
        );
        // Cloning is cheap: the data is a reference-counted `Bytes`.
        let snapshot = snapshot.clone();
        self.run("install", object, move |store| {
            store.install_snapshot(&snapshot)
        })
        .await
    }

    async fn snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.run("read", "snapshot".into(), |store| store.snapshot())
            .await
    }

    async fn entries(&mut self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>, StorageError> {
        let object = format!("entries {low}..{high}");
        self.run("read", object, move |store| store.entries(low, high))
            .await
    }
}

/// Names what a write touches, such as `entries 5..=9 and hard state`.
fn describe_write(write: &LogWrite) -> String {
    let entries = match (write.entries.first(), write.entries.last()) {
        (Some(first), Some(last)) => Some(format!("entries {}..={}", first.index, last.index)),
        _ => None,
    };
    match (entries, write.hard_state.is_some()) {
        (Some(entries), true) => format!("{entries} and hard state"),
        (Some(entries), false) => entries,
        (None, true) => "hard state".into(),
        (None, false) => "nothing".into(),
    }
}
