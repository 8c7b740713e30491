//! Opening a data directory: recognising it, creating it atomically, and
//! refusing anything else without touching it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, DBRecoveryMode, Options, WriteBatch, WriteOptions, DB};

use crate::error::Error;
use crate::layout::{ENTRIES_CF, FORMAT_VERSION, FORMAT_VERSION_KEY, META_CF};
use crate::options::OpenOptions;

/// Size at which RocksDB starts a new diagnostic log file (`LOG`).
const INFO_LOG_FILE_BYTES_MAX: usize = 1 << 20;
/// Old diagnostic log files kept beside the current one.
const INFO_LOG_FILES_KEPT: usize = 4;
/// Size at which RocksDB starts a new MANIFEST.
const MANIFEST_FILE_BYTES_MAX: usize = 1 << 20;

/// The file every RocksDB database has; its absence means "not a database".
const ROCKSDB_CURRENT_FILE: &str = "CURRENT";

/// Opens the database in `path` read-write after checking that it is ours
/// and of our format version, creating it first when `options` allow.
pub(crate) fn open_database(path: &Path, options: &OpenOptions) -> Result<DB, Error> {
    let path_buf = path.to_path_buf();
    if let Err(detail) = options.check() {
        return Err(Error::InvalidOptions {
            path: path_buf,
            detail,
        });
    }
    match fs::metadata(path) {
        Ok(metadata) if !metadata.is_dir() => Err(Error::NotADirectory { path: path_buf }),
        Ok(_) => {
            if path.join(ROCKSDB_CURRENT_FILE).exists() {
                return open_existing(path, options);
            }
            if !is_empty_dir(path)? {
                return Err(Error::Foreign {
                    path: path_buf,
                    reason: "the directory is not empty and holds no RocksDB database \
                             (no CURRENT file)"
                        .into(),
                });
            }
            if !options.creates_if_missing() {
                return Err(Error::Missing {
                    path: path_buf,
                    reason: "the directory is empty and create_if_missing is off",
                });
            }
            create(path, options)?;
            open_existing(path, options)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if !options.creates_if_missing() {
                return Err(Error::Missing {
                    path: path_buf,
                    reason: "create_if_missing is off",
                });
            }
            let parent = parent_of(path);
            if !parent.is_dir() {
                return Err(Error::Missing {
                    path: path_buf,
                    reason: "its parent directory does not exist",
                });
            }
            create(path, options)?;
            open_existing(path, options)
        }
        Err(error) => {
            // ENOTDIR (an ancestor is a regular file) has a stable
            // `io::ErrorKind` only since Rust 1.83, so look for the culprit.
            if path.ancestors().skip(1).any(|ancestor| ancestor.is_file()) {
                return Err(Error::NotADirectory { path: path_buf });
            }
            Err(io_error(path, "inspect", error))
        }
    }
}

/// Opens a database that exists: refuses it unless its column families and
/// format version are ours, checking in read-only mode first so that a
/// refused directory is never written to.
fn open_existing(path: &Path, open_options: &OpenOptions) -> Result<DB, Error> {
    let path_buf = path.to_path_buf();
    let options = db_options(false, open_options);

    // Listing the column families only reads the MANIFEST.
    let mut column_families = DB::list_cf(&options, path)
        .map_err(|error| Error::from_rocks_open(path_buf.clone(), error))?;
    column_families.sort();
    if column_families != [META_CF, ENTRIES_CF] {
        return Err(Error::Foreign {
            path: path_buf,
            reason: format!(
                "column families {column_families:?}, expected [\"{META_CF}\", \"{ENTRIES_CF}\"]"
            ),
        });
    }
    let read_only =
        DB::open_cf_descriptors_read_only(&options, path, descriptors(open_options), false)
            .map_err(|error| Error::from_rocks_open(path_buf.clone(), error))?;
    check_format_version(path, &read_only)?;
    drop(read_only);

    let db = DB::open_cf_descriptors(&options, path, descriptors(open_options))
        .map_err(|error| Error::from_rocks_open(path_buf, error))?;
    tracing::debug!(path = %path.display(), "opened log storage");
    Ok(db)
}

