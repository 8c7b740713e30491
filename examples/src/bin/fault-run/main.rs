//! The fault-injection run: real `kv-server` processes, real clients, real
//! faults, and a linearizability check of what the clients saw.
//!
//! ```sh
//! bash scripts/fault-run.sh                       # 60 s, 5 clients, a fresh seed
//! bash scripts/fault-run.sh --seed 7 --duration-s 120
//! ```
//!
//! It starts three `kv-server` processes on 127.0.0.1 (free ports, fresh
//! certificates and data directories in a new folder under the temporary
//! directory), runs `--clients` clients that get, put and append on a few
//! keys with a unique value per write and record every operation in the
//! JSON Lines history of `shared/HISTORY.md`, and meanwhile injects faults
//! from a schedule drawn from the seed: SIGKILL a node or the leader and
//! restart it, SIGSTOP/SIGCONT a node or the leader, SIGKILL all nodes and
//! restart them, and (as root, with `nft`) cut a node or the leader off
//! from the others. Then it heals everything, waits for the cluster, reads
//! every key once more, stops the nodes and checks the history with
//! kv-service's linearizability checker, key by key.
//!
//! Watch for the seed and the schedule at the start, one line per fault as
//! it happens, and at the end the verdict, the operation counts and a
//! one-line JSON `summary:`. The exit status says the verdict:
//!
//! | status | meaning |
//! | --- | --- |
//! | 0 | linearizable, and the run went as planned |
//! | 1 | not linearizable: the history shows a bug |
//! | 2 | bad command line |
//! | 3 | the checker could not decide within its budget |
//! | 4 | the run failed: the cluster did not start or recover, a node exited by itself or did not stop cleanly, a fault could not be injected |

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line program

mod cluster;
mod nemesis;
mod netns;
mod report;
mod schedule;
mod workload;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use kv_clerk::quic::QuicConnector;
use kv_clerk::{Clerk, RecordingClerk};
use kv_service::history::read_history_file;
use kv_service::linearizability::{check, CheckConfig, Explanation, Verdict};
use kv_service::HistoryRecorder;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::{describe_status, Cluster, StopOutcome};
use crate::nemesis::Nemesis;
use crate::schedule::{FaultKind, Rng};
use crate::workload::{ClientTally, WorkloadConfig};

/// Exit status: the history is not linearizable.
const EXIT_NOT_LINEARIZABLE: u8 = 1;
/// Exit status: the checker ran out of budget.
const EXIT_UNKNOWN: u8 = 3;
/// Exit status: the run itself failed.
pub const EXIT_RUN_FAILED: u8 = 4;

/// How many nodes a run starts.
const NODES: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Partitions {
    /// Use partitions when this process may (root, `unshare`, `ip`, `nft`).
    Auto,
    /// Use them, or fail.
    On,
    /// Never.
    Off,
}

#[derive(Debug, Parser)]
#[command(
    name = "fault-run",
    about = "Runs clients against a local three-node kv-server cluster while injecting \
             faults, and checks that the recorded history is linearizable."
)]
struct Arguments {
    /// How long the clients run, in seconds (faults stop 2 s before).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration_s: u64,

    /// How many concurrent clients, each with its own clerk and session.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=64))]
    clients: u64,

    /// How many keys the clients share.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    keys: u64,

    /// Seed of the fault schedule and of the clients' choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,

    /// The faults to draw from, comma-separated (default: all that can run here).
    #[arg(long, value_enum, value_delimiter = ',', conflicts_with = "no_faults")]
    faults: Option<Vec<FaultKind>>,

    /// Inject no faults (a baseline run).
    #[arg(long)]
    no_faults: bool,

    /// Network partitions, in a network namespace of the run's own.
    #[arg(long, value_enum, default_value_t = Partitions::Auto)]
    partitions: Partitions,

    /// How long one operation may take before the client gives up (recorded as unknown).
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    op_timeout_ms: u64,

