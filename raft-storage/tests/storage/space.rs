//! Space: during a long run of writes through real `RaftNode`s on
//! RocksDB, both the log and the data directory stay under bounds derived
//! from the snapshot threshold.
//!
//! `RAFT_STORAGE_SPACE_ENTRIES` sets the number of writes (30,000 by
//! default); the bounds do not depend on it, which is the point.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use raft_core::{Config, EntryPayload, LogIndex, LogStorage, StateMachine};
use raft_storage::{OpenOptions, RocksStorage, FLUSH_AFTER_BYTES_MIN, MEMTABLE_BYTES_MAX_DEFAULT};

use crate::cluster::RocksCluster;
use crate::slot_machine::{slot_command, SlotMachine, SLOTS};

/// A snapshot is due once this many applied entries follow the last one.
const SNAPSHOT_THRESHOLD_ENTRIES: u64 = 1_000;
/// Bytes of each written value (the command is one more, its slot).
const VALUE_BYTES: usize = 256;
/// Writes by default; `RAFT_STORAGE_SPACE_ENTRIES` overrides.
const WRITES_DEFAULT: u64 = 30_000;
/// Concurrent writers, each with one proposal outstanding at a time.
const CLIENTS: u64 = 32;
/// How often the sampler measures the data directories.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// The size of a directory's files, whole and by kind of file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct DirUsage {
    /// The sum of the files' lengths.
    apparent_bytes: u64,
    /// The blocks the files occupy: RocksDB preallocates each WAL file
    /// (1.1 times the memtable size), so this can exceed their length.
    allocated_bytes: u64,
    /// Lengths by kind of file (see [`file_kind`]).
    apparent_by_kind: BTreeMap<&'static str, u64>,
    /// Blocks by kind of file.
    allocated_by_kind: BTreeMap<&'static str, u64>,
}

impl DirUsage {
    /// The larger of each figure in `self` and `other`: the peaks of a
    /// series of samples.
    fn raise_to(&mut self, other: &DirUsage) {
        self.apparent_bytes = self.apparent_bytes.max(other.apparent_bytes);
        self.allocated_bytes = self.allocated_bytes.max(other.allocated_bytes);
        for (kind, bytes) in &other.apparent_by_kind {
            let peak = self.apparent_by_kind.entry(kind).or_default();
            *peak = (*peak).max(*bytes);
        }
        for (kind, bytes) in &other.allocated_by_kind {
            let peak = self.allocated_by_kind.entry(kind).or_default();
            *peak = (*peak).max(*bytes);
        }
    }

    fn apparent(&self, kind: &str) -> u64 {
        self.apparent_by_kind.get(kind).copied().unwrap_or(0)
    }
}

fn file_kind(name: &str) -> &'static str {
    if name.ends_with(".sst") {
        "sst"
    } else if name.ends_with(".log") {
        "wal"
    } else if name.starts_with("MANIFEST") {
        "manifest"
    } else if name.starts_with("LOG") {
        "info-log"
    } else if name.starts_with("OPTIONS") {
        "options"
    } else {
        "other"
    }
}

/// Measures `path` and what is under it; files that RocksDB deletes while
/// the walk runs are skipped.
fn dir_usage(path: &Path) -> DirUsage {
    let mut usage = DirUsage::default();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let listing = match fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => panic!("list {}: {error}", dir.display()),
        };
        for item in listing {
            let Ok(item) = item else { continue };
            let metadata = match item.metadata() {
                Ok(metadata) => metadata,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => panic!("stat {}: {error}", item.path().display()),
            };
            if metadata.is_dir() {
                pending.push(item.path());
                continue;
            }
            let kind = file_kind(&item.file_name().to_string_lossy());
            let allocated = metadata.blocks() * 512;
            usage.apparent_bytes += metadata.len();
            usage.allocated_bytes += allocated;
            *usage.apparent_by_kind.entry(kind).or_default() += metadata.len();
            *usage.allocated_by_kind.entry(kind).or_default() += allocated;
        }
    }
    usage
}

/// The peaks of each directory's usage, sampled by a thread of its own
/// every [`SAMPLE_INTERVAL`] until stopped. Each figure is its own peak:
/// the total and each kind of file may peak at different moments.
struct DirSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicU64>,
    peaks: Arc<Mutex<Vec<DirUsage>>>,
    thread: thread::JoinHandle<()>,
}

