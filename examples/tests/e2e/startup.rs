//! Each bad start-up input stops kv-server with one line on stderr that
//! says what is wrong and where, and a non-zero exit status.

use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{free_port, make_certificates, run_bounded, server_program, temp_dir};

/// What a failed start printed, checked to be one line.
struct Refusal {
    status: i32,
    line: String,
}

fn refusal(output: Output) -> Refusal {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "the server should have refused to start; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr must be one line: {stderr:?}");
    assert!(lines[0].starts_with("kv-server: "), "{stderr}");
    Refusal {
        status: output.status.code().expect("an exit code, not a signal"),
        line: lines[0].to_owned(),
    }
}

/// A directory with certificates for nodes 1 and 2, and the arguments of a
/// valid start of node 1 in it (data directory created on start).
fn valid_start(dir: &Path) -> Vec<String> {
    make_certificates(&dir.join("certs"), &[1, 2]);
    [
        "--id".to_string(),
        "1".into(),
        "--listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--peers".into(),
        format!("2=127.0.0.1:{}", free_port()),
        "--tls-dir".into(),
        dir.join("certs").display().to_string(),
        "--data-dir".into(),
        dir.join("data").display().to_string(),
        "--create-data-dir".into(),
    ]
    .into()
}

/// Replaces the value of `flag` in `arguments`.
fn with(mut arguments: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    match arguments.iter().position(|argument| argument == flag) {
        Some(at) => arguments[at + 1] = value.to_string(),
        None => arguments.extend([flag.to_string(), value.to_string()]),
    }
    arguments
}

fn run_server(arguments: &[String]) -> Output {
    let mut command = Command::new(server_program());
    command.args(arguments);
    run_bounded(command, Duration::from_secs(20))
}

#[test]
fn unknown_key_in_the_config_file_names_file_line_and_column() {
    let dir = temp_dir();
    let config = dir.path().join("node.toml");
    fs::write(
        &config,
        "id = 1\nlisten = \"127.0.0.1:7001\"\n\n[raft]\ntick_ms = 10\n",
    )
    .unwrap();

    let refused = refusal(run_server(&[
        "--config".into(),
        config.display().to_string(),
    ]));

    assert_eq!(refused.status, 2);
    let expected = format!(
        "config file {}, line 5, column 1: unknown field `tick_ms`",
        config.display()
    );
    assert!(refused.line.contains(&expected), "{}", refused.line);
}

#[test]
fn a_setting_that_cannot_work_names_its_flag() {
    let dir = temp_dir();
    let arguments = with(valid_start(dir.path()), "--election-ticks-min", "2");

    let refused = refusal(run_server(&arguments));

    assert_eq!(refused.status, 2);
    assert!(
        refused
            .line
            .contains("invalid election ticks min (--election-ticks-min)"),
        "{}",
        refused.line
    );
    assert!(!dir.path().join("data").exists(), "nothing may be created");
}

#[test]
fn a_missing_setting_names_flag_and_key() {
    let refused = refusal(run_server(&["--id".into(), "1".into()]));

    assert_eq!(refused.status, 2);
    assert_eq!(
        refused.line,
        "kv-server: the listen address is not set: pass --listen or set `listen` in the config file"
    );
}

#[test]
fn port_in_use_names_the_address_and_creates_no_data_directory() {
    let dir = temp_dir();
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().unwrap().to_string();
    let arguments = with(valid_start(dir.path()), "--listen", &address);

    let refused = refusal(run_server(&arguments));

    assert_eq!(refused.status, 1);
    assert!(
        refused
            .line
            .contains(&format!("cannot bind quic endpoint to {address}"))
            && refused.line.contains("in use"),
        "{}",
        refused.line
    );
    assert!(
        !dir.path().join("data").exists(),
        "the data directory must not be created"
    );
}

