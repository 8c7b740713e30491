//! Runs a local cluster: three `kv-server` processes on 127.0.0.1, with
//! their data, certificates and logs under one folder.
//!
//! Start it with `bash scripts/cluster.sh` from the repository root: the
//! script installs what the build needs, builds `kv-server`, `kv-cli` and
//! this program in release mode, and runs this program. Watch for the
//! block that says how to talk to the cluster; Ctrl-C stops all three
//! nodes cleanly. Running it again finds the data where it was.
//!
//! ```text
//! local-cluster/                 (--dir)
//!   certs/                       CA, node-<id> and client-cli certificates (first run)
//!   node-<id>/kv-server.toml     written on every start
//!   node-<id>/data/              the node's RocksDB log (created on its first start)
//!   node-<id>/server.log         the node's output, appended
//!   node-<id>/pid                the node's process id while it runs
//!   env.sh                       `source` it to point kv-cli at the cluster
//! ```
//!
//! The nodes run in their own process group, so a Ctrl-C in the terminal
//! reaches only this program, which then stops each node by its PID with
//! SIGTERM (and SIGKILL after ten seconds).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line program

use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use raft_core::NodeId;
use rustix::process::{kill_process, test_kill_process, Pid, Signal};
use tokio::signal::unix::{signal, SignalKind};

/// The client identity whose certificate the cluster's folder holds.
const CLIENT_NAME: &str = "cli";

/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIME_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "local-cluster",
    about = "Runs a local kv-server cluster on 127.0.0.1 until Ctrl-C."
)]
struct Arguments {
    /// Folder of the cluster's certificates, data and logs.
    #[arg(long, default_value = "local-cluster")]
    dir: PathBuf,

    /// UDP port of node 1; node N listens on BASE_PORT + N - 1.
    #[arg(long, default_value_t = 27001)]
    base_port: u16,

    /// How many nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,

    /// The kv-server program (default: next to this program).
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,

    /// The kv-cli program (default: next to this program).
    #[arg(long, value_name = "PATH")]
    cli: Option<PathBuf>,

    /// How long to wait for the cluster to answer, in seconds.
    #[arg(long, default_value_t = 30)]
    ready_timeout_s: u64,
}

/// One node: its place in the folder and its process.
struct Node {
    id: NodeId,
    address: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("pid")
    }
}

/// The last `count` lines of a file.
fn tail(path: &Path, count: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// A program next to this one, unless given.
fn program(given: &Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot find this program's path")?
            .with_file_name(name),
    };
    if !path.is_file() {
        bail!(
            "{} not found; build it with `cargo build --release -p kv-service --bin kv-server \
             -p kv-clerk --bin kv-cli` (bash scripts/cluster.sh does)",
            path.display()
        );
    }
    Ok(path)
}

/// Refuses ports that something else holds, saying what may hold them.
fn check_ports(nodes: &[Node]) -> anyhow::Result<()> {
    for node in nodes {
        match UdpSocket::bind(node.address) {
            Ok(_socket) => {}
            Err(error) if error.kind() == ErrorKind::AddrInUse => {
                let earlier = fs::read_to_string(node.pid_path())
                    .ok()
                    .and_then(|text| text.trim().parse::<i32>().ok())
                    .and_then(Pid::from_raw)
                    .filter(|pid| test_kill_process(*pid).is_ok());
                match earlier {
                    Some(pid) => bail!(
                        "port {} (udp) is in use: node {} of an earlier run still runs as \
                         PID {}; stop it with `kill {}`",
                        node.address,
                        node.id,
                        pid.as_raw_nonzero(),
                        pid.as_raw_nonzero()
                    ),
                    None => bail!(
                        "port {} (udp) for node {} is in use by another program; choose other \
                         ports with --base-port",
                        node.address,
                        node.id
                    ),
                }
            }
            Err(error) => bail!("cannot bind {} for node {}: {error}", node.address, node.id),
        }
    }
    Ok(())
}

/// Makes the CA and the certificates that are missing (all on a first run).
fn ensure_certificates(certs: &Path, ids: &[NodeId]) -> anyhow::Result<()> {
    let missing_nodes: Vec<NodeId> = ids
        .iter()
        .copied()
        .filter(|id| !certs.join(format!("node-{id}.pem")).exists())
        .collect();
    let client_missing = !certs.join(format!("client-{CLIENT_NAME}.pem")).exists();
    if missing_nodes.is_empty() && !client_missing {
        return Ok(());
    }
    let clients = if client_missing {
        vec![CLIENT_NAME.to_string()]
    } else {
        Vec::new()
    };
    raft_transport::tls::generate_cluster_files(certs, &missing_nodes, &clients)
        .with_context(|| format!("cannot make certificates in {}", certs.display()))?;
    println!("made certificates in {}", certs.display());
    Ok(())
}