impl DirSampler {
    fn start(paths: Vec<PathBuf>) -> DirSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU64::new(0));
        let peaks = Arc::new(Mutex::new(vec![DirUsage::default(); paths.len()]));
        let thread = {
            let (stop, samples, peaks) = (stop.clone(), samples.clone(), peaks.clone());
            thread::spawn(move || loop {
                // Measure once more after the stop, so the end state counts.
                let stopping = stop.load(Ordering::Relaxed);
                for (position, path) in paths.iter().enumerate() {
                    let usage = dir_usage(path);
                    peaks.lock().expect("peaks lock")[position].raise_to(&usage);
                }
                samples.fetch_add(1, Ordering::Relaxed);
                if stopping {
                    return;
                }
                thread::sleep(SAMPLE_INTERVAL);
            })
        };
        DirSampler {
            stop,
            samples,
            peaks,
            thread,
        }
    }

    /// Stops the thread; returns the peaks of each directory and the
    /// number of samples taken.
    fn stop(self) -> (Vec<DirUsage>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler thread");
        let peaks = self.peaks.lock().expect("peaks lock").clone();
        (peaks, self.samples.load(Ordering::Relaxed))
    }
}

/// The value of write `n`: `VALUE_BYTES` bytes that differ from write to
/// write, so that RocksDB's compression could not hide them.
fn value_of(n: u64) -> Vec<u8> {
    let mut state = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..VALUE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Proposes writes `0..writes` from [`CLIENTS`] concurrent writers, each
/// retrying on the current leader until its write is applied; returns the
/// number of retries, or the first write not done by `deadline`.
async fn write_all(
    cluster: &Arc<RocksCluster>,
    writes: u64,
    deadline: Instant,
) -> Result<u64, String> {
    let next = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for _ in 0..CLIENTS {
        let (cluster, next, retries) = (cluster.clone(), next.clone(), retries.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= writes {
                    return Ok(());
                }
                let command = slot_command((n % SLOTS as u64) as usize, &value_of(n));
                loop {
                    if Instant::now() > deadline {
                        return Err(format!("write {n} not done by the deadline"));
                    }
                    let outcome = match cluster.leader() {
                        Some(leader) => leader.propose(command.clone()).await,
                        None => Err(raft_core::Error::NotLeader { leader_hint: None }),
                    };
                    match outcome {
                        Ok(()) => break,
                        // A retry may apply a write twice; overwriting a
                        // slot twice changes nothing this test looks at.
                        Err(_) => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
            }
        }));
    }
    for writer in writers {
        writer.await.map_err(|error| error.to_string())??;
    }
    Ok(retries.load(Ordering::Relaxed))
}

fn number_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |value| {
        let number = value.parse().unwrap_or(0);
        assert!(
            number > 0,
            "{name} must be a positive number, not {value:?}"
        );
        number
    })
}

/// What the log and the data directory of one node may reach.
#[derive(Debug)]
struct Bounds {
    entries: usize,
    wal_bytes: u64,
    sst_bytes: u64,
    manifest_bytes: u64,
    info_log_bytes: u64,
    options_and_other_bytes: u64,
    apparent_bytes: u64,
    allocated_bytes: u64,
}

