//! Processes, certificates, ports and directories for the end-to-end tests.
//!
//! Every child process is owned by a [`Process`] guard that kills it (by
//! PID, SIGKILL) and reaps it when dropped, so a failing assertion or a
//! panic never leaves a server running. Every wait is bounded.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use kv_clerk::quic::QuicConnector;
use kv_clerk::{Clerk, ClerkConfig};
use raft_core::NodeId;
use raft_transport::{Identity, TlsCredentials, TlsFiles};
use rustix::process::{kill_process, Pid, Signal};

/// The client name the tests' certificates carry.
pub const CLIENT_NAME: &str = "e2e";

/// The kv-server program: the build in `$KV_E2E_BIN_DIR` when set (to test
/// release binaries), else the copy this package builds from the same
/// source.
pub fn server_program() -> PathBuf {
    match std::env::var_os("KV_E2E_BIN_DIR") {
        Some(dir) => Path::new(&dir).join("kv-server"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_e2e-kv-server")),
    }
}

/// The kv-cli program, found like [`server_program`].
pub fn cli_program() -> PathBuf {
    match std::env::var_os("KV_E2E_BIN_DIR") {
        Some(dir) => Path::new(&dir).join("kv-cli"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_e2e-kv-cli")),
    }
}

/// A QUIC connector to `cluster`'s nodes with the client certificate.
/// Must run inside a tokio runtime.
pub fn connector(cluster: &TestCluster) -> QuicConnector {
    let files = TlsFiles::in_dir(
        &cluster.certs,
        &Identity::client(CLIENT_NAME).expect("valid client name"),
    );
    let credentials = TlsCredentials::load(&files).expect("client credentials");
    let servers = cluster
        .nodes
        .values()
        .map(|node| (node.id, node.addr))
        .collect();
    QuicConnector::new(&credentials, servers).expect("client endpoint")
}

/// A clerk for `cluster` with a 20 s deadline per operation. Must run
/// inside a tokio runtime.
pub fn clerk(cluster: &TestCluster) -> Clerk<QuicConnector> {
    let mut config = ClerkConfig::new(cluster.nodes.keys().copied().collect());
    config.deadline = Duration::from_secs(20);
    Clerk::new(connector(cluster), config).expect("valid clerk configuration")
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
    socket.local_addr().expect("local address").port()
}

/// A fresh directory, removed at drop, that other users may enter (the
/// unwritable-directory test runs the server as `nobody`).
pub fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kv-e2e-")
        .tempdir()
        .expect("create a temporary directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod 755");
    dir
}

/// Writes a CA, certificates for `nodes` and one for the client
/// [`CLIENT_NAME`] into `dir`.
pub fn make_certificates(dir: &Path, nodes: &[NodeId]) {
    raft_transport::tls::generate_cluster_files(dir, nodes, &[CLIENT_NAME.to_string()])
        .expect("generate certificates");
}

/// The last `count` lines of a file, for failure messages.
pub fn tail(path: &Path, count: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// A child process that is killed and reaped when dropped.
///
/// FIXME(orphans): a guard runs on every return and panic, but not when
/// the test process itself is killed (SIGKILL, a CI timeout): its servers
/// then keep running. Right: have the kernel end each child with its
/// parent (`PR_SET_PDEATHSIG` between fork and exec), which needs an
/// unsafe `pre_exec` that the workspace forbids, or a small supervisor.
pub struct Process {
    child: Option<Child>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Process {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        Process {
            child: Some(child),
            log: log.to_owned(),
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the process is owned until drop")
    }

    /// The process id.
    pub fn pid(&mut self) -> Pid {
        Pid::from_child(self.child())
    }

    /// Sends `signal` to the process.
    pub fn signal(&mut self, signal: Signal) {
        let pid = self.pid();
        // It may have exited already; waiting tells.
        let _ = kill_process(pid, signal);
    }

    /// Whether it has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child().try_wait().expect("try_wait")
    }

    /// Waits at most `time_max` for the process to exit.
    pub fn wait_for_exit(&mut self, time_max: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + time_max;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub fn kill(mut self) {
        self.kill_and_reap();
    }

    fn kill_and_reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Fast Raft timing for tests: 10 ms ticks, heartbeats every 30 ms,
/// elections after 150–300 ms.
pub const FAST_RAFT: [&str; 8] = [
    "--tick-interval-ms",
    "10",
    "--heartbeat-ticks",
    "3",
    "--election-ticks-min",
    "15",
    "--election-ticks-max",
    "30",
];

/// One node of a [`TestCluster`].
pub struct TestNode {
    /// Its id.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddr,
    /// Its RocksDB directory.
    pub data_dir: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// The running process, if any.
    pub process: Option<Process>,
}

/// Servers on loopback with fresh data directories and certificates, all in
/// one temporary directory.
pub struct TestCluster {
    /// Holds every file; removed at drop (after the processes are gone).
    pub dir: tempfile::TempDir,
    /// Where the certificates are.
    pub certs: PathBuf,
    /// The nodes by id.
    pub nodes: BTreeMap<NodeId, TestNode>,
    /// Flags every server gets, after the generated ones.
    pub extra_flags: Vec<String>,
}

impl TestCluster {
    /// Prepares `count` nodes (ids 1..=count) on free ports; starts none.
    pub fn new(count: u64) -> TestCluster {
        let dir = temp_dir();
        let certs = dir.path().join("certs");
        let ids: Vec<NodeId> = (1..=count).collect();
        make_certificates(&certs, &ids);
        let nodes = ids
            .iter()
            .map(|&id| {
                let node = TestNode {
                    id,
                    addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                    data_dir: dir.path().join(format!("node-{id}")),
                    log: dir.path().join(format!("node-{id}.log")),
                    process: None,
                };
                (id, node)
            })
            .collect();
        TestCluster {
            dir,
            certs,
            nodes,
            extra_flags: FAST_RAFT.iter().map(|flag| flag.to_string()).collect(),
        }
    }

    /// `1=127.0.0.1:p1,2=...`: the endpoint list of kv-cli.
    pub fn endpoints(&self) -> String {
        self.nodes
            .values()
            .map(|node| format!("{}={}", node.id, node.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The command line of node `id` (without the program).
    pub fn server_arguments(&self, id: NodeId) -> Vec<String> {
        let node = &self.nodes[&id];
        let peers = self
            .nodes
            .values()
            .filter(|peer| peer.id != id)
            .map(|peer| format!("{}={}", peer.id, peer.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut arguments = vec![
            "--id".to_string(),
            id.to_string(),
            "--listen".to_string(),
            node.addr.to_string(),
            "--data-dir".to_string(),
            node.data_dir.display().to_string(),
            "--tls-dir".to_string(),
            self.certs.display().to_string(),
        ];
        if !peers.is_empty() {
            arguments.push("--peers".to_string());
            arguments.push(peers);
        }
        if !node.data_dir.exists() {
            arguments.push("--create-data-dir".to_string());
        }
        arguments.extend(self.extra_flags.iter().cloned());
        arguments
    }

    /// Starts node `id` (creating its data directory on its first start).
    pub fn start(&mut self, id: NodeId) {
        let arguments = self.server_arguments(id);
        let node = self.nodes.get_mut(&id).expect("known node");
        assert!(node.process.is_none(), "node {id} is running already");
        let mut command = Command::new(server_program());
        command.args(&arguments).env("RUST_LOG", "info");
        node.process = Some(Process::spawn(&format!("node {id}"), command, &node.log));
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.start(id);
        }
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: NodeId) {
        let process = self.nodes.get_mut(&id).and_then(|node| node.process.take());
        process.expect("node is running").kill();
    }

    /// Stops node `id` with `signal` (SIGTERM, or SIGINT as Ctrl-C sends)
    /// and returns its exit status.
    pub fn stop(&mut self, id: NodeId, signal: Signal) -> ExitStatus {
        let node = self.nodes.get_mut(&id).expect("known node");
        let mut process = node.process.take().expect("node is running");
        process.signal(signal);
        let status = process.wait_for_exit(Duration::from_secs(10));
        status.unwrap_or_else(|| {
            panic!(
                "node {id} did not stop within 10 s of {signal:?}; log:\n{}",
                tail(&process.log, 30)
            )
        })
    }

    /// Runs kv-cli against the cluster with the client certificate, at
    /// most 30 s.
    pub fn cli(&self, arguments: &[&str]) -> Output {
        let file = |name: String| self.certs.join(name).display().to_string();
        self.cli_with_tls(
            &file("ca.pem".into()),
            &file(format!("client-{CLIENT_NAME}.pem")),
            &file(format!("client-{CLIENT_NAME}.key.pem")),
            arguments,
        )
    }

    /// Runs kv-cli with the given CA, certificate and key files (through
    /// the environment, as a user would set them).
    pub fn cli_with_tls(&self, ca: &str, cert: &str, key: &str, arguments: &[&str]) -> Output {
        let mut command = Command::new(cli_program());
        command
            .args(arguments)
            .env("KV_ENDPOINTS", self.endpoints())
            .env("KV_CA", ca)
            .env("KV_CERT", cert)
            .env("KV_KEY", key);
        run_bounded(command, Duration::from_secs(30))
    }

    /// Panics with the tail of every log if a node has exited.
    pub fn assert_running(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(process) = node.process.as_mut() {
                if let Some(status) = process.try_status() {
                    panic!(
                        "node {} exited with {status}; log:\n{}",
                        node.id,
                        tail(&node.log, 30)
                    );
                }
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for node in self.nodes.values_mut() {
            // Dropping the guard kills and reaps the process.
            node.process.take();
            if failed {
                eprintln!(
                    "--- node {} log (last 40 lines) ---\n{}",
                    node.id,
                    tail(&node.log, 40)
                );
            }
        }
    }
}

/// Runs a program to its end, at most `time_max`, and returns its output.
pub fn run_bounded(mut command: Command, time_max: Duration) -> Output {
    let dir = temp_dir();
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let child = command
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("start the program");
    let mut process = Process {
        child: Some(child),
        log: stdout_path.clone(),
    };
    let status = process
        .wait_for_exit(time_max)
        .unwrap_or_else(|| panic!("{command:?} did not finish within {time_max:?}"));
    Output {
        status,
        stdout: fs::read(&stdout_path).expect("read stdout"),
        stderr: fs::read(&stderr_path).expect("read stderr"),
    }
}
