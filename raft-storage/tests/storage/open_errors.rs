//! Directories the storage must refuse: each gives an error of the right
//! variant that names the path, and leaves what was there untouched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use raft_core::{LogStorage, LogWrite};
use raft_storage::{Error, OpenOptions, RocksStorage, FORMAT_VERSION};
use rocksdb::{ColumnFamilyDescriptor, Options, DB};

use crate::child::{child_command, create_if_missing, LINE_PREFIX};
use crate::support::{expected_entry, running_as_root};

fn create() -> OpenOptions {
    OpenOptions::new().create_if_missing(true)
}

/// Asserts that the error's message names `path`.
fn assert_names(error: &Error, path: &Path) {
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "error does not name {}: {message}",
        path.display()
    );
}

/// Every file under `root` with its contents, to prove nothing changed.
fn tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for child in fs::read_dir(&directory).expect("list directory") {
            let child = child.expect("directory entry").path();
            if child.is_dir() {
                pending.push(child);
            } else {
                let contents = fs::read(&child).expect("read file");
                files.push((child, contents));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn missing_directory_is_refused_without_create_if_missing() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("absent");

    let error = RocksStorage::open(&path, OpenOptions::new()).expect_err("opened a missing dir");

    assert!(matches!(error, Error::Missing { .. }), "{error:?}");
    assert_names(&error, &path);
    assert!(!path.exists(), "the directory was created");
}

#[test]
fn missing_parent_is_refused_even_with_create_if_missing() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("no-such-parent").join("store");

    let error = RocksStorage::open(&path, create()).expect_err("created under a missing parent");

    assert!(matches!(error, Error::Missing { .. }), "{error:?}");
    assert_names(&error, &path);
    assert!(tree(root.path()).is_empty() && fs::read_dir(root.path()).unwrap().count() == 0);
}

#[test]
fn path_under_a_regular_file_is_refused_as_not_a_directory() {
    let root = tempfile::tempdir().expect("temporary directory");
    let file = root.path().join("plain-file");
    fs::write(&file, b"keep me").expect("write file");

    for path in [file.join("store"), file.clone()] {
        let error = RocksStorage::open(&path, create()).expect_err("opened a file as a dir");
        assert!(matches!(error, Error::NotADirectory { .. }), "{error:?}");
        assert_names(&error, &path);
    }
    assert_eq!(fs::read(&file).expect("read file"), b"keep me");
}

#[test]
fn empty_directory_is_created_only_with_create_if_missing() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("empty");
    fs::create_dir(&path).expect("create directory");

    let error = RocksStorage::open(&path, OpenOptions::new()).expect_err("opened an empty dir");
    assert!(matches!(error, Error::Missing { .. }), "{error:?}");
    assert_names(&error, &path);

    RocksStorage::open(&path, create()).expect("create in an empty directory");
    RocksStorage::open(&path, OpenOptions::new()).expect("reopen the created storage");
}

#[test]
fn leftover_of_an_interrupted_creation_is_cleared() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("store");
    let staging = root.path().join(".store.raft-storage-init");
    fs::create_dir(&staging).expect("create staging directory");
    fs::write(staging.join("half-written"), b"x").expect("write staging file");

    RocksStorage::open(&path, create()).expect("create over a leftover staging directory");

    assert!(!staging.exists(), "the staging directory was left behind");
    RocksStorage::open(&path, OpenOptions::new()).expect("reopen");
}

#[tokio::test]
async fn directory_already_open_in_this_process_is_refused_as_locked() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("store");
    let mut first = RocksStorage::open(&path, create()).expect("first open");
    let write = LogWrite {
        hard_state: None,
        entries: vec![expected_entry(1, 1)],
    };
    first.write(write).await.expect("write");

    let error = RocksStorage::open(&path, OpenOptions::new()).expect_err("opened twice");

    assert!(matches!(error, Error::Locked { .. }), "{error:?}");
    assert_names(&error, &path);
    // The first storage is unharmed and keeps its data.
    let loaded = first.load().await.expect("load from the first storage");
    assert_eq!(loaded.entries, vec![expected_entry(1, 1)]);
}