    /// Mean pause between two operations of a client, in milliseconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    think_ms: u64,

    /// The run's folder: certificates, node data and logs, history (default: a new folder under the temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Where to write the history (default: history.jsonl in the run's folder).
    #[arg(long, value_name = "FILE")]
    history_out: Option<PathBuf>,

    /// The kv-server program (default: kv-server, else e2e-kv-server, next to this program).
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,

    /// How long the cluster may take to answer at the start and after the final heal, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    ready_timeout_s: u64,

    /// Wall-time budget of the linearizability check, in seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    check_time_s: u64,

    /// Keep the nodes' data directories (by default they are removed after a run, logs and history stay).
    #[arg(long)]
    keep_data: bool,
}

/// The kv-server program to run.
fn server_program(given: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        if !path.is_file() {
            bail!("--server {} is not a file", path.display());
        }
        return Ok(path.clone());
    }
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    for name in ["kv-server", "e2e-kv-server"] {
        let candidate = exe.with_file_name(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no kv-server next to {}; build it with `cargo build --release -p kv-service --bin \
         kv-server` (bash scripts/fault-run.sh does) or pass --server",
        exe.display()
    )
}

/// A seed from the clock, for runs without `--seed`.
fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    Rng::new(nanos).next_u64() % 1_000_000_000
}

/// Whether partitions are on for this run, saying why not when they are off.
fn partitions_on(arguments: &Arguments) -> anyhow::Result<bool> {
    if netns::is_inside() {
        return Ok(true);
    }
    let reason = match arguments.partitions {
        Partitions::Off => return Ok(false),
        Partitions::On | Partitions::Auto => netns::unavailable_reason(),
    };
    match (arguments.partitions, reason) {
        (_, None) => Ok(true),
        (Partitions::On, Some(reason)) => bail!("--partitions on: {reason}"),
        (_, Some(reason)) => {
            println!("partitions: off ({reason})");
            Ok(false)
        }
    }
}

/// The fault kinds of this run.
fn fault_kinds(arguments: &Arguments, partitions: bool) -> anyhow::Result<Vec<FaultKind>> {
    if arguments.no_faults {
        return Ok(Vec::new());
    }
    match &arguments.faults {
        Some(kinds) => {
            if !partitions && kinds.iter().any(|kind| kind.is_partition()) {
                bail!("partition faults need --partitions (root, unshare, ip and nft)");
            }
            let mut kinds = kinds.clone();
            kinds.sort();
            kinds.dedup();
            Ok(kinds)
        }
        None => Ok(FaultKind::ALL
            .into_iter()
            .filter(|kind| partitions || !kind.is_partition())
            .collect()),
    }
}

/// The run's folder: given, or new under the temporary directory.
fn run_dir(arguments: &Arguments, seed: u64) -> anyhow::Result<PathBuf> {
    let dir = match &arguments.dir {
        Some(dir) => dir.clone(),
        None => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos());
            std::env::temp_dir().join(format!("fault-run-{seed}-{nanos}"))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let holds_nodes = (1..=NODES).any(|id| dir.join(format!("node-{id}")).exists());
    if holds_nodes {
        bail!(
            "{} holds node data of an earlier run; give a new --dir",
            dir.display()
        );
    }
    Ok(dir)
}

/// Ends the run early on Ctrl-C, SIGTERM or SIGHUP.
async fn stop_on_signal(stop: Arc<watch::Sender<bool>>) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "Ctrl-C",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => "SIGHUP",
        };
        println!("{name}: ending the run early; the history is still checked");
        let _ = stop.send(true);
    });
    Ok(())
}

/// What went wrong in the run apart from the verdict.
#[derive(Debug, Default)]
struct RunProblems(Vec<String>);

/// Logs of this program (the clerks' included) go to `fault-run.log` in
/// the run's folder, at the level `RUST_LOG` sets (default `warn`); the
/// nodes log to their own files at `info`.
fn init_logging(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("fault-run.log");
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
    Ok(())
}