/// The node's configuration file; paths in it are relative to it.
fn config_text(node: &Node, nodes: &[Node]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Written by local-cluster at every start: edits are lost."
    );
    let _ = writeln!(text, "id = {}", node.id);
    let _ = writeln!(text, "listen = \"{}\"", node.address);
    let _ = writeln!(text, "data_dir = \"data\"");
    let _ = writeln!(text, "\n[peers]");
    for peer in nodes.iter().filter(|peer| peer.id != node.id) {
        let _ = writeln!(text, "{} = \"{}\"", peer.id, peer.address);
    }
    let _ = writeln!(text, "\n[tls]");
    let _ = writeln!(text, "ca = \"../certs/ca.pem\"");
    let _ = writeln!(text, "cert = \"../certs/node-{}.pem\"", node.id);
    let _ = writeln!(text, "key = \"../certs/node-{}.key.pem\"", node.id);
    text
}

/// Starts node `node` in its own process group, output to its log.
fn start_node(node: &mut Node, server: &Path) -> anyhow::Result<()> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.log_path())
        .with_context(|| format!("cannot open {}", node.log_path().display()))?;
    let mut command = Command::new(server);
    command
        .arg("--config")
        .arg(node.dir.join("kv-server.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    if !node.dir.join("data").exists() {
        // The node's first start: only now may its data directory be made.
        command.arg("--create-data-dir");
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", server.display()))?;
    fs::write(node.pid_path(), format!("{}\n", child.id()))?;
    node.child = Some(child);
    Ok(())
}

/// Stops every running node: SIGTERM by PID, then SIGKILL for any node
/// still running after [`STOP_TIME_MAX`]. Returns whether all stopped
/// cleanly.
fn stop_all(nodes: &mut [Node]) -> bool {
    for node in nodes.iter_mut() {
        if let Some(child) = node.child.as_ref() {
            let _ = kill_process(Pid::from_child(child), Signal::TERM);
        }
    }
    let deadline = Instant::now() + STOP_TIME_MAX;
    let mut clean = true;
    for node in nodes.iter_mut() {
        let Some(mut child) = node.child.take() else {
            continue;
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break None,
            }
        };
        let _ = fs::remove_file(node.pid_path());
        match status {
            Some(status) if status.success() => println!("node {} stopped", node.id),
            Some(status) => {
                clean = false;
                println!("node {} stopped with {status}", node.id);
            }
            None => {
                clean = false;
                let _ = child.kill();
                let _ = child.wait();
                println!(
                    "node {} did not stop within {} s and was killed",
                    node.id,
                    STOP_TIME_MAX.as_secs()
                );
            }
        }
    }
    clean
}

