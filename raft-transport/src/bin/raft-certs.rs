//! Generates a cluster CA and node (and client) certificates for a local
//! cluster.
//!
//! ```text
//! cargo run -p raft-transport --bin raft-certs -- --out certs --nodes 1,2,3 --clients alice,bob
//! ```
//!
//! Writes `ca.pem`, `ca.key.pem`, `node-<id>.pem`, `node-<id>.key.pem`,
//! `client-<name>.pem` and `client-<name>.key.pem` into the `--out`
//! directory. If it already holds `ca.pem` and `ca.key.pem`, that CA signs
//! the new certificates (to add a node or client to an existing cluster).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use raft_core::NodeId;

const USAGE: &str = "usage: raft-certs --out DIR --nodes ID[,ID...] [--clients NAME[,NAME...]]

Generates a cluster CA (unless DIR already holds ca.pem and ca.key.pem) and a
certificate and key for each node and client, as PEM files in DIR.";

/// The parsed command line.
#[derive(Debug, PartialEq)]
struct Arguments {
    out: PathBuf,
    nodes: Vec<NodeId>,
    clients: Vec<String>,
}

fn parse(arguments: &[String]) -> Result<Arguments, String> {
    let mut out = None;
    let mut nodes = Vec::new();
    let mut clients = Vec::new();
    let mut iterator = arguments.iter();
    while let Some(flag) = iterator.next() {
        let mut value = || {
            iterator
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--nodes" => {
                for id in value()?.split(',').filter(|id| !id.is_empty()) {
                    let id: NodeId = id
                        .trim()
                        .parse()
                        .map_err(|_| format!("--nodes: {id:?} is not a node id"))?;
                    if id == 0 {
                        return Err("--nodes: node id 0 is reserved".into());
                    }
                    nodes.push(id);
                }
            }
            "--clients" => {
                let names = value()?;
                clients.extend(
                    names
                        .split(',')
                        .filter(|name| !name.is_empty())
                        .map(String::from),
                );
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let out = out.ok_or("--out is required")?;
    if nodes.is_empty() && clients.is_empty() {
        return Err("give --nodes or --clients".into());
    }
    Ok(Arguments {
        out,
        nodes,
        clients,
    })
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let arguments = match parse(&arguments) {
        Ok(arguments) => arguments,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("raft-certs: {problem}");
            }
            eprintln!("{USAGE}");
            return if problem.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match raft_transport::tls::generate_cluster_files(
        &arguments.out,
        &arguments.nodes,
        &arguments.clients,
    ) {
        Ok(files) => {
            let mut stdout = std::io::stdout().lock();
            let ca_origin = if files.ca_reused { "existing" } else { "new" };
            let _ = writeln!(stdout, "{ca_origin} CA: {}", files.ca_cert.display());
            for path in &files.written {
                let _ = writeln!(stdout, "wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("raft-certs: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(arguments: &[&str]) -> Vec<String> {
        arguments
            .iter()
            .map(|argument| argument.to_string())
            .collect()
    }

    #[test]
    fn parses_nodes_and_clients() {
        let parsed = parse(&strings(&[
            "--out",
            "d",
            "--nodes",
            "1,2,3",
            "--clients",
            "a,b",
        ]));
        assert_eq!(
            parsed,
            Ok(Arguments {
                out: "d".into(),
                nodes: vec![1, 2, 3],
                clients: vec!["a".into(), "b".into()],
            })
        );
    }

    #[test]
    fn refuses_a_missing_out_and_a_bad_node_id() {
        assert!(parse(&strings(&["--nodes", "1"])).is_err());
        let error = parse(&strings(&["--out", "d", "--nodes", "1,x"])).unwrap_err();
        assert!(error.contains("\"x\""), "{error}");
        assert!(parse(&strings(&["--out", "d", "--nodes", "0"])).is_err());
    }
}
