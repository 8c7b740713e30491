//! Measures synced appends to [`RocksStorage`] beside the disk's own sync
//! latency.
//!
//! Run it in release mode:
//!
//! ```text
//! cargo run --release -p raft-storage --bin storage-bench -- [--dir PATH] [--seconds N]
//! ```
//!
//! It prints, for batches of 1, 16 and 64 entries of 256 bytes, how many
//! entries per second one writer gets and the p50/p99 latency of one
//! `LogStorage::write` (synced), next to the floor: an `fdatasync` after
//! each 4 KiB append to a plain file in the same directory (and, for
//! reference, after each 16 KiB append, about the bytes of a 64-entry
//! batch). The cases take turns of 0.25 s until each has run `--seconds`
//! (default 3), so that other load on the machine weighs on all of them
//! alike. The data goes to a new directory under `--dir` (default: the
//! system temporary directory), which must be on the disk you want to
//! measure, not on tmpfs; it is removed at the end.
#![allow(clippy::print_stdout)] // Printing the figures is this program's job.

use std::error::Error;
use std::fs::{self, File, OpenOptions as FileOpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, LogIndex, LogStorage, LogWrite};
use raft_storage::{OpenOptions, RocksStorage};

const ENTRY_BYTES: usize = 256;
const BATCH_SIZES: [usize; 3] = [1, 16, 64];
const FLOOR_APPEND_BYTES: usize = 4096;
/// About the size of a 64-entry batch in the WAL, to show what the extra
/// bytes alone cost the disk.
const LARGE_APPEND_BYTES: usize = 16_384;
const WARM_UP: Duration = Duration::from_millis(200);
/// How long each case runs before the next one takes its turn.
const ROUND_SLICE: Duration = Duration::from_millis(250);

struct Arguments {
    base_dir: PathBuf,
    case_duration: Duration,
}

fn parse_arguments() -> Result<Arguments, Box<dyn Error>> {
    let mut arguments = Arguments {
        base_dir: std::env::temp_dir(),
        case_duration: Duration::from_secs(3),
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let value = words.next().ok_or(format!("{word} needs a value"))?;
        match word.as_str() {
            "--dir" => arguments.base_dir = PathBuf::from(value),
            "--seconds" => {
                let seconds: f64 = value.parse().map_err(|_| "--seconds takes a number")?;
                if !(0.1..=600.0).contains(&seconds) {
                    return Err("--seconds must be between 0.1 and 600".into());
                }
                arguments.case_duration = Duration::from_secs_f64(seconds);
            }
            other => return Err(format!("unknown argument {other}; see the file's docs").into()),
        }
    }
    Ok(arguments)
}

/// Removes the benchmark's directory when dropped, whatever happened.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Latencies of one case and what they add up to.
struct CaseResult {
    name: String,
    /// Entries (or, for a plain file, appends) per call.
    entries_per_call: usize,
    latencies: Vec<Duration>,
    /// Time spent in this case's slices, summed over the rounds.
    elapsed: Duration,
}

impl CaseResult {
    fn new(name: String, entries_per_call: usize) -> CaseResult {
        CaseResult {
            name,
            entries_per_call,
            latencies: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    fn percentile(&self, percent: usize) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
    }

    fn entries_per_second(&self) -> f64 {
        (self.latencies.len() * self.entries_per_call) as f64 / self.elapsed.as_secs_f64()
    }
}

/// A plain file that gets `append_bytes` appended and `fdatasync`ed per call.
struct PlainFile {
    file: File,
    block: Vec<u8>,
}

impl PlainFile {
    fn create(path: &Path, append_bytes: usize) -> std::io::Result<PlainFile> {
        let file = FileOpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(PlainFile {
            file,
            block: vec![0x5a; append_bytes],
        })
    }

    /// Appends and syncs until `until`, recording each call's latency.
    fn run(&mut self, until: Instant, result: &mut CaseResult) -> std::io::Result<()> {
        let started = Instant::now();
        while Instant::now() < until {
            let call_started = Instant::now();
            self.file.write_all(&self.block)?;
            self.file.sync_data()?;
            result.latencies.push(call_started.elapsed());
        }
        result.elapsed += started.elapsed();
        Ok(())
    }
}

/// Synced writes of `batch_size` entries each, one after the other, until
/// `until`.
async fn run_batches(
    storage: &mut RocksStorage,
    next_index: &mut LogIndex,
    batch_size: usize,
    until: Instant,
    result: &mut CaseResult,
) -> Result<(), Box<dyn Error>> {
    let payload = Bytes::from(vec![0xa5_u8; ENTRY_BYTES]);
    let started = Instant::now();
    while Instant::now() < until {
        let entries: Vec<Entry> = (0..batch_size as LogIndex)
            .map(|offset| Entry {
                term: 1,
                index: *next_index + offset,
                payload: EntryPayload::Command(payload.clone()),
            })
            .collect();
        *next_index += batch_size as LogIndex;
        let write = LogWrite {
            hard_state: None,
            entries,
        };
        let call_started = Instant::now();
        storage.write(write).await?;
        result.latencies.push(call_started.elapsed());
    }
    result.elapsed += started.elapsed();
    Ok(())
}

/// The file-system type and device of the mount that holds `path`, read
/// from `/proc/mounts` (the longest mount point that is a prefix of it).
fn file_system_of(path: &Path) -> String {
    let Ok(canonical) = path.canonicalize() else {
        return "unknown file system".into();
    };
    let Ok(mounts) = fs::read_to_string("/proc/mounts") else {
        return "unknown file system".into();
    };
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [device, mount_point, kind, ..] if canonical.starts_with(mount_point) => {
                    Some((mount_point.len(), format!("{kind} on {device}")))
                }
                _ => None,
            }
        })
        .max_by_key(|(length, _)| *length)
        .map_or_else(|| "unknown file system".into(), |(_, found)| found)
}