#[test]
fn directory_with_other_files_is_refused_as_foreign() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("photos");
    fs::create_dir(&path).expect("create directory");
    fs::write(path.join("holiday.jpg"), b"\xff\xd8 not a database").expect("write file");
    fs::write(path.join("notes.txt"), b"hello").expect("write file");
    let before = tree(&path);

    for options in [OpenOptions::new(), create()] {
        let error = RocksStorage::open(&path, options).expect_err("opened a foreign dir");
        assert!(matches!(error, Error::Foreign { .. }), "{error:?}");
        assert_names(&error, &path);
    }
    assert_eq!(tree(&path), before, "the foreign files changed");
}

#[test]
fn garbage_rocksdb_files_give_an_error_not_a_panic() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("store");
    fs::create_dir(&path).expect("create directory");
    fs::write(path.join("CURRENT"), b"MANIFEST-000099\n").expect("write CURRENT");
    fs::write(path.join("MANIFEST-000099"), b"this is not a manifest").expect("write");
    let before = tree(&path);

    let error = RocksStorage::open(&path, create()).expect_err("opened garbage");

    assert!(
        matches!(
            error,
            Error::Foreign { .. } | Error::Corrupted { .. } | Error::Rocks { .. }
        ),
        "{error:?}"
    );
    assert_names(&error, &path);
    assert_eq!(tree(&path), before, "the garbage files changed");
}

#[test]
fn another_rocksdb_database_is_refused_as_foreign_and_kept() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("other-db");
    {
        let mut options = Options::default();
        options.create_if_missing(true);
        let db = DB::open(&options, &path).expect("create another database");
        db.put(b"their key", b"their value").expect("put");
    }

    let error = RocksStorage::open(&path, create()).expect_err("opened another database");

    assert!(matches!(error, Error::Foreign { .. }), "{error:?}");
    assert_names(&error, &path);
    let db = DB::open_default(&path).expect("reopen the other database");
    assert_eq!(
        db.get(b"their key").expect("get"),
        Some(b"their value".to_vec())
    );
}

#[test]
fn rocksdb_with_our_column_families_but_no_format_version_is_foreign() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("lookalike");
    {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = ["default", "entries"]
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        DB::open_cf_descriptors(&options, &path, families).expect("create lookalike");
    }

    let error = RocksStorage::open(&path, OpenOptions::new()).expect_err("opened a lookalike");

    assert!(matches!(error, Error::Foreign { .. }), "{error:?}");
    assert_names(&error, &path);
}

/// Rewrites the stored format version of the storage in `path`.
fn set_format_version(path: &Path, version: u32) {
    let families =
        ["default", "entries"].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&Options::default(), path, families).expect("open raw");
    db.put(b"format_version", version.to_be_bytes())
        .expect("put format version");
}

fn stored_format_version(path: &Path) -> Vec<u8> {
    let families =
        ["default", "entries"].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&Options::default(), path, families).expect("open raw");
    db.get(b"format_version")
        .expect("get")
        .expect("format version present")
}

#[tokio::test]
async fn other_format_version_is_refused_and_left_as_it_was() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("store");
    {
        let mut storage = RocksStorage::open(&path, create()).expect("create");
        let write = LogWrite {
            hard_state: None,
            entries: vec![expected_entry(1, 1)],
        };
        storage.write(write).await.expect("write");
    }
    let newer = FORMAT_VERSION + 1;
    set_format_version(&path, newer);

    for options in [OpenOptions::new(), create()] {
        let error = RocksStorage::open(&path, options).expect_err("opened another format");
        match &error {
            Error::FormatVersion {
                found, expected, ..
            } => assert_eq!((*found, *expected), (newer, FORMAT_VERSION)),
            other => panic!("expected FormatVersion, got {other:?}"),
        }
        assert_names(&error, &path);
    }
    assert_eq!(stored_format_version(&path), newer.to_be_bytes());

    // Put back, the data is all there.
    set_format_version(&path, FORMAT_VERSION);
    let mut storage = RocksStorage::open(&path, OpenOptions::new()).expect("open");
    let loaded = storage.load().await.expect("load");
    assert_eq!(loaded.entries, vec![expected_entry(1, 1)]);
}

