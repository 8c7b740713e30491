//! The child process of the crash and permission tests.
//!
//! The tests re-run this test binary with `RAFT_STORAGE_TEST_CHILD` set and
//! a filter that selects [`append_loop_reports_every_write_it_completes`];
//! that test then plays the requested role instead of its own check:
//!
//! - `append`: open the directory, then append, rewrite and snapshot at
//!   random, printing `child: begin <op>` before each call and
//!   `child: done` once it has returned (so once it is durable);
//! - `open`: try to open the directory and print the outcome.
//!
//! Run normally, the test checks the append loop in-process: every write
//! it reports is in the storage afterwards.

use std::error::Error as StdError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use raft_core::LogStorage;
use raft_storage::{OpenOptions, RocksStorage};

use crate::model::{Model, Op};
use crate::support::{expected_snapshot, Rng};

const ROLE_VARIABLE: &str = "RAFT_STORAGE_TEST_CHILD";
const DIR_VARIABLE: &str = "RAFT_STORAGE_TEST_DIR";
const SEED_VARIABLE: &str = "RAFT_STORAGE_TEST_SEED";
const CREATE_VARIABLE: &str = "RAFT_STORAGE_TEST_CREATE";

/// The prefix of every line the child prints for its parent.
pub const LINE_PREFIX: &str = "child: ";

/// How long a child appends at most when nobody kills it.
const CHILD_LIFETIME_MAX: Duration = Duration::from_secs(20);

/// A command that runs this test binary as a child in `role` on `dir`.
pub fn child_command(executable: &Path, role: &str, dir: &Path, seed: u64) -> Command {
    let mut command = Command::new(executable);
    command
        .args([
            "child::append_loop_reports_every_write_it_completes",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_VARIABLE, role)
        .env(DIR_VARIABLE, dir)
        .env(SEED_VARIABLE, seed.to_string());
    command
}

/// Asks an `open` child to create the directory when it is missing.
pub fn create_if_missing(command: &mut Command) {
    command.env(CREATE_VARIABLE, "1");
}

/// Appends until `writes_max` writes or the lifetime cap, reporting each
/// operation on `report` before it starts and once it returned.
pub async fn append_loop(
    path: &Path,
    seed: u64,
    writes_max: u64,
    report: &mut impl Write,
) -> Result<Model, Box<dyn StdError>> {
    let mut storage = RocksStorage::open(path, OpenOptions::new().create_if_missing(true))?;
    let state = storage.load().await?;
    let mut model = Model::from_stored(&state);
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + CHILD_LIFETIME_MAX;

    for _ in 0..writes_max {
        if Instant::now() > deadline {
            break;
        }
        let op = model.next_op(&mut rng);
        writeln!(report, "{LINE_PREFIX}begin {op}")?;
        report.flush()?;
        match op {
            Op::Write { .. } => {
                let write = op.log_write().ok_or("a write without entries")?;
                storage.write(write).await?;
            }
            Op::Snapshot { index, term } => {
                storage
                    .install_snapshot(&expected_snapshot(index, term))
                    .await?;
            }
        }
        writeln!(report, "{LINE_PREFIX}done")?;
        report.flush()?;
        model.apply(op);
    }
    Ok(model)
}

/// Tries to open the directory and prints `child: open ok` or
/// `child: open error <Variant>: <message>`.
fn open_role(path: &Path) -> Result<(), Box<dyn StdError>> {
    let create = std::env::var_os(CREATE_VARIABLE).is_some();
    let outcome = RocksStorage::open(path, OpenOptions::new().create_if_missing(create));
    let line = match outcome {
        Ok(_) => "open ok".to_string(),
        Err(error) => {
            let debug = format!("{error:?}");
            let variant: String = debug.chars().take_while(|c| c.is_alphanumeric()).collect();
            format!("open error {variant}: {error}")
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{LINE_PREFIX}{line}")?;
    stdout.flush()?;
    Ok(())
}

fn child_role() -> Option<(String, PathBuf, u64)> {
    let role = std::env::var(ROLE_VARIABLE).ok()?;
    let dir = PathBuf::from(std::env::var_os(DIR_VARIABLE)?);
    let seed = std::env::var(SEED_VARIABLE).ok()?.parse().ok()?;
    Some((role, dir, seed))
}

#[tokio::test]
async fn append_loop_reports_every_write_it_completes() {
    if let Some((role, dir, seed)) = child_role() {
        match role.as_str() {
            "append" => {
                let mut stdout = std::io::stdout();
                append_loop(&dir, seed, u64::MAX, &mut stdout)
                    .await
                    .expect("child append loop");
            }
            "open" => open_role(&dir).expect("child open"),
            other => panic!("unknown child role {other:?}"),
        }
        return;
    }

    // In-process: the model the loop ends with is what a reopen loads, and
    // the report has one `done` per `begin`.
    let directory = tempfile::tempdir().expect("create temporary directory");
    let path = directory.path().join("store");
    let mut report = Vec::new();
    let model = append_loop(&path, 7, 200, &mut report)
        .await
        .expect("append loop");
    let report = String::from_utf8(report).expect("report is text");
    let begins = report.matches("child: begin ").count();
    let dones = report.matches("child: done").count();
    assert_eq!((begins, dones), (200, 200), "{report}");

    let mut storage = RocksStorage::open(&path, OpenOptions::new()).expect("reopen");
    let loaded = storage.load().await.expect("load");
    assert_eq!(loaded, model.stored_state());
}
