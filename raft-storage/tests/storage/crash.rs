//! Crash safety: a child process appends, rewrites and snapshots; the test
//! kills it with SIGKILL at random moments and checks after each kill that
//! the directory holds exactly the writes the child reported durable, plus
//! at most the one call in flight, whole or not at all.
//!
//! One kill in three waits for the child to begin a snapshot install and
//! lands during it or just after it (while RocksDB flushes in the
//! background). After every kill the stored snapshot must be the previous
//! one or the one in flight, whole: its data names its own position and
//! carries a checksum, and the position must be the metadata's. The
//! entries, read straight from RocksDB, must all lie after it, contiguous.
//!
//! `RAFT_STORAGE_CRASH_SEED` replays a run; `RAFT_STORAGE_CRASH_KILLS` sets
//! the number of kills (60 by default).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raft_core::{LogIndex, LogStorage, SnapshotMeta};
use raft_storage::{Error, OpenOptions, RocksStorage};
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, DB};

use crate::child::{child_command, LINE_PREFIX};
use crate::model::{Model, Op};
use crate::support::{expected_snapshot, snapshot_position, Rng};

const KILLS_DEFAULT: u64 = 60;

/// What one child reported before it died.
#[derive(Default)]
struct Report {
    /// Operations reported done, in order.
    done: Vec<Op>,
    /// The operation begun but not reported done, if any.
    in_flight: Option<Op>,
}

impl Report {
    fn take_line(&mut self, line: &str) {
        // The test harness prints its own lines, and may print the test's
        // name in front of the child's first line.
        let Some((_, message)) = line.split_once(LINE_PREFIX) else {
            return;
        };
        if let Some(op) = message.strip_prefix("begin ") {
            let op = Op::parse(op).unwrap_or_else(|| panic!("bad child line {line:?}"));
            assert!(self.in_flight.is_none(), "two calls in flight: {line:?}");
            self.in_flight = Some(op);
        } else if message == "done" {
            let op = self.in_flight.take().expect("`done` without `begin`");
            self.done.push(op);
        }
    }
}

fn seed_from_env_or_clock() -> u64 {
    if let Ok(seed) = std::env::var("RAFT_STORAGE_CRASH_SEED") {
        return seed.parse().expect("RAFT_STORAGE_CRASH_SEED is a number");
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_nanos() as u64)
}

/// Reads the child's lines until it has reported `dones_wanted` completed
/// calls or closed its output.
fn read_until_done(
    lines: &mut BufReader<ChildStdout>,
    report: &mut Report,
    dones_wanted: usize,
) -> bool {
    let mut line = String::new();
    while report.done.len() < dones_wanted {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => report.take_line(line.trim_end()),
        }
    }
    true
}

/// Reads the child's lines until it has reported `dones_wanted` completed
/// calls and then begun a snapshot install.
fn read_until_snapshot_begins(
    lines: &mut BufReader<ChildStdout>,
    report: &mut Report,
    dones_wanted: usize,
) -> bool {
    let mut line = String::new();
    loop {
        let snapshot_in_flight = matches!(report.in_flight, Some(Op::Snapshot { .. }));
        if report.done.len() >= dones_wanted && snapshot_in_flight {
            return true;
        }
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => report.take_line(line.trim_end()),
        }
    }
}

/// Kills `child` (SIGKILL), reaps it, and reads what it printed before.
fn kill_and_drain(mut child: Child, mut lines: BufReader<ChildStdout>, report: &mut Report) {
    child.kill().expect("kill child");
    let status = child.wait().expect("reap child");
    let mut rest = String::new();
    lines.read_to_string(&mut rest).expect("read child output");
    for line in rest.lines() {
        report.take_line(line);
    }
    assert_eq!(
        status.signal(),
        Some(9),
        "child did not die by SIGKILL: {status}"
    );
}