/// The bounds, derived from the snapshot threshold `T`, the size of an
/// entry and of a snapshot, and the storage's RocksDB settings; none of
/// them depends on how many writes the run makes.
fn bounds(threshold: u64, snapshot_bytes: u64) -> Bounds {
    // Entries. A snapshot is due once T applied entries follow the last
    // one; it is taken on the apply task and saved one driver turn later.
    // Meanwhile the log also holds the entries applied past T in the turn
    // that made it due, those appended while the snapshot is taken and
    // saved, and the tail not yet applied. With CLIENTS writers, each with
    // one write outstanding, each of those is about CLIENTS entries on the
    // leader; a follower also holds what it has stored but not yet applied,
    // which grows with any pause of its tasks. We allow T more entries for
    // all of that, and at least 8 times CLIENTS: with T = 1,000, some
    // 40-60 ms of this run's write rate. Measured: 37-128 extra entries in
    // twelve runs, six at a time on the 2 cores; up to 640 in a
    // 700,000-write run under other load. The bound does not depend on the
    // run's length (30 times T by default).
    let threshold = threshold as usize;
    let entries = threshold + threshold.max(8 * CLIENTS as usize);

    // Bytes per entry in the WAL and in a table file: the value and its
    // slot, the rmp-serde encoding of the entry around it (variant name,
    // term, index), the record's CRC, the 8-byte key, RocksDB's framing,
    // and a share of the hard state written with each batch. Measured:
    // about 295 bytes for 256-byte values; we count 64 bytes beyond the
    // value.
    let entry_bytes = VALUE_BYTES as u64 + 64;
    // One snapshot interval: the log at its longest, plus one snapshot.
    let interval_bytes = entries as u64 * entry_bytes + snapshot_bytes;

    // WAL. After a snapshot install the storage asks RocksDB to flush both
    // memtables, once FLUSH_AFTER_BYTES_MIN was written since it last
    // asked; when the flush is done, every WAL file before it is deleted.
    // When it asks, the WAL holds less than FLUSH_AFTER_BYTES_MIN plus one
    // interval written since the last request. That stays until the flush
    // is done, while the next such amount accumulates; and if the flush
    // has not finished by the next request, the storage waits for it. So
    // the WAL holds at most two such amounts.
    let wal_bytes = 2 * (FLUSH_AFTER_BYTES_MIN + interval_bytes);

    // Table files. Each flush writes what is live: the log after the
    // snapshot (at most one interval's entries) and the latest metadata
    // (one snapshot). Level 0 collects up to 4 files per column family
    // before a compaction merges them into level 1, whose output exists
    // beside its inputs until the compaction ends: 6 files per column
    // family, each at most one interval.
    let sst_bytes = 6 * interval_bytes;

    // RocksDB's own files, bounded by the settings in src/open.rs: a new
    // MANIFEST past 1 MiB (the old one goes once the new one is written);
    // the diagnostic LOG rolled at 1 MiB, 4 files kept (we allow a fifth,
    // and a file may pass the size by the lines of one event); the two
    // latest OPTIONS files (about 11 KiB each), CURRENT, IDENTITY and LOCK.
    let manifest_bytes = 2 << 20;
    let info_log_bytes = 5 * (1 << 20) + (64 << 10);
    let options_and_other_bytes = 64 << 10;

    let apparent_bytes =
        wal_bytes + sst_bytes + manifest_bytes + info_log_bytes + options_and_other_bytes;

    // Blocks on disk: RocksDB preallocates each WAL file to 1.1 times the
    // memtable size and each MANIFEST to 4 MiB; every file rounds up to a
    // 4 KiB block (a few dozen files). WAL files: the current one, the one
    // a running flush will free, and one more for a memtable that filled
    // on its own (measured: two).
    let wal_preallocation_bytes = 3 * (MEMTABLE_BYTES_MAX_DEFAULT as u64 * 11 / 10);
    let manifest_preallocation_bytes = 2 * (4 << 20);
    let allocated_bytes =
        apparent_bytes + wal_preallocation_bytes + manifest_preallocation_bytes + (256 << 10);

    Bounds {
        entries,
        wal_bytes,
        sst_bytes,
        manifest_bytes,
        info_log_bytes,
        options_and_other_bytes,
        apparent_bytes,
        allocated_bytes,
    }
}

/// The bytes of the snapshot of a [`SlotMachine`] whose every slot holds a
/// value of `VALUE_BYTES`, with its record's CRC and the metadata beside it.
fn snapshot_bytes() -> u64 {
    let data = 8 + SLOTS as u64 * (4 + VALUE_BYTES as u64);
    data + 4 + 64
}

/// Rebuilds each node's state from its data directory alone (snapshot,
/// then the stored entries up to what the node had applied) and checks it
/// against the state the node had in memory: bounding the log lost nothing.
async fn rebuild_from_disk(cluster: &RocksCluster, applied: &[LogIndex]) {
    for (member, &applied_index) in cluster.nodes.iter().zip(applied) {
        let mut storage = RocksStorage::open(&member.path, OpenOptions::new())
            .unwrap_or_else(|error| panic!("reopen node {}: {error}", member.id));
        let stored = storage.load().await.expect("load");
        let snapshot = storage
            .snapshot()
            .await
            .expect("read snapshot")
            .unwrap_or_else(|| panic!("node {} has no snapshot", member.id));
        assert_eq!(stored.snapshot, Some(snapshot.meta), "node {}", member.id);

        let mut rebuilt = SlotMachine::new();
        rebuilt
            .restore(snapshot.meta, snapshot.data)
            .await
            .expect("restore stored snapshot");
        let mut expected_index = snapshot.meta.last_index + 1;
        for entry in stored.entries {
            assert_eq!(entry.index, expected_index, "node {}: log gap", member.id);
            expected_index += 1;
            if entry.index > applied_index {
                break;
            }
            if let EntryPayload::Command(command) = entry.payload {
                rebuilt.apply(entry.index, command).await;
            }
        }
        assert!(
            expected_index > applied_index,
            "node {}: the log ends before the applied index {applied_index}",
            member.id
        );
        assert_eq!(
            rebuilt.slots().values,
            member.machine.slots().values,
            "node {}: state rebuilt from disk differs",
            member.id
        );
    }
}

