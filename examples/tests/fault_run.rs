//! `fault-run` for 15 s against three real `kv-server` processes while the
//! leader is SIGKILLed, the leader is SIGSTOPped and all nodes are
//! SIGKILLed and restarted: the history it records must be linearizable,
//! with thousands of completed operations, and must be one the checker
//! can refute (a single read changed makes it not linearizable).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kv_service::history::{read_history_file, OpKind, Output, Status};
use kv_service::linearizability::{check, CheckConfig, Verdict};
use rustix::process::{kill_process, Pid, Signal};

/// The run's seed: with the fault list below, its schedule holds a
/// kill-leader, a pause-leader and a kill-all (printed by the run).
const SEED: &str = "18";

/// A `fault-run` process, stopped when dropped: SIGTERM (it heals, stops
/// its nodes and exits), then SIGKILL if it has not exited after 15 s.
struct FaultRun {
    child: Option<Child>,
}

impl FaultRun {
    fn wait_at_most(&mut self, time_max: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("running until drop");
        let deadline = Instant::now() + time_max;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FaultRun {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = kill_process(Pid::from_child(&child), Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The JSON after `summary: ` in the run's output.
fn summary(stdout: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("summary: "))
        .unwrap_or_else(|| panic!("no summary line in the output:\n{stdout}"));
    serde_json::from_str(line).expect("the summary is one JSON object")
}

fn number(summary: &serde_json::Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("summary field {field} is not a number: {summary}"))
}

#[test]
fn history_under_leader_kills_pauses_and_full_restarts_is_linearizable() {
    let dir = tempfile::Builder::new()
        .prefix("fault-run-test-")
        .tempdir()
        .expect("a temporary directory");
    let run_dir = dir.path().join("run");
    let stdout_path = dir.path().join("stdout");
    let history_path = run_dir.join("history.jsonl");

    let mut command = Command::new(env!("CARGO_BIN_EXE_fault-run"));
    command
        .args(["--duration-s", "15", "--seed", SEED])
        .args(["--faults", "kill-leader,pause-leader,kill-all,kill,pause"])
        .args(["--op-timeout-ms", "1000"])
        // The same path on every machine: no partition fault is drawn here,
        // and a fresh machine may lack nftables.
        .args(["--partitions", "off"])
        .arg("--server")
        .arg(env!("CARGO_BIN_EXE_e2e-kv-server"))
        .arg("--dir")
        .arg(&run_dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let mut run = FaultRun {
        child: Some(command.spawn().expect("start fault-run")),
    };
    let status = run.wait_at_most(Duration::from_secs(90));
    let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("fault-run did not end within 90 s:\n{stdout}"));
    eprintln!("{stdout}");
    eprintln!("fault-run took {:?}", started.elapsed());

    let summary = summary(&stdout);
    assert!(
        status.success(),
        "fault-run failed with {status}: {summary}"
    );
    assert_eq!(summary["verdict"], "linearizable", "{summary}");
    assert_eq!(summary["problems"], serde_json::json!([]), "{summary}");
    assert_eq!(number(&summary, "unexpected_exits"), 0, "{summary}");
    assert_eq!(number(&summary, "faults"), 3, "{summary}");
    assert_eq!(
        summary["faults_by_kind"],
        serde_json::json!({"kill-all": 1, "kill-leader": 1, "pause-leader": 1}),
        "the seed's schedule"
    );
    assert!(
        number(&summary, "ok") >= 1_000,
        "too few completed operations: {summary}"
    );
    for kind in ["get", "put", "append"] {
        let ok = summary["by_kind"][kind]["ok"].as_u64().unwrap_or(0);
        assert!(ok >= 100, "too few completed {kind} operations: {summary}");
    }

    // The history on disk is the one that was checked.
    let mut history = read_history_file(&history_path).expect("a valid history file");
    assert_eq!(history.len() as u64, number(&summary, "operations"));
    assert_eq!(
        check(&history, &CheckConfig::default()).verdict,
        Verdict::Linearizable
    );

    // And the check is not vacuous: one read that saw a value no client
    // wrote makes the history not linearizable.
    let read = history
        .iter()
        .rposition(|operation| operation.op == OpKind::Get && operation.status == Status::Ok)
        .expect("completed reads");
    history[read].output = Some(Output::Text("never-written;".into()));
    assert_eq!(
        check(&history, &CheckConfig::default()).verdict,
        Verdict::NotLinearizable
    );

    // Node data is removed after the run; logs, faults and history stay.
    for id in 1..=3 {
        assert!(!run_dir.join(format!("node-{id}")).exists());
        assert!(Path::new(&run_dir.join(format!("node-{id}.log"))).is_file());
    }
    let faults = fs::read_to_string(run_dir.join("faults.jsonl")).expect("faults.jsonl");
    assert_eq!(faults.lines().count(), 3);
}