/// Shell-quotes a path for the printed commands.
fn quoted(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// What kv-cli needs to reach the cluster: the variables of `env.sh`.
struct ClientEnv {
    variables: Vec<(&'static str, String)>,
    bin_dir: PathBuf,
}

impl ClientEnv {
    /// `cli` with these variables set and no standard input.
    fn command(&self, cli: &Path) -> Command {
        let mut command = Command::new(cli);
        command
            .envs(self.variables.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null());
        command
    }

    fn new(nodes: &[Node], certs: &Path, cli: &Path) -> ClientEnv {
        let endpoints = nodes
            .iter()
            .map(|node| format!("{}={}", node.id, node.address))
            .collect::<Vec<_>>()
            .join(",");
        let file = |name: String| certs.join(name).display().to_string();
        ClientEnv {
            variables: vec![
                ("KV_ENDPOINTS", endpoints),
                ("KV_CA", file("ca.pem".into())),
                ("KV_CERT", file(format!("client-{CLIENT_NAME}.pem"))),
                ("KV_KEY", file(format!("client-{CLIENT_NAME}.key.pem"))),
            ],
            bin_dir: cli.parent().unwrap_or(Path::new(".")).to_path_buf(),
        }
    }

    /// The `env.sh` that points kv-cli at the cluster.
    fn script(&self) -> String {
        let mut text = String::from(
            "# Written by local-cluster: `source` this file to use kv-cli with the local cluster.\n",
        );
        for (name, value) in &self.variables {
            let _ = writeln!(text, "export {name}={}", quoted(Path::new(value)));
        }
        let _ = writeln!(text, "export PATH={}:\"$PATH\"", quoted(&self.bin_dir));
        text
    }
}

/// Waits until the cluster answers a read through kv-cli, or a node exits.
fn wait_until_ready(
    nodes: &mut [Node],
    cli: &Path,
    client_env: &ClientEnv,
    time_max: Duration,
    runtime: &tokio::runtime::Runtime,
    signals: &mut StopSignals,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + time_max;
    loop {
        for node in nodes.iter_mut() {
            if let Some(status) = node.child.as_mut().and_then(|child| child.try_wait().ok()?) {
                node.child = None;
                bail!(
                    "node {} exited during start-up with {status}; its log ({}) ends with:\n{}",
                    node.id,
                    node.log_path().display(),
                    tail(&node.log_path(), 15)
                );
            }
        }
        let probe = client_env
            .command(cli)
            .args(["--timeout-s", "2", "get", "local-cluster-probe"])
            .output()
            .with_context(|| format!("cannot run {}", cli.display()))?;
        // Exit status 0: the key exists; 1: it does not. Both are answers.
        if matches!(probe.status.code(), Some(0 | 1)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the cluster did not answer within {} s; last kv-cli error: {}",
                time_max.as_secs(),
                String::from_utf8_lossy(&probe.stderr).trim()
            );
        }
        let pause = tokio::time::timeout(Duration::from_millis(200), signals.recv());
        if let Ok(name) = runtime.block_on(pause) {
            bail!("{name} during start-up");
        }
    }
}

/// The signals that stop the cluster. Created before any node starts, so
/// that from then on they no longer kill this program (and orphan nodes).
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The name of the next stop signal.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "Ctrl-C",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

/// Reports nodes that exit while the cluster runs; the others go on.
async fn watch_nodes(nodes: &mut [Node]) {
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    loop {
        interval.tick().await;
        for node in nodes.iter_mut() {
            let exited = node.child.as_mut().and_then(|child| child.try_wait().ok()?);
            if let Some(status) = exited {
                node.child = None;
                let _ = fs::remove_file(node.pid_path());
                eprintln!(
                    "node {} exited with {status}; its log ({}) ends with:\n{}\n\
                     The other nodes go on; run the cluster again to restart it.",
                    node.id,
                    node.log_path().display(),
                    tail(&node.log_path(), 15)
                );
            }
        }
        if nodes.iter().all(|node| node.child.is_none()) {
            eprintln!("every node has exited");
            return;
        }
    }
}

fn run(arguments: Arguments) -> anyhow::Result<bool> {
    let server = program(&arguments.server, "kv-server")?;
    let cli = program(&arguments.cli, "kv-cli")?;
    fs::create_dir_all(&arguments.dir)
        .with_context(|| format!("cannot create {}", arguments.dir.display()))?;
    let dir = arguments.dir.canonicalize()?;
    let certs = dir.join("certs");

    let ids: Vec<NodeId> = (1..=arguments.nodes).collect();
    let mut nodes = ids
        .iter()
        .map(|&id| {
            let port = u16::try_from(u64::from(arguments.base_port) + id - 1)
                .context("--base-port too high for the number of nodes")?;
            Ok(Node {
                id,
                address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                dir: dir.join(format!("node-{id}")),
                child: None,
            })
        })
        .collect::<anyhow::Result<Vec<Node>>>()?;
    check_ports(&nodes)?;
    ensure_certificates(&certs, &ids)?;
    for index in 0..nodes.len() {
        let node = &nodes[index];
        fs::create_dir_all(&node.dir)?;
        fs::write(node.dir.join("kv-server.toml"), config_text(node, &nodes))?;
    }
    let env_file = dir.join("env.sh");
    let client_env = ClientEnv::new(&nodes, &certs, &cli);
    fs::write(&env_file, client_env.script())?;

    // From here on, every started node must be stopped on every path.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut signals = runtime
        .block_on(async { StopSignals::new() })
        .context("cannot listen for signals")?;
    let mut started = Ok(());
    for node in nodes.iter_mut() {
        let first = !node.dir.join("data").exists();
        started = start_node(node, &server);
        if started.is_err() {
            break;
        }
        println!(
            "node {} started on {} (PID {}{})",
            node.id,
            node.address,
            node.child.as_ref().map_or(0, Child::id),
            if first { ", first start" } else { "" }
        );
    }
    let ready = started.and_then(|()| {
        wait_until_ready(
            &mut nodes,
            &cli,
            &client_env,
            Duration::from_secs(arguments.ready_timeout_s),
            &runtime,
            &mut signals,
        )
    });
    if let Err(error) = ready {
        stop_all(&mut nodes);
        return Err(error);
    }

    let relative_dir = arguments.dir.display();
    println!();
    println!(
        "The cluster is up: {} nodes on 127.0.0.1:{}-{}, data and logs in {relative_dir}/node-<id>/.",
        nodes.len(),
        nodes[0].address.port(),
        nodes[nodes.len() - 1].address.port()
    );
    // What the nodes say of themselves: roles, term, indexes.
    let status = client_env.command(&cli).arg("status").output();
    if let Ok(status) = status {
        print!("{}", String::from_utf8_lossy(&status.stdout));
    }
    println!();
    println!("Talk to it from another shell in this directory:");
    println!();
    println!("  source {relative_dir}/env.sh   # sets KV_ENDPOINTS, KV_CA, KV_CERT, KV_KEY, PATH");
    println!("  kv-cli put greeting hello");
    println!("  kv-cli append greeting ', world'");
    println!("  kv-cli get greeting");
    println!("  kv-cli status");
    println!("  kv-cli --json get greeting");
    println!();
    println!("Press Ctrl-C to stop all nodes; run the same command again to restart them on the same data.");

    let stop = runtime.block_on(async {
        tokio::select! {
            name = signals.recv() => Some(name),
            () = watch_nodes(&mut nodes) => None,
        }
    });
    if let Some(name) = stop {
        println!("\n{name}: stopping the nodes");
    }
    let clean = stop_all(&mut nodes);
    Ok(clean)
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    match run(arguments) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("local-cluster: {error:#}");
            ExitCode::FAILURE
        }
    }
}
