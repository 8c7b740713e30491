//! The server's settings: a TOML file (`--config`), overridden key by key by
//! command-line flags, then checked as a whole.
//!
//! ```text
//!  flags ──┐
//!          ├──▶ pick each value (flag first) ──▶ Settings::resolve ──▶ Settings
//!  file ───┘    and remember where it came from     checks, names the origin
//! ```
//!
//! Every error says what is wrong and where it came from (the flag, or the
//! key and the file), on one line: the server prints it and stops.
//! Relative paths in the file are taken from the file's directory, relative
//! paths in flags from the working directory.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kv_service::{ServerConfig, SessionConfig};
use raft_core::NodeId;
use raft_storage::OpenOptions;
use raft_transport::{Identity, TlsFiles};
use serde::Deserialize;

/// Defaults of the `[raft]` and `[service]` sections, in one place for the
/// help text and the documentation.
pub mod defaults {
    /// `raft.tick_interval_ms`.
    pub const TICK_INTERVAL_MS: u64 = 10;
    /// `raft.heartbeat_ticks`.
    pub const HEARTBEAT_TICKS: u32 = 5;
    /// `raft.election_ticks_min`.
    pub const ELECTION_TICKS_MIN: u32 = 50;
    /// `raft.election_ticks_max`.
    pub const ELECTION_TICKS_MAX: u32 = 100;
    /// `raft.snapshot_entries_threshold`.
    pub const SNAPSHOT_ENTRIES_THRESHOLD: u64 = 10_000;
    /// `service.request_timeout_ms`.
    pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
    /// `service.session_ttl_s`.
    pub const SESSION_TTL_S: u64 = 3_600;
    /// `service.sessions_max`.
    pub const SESSIONS_MAX: usize = 100_000;
    /// `storage.memtable_bytes_max`.
    pub const MEMTABLE_BYTES_MAX: usize = raft_storage::MEMTABLE_BYTES_MAX_DEFAULT;
    /// `storage.wal_bytes_max`.
    pub const WAL_BYTES_MAX: u64 = raft_storage::WAL_BYTES_MAX_DEFAULT;
}

/// The command line. Every setting but `--config` and `--create-data-dir`
/// also has a key in the TOML file; a flag wins over the file.
#[derive(Debug, Parser)]
#[command(
    name = "kv-server",
    version,
    about = "One node of the linearizable Raft key-value store (QUIC, RocksDB).",
    after_help = "Settings come from --config FILE and from flags; a flag wins over the file. \
                  Logs go to stdout, at the level RUST_LOG sets (default info). SIGTERM or \
                  Ctrl-C stops the node cleanly. Exit status: 0 after a clean stop, 2 for a bad \
                  command line or configuration, 1 when start-up or the node failed."
)]
pub struct Cli {
    /// TOML configuration file (keys as in README.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// This node's id (a positive integer, unique in the cluster) [key: id].
    #[arg(long, value_name = "ID")]
    pub id: Option<NodeId>,

    /// UDP address to listen on, for peers and clients [key: listen].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,

