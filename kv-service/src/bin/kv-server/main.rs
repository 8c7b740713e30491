//! `kv-server`: one node of the linearizable key-value store, on QUIC with
//! mutual TLS and a RocksDB log.
//!
//! ```text
//! kv-server --config node-1.toml --create-data-dir   # a node's first start
//! kv-server --config node-1.toml                     # every later start
//! ```
//!
//! Settings come from a TOML file and flags (see `config.rs` and
//! `README.md`). Logs go to stdout through `tracing`, at the level
//! `RUST_LOG` sets (default `info`), inside a `kv_server{node=<id>}` span.
//! SIGTERM or Ctrl-C stops the node cleanly: clients are refused, the Raft
//! node stops, the log is closed, and the process exits with status 0.
//!
//! A start that cannot work (bad command line or configuration, missing or
//! wrong certificates, a data directory that is missing, unwritable, locked
//! or foreign, a port in use) prints one line on stderr that says what is
//! wrong and where, and exits with status 2 (command line or configuration)
//! or 1 (everything else).

#![allow(clippy::print_stderr)] // the one-line error on stderr is the interface

mod config;
mod node;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use tracing::error;
use tracing_subscriber::EnvFilter;

/// Exit status for a bad command line or configuration.
const EXIT_CONFIG: u8 = 2;
/// Exit status for a failed start or a node that stopped by itself.
const EXIT_FAILURE: u8 = 1;

/// Prints `message` as the one line of a failed run and returns `status`.
fn fail(status: u8, message: &dyn std::fmt::Display) -> ExitCode {
    // A message from a library may hold line breaks; the contract is one
    // line, so they become spaces.
    let line = message.to_string().replace(['\n', '\r'], " ");
    eprintln!("kv-server: {line}");
    ExitCode::from(status)
}

/// Logs to stdout, filtered by `RUST_LOG` (default `info`). Colours only on
/// a terminal, so that log files stay plain text.
fn init_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(tracing::level_filters::LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
}

pub fn main() -> ExitCode {
    let cli = match config::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => match error.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => error.exit(),
            _ => {
                // clap's message spans several lines (usage, tips); its first
                // line says what is wrong.
                let rendered = error.to_string();
                let first = rendered.lines().next().unwrap_or("invalid arguments");
                let first = first.strip_prefix("error: ").unwrap_or(first);
                return fail(EXIT_CONFIG, &format!("{first} (see kv-server --help)"));
            }
        },
    };
    let settings = match config::Settings::load(&cli) {
        Ok(settings) => settings,
        Err(error) => return fail(EXIT_CONFIG, &error),
    };

    init_logging();
    match node::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            error!(error = %failure, "kv-server stopped");
            fail(EXIT_FAILURE, &failure)
        }
    }
}