fn print_row(result: &CaseResult, floor_p50: Duration) {
    let millis = |duration: Duration| duration.as_secs_f64() * 1000.0;
    let p50 = result.percentile(50);
    println!(
        "{:<36} {:>7} {:>10.0} {:>8.3} {:>8.3} {:>10.2}",
        result.name,
        result.latencies.len(),
        result.entries_per_second(),
        millis(p50),
        millis(result.percentile(99)),
        p50.as_secs_f64() / floor_p50.as_secs_f64(),
    );
}

/// Runs every case in turns of `ROUND_SLICE`, so that whatever else the
/// machine does during the run weighs on all cases alike.
async fn run_cases(dir: &Path, case_duration: Duration) -> Result<Vec<CaseResult>, Box<dyn Error>> {
    let mut floor_file = PlainFile::create(&dir.join("floor-4k.dat"), FLOOR_APPEND_BYTES)?;
    let mut large_file = PlainFile::create(&dir.join("plain-16k.dat"), LARGE_APPEND_BYTES)?;
    let mut storage = RocksStorage::open(
        dir.join("store"),
        OpenOptions::new().create_if_missing(true),
    )?;
    let mut next_index: LogIndex = 1;

    let mut floor = CaseResult::new("floor: 4 KiB append + fdatasync".into(), 1);
    let mut large = CaseResult::new("plain: 16 KiB append + fdatasync".into(), 1);
    let mut batches: Vec<CaseResult> = BATCH_SIZES
        .iter()
        .map(|&size| CaseResult::new(format!("rocksdb: {size} x {ENTRY_BYTES} B per write"), size))
        .collect();

    // Warm up every path (file creation, WAL creation, page cache) unmeasured.
    let mut discard = CaseResult::new(String::new(), 1);
    floor_file.run(Instant::now() + WARM_UP, &mut discard)?;
    large_file.run(Instant::now() + WARM_UP, &mut discard)?;
    for &size in &BATCH_SIZES {
        let until = Instant::now() + WARM_UP;
        run_batches(&mut storage, &mut next_index, size, until, &mut discard).await?;
    }

    let rounds = (case_duration.as_secs_f64() / ROUND_SLICE.as_secs_f64()).ceil() as u32;
    for _ in 0..rounds.max(1) {
        floor_file.run(Instant::now() + ROUND_SLICE, &mut floor)?;
        large_file.run(Instant::now() + ROUND_SLICE, &mut large)?;
        for (result, &size) in batches.iter_mut().zip(&BATCH_SIZES) {
            let until = Instant::now() + ROUND_SLICE;
            run_batches(&mut storage, &mut next_index, size, until, result).await?;
        }
    }
    let mut results = vec![floor, large];
    results.append(&mut batches);
    Ok(results)
}

fn main() -> Result<(), Box<dyn Error>> {
    let arguments = parse_arguments()?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let dir = arguments
        .base_dir
        .join(format!("raft-storage-bench-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let scratch = ScratchDir(dir);
    let file_system = file_system_of(&scratch.0);

    println!(
        "storage-bench: data in {} ({file_system}); {:.1} s per case in {:.1} s turns",
        scratch.0.display(),
        arguments.case_duration.as_secs_f64(),
        ROUND_SLICE.as_secs_f64(),
    );
    if file_system.starts_with("tmpfs") {
        println!("warning: tmpfs does not sync to a disk; pass --dir on a real disk");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = runtime.block_on(run_cases(&scratch.0, arguments.case_duration))?;

    let floor_p50 = results[0].percentile(50);
    println!(
        "{:<36} {:>7} {:>10} {:>8} {:>8} {:>10}",
        "case", "calls", "entries/s", "p50 ms", "p99 ms", "p50/floor"
    );
    for result in &results {
        print_row(result, floor_p50);
    }
    Ok(())
}