    /// The other nodes, as ID=HOST:PORT, comma-separated or repeated;
    /// replaces the file's peers table [key: peers].
    #[arg(
        long = "peers",
        alias = "peer",
        value_name = "ID=HOST:PORT",
        value_delimiter = ','
    )]
    pub peers: Vec<String>,

    /// Directory of this node's Raft log (RocksDB) [key: data_dir].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Create the data directory if it is missing or empty. Use it only on a
    /// node's first start: a node that restarts on an empty directory has
    /// forgotten its votes.
    #[arg(long)]
    pub create_data_dir: bool,

    /// Directory with ca.pem, node-ID.pem and node-ID.key.pem, as
    /// raft-certs writes them [key: tls.dir].
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,

    /// The cluster CA certificate (PEM); overrides --tls-dir [key: tls.ca].
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// This node's certificate (PEM); overrides --tls-dir [key: tls.cert].
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// This node's private key (PEM); overrides --tls-dir [key: tls.key].
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Length of one Raft clock tick, in milliseconds
    /// [key: raft.tick_interval_ms; default 10].
    #[arg(long, value_name = "MS")]
    pub tick_interval_ms: Option<u64>,

    /// Ticks between a leader's heartbeats [key: raft.heartbeat_ticks; default 5].
    #[arg(long, value_name = "TICKS")]
    pub heartbeat_ticks: Option<u32>,

    /// Shortest election timeout, in ticks [key: raft.election_ticks_min; default 50].
    #[arg(long, value_name = "TICKS")]
    pub election_ticks_min: Option<u32>,

    /// Longest election timeout (exclusive), in ticks
    /// [key: raft.election_ticks_max; default 100].
    #[arg(long, value_name = "TICKS")]
    pub election_ticks_max: Option<u32>,

    /// Snapshot after this many applied entries; 0 turns snapshots off
    /// [key: raft.snapshot_entries_threshold; default 10000].
    #[arg(long, value_name = "ENTRIES")]
    pub snapshot_entries_threshold: Option<u64>,

    /// How long a client request may wait for its commit or read barrier
    /// [key: service.request_timeout_ms; default 5000].
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<u64>,

    /// A client session without writes for this long expires; the same on
    /// every node [key: service.session_ttl_s; default 3600].
    #[arg(long, value_name = "SECONDS")]
    pub session_ttl_s: Option<u64>,

    /// Most client sessions kept at once; the same on every node
    /// [key: service.sessions_max; default 100000].
    #[arg(long, value_name = "COUNT")]
    pub sessions_max: Option<usize>,

    /// RocksDB memtable size, per column family: memory use is up to four
    /// times this [key: storage.memtable_bytes_max; default 8 MiB].
    #[arg(long, value_name = "BYTES")]
    pub memtable_bytes_max: Option<usize>,

    /// Write-ahead log size at which RocksDB flushes memtables; at least
    /// twice the memtable size [key: storage.wal_bytes_max; default 32 MiB].
    #[arg(long, value_name = "BYTES")]
    pub wal_bytes_max: Option<u64>,
}

/// The TOML file, as written. Every key is optional here; what is required
/// is checked once flags and file are merged.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<NodeId>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    /// Node id (as a TOML key, so a string) to address.
    peers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    raft: FileRaft,
    #[serde(default)]
    service: FileService,
    #[serde(default)]
    storage: FileStorage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    dir: Option<PathBuf>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaft {
    tick_interval_ms: Option<u64>,
    heartbeat_ticks: Option<u32>,
    election_ticks_min: Option<u32>,
    election_ticks_max: Option<u32>,
    snapshot_entries_threshold: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileService {
    request_timeout_ms: Option<u64>,
    session_ttl_s: Option<u64>,
    sessions_max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    memtable_bytes_max: Option<usize>,
    wal_bytes_max: Option<u64>,
}

/// Where a value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, such as `--listen`.
    Flag(&'static str),
    /// A key of the configuration file.
    File {
        /// The key, such as `raft.heartbeat_ticks`.
        key: String,
        /// The file.
        path: PathBuf,
    },
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(formatter, "{flag}"),
            Origin::File { key, path } => write!(formatter, "`{key}` in {}", path.display()),
            Origin::Default => write!(formatter, "the default"),
        }
    }
}

/// Why the settings cannot be used. Each message fits on one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has unknown keys or
    /// values of the wrong type.
    #[error("config file {}{location}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// `, line L, column C` when known.
        location: String,
        /// What the TOML parser said.
        message: String,
    },
    /// A required setting is in neither the flags nor the file.
    #[error("{what} is not set: pass {flag} or set `{key}` in the config file")]
    Missing {
        /// What is missing.
        what: &'static str,
        /// The flag that sets it.
        flag: &'static str,
        /// The file key that sets it.
        key: &'static str,
    },
    /// A value is there but cannot work.
    #[error("invalid {what} ({origin}): {reason}")]
    Invalid {
        /// What the value is.
        what: String,
        /// Where it came from.
        origin: Origin,
        /// Why it cannot work.
        reason: String,
    },
}

/// Everything the server needs to start, checked.
#[derive(Debug)]
pub struct Settings {
    /// This node's id.
    pub id: NodeId,
    /// The address the QUIC endpoint binds.
    pub listen: SocketAddr,
    /// The other nodes and their addresses.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The node's RocksDB directory.
    pub data_dir: PathBuf,
    /// Whether a missing or empty data directory may be created.
    pub create_data_dir: bool,
    /// The CA, certificate and key files.
    pub tls: TlsFiles,
    /// Raft settings, validated by raft-core.
    pub raft: raft_core::Config,
    /// Session rules (the same on every node).
    pub session: SessionConfig,
    /// Request handling.
    pub server: ServerConfig,
    /// RocksDB sizes (`create_if_missing` is set from `create_data_dir`).
    pub storage: OpenOptions,
}

