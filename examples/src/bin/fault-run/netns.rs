//! Real network partitions, in a network namespace of the run's own.
//!
//! With partitions on, `fault-run` starts itself again under
//! `unshare --net --pid --fork --kill-child`: a new, empty network
//! namespace (only a loopback device, which this module brings up) and a
//! new PID namespace whose first process is the inner `fault-run`. The
//! nodes and clients all live inside, on 127.0.0.1, so the firewall rules
//! that cut links touch nothing of the machine's own network. The kernel
//! removes both namespaces when the inner run ends, and kills every node
//! left in the PID namespace when its first process dies, however it dies:
//! no node can outlive the run.
//!
//! A partition is an nftables table in that namespace that drops, at the
//! input hook, the UDP datagrams between the isolated node's port and each
//! other node's port. Every node sends to its peers from its one QUIC
//! port, so this cuts exactly the node-to-node links; the clients, on other
//! ports, still reach every node. Dropping on input (not output) keeps the
//! loss silent, as on a real network: the sender's `sendmsg` succeeds.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use rustix::process::{kill_process, Pid, Signal};
use tokio::signal::unix::{signal, SignalKind};

/// Set in the environment of the inner run.
const INSIDE_ENV: &str = "FAULT_RUN_IN_NETNS";

/// The nftables table of the partitions.
const TABLE: &str = "inet fault_run";

/// Whether this process is the inner run, inside its own namespaces.
pub fn is_inside() -> bool {
    std::env::var_os(INSIDE_ENV).is_some_and(|value| value == "1")
}

/// The first `name` on `PATH`, if any.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Why partitions cannot run here, if they cannot: they need root (for
/// the namespaces and nftables) and the programs `unshare`, `ip` and `nft`.
pub fn unavailable_reason() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root (namespaces and nftables need it)".into());
    }
    let missing: Vec<&str> = ["unshare", "ip", "nft"]
        .into_iter()
        .filter(|name| find_program(name).is_none())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "{} not found (Debian: apt-get install util-linux iproute2 nftables)",
            missing.join(", ")
        ));
    }
    // Namespaces may be forbidden even to root (some containers).
    let probe = Command::new("unshare")
        .args(["--net", "--", "nft", "list", "ruleset"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!(
            "cannot use nftables in a new network namespace: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => Some(format!("cannot run unshare: {error}")),
    }
}

/// Runs this program again inside new network and PID namespaces, with the
/// same arguments (plus `extra_arguments`), and returns its exit status.
///
/// A Ctrl-C reaches the inner run directly (same process group), which
/// ends its run early and still checks the history; this process waits for
/// it. A SIGTERM or SIGHUP to this process kills `unshare`, whose
/// `--kill-child` then kills the inner run and with it every node.
pub fn run_inside(extra_arguments: &[OsString]) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut child = Command::new("unshare")
        .args(["--net", "--pid", "--fork", "--kill-child", "--"])
        .arg(&exe)
        .args(std::env::args_os().skip(1))
        .args(extra_arguments)
        .env(INSIDE_ENV, "1")
        .spawn()
        .context("cannot run unshare")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(async {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        loop {
            if let Some(status) = child.try_wait()? {
                return anyhow::Ok(status);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                // The inner run got it too and is ending its run.
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {
                    let _ = kill_process(Pid::from_child(&child), Signal::KILL);
                }
                _ = hangup.recv() => {
                    let _ = kill_process(Pid::from_child(&child), Signal::KILL);
                }
            }
        }
    })?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => {
            eprintln!("fault-run: the run inside the namespace ended with {status}");
            ExitCode::from(crate::EXIT_RUN_FAILED)
        }
    })
}

/// Runs `program` with `arguments` (and `stdin`), failing with its stderr.
fn run_tool(program: &str, arguments: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    let mut child = Command::new(program)
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes())?;
    }
    drop(input);
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Brings up the loopback device of the fresh namespace and removes any
/// partition table.
pub fn set_up() -> anyhow::Result<()> {
    run_tool("ip", &["link", "set", "lo", "up"], None)?;
    heal()
}

/// Cuts the node on `isolated_port` off from the nodes on `other_ports`,
/// both ways, replacing any earlier partition.
pub fn isolate(isolated_port: u16, other_ports: &[u16]) -> anyhow::Result<()> {
    assert!(
        !other_ports.contains(&isolated_port),
        "a node is not its own peer"
    );
    let mut rules = String::new();
    for other_port in other_ports {
        rules.push_str(&format!(
            "    udp sport {isolated_port} udp dport {other_port} drop\n\
             \x20   udp sport {other_port} udp dport {isolated_port} drop\n"
        ));
    }
    // Adding then deleting the table makes the script work whether or not
    // an earlier partition left one; `nft -f` applies it atomically.
    let script = format!(
        "add table {TABLE}\n\
         delete table {TABLE}\n\
         table {TABLE} {{\n\
         \x20 chain input {{\n\
         \x20   type filter hook input priority 0; policy accept;\n\
         {rules}\
         \x20 }}\n\
         }}\n"
    );
    run_tool("nft", &["-f", "-"], Some(&script))
}

/// Removes every partition.
pub fn heal() -> anyhow::Result<()> {
    let script = format!("add table {TABLE}\ndelete table {TABLE}\n");
    run_tool("nft", &["-f", "-"], Some(&script))
}
