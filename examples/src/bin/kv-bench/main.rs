//! kv-bench: the five kvbench/1 workloads against a running raft-kv cluster.
//!
//! Usually run through `bash scripts/bench.sh`, which starts a fresh
//! three-node cluster per run and compares with etcd. Directly:
//!
//! ```text
//! kv-bench --endpoints 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 \
//!          --ca certs/ca.pem --cert certs/client-bench.pem --key certs/client-bench.key.pem
//! kv-bench --backend mem --scale 0.1                  # the harness alone
//! ```
//!
//! One JSON line per workload goes to stdout (and `--json-out`), in the
//! format of `shared/bench/README.md`; a summary goes to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line program

mod raft_kv;
mod stats;
mod workload;

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::Value;

use workload::{run_all, standard, Backend, MemBackend, Settings};

#[derive(Parser, Debug)]
#[command(about = "Runs the kvbench/1 workloads against a store")]
struct Args {
    /// Store to load: `raft-kv` (a running cluster) or `mem` (in-process,
    /// to test the harness).
    #[arg(long, default_value = "raft-kv")]
    backend: String,
    /// raft-kv servers, `ID=HOST:PORT,...` (loopback only).
    #[arg(long, env = "KV_ENDPOINTS", default_value = "")]
    endpoints: String,
    /// The cluster CA certificate (PEM).
    #[arg(long, env = "KV_CA")]
    ca: Option<std::path::PathBuf>,
    /// The client certificate (PEM).
    #[arg(long, env = "KV_CERT")]
    cert: Option<std::path::PathBuf>,
    /// The client key (PEM).
    #[arg(long, env = "KV_KEY")]
    key: Option<std::path::PathBuf>,
    /// Comma-separated workloads, run in the standard order.
    #[arg(long, default_value = "put-1,put-64,get-64,mixed-64,append-64")]
    workloads: String,
    /// Multiplies the 3 s warm-up and the 15 s window.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    #[arg(long, default_value_t = 10_000)]
    keyspace: u64,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    #[arg(long, default_value_t = 20240601)]
    seed: u64,
    #[arg(long, default_value_t = 10.0)]
    op_timeout_secs: f64,
    /// Server process ids, for the CPU figures.
    #[arg(long, value_delimiter = ',')]
    watch_pids: Vec<String>,
    /// Free text naming the run.
    #[arg(long, default_value = "")]
    label: String,
    /// Also append the result lines to this file.
    #[arg(long)]
    json_out: Option<std::path::PathBuf>,
}

fn settings(args: &Args) -> anyhow::Result<Settings> {
    if !(args.scale > 0.0 && args.scale <= 100.0) {
        bail!("--scale must be in (0, 100]");
    }
    if args.keyspace == 0 || args.value_size == 0 || args.op_timeout_secs <= 0.0 {
        bail!("--keyspace, --value-size and --op-timeout-secs must be positive");
    }
    Ok(Settings {
        keyspace: args.keyspace,
        value_size: args.value_size,
        seed: args.seed,
        scale: args.scale,
        warmup: Duration::from_secs_f64(3.0 * args.scale),
        duration: Duration::from_secs_f64(15.0 * args.scale),
        op_timeout: Duration::from_secs_f64(args.op_timeout_secs),
        label: args.label.clone(),
        server_pids: args.watch_pids.clone(),
    })
}

async fn bench<B: Backend>(backend: B, args: &Args, settings: &Settings) -> anyhow::Result<()> {
    let names: Vec<String> = args.workloads.split(',').map(str::to_string).collect();
    for name in &names {
        if !standard().iter().any(|spec| spec.name == name) {
            bail!("unknown workload {name:?}");
        }
    }
    let mut out = match &args.json_out {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => None,
    };
    let mut write_error = None;
    run_all(&backend, &names, settings, |line: &Value| {
        println!("{line}");
        eprintln!(
            "{:<10} {:>10.0} ops/s  p50 {:>7} µs  p99 {:>7} µs  errors {}",
            line["workload"].as_str().unwrap_or(""),
            line["ops_per_s"].as_f64().unwrap_or(0.0),
            line["lat_us"]["p50"],
            line["lat_us"]["p99"],
            line["errors"],
        );
        if let Some(file) = out.as_mut() {
            if let Err(error) = writeln!(file, "{line}") {
                write_error.get_or_insert(error);
            }
        }
    })
    .await
    .map_err(|error| anyhow::anyhow!(error))?;
    if let Some(error) = write_error {
        return Err(error).context("writing the result file");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = settings(&args)?;
    match args.backend.as_str() {
        "mem" => bench(MemBackend::default(), &args, &settings).await,
        "raft-kv" => {
            let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) else {
                bail!("raft-kv needs --ca, --cert and --key (or KV_CA, KV_CERT, KV_KEY)");
            };
            let files = raft_transport::TlsFiles {
                ca_cert: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            };
            let backend =
                raft_kv::RaftKv::new(&args.endpoints, files).map_err(anyhow::Error::msg)?;
            bench(backend, &args, &settings).await
        }
        other => bail!("unknown backend {other:?}"),
    }
}