/// A value and where it came from.
struct Sourced<T> {
    value: T,
    origin: Origin,
}

/// The flag's value if given, else the file's, each with its origin.
fn pick<T>(
    flag_value: Option<T>,
    flag: &'static str,
    file_value: Option<T>,
    key: &str,
    file_path: &Path,
) -> Option<Sourced<T>> {
    if let Some(value) = flag_value {
        return Some(Sourced {
            value,
            origin: Origin::Flag(flag),
        });
    }
    file_value.map(|value| Sourced {
        value,
        origin: Origin::File {
            key: key.to_owned(),
            path: file_path.to_owned(),
        },
    })
}

/// Like [`pick`], falling back to a default.
fn pick_or<T>(
    flag_value: Option<T>,
    flag: &'static str,
    file_value: Option<T>,
    key: &str,
    file_path: &Path,
    default: T,
) -> Sourced<T> {
    pick(flag_value, flag, file_value, key, file_path).unwrap_or(Sourced {
        value: default,
        origin: Origin::Default,
    })
}

fn invalid(what: impl Into<String>, origin: &Origin, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        what: what.into(),
        origin: origin.clone(),
        reason: reason.into(),
    }
}

/// Parses `HOST:PORT`: an IP address and port, or a name that resolves.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    if !text.contains(':') {
        return Err(format!("{text:?} has no port (write HOST:PORT)"));
    }
    let mut resolved = text
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {text:?}: {error}"))?;
    resolved
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

fn parse_node_id(text: &str) -> Result<NodeId, String> {
    match text.trim().parse::<NodeId>() {
        Ok(0) => Err("node id 0 is reserved".into()),
        Ok(id) => Ok(id),
        Err(_) => Err(format!("{text:?} is not a node id (a positive integer)")),
    }
}

/// Reads the TOML file at `path`.
fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| {
        let location = error
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
                format!(", line {line}, column {column}")
            })
            .unwrap_or_default();
        ConfigError::Parse {
            path: path.to_owned(),
            location,
            message: error.message().trim().replace('\n', " "),
        }
    })
}

/// A path from the file is relative to the file's directory.
fn relative_to(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_relative() {
        base.join(path)
    } else {
        path
    }
}

/// The seed of the election timeouts: different per node and per start,
/// so that two nodes never keep choosing equal timeouts.
fn election_seed(id: NodeId) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            elapsed.subsec_nanos() as u64 ^ elapsed.as_secs()
        });
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos
}

impl Settings {
    /// Reads the file named by `--config` (if any), merges the flags over
    /// it, and checks the result.
    pub fn load(cli: &Cli) -> Result<Settings, ConfigError> {
        let (file, file_path) = match &cli.config {
            Some(path) => (read_file(path)?, path.clone()),
            None => (FileConfig::default(), PathBuf::from("(no config file)")),
        };
        Settings::resolve(cli, file, &file_path)
    }

    fn resolve(cli: &Cli, file: FileConfig, file_path: &Path) -> Result<Settings, ConfigError> {
        let file_dir = file_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let from_file = |path: Option<PathBuf>| path.map(|path| relative_to(&file_dir, path));

        // Identity and addresses.
        let id = pick(cli.id, "--id", file.id, "id", file_path).ok_or(ConfigError::Missing {
            what: "the node id",
            flag: "--id",
            key: "id",
        })?;
        if id.value == 0 {
            return Err(invalid("node id", &id.origin, "node id 0 is reserved"));
        }
        let id_value = id.value;

        let listen = pick(
            cli.listen.clone(),
            "--listen",
            file.listen,
            "listen",
            file_path,
        )
        .ok_or(ConfigError::Missing {
            what: "the listen address",
            flag: "--listen",
            key: "listen",
        })?;
        let listen_address = parse_address(&listen.value)
            .map_err(|reason| invalid("listen address", &listen.origin, reason))?;

        let peers = Settings::resolve_peers(cli, file.peers, file_path, id_value)?;

        // Data directory.
        let data_dir = pick(
            cli.data_dir.clone(),
            "--data-dir",
            from_file(file.data_dir),
            "data_dir",
            file_path,
        )
        .ok_or(ConfigError::Missing {
            what: "the data directory",
            flag: "--data-dir",
            key: "data_dir",
        })?;
        if data_dir.value.as_os_str().is_empty() {
            return Err(invalid(
                "data directory",
                &data_dir.origin,
                "the path is empty",
            ));
        }

        let tls = Settings::resolve_tls(cli, file.tls, file_path, &file_dir, id_value)?;
        let raft = Settings::resolve_raft(cli, file.raft, file_path, id_value, &peers)?;
        let (session, server) = Settings::resolve_service(cli, file.service, file_path)?;
        let storage = Settings::resolve_storage(cli, file.storage, file_path)?
            .create_if_missing(cli.create_data_dir);

        Ok(Settings {
            id: id_value,
            listen: listen_address,
            peers,
            data_dir: data_dir.value,
            create_data_dir: cli.create_data_dir,
            tls,
            raft,
            session,
            server,
            storage,
        })
    }