#[test]
fn log_and_data_directory_stay_bounded_during_a_long_run_of_writes() {
    let writes = number_from_env("RAFT_STORAGE_SPACE_ENTRIES", WRITES_DEFAULT);
    let threshold = SNAPSHOT_THRESHOLD_ENTRIES;
    let bounds = bounds(threshold, snapshot_bytes());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build runtime");
    let root = tempfile::tempdir().expect("create temporary directory");
    let started = Instant::now();
    // A bound on the whole run, so that a stuck cluster fails the test
    // instead of hanging it; a healthy run takes a few seconds.
    let deadline = started + Duration::from_secs(120);

    // The nodes run with the storage's default options, as kv-server's
    // do, and 5 ms ticks (elections after 250-500 ms).
    let cluster = runtime.block_on(RocksCluster::start(
        root.path(),
        OpenOptions::new(),
        3,
        |id, voters| {
            let mut config = Config::new(id, voters);
            config.tick_interval = Duration::from_millis(5);
            config.snapshot_entries_threshold = Some(threshold);
            config
        },
    ));
    let cluster = Arc::new(cluster);
    let paths = cluster.nodes.iter().map(|node| node.path.clone()).collect();
    let sampler = DirSampler::start(paths);

    let retries = runtime
        .block_on(write_all(&cluster, writes, deadline))
        .unwrap_or_else(|error| panic!("{error}"));
    cluster.assert_no_fatal_error();
    let commit = cluster.leader().map_or(0, |leader| leader.status().commit);
    let caught_up = runtime.block_on(cluster.wait_applied(commit, deadline));
    let (peaks, samples) = sampler.stop();
    let elapsed = started.elapsed();
    assert!(caught_up, "the nodes did not all apply {commit}");

    eprintln!(
        "space: {writes} writes of {VALUE_BYTES} bytes, snapshot threshold \
         {threshold} entries, {CLIENTS} writers, {retries} retries, \
         {samples} samples of each directory, {:.1} s",
        elapsed.as_secs_f64()
    );
    eprintln!("space: bounds per node {bounds:?}");
    for (member, peak) in cluster.nodes.iter().zip(&peaks) {
        let counts = member.counts();
        eprintln!(
            "space: node {}: entries stored max {} ({} counts), {} snapshots installed \
             (data max {} bytes); directory max {} bytes {:?}, allocated max {} bytes {:?}",
            member.id,
            counts.stored_max,
            counts.counts,
            counts.snapshots_installed,
            counts.snapshot_bytes_max,
            peak.apparent_bytes,
            peak.apparent_by_kind,
            peak.allocated_bytes,
            peak.allocated_by_kind,
        );
    }

    for (member, peak) in cluster.nodes.iter().zip(&peaks) {
        let id = member.id;
        let counts = member.counts();
        assert!(
            counts.violations.is_empty(),
            "node {id}: {:?}",
            counts.violations
        );
        // The run must really have compacted all along: the snapshots are
        // at most the entries bound apart.
        let snapshots_min = writes / bounds.entries as u64;
        assert!(
            counts.snapshots_installed >= snapshots_min,
            "node {id}: {} snapshots, expected at least {snapshots_min}",
            counts.snapshots_installed
        );
        assert!(
            counts.snapshot_bytes_max as u64 <= snapshot_bytes(),
            "node {id}: a snapshot of {} bytes",
            counts.snapshot_bytes_max
        );
        assert!(
            counts.stored_max <= bounds.entries,
            "node {id}: {} entries stored, bound {}",
            counts.stored_max,
            bounds.entries
        );
        let kinds = [
            ("wal", peak.apparent("wal"), bounds.wal_bytes),
            ("sst", peak.apparent("sst"), bounds.sst_bytes),
            ("manifest", peak.apparent("manifest"), bounds.manifest_bytes),
            ("info-log", peak.apparent("info-log"), bounds.info_log_bytes),
            (
                "options and other",
                peak.apparent("options") + peak.apparent("other"),
                bounds.options_and_other_bytes,
            ),
            ("directory", peak.apparent_bytes, bounds.apparent_bytes),
            ("allocated", peak.allocated_bytes, bounds.allocated_bytes),
        ];
        for (kind, measured, bound) in kinds {
            assert!(
                measured <= bound,
                "node {id}: {kind} reached {measured} bytes, bound {bound}"
            );
        }
    }

    let applied: Vec<LogIndex> = cluster
        .nodes
        .iter()
        .map(|member| member.node.status().applied)
        .collect();
    let first_values = cluster.nodes[0].machine.slots().values.clone();
    for member in &cluster.nodes[1..] {
        assert_eq!(
            member.machine.slots().values,
            first_values,
            "node {} ended in another state than node 1",
            member.id
        );
    }
    runtime.block_on(cluster.shutdown());
    runtime.block_on(rebuild_from_disk(&cluster, &applied));
}