fn run(arguments: Arguments, seed: u64, partitions: bool) -> anyhow::Result<ExitCode> {
    let server = server_program(&arguments.server)?;
    let kinds = fault_kinds(&arguments, partitions)?;
    let dir = run_dir(&arguments, seed)?;
    init_logging(&dir)?;
    let history_path = match &arguments.history_out {
        Some(path) => path.clone(),
        None => dir.join("history.jsonl"),
    };
    let duration = Duration::from_secs(arguments.duration_s);
    let ids: Vec<u64> = (1..=NODES).collect();
    let schedule = schedule::plan(seed, duration, &kinds, &ids);

    println!("seed: {seed}  (replay with --seed {seed} and the same --duration-s and --faults)");
    println!("run folder: {}", dir.display());
    println!("history: {}", history_path.display());
    println!("server: {}", server.display());
    println!(
        "workload: {} clients, {} keys, {} s, op timeout {} ms, think {} ms; partitions {}",
        arguments.clients,
        arguments.keys,
        arguments.duration_s,
        arguments.op_timeout_ms,
        arguments.think_ms,
        if partitions { "on" } else { "off" }
    );
    println!("schedule ({} faults):", schedule.len());
    for fault in &schedule {
        println!("  {fault}");
    }

    let mut cluster = Cluster::prepare(&dir, &server, NODES)?;
    if partitions {
        netns::set_up()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(drive(
        &arguments,
        seed,
        &mut cluster,
        &schedule,
        &history_path,
        &dir,
    ));
    // On every path: stop the nodes (the guard kills what is left).
    let stops = cluster.stop_all();
    drop(cluster);
    drop(runtime);
    let (mut problems, timeline) = outcome?;
    for (node, stop) in &stops {
        match stop {
            StopOutcome::Exited(status) if status.success() => {}
            StopOutcome::Exited(status) => problems.0.push(format!(
                "node {node} did not stop cleanly on SIGTERM: {}",
                describe_status(status)
            )),
            StopOutcome::Killed => problems
                .0
                .push(format!("node {node} did not stop within 10 s of SIGTERM")),
            StopOutcome::NotRunning => problems
                .0
                .push(format!("node {node} was not running at the end")),
        }
    }
    println!("nodes stopped: {}", describe_stops(&stops));
    if !arguments.keep_data {
        for id in &ids {
            let _ = std::fs::remove_dir_all(dir.join(format!("node-{id}")));
        }
    }

    verdict(&arguments, seed, &history_path, problems, timeline)
}

fn describe_stops(stops: &BTreeMap<u64, StopOutcome>) -> String {
    stops
        .iter()
        .map(|(node, stop)| match stop {
            StopOutcome::Exited(status) => format!("node {node} {}", describe_status(status)),
            StopOutcome::Killed => format!("node {node} killed"),
            StopOutcome::NotRunning => format!("node {node} not running"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// When things happened, on the history's clock, and the fault record.
struct Timeline {
    workload_start_ns: u64,
    workload_end_ns: u64,
    recovery: Option<Duration>,
    final_reads: usize,
    faults: nemesis::NemesisReport,
    errors: BTreeMap<String, u64>,
    elapsed: Duration,
}

/// Starts the nodes, runs clients and nemesis, heals, reads every key.
async fn drive(
    arguments: &Arguments,
    seed: u64,
    cluster: &mut Cluster,
    schedule: &[schedule::PlannedFault],
    history_path: &Path,
    dir: &Path,
) -> anyhow::Result<(RunProblems, Timeline)> {
    let started = Instant::now();
    let mut problems = RunProblems::default();
    let ready_timeout = Duration::from_secs(arguments.ready_timeout_s);
    let credentials = cluster.client_credentials()?;
    for id in cluster.ids() {
        cluster.start(id)?;
    }

    // The clerks first: each binds its own UDP port.
    let probe = workload::new_clerk(cluster, &credentials, seed ^ 0xbeef)?;
    let mut clerks = Vec::new();
    for client in 1..=arguments.clients {
        clerks.push(workload::new_clerk(cluster, &credentials, seed ^ client)?);
    }
    let mut nemesis = Nemesis::new(cluster, probe);
    let ready = nemesis.wait_until_ready(ready_timeout, true).await;
    if let Some(exit) = nemesis.report.unexpected_exits.first() {
        bail!(
            "node {} exited during start-up ({}); its log is {}",
            exit.node,
            exit.status,
            nemesis.log_of(exit.node).display()
        );
    }
    let Some(ready_after) = ready else {
        bail!(
            "the cluster did not answer within {} s; node logs are in {}",
            ready_timeout.as_secs(),
            dir.display()
        );
    };
    println!("cluster ready after {:.3} s", ready_after.as_secs_f64());

    let (stop_sender, stop) = watch::channel(false);
    let stop_sender = Arc::new(stop_sender);
    stop_on_signal(Arc::clone(&stop_sender)).await?;
    let keys: Vec<String> = (0..arguments.keys).map(|key| format!("k{key}")).collect();
    // The history's clock starts with the workload.
    let recorder = HistoryRecorder::with_file(history_path)
        .with_context(|| format!("cannot create {}", history_path.display()))?;
    nemesis.use_clock_of(Arc::clone(&recorder));
    let start = Instant::now();
    let workload_start_ns = recorder.nanos(start);
    let config = WorkloadConfig {
        keys: keys.clone(),
        op_timeout: Duration::from_millis(arguments.op_timeout_ms),
        think: Duration::from_millis(arguments.think_ms),
        end_at: start + Duration::from_secs(arguments.duration_s),
        clients: arguments.clients,
        recorder: recorder.clone(),
    };
    let clients = spawn_clients(clerks, &config, seed, &stop);
    // The workload ends at its time, unless a signal ends it first.
    let timer_sender = Arc::clone(&stop_sender);
    let end_at = config.end_at;
    tokio::spawn(async move {
        tokio::time::sleep_until(end_at).await;
        let _ = timer_sender.send(true);
    });

    nemesis.run(schedule, start, stop.clone()).await;
    let (mut recording_clerks, errors) = join_clients(clients).await?;
    let workload_end_ns = recorder.nanos(Instant::now());
    println!("workload ended; healing everything");

    nemesis.heal_all();
    let recovery = nemesis.wait_until_ready(ready_timeout, false).await;
    match recovery {
        Some(took) => println!("cluster answers again after {:.3} s", took.as_secs_f64()),
        None => problems.0.push(format!(
            "the cluster did not answer within {} s after the final heal",
            ready_timeout.as_secs()
        )),
    }
    // The clerks may still hold connections to killed processes, which
    // cost them seconds (README, "Fault runs"): give the reads as long as the
    // cluster had to answer.
    let final_reads = match recording_clerks.first_mut() {
        Some(clerk) => workload::final_reads(clerk, &keys, ready_timeout).await,
        None => 0,
    };
    if final_reads < keys.len() {
        problems.0.push(format!(
            "only {final_reads} of {} final reads answered",
            keys.len()
        ));
    }
    nemesis.heal_all();
    let faults = std::mem::take(&mut nemesis.report);
    for exit in &faults.unexpected_exits {
        problems.0.push(format!(
            "node {} exited by itself at {:.3} s ({})",
            exit.node,
            exit.at_ns as f64 / 1e9,
            exit.status
        ));
    }
    problems.0.extend(faults.errors.iter().cloned());
    write_faults(&dir.join("faults.jsonl"), &faults)?;
    Ok((
        problems,
        Timeline {
            workload_start_ns,
            workload_end_ns,
            recovery,
            final_reads,
            faults,
            errors,
            elapsed: started.elapsed(),
        },
    ))
}

/// Starts one task per client; client ids (and their values) start at 1.
fn spawn_clients(
    clerks: Vec<Clerk<QuicConnector>>,
    config: &WorkloadConfig,
    seed: u64,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<(RecordingClerk<QuicConnector>, ClientTally)>> {
    let mut clients = Vec::new();
    for (index, clerk) in clerks.into_iter().enumerate() {
        let client = index as u64 + 1;
        let rng = Rng::derive(seed, 1000 + client);
        clients.push(tokio::spawn(workload::run_client(
            clerk,
            client,
            config.clone(),
            rng,
            stop.clone(),
        )));
    }
    clients
}

/// Waits for every client; gives back their recording clerks (in client
/// order) and their errors, counted by reason.
async fn join_clients(
    clients: Vec<JoinHandle<(RecordingClerk<QuicConnector>, ClientTally)>>,
) -> anyhow::Result<(Vec<RecordingClerk<QuicConnector>>, BTreeMap<String, u64>)> {
    let mut recording_clerks = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for client in clients {
        let (clerk, tally) = client.await.context("a client task failed")?;
        recording_clerks.push(clerk);
        for (reason, count) in tally.errors {
            *errors.entry(reason).or_default() += count;
        }
    }
    Ok((recording_clerks, errors))
}

/// Writes the faults as JSON Lines, on the history's clock.
fn write_faults(path: &Path, faults: &nemesis::NemesisReport) -> anyhow::Result<()> {
    let mut text = String::new();
    for fault in &faults.faults {
        text.push_str(&serde_json::to_string(fault)?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads the history back, checks it, prints the figures and the verdict.
fn verdict(
    arguments: &Arguments,
    seed: u64,
    history_path: &Path,
    problems: RunProblems,
    timeline: Timeline,
) -> anyhow::Result<ExitCode> {
    let history = read_history_file(history_path)
        .with_context(|| format!("cannot read the history {}", history_path.display()))?;
    let figures = report::figures(
        &history,
        timeline.workload_start_ns,
        timeline.workload_end_ns,
    );
    let config = CheckConfig {
        time_max: Some(Duration::from_secs(arguments.check_time_s)),
        ..CheckConfig::default()
    };
    let check_started = std::time::Instant::now();
    let report = check(&history, &config);
    let check_time = check_started.elapsed();

    let workload_s = (timeline.workload_end_ns - timeline.workload_start_ns) as f64 / 1e9;
    println!();
    println!(
        "operations: {} (ok {}, fail {}, info {}) in {:.1} s, {:.0} ok/s",
        figures.all.total(),
        figures.all.ok,
        figures.all.fail,
        figures.all.info,
        workload_s,
        figures.all.ok as f64 / workload_s.max(1e-9)
    );
    for (kind, counts) in &figures.by_kind {
        println!(
            "  {kind:<6} ok {:>6}  fail {:>5}  info {:>5}",
            counts.ok, counts.fail, counts.info
        );
    }
    println!(
        "latency of ok operations: p50 {:.2} ms, p99 {:.1} ms, max {:.0} ms; longest time without a completion {:.0} ms",
        figures.latency_p50_ms,
        figures.latency_p99_ms,
        figures.latency_max_ms,
        figures.longest_gap_ms
    );
    if !timeline.errors.is_empty() {
        let reasons: Vec<String> = timeline
            .errors
            .iter()
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect();
        println!("client errors: {}", reasons.join(", "));
    }
    let counts = timeline.faults.counts();
    let fault_list: Vec<String> = counts
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    println!(
        "faults: {} ({})",
        timeline.faults.faults.len(),
        fault_list.join(", ")
    );
    // Each fault's cost: the longest stretch without a completion from its
    // start to the next fault's start (or the end of the workload).
    let mut fault_details = Vec::new();
    let fault_records = &timeline.faults.faults;
    for (index, fault) in fault_records.iter().enumerate() {
        let window_end_ns = fault_records
            .get(index + 1)
            .map_or(timeline.workload_end_ns, |next| next.at_ns);
        let gap_ms = report::longest_gap_ms(&history, fault.at_ns, window_end_ns);
        let held_s = fault
            .healed_ns
            .map(|healed_ns| healed_ns.saturating_sub(fault.at_ns) as f64 / 1e9);
        println!(
            "  {:>8.3} s  {:<16} nodes {:<8} held {:>6}  no completion for {:>5.0} ms",
            fault.at_ns as f64 / 1e9,
            fault.fault,
            format!("{:?}", fault.nodes),
            held_s.map_or("-".to_string(), |held_s| format!("{held_s:.3} s")),
            gap_ms
        );
        fault_details.push(serde_json::json!({
            "fault": fault.fault,
            "nodes": fault.nodes,
            "at_s": fault.at_ns as f64 / 1e9,
            "held_s": held_s,
            "gap_ms": gap_ms,
        }));
    }
    println!(
        "final reads: {} of {}; recovery after the final heal: {}",
        timeline.final_reads,
        arguments.keys,
        timeline.recovery.map_or("none".to_string(), |took| format!(
            "{:.3} s",
            took.as_secs_f64()
        ))
    );
    print!(
        "{}",
        Explanation {
            report: &report,
            history: &history,
        }
    );
    println!("check took {:.3} s", check_time.as_secs_f64());
    for problem in &problems.0 {
        println!("PROBLEM: {problem}");
    }

    let verdict_name = match report.verdict {
        Verdict::Linearizable => "linearizable",
        Verdict::NotLinearizable => "not-linearizable",
        Verdict::Unknown => "unknown",
    };
    let summary = serde_json::json!({
        "verdict": verdict_name,
        "seed": seed,
        "duration_s": arguments.duration_s,
        "clients": arguments.clients,
        "operations": figures.all.total(),
        "ok": figures.all.ok,
        "fail": figures.all.fail,
        "info": figures.all.info,
        "by_kind": figures.by_kind,
        "latency_p50_ms": figures.latency_p50_ms,
        "latency_p99_ms": figures.latency_p99_ms,
        "longest_gap_ms": figures.longest_gap_ms,
        "faults": timeline.faults.faults.len(),
        "faults_by_kind": counts,
        "fault_details": fault_details,
        "unexpected_exits": timeline.faults.unexpected_exits.len(),
        "problems": problems.0,
        "check_s": check_time.as_secs_f64(),
        "check_steps": report.steps(),
        "run_s": timeline.elapsed.as_secs_f64(),
        "history": history_path.display().to_string(),
    });
    println!("summary: {summary}");

    let code = match report.verdict {
        Verdict::NotLinearizable => EXIT_NOT_LINEARIZABLE,
        Verdict::Unknown => EXIT_UNKNOWN,
        Verdict::Linearizable if !problems.0.is_empty() => EXIT_RUN_FAILED,
        Verdict::Linearizable => 0,
    };
    Ok(ExitCode::from(code))
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    let seed = arguments.seed.unwrap_or_else(clock_seed);
    let partitions = match partitions_on(&arguments) {
        Ok(partitions) => partitions,
        Err(error) => {
            eprintln!("fault-run: {error:#}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    if partitions && !netns::is_inside() {
        // The inner run must draw the same schedule: pass the seed on.
        let mut extra: Vec<OsString> = Vec::new();
        if arguments.seed.is_none() {
            extra.push("--seed".into());
            extra.push(seed.to_string().into());
        }
        println!("partitions: on (the run goes on in new network and PID namespaces)");
        return match netns::run_inside(&extra) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("fault-run: {error:#}");
                ExitCode::from(EXIT_RUN_FAILED)
            }
        };
    }
    match run(arguments, seed, partitions) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fault-run: {error:#}");
            ExitCode::from(EXIT_RUN_FAILED)
        }
    }
}