#[test]
fn unwritable_data_directory_is_named() {
    let dir = temp_dir();
    let arguments = valid_start(dir.path());
    // The data directory would be created inside `locked`, which its user
    // may not write.
    let locked = dir.path().join("locked");
    fs::create_dir(&locked).unwrap();
    let data_dir = locked.join("data");
    let arguments = with(arguments, "--data-dir", &data_dir.display().to_string());

    let mut command = Command::new(server_program());
    command.args(&arguments);
    if rustix::process::geteuid().is_root() {
        // Root writes anywhere: run the server as `nobody`, with the
        // certificates handed over to it.
        for entry in fs::read_dir(dir.path().join("certs")).unwrap() {
            std::os::unix::fs::chown(entry.unwrap().path(), Some(65534), Some(65534)).unwrap();
        }
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        command.uid(65534).gid(65534);
    } else {
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    }
    let refused = refusal(run_bounded(command, Duration::from_secs(20)));
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();

    assert_eq!(refused.status, 1);
    let expected = format!("data directory {} is not writable", data_dir.display());
    assert!(refused.line.contains(&expected), "{}", refused.line);
}

#[test]
fn foreign_data_directory_is_refused_and_left_as_it_was() {
    let dir = temp_dir();
    let data_dir = dir.path().join("data");
    fs::create_dir(&data_dir).unwrap();
    fs::write(data_dir.join("notes.txt"), "not a raft log").unwrap();

    let refused = refusal(run_server(&valid_start(dir.path())));

    assert_eq!(refused.status, 1);
    let expected = format!(
        "data directory {} holds data that is not a raft-storage log",
        data_dir.display()
    );
    assert!(refused.line.contains(&expected), "{}", refused.line);
    let entries: Vec<_> = fs::read_dir(&data_dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "the directory must be left as it was");
}

#[test]
fn missing_data_directory_without_the_create_flag_says_how_to_create_it() {
    let dir = temp_dir();
    let mut arguments = valid_start(dir.path());
    arguments.retain(|argument| argument != "--create-data-dir");

    let refused = refusal(run_server(&arguments));

    assert_eq!(refused.status, 1);
    let data_dir = dir.path().join("data");
    assert!(
        refused.line.contains(&format!(
            "data directory {} does not exist",
            data_dir.display()
        )) && refused.line.contains("pass --create-data-dir"),
        "{}",
        refused.line
    );
}

#[test]
fn missing_key_file_is_named() {
    let dir = temp_dir();
    let arguments = valid_start(dir.path());
    let key = dir.path().join("certs").join("node-1.key.pem");
    fs::remove_file(&key).unwrap();

    let refused = refusal(run_server(&arguments));

    assert_eq!(refused.status, 1);
    assert!(
        refused
            .line
            .contains(&format!("tls: cannot read {}", key.display())),
        "{}",
        refused.line
    );
}

#[test]
fn certificate_of_another_node_is_refused() {
    let dir = temp_dir();
    let certs = dir.path().join("certs");
    let arguments = valid_start(dir.path());
    let arguments = with(
        arguments,
        "--tls-cert",
        &certs.join("node-2.pem").display().to_string(),
    );
    let arguments = with(
        arguments,
        "--tls-key",
        &certs.join("node-2.key.pem").display().to_string(),
    );

    let refused = refusal(run_server(&arguments));

    assert_eq!(refused.status, 1);
    let expected = format!(
        "tls: certificate {} does not name node 1",
        certs.join("node-2.pem").display()
    );
    assert!(refused.line.contains(&expected), "{}", refused.line);
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let dir = temp_dir();
    let arguments = valid_start(dir.path());
    let other = dir.path().join("other-ca");
    make_certificates(&other, &[1]);
    let arguments = with(
        arguments,
        "--tls-cert",
        &other.join("node-1.pem").display().to_string(),
    );
    let arguments = with(
        arguments,
        "--tls-key",
        &other.join("node-1.key.pem").display().to_string(),
    );

    let refused = refusal(run_server(&arguments));

    assert_eq!(refused.status, 1);
    let expected = format!(
        "tls: certificate {} rejected",
        other.join("node-1.pem").display()
    );
    assert!(refused.line.contains(&expected), "{}", refused.line);
}
