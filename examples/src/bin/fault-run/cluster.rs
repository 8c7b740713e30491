//! The three `kv-server` processes of a run: ports, certificates, data
//! directories, and the signals that make faults.
//!
//! [`Cluster`] owns every process it starts. Dropping it SIGKILLs and reaps
//! each one by PID, so an error or a panic anywhere in the run never leaves
//! a node behind (a paused node dies from SIGKILL too).

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use raft_core::NodeId;
use raft_transport::{Identity, TlsCredentials, TlsFiles};
use rustix::process::{kill_process, Pid, Signal};

/// The client name on the certificate the run's clerks show.
pub const CLIENT_NAME: &str = "fault-run";

/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIME_MAX: Duration = Duration::from_secs(10);

/// One node: where it lives and its process, when running.
pub struct Node {
    /// Its Raft id.
    pub id: NodeId,
    /// Its UDP address (peers and clients).
    pub addr: SocketAddr,
    /// Its RocksDB directory.
    pub data_dir: PathBuf,
    /// Its stdout and stderr, appended over restarts.
    pub log: PathBuf,
    /// The running process; `None` while the node is down.
    child: Option<Child>,
    /// Whether the process is stopped with SIGSTOP.
    paused: bool,
}

impl Node {
    fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(Pid::from_child)
    }
}

/// How a node's process ended when the run stopped it.
#[derive(Debug)]
pub enum StopOutcome {
    /// It exited by itself after SIGTERM, with this status.
    Exited(ExitStatus),
    /// It did not exit within [`STOP_TIME_MAX`] and was killed.
    Killed,
    /// It was not running.
    NotRunning,
}

/// The nodes of one run, in one folder.
pub struct Cluster {
    /// The kv-server program.
    server: PathBuf,
    /// CA, node and client certificates.
    pub certs: PathBuf,
    /// The nodes, by id.
    nodes: BTreeMap<NodeId, Node>,
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("cannot bind an ephemeral UDP port")?;
    Ok(socket.local_addr()?.port())
}

/// The last `count` lines of a file, for messages about a node.
pub fn tail(path: &Path, count: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

impl Cluster {
    /// Prepares `count` nodes (ids 1..=count) under `dir`: free ports,
    /// fresh certificates, no process yet.
    pub fn prepare(dir: &Path, server: &Path, count: u64) -> anyhow::Result<Cluster> {
        let certs = dir.join("certs");
        let ids: Vec<NodeId> = (1..=count).collect();
        raft_transport::tls::generate_cluster_files(&certs, &ids, &[CLIENT_NAME.to_string()])
            .with_context(|| format!("cannot make certificates in {}", certs.display()))?;
        let mut nodes = BTreeMap::new();
        for id in ids {
            let node = Node {
                id,
                addr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
                data_dir: dir.join(format!("node-{id}")),
                log: dir.join(format!("node-{id}.log")),
                child: None,
                paused: false,
            };
            nodes.insert(id, node);
        }
        Ok(Cluster {
            server: server.to_path_buf(),
            certs,
            nodes,
        })
    }

    /// The node ids.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    /// Every node's address, as the clerks want them.
    pub fn servers(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.nodes
            .values()
            .map(|node| (node.id, node.addr))
            .collect()
    }

    /// The credentials of the run's client certificate.
    pub fn client_credentials(&self) -> anyhow::Result<TlsCredentials> {
        let identity = Identity::client(CLIENT_NAME)?;
        let files = TlsFiles::in_dir(&self.certs, &identity);
        TlsCredentials::load(&files).context("cannot load the client certificate")
    }

    /// Whether node `id` has a process (running or paused).
    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes[&id].child.is_some()
    }

    /// Starts node `id` with kv-server's default Raft timing; on its first
    /// start it may create its data directory. Its output goes to its log.
    pub fn start(&mut self, id: NodeId) -> anyhow::Result<()> {
        let peers = self
            .nodes
            .values()
            .filter(|peer| peer.id != id)
            .map(|peer| format!("{}={}", peer.id, peer.addr))
            .collect::<Vec<_>>()
            .join(",");
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        assert!(node.child.is_none(), "node {id} runs already");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("cannot open {}", node.log.display()))?;
        let mut command = Command::new(&self.server);
        command
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(node.addr.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--tls-dir")
            .arg(&self.certs)
            .arg("--peers")
            .arg(peers)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C in the terminal reaches only
            // fault-run, which then stops the nodes itself.
            .process_group(0);
        if !node.data_dir.exists() {
            command.arg("--create-data-dir");
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.server.display()))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Kills node `id` with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if let Some(mut child) = node.child.take() {
            // SIGKILL ends a stopped process too.
            let _ = kill_process(Pid::from_child(&child), Signal::KILL);
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// Stops node `id` with SIGSTOP: it keeps its sockets and state but
    /// answers nothing until [`Cluster::resume`].
    pub fn pause(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if let Some(pid) = node.pid() {
            let _ = kill_process(pid, Signal::STOP);
            node.paused = true;
        }
    }

    /// Continues node `id` after [`Cluster::pause`].
    pub fn resume(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if let Some(pid) = node.pid() {
            let _ = kill_process(pid, Signal::CONT);
        }
        node.paused = false;
    }

    /// Whether node `id` is paused.
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.nodes[&id].paused
    }

    /// Reaps the nodes that exited although nobody killed them, and says
    /// which and how.
    pub fn reap_exited(&mut self) -> Vec<(NodeId, ExitStatus)> {
        let mut exited = Vec::new();
        for node in self.nodes.values_mut() {
            let status = node.child.as_mut().and_then(|child| child.try_wait().ok()?);
            if let Some(status) = status {
                node.child = None;
                node.paused = false;
                exited.push((node.id, status));
            }
        }
        exited
    }

    /// Stops every node cleanly: SIGCONT (a paused node cannot act on a
    /// signal), SIGTERM, then up to [`STOP_TIME_MAX`] for all of them to
    /// exit; SIGKILL for any still running.
    pub fn stop_all(&mut self) -> BTreeMap<NodeId, StopOutcome> {
        for node in self.nodes.values() {
            if let Some(pid) = node.pid() {
                let _ = kill_process(pid, Signal::CONT);
                let _ = kill_process(pid, Signal::TERM);
            }
        }
        let deadline = Instant::now() + STOP_TIME_MAX;
        let mut outcomes = BTreeMap::new();
        for node in self.nodes.values_mut() {
            node.paused = false;
            let Some(mut child) = node.child.take() else {
                outcomes.insert(node.id, StopOutcome::NotRunning);
                continue;
            };
            let outcome = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break StopOutcome::Exited(status),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = kill_process(Pid::from_child(&child), Signal::KILL);
                        let _ = child.wait();
                        break StopOutcome::Killed;
                    }
                }
            };
            outcomes.insert(node.id, outcome);
        }
        outcomes
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = kill_process(Pid::from_child(&child), Signal::KILL);
                let _ = child.wait();
            }
        }
    }
}

/// An exit status in words: the code, or the signal that ended it.
pub fn describe_status(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => format!("{status}"),
    }
}