/// Checks that `path` holds `model`, or `model` with `in_flight` applied,
/// and returns the one it holds. The snapshot and the raw entries are
/// checked first, on their own, so that a mix is named as such.
async fn check_directory(path: &Path, model: Model, in_flight: Option<Op>, context: &str) -> Model {
    if !path.exists() {
        // Killed before the storage was created: nothing was acknowledged.
        assert_eq!(model, Model::default(), "{context}: directory vanished");
        return model;
    }
    let mut storage = RocksStorage::open(path, OpenOptions::new())
        .unwrap_or_else(|error| panic!("{context}: reopen failed: {error}"));
    let loaded = storage
        .load()
        .await
        .unwrap_or_else(|error| panic!("{context}: load failed: {error}"));
    let snapshot = storage
        .snapshot()
        .await
        .unwrap_or_else(|error| panic!("{context}: reading the snapshot failed: {error}"));
    drop(storage);
    check_snapshot_whole(snapshot.as_ref(), model.snapshot(), in_flight, context);
    let snapshot_index = snapshot.map_or(0, |snapshot| snapshot.meta.last_index);
    let loaded_indexes: Vec<LogIndex> = loaded.entries.iter().map(|entry| entry.index).collect();
    check_raw_entries(path, snapshot_index, &loaded_indexes, context);

    let mut after = model.clone();
    if let Some(op) = in_flight {
        after.apply(op);
    }
    let found = if loaded == model.stored_state() {
        model
    } else if in_flight.is_some() && loaded == after.stored_state() {
        after
    } else {
        panic!(
            "{context}: storage matches neither the acknowledged state nor it plus the call in \
             flight ({in_flight:?})\n  loaded: hard state {:?}, snapshot {:?}, entries {}..={}\n  \
             acknowledged: {:?}",
            loaded.hard_state,
            loaded.snapshot,
            loaded.entries.first().map_or(0, |entry| entry.index),
            loaded.entries.last().map_or(0, |entry| entry.index),
            model,
        )
    };
    found
}

fn meta(last_index: LogIndex, last_term: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_index,
        last_term,
    }
}

/// The stored snapshot is the one acknowledged before the kill or the one
/// whose install was in flight, never a mix: its data is whole (length and
/// checksum), names the position its metadata names, and is byte for byte
/// the snapshot installed at that position.
fn check_snapshot_whole(
    stored: Option<&raft_core::Snapshot>,
    acknowledged: Option<SnapshotMeta>,
    in_flight: Option<Op>,
    context: &str,
) {
    let in_flight = match in_flight {
        Some(Op::Snapshot { index, term }) => Some(meta(index, term)),
        _ => None,
    };
    let Some(stored) = stored else {
        assert!(
            acknowledged.is_none(),
            "{context}: the acknowledged snapshot {acknowledged:?} is gone"
        );
        return;
    };
    let position = snapshot_position(&stored.data).unwrap_or_else(|detail| {
        panic!(
            "{context}: snapshot data under {:?} is not whole: {detail}",
            stored.meta
        )
    });
    assert_eq!(
        position, stored.meta,
        "{context}: snapshot data of one position under the metadata of another"
    );
    assert!(
        Some(stored.meta) == acknowledged || Some(stored.meta) == in_flight,
        "{context}: stored snapshot {:?} is neither the acknowledged one {acknowledged:?} \
         nor the one in flight {in_flight:?}",
        stored.meta
    );
    let expected = expected_snapshot(stored.meta.last_index, stored.meta.last_term);
    assert!(
        *stored == expected,
        "{context}: snapshot data differs from what was installed"
    );
}

/// Reads the entry keys straight from RocksDB (the storage hides anything
/// at or below the snapshot) and checks that they all lie after the
/// snapshot, contiguous, and are the entries the storage loaded.
fn check_raw_entries(path: &Path, snapshot_index: LogIndex, loaded: &[LogIndex], context: &str) {
    let families =
        ["default", "entries"].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors_read_only(&Options::default(), path, families, false)
        .unwrap_or_else(|error| panic!("{context}: raw open failed: {error}"));
    let entries = db.cf_handle("entries").expect("entries family");
    let mut raw = Vec::new();
    for item in db.iterator_cf(entries, IteratorMode::Start) {
        let (key, _) = item.unwrap_or_else(|error| panic!("{context}: raw read: {error}"));
        let key: [u8; 8] = key.as_ref().try_into().expect("8-byte entry key");
        raw.push(LogIndex::from_be_bytes(key));
    }
    if let Some(&first) = raw.first() {
        assert!(
            first > snapshot_index,
            "{context}: entry {first} is stored at or below the snapshot at {snapshot_index}"
        );
        assert_eq!(
            first,
            snapshot_index + 1,
            "{context}: the log after the snapshot at {snapshot_index} starts at {first}"
        );
    }
    for pair in raw.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "{context}: the log has a gap after {}",
            pair[0]
        );
    }
    assert_eq!(
        raw, loaded,
        "{context}: raw entries differ from the loaded ones"
    );
}