    fn resolve_peers(
        cli: &Cli,
        file_peers: Option<BTreeMap<String, String>>,
        file_path: &Path,
        id: NodeId,
    ) -> Result<BTreeMap<NodeId, SocketAddr>, ConfigError> {
        // Flags replace the file's table as a whole: a cluster's membership
        // should come from one place.
        let entries: Vec<(String, String, Origin)> = if !cli.peers.is_empty() {
            let mut entries = Vec::new();
            for text in cli.peers.iter().filter(|text| !text.trim().is_empty()) {
                let origin = Origin::Flag("--peers");
                let (peer_id, address) = text.split_once('=').ok_or_else(|| {
                    invalid("peer", &origin, format!("{text:?} is not ID=HOST:PORT"))
                })?;
                entries.push((peer_id.to_owned(), address.to_owned(), origin));
            }
            entries
        } else {
            let origin = |peer_id: &str| Origin::File {
                key: format!("peers.{peer_id}"),
                path: file_path.to_owned(),
            };
            file_peers
                .unwrap_or_default()
                .into_iter()
                .map(|(peer_id, address)| {
                    let origin = origin(&peer_id);
                    (peer_id, address, origin)
                })
                .collect()
        };

        let mut peers = BTreeMap::new();
        for (peer_id, address, origin) in entries {
            let peer_id =
                parse_node_id(&peer_id).map_err(|reason| invalid("peer", &origin, reason))?;
            if peer_id == id {
                return Err(invalid(
                    "peer",
                    &origin,
                    format!("node {id} is this node; list only the other nodes"),
                ));
            }
            let address = parse_address(address.trim())
                .map_err(|reason| invalid(format!("address of peer {peer_id}"), &origin, reason))?;
            if peers.insert(peer_id, address).is_some() {
                return Err(invalid(
                    "peer",
                    &origin,
                    format!("node {peer_id} is listed twice"),
                ));
            }
        }
        Ok(peers)
    }

    fn resolve_tls(
        cli: &Cli,
        file_tls: FileTls,
        file_path: &Path,
        file_dir: &Path,
        id: NodeId,
    ) -> Result<TlsFiles, ConfigError> {
        let from_file = |path: Option<PathBuf>| path.map(|path| relative_to(file_dir, path));
        let dir = pick(
            cli.tls_dir.clone(),
            "--tls-dir",
            from_file(file_tls.dir),
            "tls.dir",
            file_path,
        );
        let in_dir = dir
            .as_ref()
            .map(|dir| TlsFiles::in_dir(&dir.value, &Identity::Node(id)));
        let file_or_dir = |flag_value: &Option<PathBuf>,
                           flag: &'static str,
                           file_value: Option<PathBuf>,
                           key: &'static str,
                           from_dir: Option<PathBuf>|
         -> Result<PathBuf, ConfigError> {
            pick(
                flag_value.clone(),
                flag,
                from_file(file_value),
                key,
                file_path,
            )
            .map(|sourced| sourced.value)
            .or(from_dir)
            .ok_or(ConfigError::Missing {
                what: match key {
                    "tls.ca" => "the CA certificate",
                    "tls.cert" => "the node certificate",
                    _ => "the node key",
                },
                flag,
                key,
            })
        };
        Ok(TlsFiles {
            ca_cert: file_or_dir(
                &cli.tls_ca,
                "--tls-ca (or --tls-dir)",
                file_tls.ca,
                "tls.ca",
                in_dir.as_ref().map(|files| files.ca_cert.clone()),
            )?,
            cert: file_or_dir(
                &cli.tls_cert,
                "--tls-cert (or --tls-dir)",
                file_tls.cert,
                "tls.cert",
                in_dir.as_ref().map(|files| files.cert.clone()),
            )?,
            key: file_or_dir(
                &cli.tls_key,
                "--tls-key (or --tls-dir)",
                file_tls.key,
                "tls.key",
                in_dir.as_ref().map(|files| files.key.clone()),
            )?,
        })
    }