fn check_format_version(path: &Path, db: &DB) -> Result<(), Error> {
    let stored = db
        .get(FORMAT_VERSION_KEY)
        .map_err(|error| Error::from_rocks_open(path.to_path_buf(), error))?;
    let Some(stored) = stored else {
        return Err(Error::Foreign {
            path: path.to_path_buf(),
            reason: "a RocksDB database without a raft-storage format version".into(),
        });
    };
    let bytes: [u8; 4] = stored.as_slice().try_into().map_err(|_| Error::Corrupted {
        path: path.to_path_buf(),
        detail: format!("format version of {} bytes, expected 4", stored.len()),
    })?;
    let found = u32::from_be_bytes(bytes);
    if found != FORMAT_VERSION {
        return Err(Error::FormatVersion {
            path: path.to_path_buf(),
            found,
            expected: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Creates a new, empty storage at `path` (missing, or an empty directory)
/// so that a crash at any moment leaves either no storage or a complete one:
/// the database is built in a staging directory beside it, synced, and
/// renamed into place; the rename is atomic and replaces an empty directory.
fn create(path: &Path, open_options: &OpenOptions) -> Result<(), Error> {
    let path_buf = path.to_path_buf();
    let parent = parent_of(path);
    let Some(name) = path.file_name() else {
        return Err(Error::Missing {
            path: path_buf,
            reason: "the path has no final component to create",
        });
    };
    let staging = parent.join(format!(".{}.raft-storage-init", name.to_string_lossy()));

    // A staging directory can only be left by a crash during an earlier
    // creation: it never held acknowledged data, so it is safe to remove.
    if staging.exists() {
        tracing::warn!(staging = %staging.display(), "removing an unfinished storage creation");
        fs::remove_dir_all(&staging)
            .map_err(|error| create_error(&path_buf, &staging, "remove", error))?;
    }
    fs::create_dir(&staging)
        .map_err(|error| create_error(&path_buf, &staging, "create directory", error))?;

    {
        let mut options = db_options(true, open_options);
        options.create_missing_column_families(true);
        let db = DB::open_cf_descriptors(&options, &staging, descriptors(open_options))
            .map_err(|error| Error::from_rocks_open(staging.clone(), error))?;
        let mut batch = WriteBatch::default();
        batch.put(FORMAT_VERSION_KEY, FORMAT_VERSION.to_be_bytes());
        let mut write_options = WriteOptions::default();
        write_options.set_sync(true);
        db.write_opt(batch, &write_options)
            .map_err(|source| Error::Rocks {
                path: staging.clone(),
                operation: "write format version",
                source,
            })?;
    }

    fs::rename(&staging, path)
        .map_err(|error| create_error(&path_buf, path, "rename staging directory onto", error))?;
    // The rename is durable only once the parent directory is synced.
    fs::File::open(&parent)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| io_error(&parent, "sync directory", error))?;
    tracing::info!(path = %path.display(), "created log storage");
    Ok(())
}

/// The column families the storage opens, in a fixed order.
fn descriptors(open_options: &OpenOptions) -> Vec<ColumnFamilyDescriptor> {
    vec![
        ColumnFamilyDescriptor::new(META_CF, cf_options(open_options)),
        ColumnFamilyDescriptor::new(ENTRIES_CF, cf_options(open_options)),
    ]
}

/// Options of each column family.
fn cf_options(open_options: &OpenOptions) -> Options {
    let mut options = Options::default();
    // RocksDB's default (64 MiB) would keep some 64 MiB of log in memory
    // and in the WAL before anything reaches a table file, whatever the
    // snapshot threshold.
    options.set_write_buffer_size(open_options.memtable_bytes());
    options
}

fn db_options(create_if_missing: bool, open_options: &OpenOptions) -> Options {
    let mut options = cf_options(open_options);
    options.create_if_missing(create_if_missing);
    options.create_missing_column_families(false);
    // Every write is synced, so a torn record can only be the unsynced tail
    // of the WAL: replay up to it and stop, which loses nothing acknowledged.
    options.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    options.set_paranoid_checks(true);
    // A WAL file can be deleted only once every column family has flushed
    // what it holds. The metadata family takes a small hard state per
    // write and would pin every WAL file until its own memtable fills; the
    // default cap is four times the memtables' total, 64 MiB each.
    options.set_max_total_wal_size(open_options.wal_bytes());
    // RocksDB's own diagnostic log: rolled at a size, a few files kept.
    options.set_max_log_file_size(INFO_LOG_FILE_BYTES_MAX);
    options.set_keep_log_file_num(INFO_LOG_FILES_KEPT);
    // The MANIFEST gains a record per flush and compaction; RocksDB starts
    // a new one past this size (the default is 1 GiB).
    options.set_max_manifest_file_size(MANIFEST_FILE_BYTES_MAX);
    options
}

fn is_empty_dir(path: &Path) -> Result<bool, Error> {
    let mut children = fs::read_dir(path).map_err(|error| io_error(path, "list", error))?;
    Ok(children.next().is_none())
}

/// The directory `path` lives in; `.` for a bare relative name.
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn io_error(path: &Path, operation: &'static str, source: io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        operation,
        source,
    }
}

/// Sorts a failure to create the storage: permission errors make the data
/// directory unwritable, anything else is an I/O error on `culprit`.
fn create_error(path: &Path, culprit: &Path, operation: &'static str, error: io::Error) -> Error {
    let read_only_fs = error.raw_os_error() == Some(EROFS);
    if error.kind() == io::ErrorKind::PermissionDenied || read_only_fs {
        return Error::Unwritable {
            path: path.to_path_buf(),
            detail: format!("cannot {operation} {}: {error}", culprit.display()),
        };
    }
    io_error(culprit, operation, error)
}

/// Linux's "read-only file system" error number (`io::ErrorKind::
/// ReadOnlyFilesystem` is stable only since Rust 1.83).
const EROFS: i32 = 30;
