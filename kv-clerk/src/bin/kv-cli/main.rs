//! `kv-cli`: the command-line client of the key-value store.
//!
//! ```text
//! export KV_ENDPOINTS=1=127.0.0.1:27001,2=127.0.0.1:27002,3=127.0.0.1:27003
//! export KV_CA=certs/ca.pem KV_CERT=certs/client-cli.pem KV_KEY=certs/client-cli.key.pem
//! kv-cli put greeting hello
//! kv-cli append greeting ", world"
//! kv-cli get greeting            # prints: hello, world
//! kv-cli --json get greeting     # {"found":true,"key":"greeting","value":"hello, world"}
//! kv-cli status                  # role, term, leader, commit, applied, log of each node
//! ```
//!
//! Endpoints and certificates come from flags or the environment. Output
//! is text by default and one JSON object with `--json`. Errors go to
//! stderr, on one line. Exit status: 0 done; 1 `get` found no value; 2 bad
//! command line; 3 failed, and the operation certainly did not happen (or a
//! node did not answer `status`); 4 failed, and a write may have happened.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line program

mod output;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use kv_clerk::quic::QuicConnector;
use kv_clerk::{Clerk, ClerkConfig, ServerId};
use raft_transport::{TlsCredentials, TlsFiles};

/// Exit status: `get` found no value.
const EXIT_NOT_FOUND: u8 = 1;
/// Exit status: the operation failed and certainly did not happen.
const EXIT_FAILED: u8 = 3;
/// Exit status: the operation failed and a write may have happened.
const EXIT_IN_DOUBT: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "kv-cli",
    version,
    about = "Client of the linearizable Raft key-value store.",
    after_help = "Exit status: 0 done; 1 get found no value; 2 bad command line; 3 failed, and \
                  the operation certainly did not happen (or a node did not answer status); 4 \
                  failed, and a write may have happened."
)]
struct Cli {
    /// The cluster's nodes, as ID=HOST:PORT, comma-separated.
    #[arg(long, env = "KV_ENDPOINTS", value_name = "ID=HOST:PORT,...")]
    endpoints: String,

    /// The cluster CA certificate (PEM).
    #[arg(long, env = "KV_CA", value_name = "FILE")]
    ca: PathBuf,

    /// This client's certificate (PEM), issued by the cluster CA.
    #[arg(long, env = "KV_CERT", value_name = "FILE")]
    cert: PathBuf,

    /// This client's private key (PEM).
    #[arg(long, env = "KV_KEY", value_name = "FILE")]
    key: PathBuf,

    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,

    /// Give up after this many seconds (retrying meanwhile).
    #[arg(
        long,
        env = "KV_TIMEOUT_S",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    timeout_s: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the value of KEY (exit status 1 when it has none).
    Get {
        /// The key.
        key: OsString,
    },
    /// Set KEY to VALUE.
    Put {
        /// The key.
        key: OsString,
        /// The value.
        value: OsString,
    },
    /// Add VALUE at the end of KEY's value (set it when KEY has none).
    Append {
        /// The key.
        key: OsString,
        /// The suffix.
        value: OsString,
    },
    /// Ask each node (or the nodes named) for its role, term, leader,
    /// commit and applied index and log (exit status 3 when one does not
    /// answer).
    Status {
        /// Node ids; all endpoints when none.
        ids: Vec<ServerId>,
    },
}

/// Why a run failed: the message and the exit status.
struct Failure {
    message: String,
    status: u8,
}

impl Failure {
    fn certain(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            status: EXIT_FAILED,
        }
    }
}

/// Parses `1=127.0.0.1:7001,2=host:7002`.
fn parse_endpoints(text: &str) -> Result<BTreeMap<ServerId, SocketAddr>, String> {
    let mut endpoints = BTreeMap::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (id, address) = item
            .split_once('=')
            .ok_or_else(|| format!("endpoint {item:?} is not ID=HOST:PORT"))?;
        let id: ServerId = match id.trim().parse() {
            Ok(0) | Err(_) => return Err(format!("endpoint {item:?}: {id:?} is not a node id")),
            Ok(id) => id,
        };
        let address = address
            .trim()
            .to_socket_addrs()
            .map_err(|error| format!("endpoint {item:?}: {error}"))?
            .next()
            .ok_or_else(|| format!("endpoint {item:?} resolves to no address"))?;
        if endpoints.insert(id, address).is_some() {
            return Err(format!("node {id} is listed twice in the endpoints"));
        }
    }
    if endpoints.is_empty() {
        return Err("no endpoints given".into());
    }
    Ok(endpoints)
}