/// Unwritable directories. Root ignores permission bits, so when the tests
/// run as root (as on CI), the open runs in a child process that drops to
/// the unprivileged uid 65534 (`nobody`): a copy of this test binary in a
/// world-readable directory, so that the child can execute it wherever the
/// build directory lives. Otherwise the directory is made read-only.
#[test]
fn unwritable_directory_is_refused_as_unwritable() {
    let root = tempfile::tempdir().expect("temporary directory");
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("chmod root");
    let parent = root.path().join("read-only-parent");
    fs::create_dir(&parent).expect("create parent");
    let existing = parent.join("existing-store");
    RocksStorage::open(&existing, create()).expect("create a storage to reopen");
    let missing = parent.join("new-store");

    if running_as_root() {
        let executable = root.path().join("test-binary");
        fs::copy(std::env::current_exe().expect("test binary"), &executable).expect("copy");
        fs::set_permissions(&executable, fs::Permissions::from_mode(0o755)).expect("chmod");
        for path in [&missing, &existing] {
            let outcome = open_as_nobody(&executable, path);
            assert!(outcome.starts_with("open error Unwritable: "), "{outcome}");
            assert!(outcome.contains(&path.display().to_string()), "{outcome}");
        }
    } else {
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o555)).expect("chmod");
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o555)).expect("chmod");
        for path in [&missing, &existing] {
            let error = RocksStorage::open(path, create()).expect_err("opened read-only");
            assert!(matches!(error, Error::Unwritable { .. }), "{error:?}");
            assert_names(&error, path);
        }
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    assert!(!missing.exists(), "the unwritable directory was created");
    RocksStorage::open(&existing, OpenOptions::new()).expect("the existing storage still opens");
}

/// Runs an `open` child as uid/gid 65534 and returns its outcome line.
fn open_as_nobody(executable: &Path, path: &Path) -> String {
    use std::os::unix::process::CommandExt;

    let mut command = child_command(executable, "open", path, 0);
    create_if_missing(&mut command);
    let output = command
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .expect("run the child as uid 65534");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let outcome = stdout
        .lines()
        .find_map(|line| line.split_once(LINE_PREFIX))
        .map(|(_, outcome)| outcome.to_string());
    outcome.unwrap_or_else(|| {
        panic!(
            "child printed no outcome ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn memtable_or_wal_sizes_that_cannot_work_are_refused_before_touching_the_directory() {
    let root = tempfile::tempdir().expect("temporary directory");
    let path = root.path().join("store");
    let small_memtable = create().memtable_bytes_max(raft_storage::MEMTABLE_BYTES_MAX_MIN - 1);
    let wal_below_two_memtables = create()
        .memtable_bytes_max(1 << 20)
        .wal_bytes_max((2 << 20) - 1);

    for options in [small_memtable, wal_below_two_memtables] {
        let error = RocksStorage::open(&path, options).expect_err("opened with bad options");
        assert!(matches!(error, Error::InvalidOptions { .. }), "{error:?}");
        assert_names(&error, &path);
        assert!(!path.exists(), "the directory was created");
    }

    // The smallest sizes that can work open, and a reopen may change them.
    let smallest = create()
        .memtable_bytes_max(raft_storage::MEMTABLE_BYTES_MAX_MIN)
        .wal_bytes_max(2 * raft_storage::MEMTABLE_BYTES_MAX_MIN as u64);
    drop(RocksStorage::open(&path, smallest).expect("open with the smallest sizes"));
    RocksStorage::open(&path, OpenOptions::new()).expect("reopen with the default sizes");
}