    fn resolve_raft(
        cli: &Cli,
        file_raft: FileRaft,
        file_path: &Path,
        id: NodeId,
        peers: &BTreeMap<NodeId, SocketAddr>,
    ) -> Result<raft_core::Config, ConfigError> {
        let tick = pick_or(
            cli.tick_interval_ms,
            "--tick-interval-ms",
            file_raft.tick_interval_ms,
            "raft.tick_interval_ms",
            file_path,
            defaults::TICK_INTERVAL_MS,
        );
        let heartbeat = pick_or(
            cli.heartbeat_ticks,
            "--heartbeat-ticks",
            file_raft.heartbeat_ticks,
            "raft.heartbeat_ticks",
            file_path,
            defaults::HEARTBEAT_TICKS,
        );
        let election_min = pick_or(
            cli.election_ticks_min,
            "--election-ticks-min",
            file_raft.election_ticks_min,
            "raft.election_ticks_min",
            file_path,
            defaults::ELECTION_TICKS_MIN,
        );
        let election_max = pick_or(
            cli.election_ticks_max,
            "--election-ticks-max",
            file_raft.election_ticks_max,
            "raft.election_ticks_max",
            file_path,
            defaults::ELECTION_TICKS_MAX,
        );
        let snapshot = pick_or(
            cli.snapshot_entries_threshold,
            "--snapshot-entries-threshold",
            file_raft.snapshot_entries_threshold,
            "raft.snapshot_entries_threshold",
            file_path,
            defaults::SNAPSHOT_ENTRIES_THRESHOLD,
        );

        // Check each value where it came from before raft-core checks the
        // whole, so that the message can name the flag or key.
        if tick.value == 0 {
            return Err(invalid("tick interval", &tick.origin, "must be positive"));
        }
        if heartbeat.value == 0 {
            return Err(invalid(
                "heartbeat ticks",
                &heartbeat.origin,
                "must be positive",
            ));
        }
        if election_min.value <= heartbeat.value {
            return Err(invalid(
                "election ticks min",
                &election_min.origin,
                format!(
                    "{} must exceed the heartbeat ticks ({}, {})",
                    election_min.value, heartbeat.value, heartbeat.origin
                ),
            ));
        }
        if election_max.value <= election_min.value {
            return Err(invalid(
                "election ticks max",
                &election_max.origin,
                format!(
                    "{} must exceed the election ticks min ({}, {})",
                    election_max.value, election_min.value, election_min.origin
                ),
            ));
        }

        let mut voters: Vec<NodeId> = peers.keys().copied().collect();
        voters.push(id);
        voters.sort_unstable();
        let mut config = raft_core::Config::new(id, voters);
        config.tick_interval = Duration::from_millis(tick.value);
        config.heartbeat_ticks = heartbeat.value;
        config.election_ticks_min = election_min.value;
        config.election_ticks_max = election_max.value;
        config.snapshot_entries_threshold = (snapshot.value > 0).then_some(snapshot.value);
        config.seed = election_seed(id);
        config
            .validate()
            .map_err(|error| invalid("raft settings", &Origin::Default, error.to_string()))?;
        Ok(config)
    }