/// Loads the client's certificates and makes the QUIC connector.
fn connect(
    cli: &Cli,
    endpoints: &BTreeMap<ServerId, SocketAddr>,
) -> Result<QuicConnector, Failure> {
    let files = TlsFiles {
        ca_cert: cli.ca.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
    };
    let credentials =
        TlsCredentials::load(&files).map_err(|error| Failure::certain(format!("tls: {error}")))?;
    QuicConnector::new(&credentials, endpoints.clone())
        .map_err(|error| Failure::certain(format!("cannot open a client endpoint: {error}")))
}

/// Prints `value` as one line of JSON.
fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// Maps a clerk error to the message and exit status that say whether the
/// operation may have happened.
fn clerk_failure(what: &str, error: kv_clerk::Error) -> Failure {
    if error.may_have_happened() {
        Failure {
            message: format!("{what} failed, and it may have happened: {error}"),
            status: EXIT_IN_DOUBT,
        }
    } else {
        Failure {
            message: format!("{what} failed, and it did not happen: {error}"),
            status: EXIT_FAILED,
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let endpoints = parse_endpoints(&cli.endpoints)
        .map_err(|reason| Failure::certain(format!("--endpoints (or KV_ENDPOINTS): {reason}")))?;
    let connector = connect(&cli, &endpoints)?;
    let mut config = ClerkConfig::new(endpoints.keys().copied().collect());
    config.deadline = Duration::from_secs(cli.timeout_s.max(1));
    let clerk =
        Clerk::new(connector, config).map_err(|error| Failure::certain(error.to_string()))?;

    match cli.command {
        Command::Get { key } => {
            let key = Bytes::copy_from_slice(key.as_bytes());
            let what = format!("get {}", output::key_text(&key));
            let value = clerk
                .get(key.clone())
                .await
                .map_err(|error| clerk_failure(&what, error))?;
            if cli.json {
                print_json(&output::get_json(&key, value.as_deref()));
            } else if let Some(value) = &value {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(value);
                let _ = stdout.write_all(b"\n");
            } else {
                eprintln!("kv-cli: {} has no value", output::key_text(&key));
            }
            Ok(if value.is_some() { 0 } else { EXIT_NOT_FOUND })
        }
        Command::Status { ids } => status(&clerk, &endpoints, ids, cli.json).await,
        Command::Put { key, value } => write(&clerk, "put", key, value, cli.json).await,
        Command::Append { key, value } => write(&clerk, "append", key, value, cli.json).await,
    }
}

/// Runs a `put` or an `append` and prints its outcome.
async fn write(
    clerk: &Clerk<QuicConnector>,
    op: &str,
    key: OsString,
    value: OsString,
    json: bool,
) -> Result<u8, Failure> {
    let key = Bytes::copy_from_slice(key.as_bytes());
    let value = Bytes::copy_from_slice(value.as_bytes());
    let what = format!("{op} {}", output::key_text(&key));
    let written = if op == "put" {
        clerk.put(key.clone(), value).await
    } else {
        clerk.append(key.clone(), value).await
    };
    written.map_err(|error| clerk_failure(&what, error))?;
    if json {
        print_json(&output::write_json(op, &key));
    } else {
        println!("OK");
    }
    Ok(0)
}

/// Asks the nodes for their status, all at once, and prints what each said.
async fn status(
    clerk: &Clerk<QuicConnector>,
    endpoints: &BTreeMap<ServerId, SocketAddr>,
    ids: Vec<ServerId>,
    json: bool,
) -> Result<u8, Failure> {
    let ids = if ids.is_empty() {
        endpoints.keys().copied().collect()
    } else {
        ids
    };
    if let Some(unknown) = ids.iter().find(|id| !endpoints.contains_key(id)) {
        return Err(Failure::certain(format!(
            "node {unknown} is not in the endpoints"
        )));
    }

    let mut asking = tokio::task::JoinSet::new();
    for &id in &ids {
        let clerk = clerk.clone();
        asking.spawn(async move { (id, clerk.status(id).await) });
    }
    let mut answers = BTreeMap::new();
    while let Some(joined) = asking.join_next().await {
        let (id, answer) = joined.expect("a status call does not panic");
        answers.insert(id, answer.map_err(|error| error.to_string()));
    }

    let all_answered = answers.values().all(Result::is_ok);
    if json {
        print_json(&output::status_json(endpoints, &answers));
    } else {
        print!("{}", output::status_table(endpoints, &answers));
    }
    Ok(if all_answered { 0 } else { EXIT_FAILED })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kv-cli: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            eprintln!("kv-cli: {}", failure.message.replace(['\n', '\r'], " "));
            ExitCode::from(failure.status)
        }
    }
}
