//! The local-cluster program: it starts three nodes that answer, prints
//! commands that work, stops every node on Ctrl-C, refuses to start twice,
//! and finds its data again on the next run.

use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, test_kill_process, Pid, Signal};

use crate::support::{cli_program, run_bounded, server_program, tail, temp_dir, Process};

/// Three consecutive free UDP ports on 127.0.0.1: the first of them.
fn free_port_range() -> u16 {
    for _ in 0..50 {
        let first = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let base = first.local_addr().unwrap().port();
        if base > u16::MAX - 2 {
            continue;
        }
        let next = UdpSocket::bind(("127.0.0.1", base + 1));
        let last = UdpSocket::bind(("127.0.0.1", base + 2));
        if next.is_ok() && last.is_ok() {
            return base;
        }
    }
    panic!("no three consecutive free ports found");
}

/// A running local-cluster program. Dropping it kills the program and the
/// nodes it started (their PIDs are in the pid files), so a failing test
/// leaves nothing behind.
struct Runner {
    process: Option<Process>,
    dir: PathBuf,
    output: PathBuf,
}

impl Runner {
    fn start(dir: &Path, base_port: u16, output: &Path) -> Runner {
        let mut command = Command::new(env!("CARGO_BIN_EXE_local-cluster"));
        command
            .arg("--dir")
            .arg(dir)
            .arg("--base-port")
            .arg(base_port.to_string())
            .arg("--server")
            .arg(server_program())
            .arg("--cli")
            .arg(cli_program())
            .env("RUST_LOG", "info");
        Runner {
            process: Some(Process::spawn("local-cluster", command, output)),
            dir: dir.to_owned(),
            output: output.to_owned(),
        }
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Waits for the whole "cluster is up" block (it ends with the Ctrl-C
    /// line), at most 60 s.
    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.output().contains("Press Ctrl-C") {
            let exited = self.process.as_mut().and_then(Process::try_status);
            assert!(exited.is_none(), "local-cluster exited: {}", self.output());
            assert!(
                Instant::now() < deadline,
                "the cluster did not come up in 60 s:\n{}\nnode 1:\n{}",
                self.output(),
                tail(&self.dir.join("node-1/server.log"), 20)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node PIDs the program printed.
    fn node_pids(&self) -> Vec<Pid> {
        self.output()
            .lines()
            .filter_map(|line| line.split("(PID ").nth(1))
            .filter_map(|rest| rest.split([')', ',']).next()?.parse::<i32>().ok())
            .filter_map(Pid::from_raw)
            .collect()
    }

    /// Sends Ctrl-C's signal and waits for the program to end.
    fn interrupt(mut self) -> (Option<i32>, String) {
        let mut process = self.process.take().expect("running");
        process.signal(Signal::INT);
        let status = process
            .wait_for_exit(Duration::from_secs(20))
            .expect("local-cluster stops within 20 s of Ctrl-C");
        (status.code(), self.output())
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for id in 1..=3 {
            let pid = fs::read_to_string(self.dir.join(format!("node-{id}/pid")))
                .ok()
                .and_then(|text| text.trim().parse::<i32>().ok())
                .and_then(Pid::from_raw);
            if let Some(pid) = pid {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
        // Dropping the process guard kills and reaps the program.
        self.process.take();
    }
}

/// Runs kv-cli with the environment from the cluster's `env.sh`, as the
/// printed instructions say.
fn cli_from_env_file(dir: &Path, arguments: &[&str]) -> Output {
    let env = fs::read_to_string(dir.join("env.sh")).expect("env.sh written");
    let mut command = Command::new(cli_program());
    command.args(arguments);
    for line in env.lines() {
        if let Some((name, value)) = line
            .strip_prefix("export ")
            .and_then(|rest| rest.split_once('='))
        {
            if name.starts_with("KV_") {
                command.env(name, value.trim_matches('\''));
            }
        }
    }
    run_bounded(command, Duration::from_secs(30))
}

#[test]
fn local_cluster_answers_stops_on_ctrl_c_and_finds_its_data_again() {
    let root = temp_dir();
    let dir = root.path().join("local-cluster");
    let base_port = free_port_range();

    // First run: certificates are made, the nodes are created.
    let mut runner = Runner::start(&dir, base_port, &root.path().join("run-1.out"));
    runner.wait_until_up();
    let printed = runner.output();
    assert!(printed.contains("made certificates"), "{printed}");
    assert!(
        printed.contains(&format!("source {}/env.sh", dir.display())),
        "{printed}"
    );
    assert!(printed.contains("kv-cli put greeting hello"), "{printed}");
    let put = cli_from_env_file(&dir, &["put", "greeting", "hello"]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    assert!(printed.contains("kv-cli status"), "{printed}");
    let status = cli_from_env_file(&dir, &["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    for id in 1..=3u16 {
        let line = format!("{id}     127.0.0.1:{}", base_port + id - 1);
        assert!(table.contains(&line), "{table}");
    }

    // A second cluster on the same ports is refused, naming the node.
    let second = {
        let mut command = Command::new(env!("CARGO_BIN_EXE_local-cluster"));
        command
            .arg("--dir")
            .arg(&dir)
            .arg("--base-port")
            .arg(base_port.to_string())
            .arg("--server")
            .arg(server_program())
            .arg("--cli")
            .arg(cli_program());
        run_bounded(command, Duration::from_secs(20))
    };
    assert_eq!(second.status.code(), Some(1));
    let refusal = String::from_utf8_lossy(&second.stderr);
    assert!(
        refusal.contains(&format!("port 127.0.0.1:{base_port} (udp) is in use: node 1 of an earlier run still runs as PID")),
        "{refusal}"
    );

    // Ctrl-C stops every node cleanly.
    let pids = runner.node_pids();
    assert_eq!(pids.len(), 3, "{}", runner.output());
    let (status, printed) = runner.interrupt();
    assert_eq!(status, Some(0), "{printed}");
    for id in 1..=3 {
        assert!(
            printed.contains(&format!("node {id} stopped\n")),
            "{printed}"
        );
        assert!(!dir.join(format!("node-{id}/pid")).exists());
    }
    for pid in pids {
        assert!(
            test_kill_process(pid).is_err(),
            "node process {pid:?} still exists"
        );
    }

    // Second run: same data, no new certificates.
    let mut runner = Runner::start(&dir, base_port, &root.path().join("run-2.out"));
    runner.wait_until_up();
    assert!(!runner.output().contains("made certificates"));
    assert!(!runner.output().contains("first start"));
    let get = cli_from_env_file(&dir, &["get", "greeting"]);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&get.stdout), "hello\n");
    let (status, printed) = runner.interrupt();
    assert_eq!(status, Some(0), "{printed}");
}