    fn resolve_storage(
        cli: &Cli,
        file_storage: FileStorage,
        file_path: &Path,
    ) -> Result<OpenOptions, ConfigError> {
        let memtable = pick_or(
            cli.memtable_bytes_max,
            "--memtable-bytes-max",
            file_storage.memtable_bytes_max,
            "storage.memtable_bytes_max",
            file_path,
            defaults::MEMTABLE_BYTES_MAX,
        );
        let wal = pick_or(
            cli.wal_bytes_max,
            "--wal-bytes-max",
            file_storage.wal_bytes_max,
            "storage.wal_bytes_max",
            file_path,
            defaults::WAL_BYTES_MAX,
        );
        if memtable.value < raft_storage::MEMTABLE_BYTES_MAX_MIN {
            return Err(invalid(
                "memtable size",
                &memtable.origin,
                format!(
                    "{} is below the minimum of {} bytes",
                    memtable.value,
                    raft_storage::MEMTABLE_BYTES_MAX_MIN
                ),
            ));
        }
        let wal_min = 2 * memtable.value as u64;
        if wal.value < wal_min {
            return Err(invalid(
                "write-ahead log size",
                &wal.origin,
                format!(
                    "{} is below twice the memtable size ({wal_min}, {})",
                    wal.value, memtable.origin
                ),
            ));
        }
        Ok(OpenOptions::new()
            .memtable_bytes_max(memtable.value)
            .wal_bytes_max(wal.value))
    }

    fn resolve_service(
        cli: &Cli,
        file_service: FileService,
        file_path: &Path,
    ) -> Result<(SessionConfig, ServerConfig), ConfigError> {
        let request_timeout = pick_or(
            cli.request_timeout_ms,
            "--request-timeout-ms",
            file_service.request_timeout_ms,
            "service.request_timeout_ms",
            file_path,
            defaults::REQUEST_TIMEOUT_MS,
        );
        let session_ttl = pick_or(
            cli.session_ttl_s,
            "--session-ttl-s",
            file_service.session_ttl_s,
            "service.session_ttl_s",
            file_path,
            defaults::SESSION_TTL_S,
        );
        let sessions_max = pick_or(
            cli.sessions_max,
            "--sessions-max",
            file_service.sessions_max,
            "service.sessions_max",
            file_path,
            defaults::SESSIONS_MAX,
        );
        if request_timeout.value == 0 {
            return Err(invalid(
                "request timeout",
                &request_timeout.origin,
                "must be positive",
            ));
        }
        if session_ttl.value == 0 {
            return Err(invalid(
                "session ttl",
                &session_ttl.origin,
                "must be positive",
            ));
        }
        if sessions_max.value == 0 {
            return Err(invalid(
                "sessions max",
                &sessions_max.origin,
                "must be positive",
            ));
        }
        let session = SessionConfig {
            session_ttl: Duration::from_secs(session_ttl.value),
            sessions_max: sessions_max.value,
        };
        let server = ServerConfig {
            request_timeout: Duration::from_millis(request_timeout.value),
        };
        Ok((session, server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(arguments: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("kv-server").chain(arguments.iter().copied()))
            .expect("arguments parse")
    }

    fn resolve(arguments: &[&str], toml_text: &str) -> Result<Settings, ConfigError> {
        let file: FileConfig = toml::from_str(toml_text).expect("test toml parses");
        Settings::resolve(&cli(arguments), file, Path::new("/etc/kv/node.toml"))
    }

    const FILE: &str = r#"
        id = 1
        listen = "127.0.0.1:7001"
        data_dir = "data/node-1"
        [peers]
        2 = "127.0.0.1:7002"
        3 = "127.0.0.1:7003"
        [tls]
        dir = "certs"
        [raft]
        heartbeat_ticks = 3
    "#;

    #[test]
    fn file_alone_gives_every_setting_with_paths_from_its_directory() {
        let settings = resolve(&[], FILE).expect("valid");
        assert_eq!(settings.id, 1);
        assert_eq!(settings.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(settings.peers.len(), 2);
        assert_eq!(settings.data_dir, Path::new("/etc/kv/data/node-1"));
        assert_eq!(settings.tls.cert, Path::new("/etc/kv/certs/node-1.pem"));
        assert_eq!(settings.tls.key, Path::new("/etc/kv/certs/node-1.key.pem"));
        assert_eq!(settings.tls.ca_cert, Path::new("/etc/kv/certs/ca.pem"));
        assert_eq!(settings.raft.voters, vec![1, 2, 3]);
        assert_eq!(settings.raft.heartbeat_ticks, 3);
        assert_eq!(
            settings.raft.snapshot_entries_threshold,
            Some(defaults::SNAPSHOT_ENTRIES_THRESHOLD)
        );
        assert!(!settings.create_data_dir);
    }

    #[test]
    fn flags_win_over_the_file_and_peers_replace_the_whole_table() {
        let settings = resolve(
            &[
                "--listen",
                "127.0.0.1:9001",
                "--peers",
                "5=127.0.0.1:9005",
                "--tls-key",
                "/keys/k.pem",
                "--snapshot-entries-threshold",
                "0",
            ],
            FILE,
        )
        .expect("valid");
        assert_eq!(settings.listen.port(), 9001);
        assert_eq!(settings.peers.keys().copied().collect::<Vec<_>>(), vec![5]);
        assert_eq!(settings.raft.voters, vec![1, 5]);
        assert_eq!(settings.tls.key, Path::new("/keys/k.pem"));
        assert_eq!(settings.tls.cert, Path::new("/etc/kv/certs/node-1.pem"));
        assert_eq!(settings.raft.snapshot_entries_threshold, None);
    }

    #[test]
    fn a_missing_setting_names_its_flag_and_key() {
        let error = resolve(&["--id", "1", "--data-dir", "d"], "").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the listen address is not set: pass --listen or set `listen` in the config file"
        );
    }

    #[test]
    fn a_peer_naming_this_node_is_refused_with_its_key() {
        let error = resolve(&["--peers", "1=127.0.0.1:7002"], FILE).unwrap_err();
        assert!(error.to_string().contains("--peers"), "{error}");
        let text = FILE.replace("2 = ", "1 = ");
        let error = resolve(&[], &text).unwrap_err().to_string();
        assert!(
            error.contains("`peers.1` in /etc/kv/node.toml")
                && error.contains("node 1 is this node"),
            "{error}"
        );
    }

    #[test]
    fn election_timeout_not_above_heartbeat_names_both_origins() {
        let error = resolve(&["--election-ticks-min", "3"], FILE)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "invalid election ticks min (--election-ticks-min): 3 must exceed the heartbeat \
             ticks (3, `raft.heartbeat_ticks` in /etc/kv/node.toml)"
        );
    }

    #[test]
    fn storage_sizes_below_their_minimums_are_refused() {
        let error = resolve(&["--memtable-bytes-max", "1024"], FILE)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("invalid memtable size (--memtable-bytes-max)"),
            "{error}"
        );
        let text = format!("{FILE}\n[storage]\nwal_bytes_max = 1048576\n");
        let error = resolve(&[], &text).unwrap_err().to_string();
        assert!(
            error.starts_with("invalid write-ahead log size (`storage.wal_bytes_max` in"),
            "{error}"
        );
    }

