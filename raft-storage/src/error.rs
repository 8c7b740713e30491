//! The one error type of the crate.

use std::path::PathBuf;

/// Why opening, reading or writing a [`crate::RocksStorage`] failed. Every
/// variant names the data directory, so that a log line says which one.
///
/// The open-time variants (`Missing` to `InvalidOptions`) leave the
/// directory exactly as it was: the storage refuses to start rather than
/// create, repair or overwrite anything it does not recognise.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory, or the directory it would be created in, does
    /// not exist.
    #[error("data directory {} does not exist ({reason})", path.display())]
    Missing {
        /// The data directory.
        path: PathBuf,
        /// Which part is missing and why it was not created.
        reason: &'static str,
    },
    /// The path, or one of its ancestors, is not a directory.
    #[error("data directory {} is not a directory", path.display())]
    NotADirectory {
        /// The data directory.
        path: PathBuf,
    },
    /// The process may not create or write files in the data directory.
    #[error("data directory {} is not writable: {detail}", path.display())]
    Unwritable {
        /// The data directory.
        path: PathBuf,
        /// What the operating system or RocksDB said.
        detail: String,
    },
    /// Another open storage, in this process or another one, holds the
    /// directory's lock. Two writers would corrupt the log.
    #[error("data directory {} is locked by another open storage: {detail}", path.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// What RocksDB said about the lock.
        detail: String,
    },
    /// The directory holds files that are not a raft-storage database.
    #[error("data directory {} holds data that is not a raft-storage log: {reason}",
        path.display())]
    Foreign {
        /// The data directory.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The database, or a record in it, failed a consistency check.
    #[error("data in {} is corrupted: {detail}", path.display())]
    Corrupted {
        /// The data directory.
        path: PathBuf,
        /// Which record or file, and what is wrong with it.
        detail: String,
    },
    /// The directory was written by a version of this crate with another
    /// on-disk format.
    #[error("data directory {} has storage format version {found}, this build reads only \
        version {expected}", path.display())]
    FormatVersion {
        /// The data directory.
        path: PathBuf,
        /// The version stored in the directory.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// The [`crate::OpenOptions`] cannot work; nothing was opened.
    #[error("invalid options for data directory {}: {detail}", path.display())]
    InvalidOptions {
        /// The data directory.
        path: PathBuf,
        /// Which option is wrong and why.
        detail: String,
    },
    /// A file-system call failed.
    #[error("could not {operation} {}: {source}", path.display())]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What was being done, such as `"create directory"`.
        operation: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A RocksDB call failed for a reason not covered above.
    #[error("rocksdb could not {operation} in {}: {source}", path.display())]
    Rocks {
        /// The data directory.
        path: PathBuf,
        /// What was being done, such as `"write batch"`.
        operation: &'static str,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// A call broke the [`raft_core::LogStorage`] contract, such as an
    /// append that would leave a gap in the log. Nothing was written.
    #[error("invalid request to storage in {}: {detail}", path.display())]
    InvalidRequest {
        /// The data directory.
        path: PathBuf,
        /// What was wrong with the request.
        detail: String,
    },
    /// An earlier call failed, so the in-memory view of the log may not
    /// match the disk; the storage refuses further calls until reopened.
    #[error("storage in {} refuses calls after an earlier failure; reopen it", path.display())]
    Failed {
        /// The data directory.
        path: PathBuf,
    },
}

impl Error {
    /// Sorts a RocksDB error raised while opening `path` into the variants
    /// above. RocksDB reports most open failures as `IOError` and tells
    /// them apart only in the message, so the message is what is matched.
    pub(crate) fn from_rocks_open(path: PathBuf, source: rocksdb::Error) -> Error {
        let detail = source.to_string();
        let lowered = detail.to_lowercase();
        // A LOCK file that cannot be created mentions "lock" too: test for
        // permissions first.
        if lowered.contains("permission denied") || lowered.contains("read-only") {
            Error::Unwritable { path, detail }
        } else if lowered.contains("lock") && source.kind() == rocksdb::ErrorKind::IOError {
            Error::Locked { path, detail }
        } else if source.kind() == rocksdb::ErrorKind::Corruption {
            Error::Corrupted { path, detail }
        } else {
            Error::Rocks {
                path,
                operation: "open database",
                source,
            }
        }
    }
}