#[tokio::test]
async fn every_reported_write_survives_sigkill_and_none_is_torn() {
    let seed = seed_from_env_or_clock();
    let kills: u64 = std::env::var("RAFT_STORAGE_CRASH_KILLS").map_or(KILLS_DEFAULT, |kills| {
        kills.parse().expect("a number of kills")
    });
    eprintln!(
        "crash test: seed {seed} (replay with RAFT_STORAGE_CRASH_SEED={seed}), {kills} kills"
    );

    let mut rng = Rng::new(seed);
    let directory = tempfile::tempdir().expect("create temporary directory");
    let path = directory.path().join("store");
    let executable = std::env::current_exe().expect("find the test binary");
    let started = Instant::now();
    let mut model = Model::default();
    let (mut kills_in_flight, mut in_flight_landed, mut calls_done) = (0, 0, 0);
    let (mut kills_in_snapshot, mut snapshots_landed) = (0, 0);

    for kill in 0..kills {
        let context = format!("seed {seed}, kill {kill}");
        let stderr_path = directory.path().join("child-stderr.txt");
        let stderr = File::create(&stderr_path).expect("create child stderr file");
        let mut child = child_command(&executable, "append", &path, rng.next_u64())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().expect("child stdout"));

        // Kill during start-up now and then; one time in three once a
        // snapshot install has begun; otherwise after some calls and a
        // random pause that lands inside or between calls.
        let mut report = Report::default();
        let dones_wanted = rng.range(0, 30) as usize;
        let aim_at_snapshot = dones_wanted > 0 && rng.percent(33);
        let alive = if aim_at_snapshot {
            read_until_snapshot_begins(&mut lines, &mut report, dones_wanted)
        } else {
            read_until_done(&mut lines, &mut report, dones_wanted)
        };
        if !alive {
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("{context}: child stopped on its own:\n{stderr}");
        }
        let pause_micros = if dones_wanted == 0 {
            rng.range(0, 40_000)
        } else {
            rng.range(0, 1_500)
        };
        std::thread::sleep(Duration::from_micros(pause_micros));
        kill_and_drain(child, lines, &mut report);

        calls_done += report.done.len();
        for op in &report.done {
            model.apply(*op);
        }
        let in_snapshot = matches!(report.in_flight, Some(Op::Snapshot { .. }));
        if report.in_flight.is_some() {
            kills_in_flight += 1;
        }
        kills_in_snapshot += u64::from(in_snapshot);
        let before = model.clone();
        model = check_directory(&path, model, report.in_flight, &context).await;
        if model != before {
            in_flight_landed += 1;
            snapshots_landed += u64::from(in_snapshot);
        }
    }

    eprintln!(
        "crash test: {kills} kills in {:.1} s, {calls_done} calls acknowledged, \
         {kills_in_flight} kills during a call ({in_flight_landed} of those calls landed), \
         {kills_in_snapshot} during a snapshot install ({snapshots_landed} landed), \
         log now {}..={}",
        started.elapsed().as_secs_f64(),
        model.first_index(),
        model.last_index(),
    );
    assert!(
        calls_done > 0,
        "seed {seed}: the children acknowledged nothing"
    );
    assert!(
        kills_in_flight > 0,
        "seed {seed}: no kill landed during a call"
    );
    assert!(
        kills < 10 || kills_in_snapshot > 0,
        "seed {seed}: no kill landed during a snapshot install"
    );
}

/// A directory that a live process has open is refused with `Locked`, and
/// opens once that process is dead.
#[tokio::test]
async fn directory_open_in_another_process_is_refused_as_locked() {
    let directory = tempfile::tempdir().expect("create temporary directory");
    let path = directory.path().join("store");
    let executable = std::env::current_exe().expect("find the test binary");
    let mut child = child_command(&executable, "append", &path, 11)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut lines = BufReader::new(child.stdout.take().expect("child stdout"));
    let mut report = Report::default();
    assert!(
        read_until_done(&mut lines, &mut report, 1),
        "child stopped on its own"
    );

    let error = RocksStorage::open(&path, OpenOptions::new()).expect_err("opened a locked store");
    assert!(
        matches!(&error, Error::Locked { path: locked, .. } if *locked == path),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );

    kill_and_drain(child, lines, &mut report);
    let mut storage = RocksStorage::open(&path, OpenOptions::new()).expect("open after the kill");
    storage.load().await.expect("load after the kill");
}