    #[test]
    fn addresses_without_port_or_unparsable_are_refused() {
        let error = resolve(&["--listen", "127.0.0.1"], FILE)
            .unwrap_err()
            .to_string();
        assert!(error.contains("has no port"), "{error}");
        let error = resolve(&["--peers", "x=127.0.0.1:1"], FILE)
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"x\" is not a node id"), "{error}");
        let error = resolve(&["--peers", "2:127.0.0.1:1"], FILE)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not ID=HOST:PORT"), "{error}");
    }

    /// README.md, the user's reference for this program.
    const USAGE: &str = include_str!("../../../../README.md");

    #[test]
    fn the_documented_example_file_is_valid_and_every_flag_is_documented() {
        let example = USAGE
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("README.md has a TOML example");
        let settings = resolve(&[], example).expect("the documented example is valid");
        assert_eq!(settings.raft.voters, vec![1, 2, 3]);

        use clap::CommandFactory;
        for argument in Cli::command().get_arguments() {
            if let Some(long) = argument.get_long() {
                if long != "help" && long != "version" {
                    let flag = format!("`--{long}");
                    assert!(USAGE.contains(&flag), "README.md does not mention {flag}`");
                }
            }
        }
    }

    #[test]
    fn toml_errors_give_line_and_column_on_one_line() {
        let directory =
            std::env::temp_dir().join(format!("kv-server-config-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("bad.toml");
        std::fs::write(&path, "id = 1\nlisten = \"127.0.0.1:1\"\nheartbeat = 3\n").unwrap();
        let error = read_file(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&directory).unwrap();
        assert!(
            error.contains(", line 3, column 1: unknown field `heartbeat`"),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
    }
}
