//! The clients: each one a `Clerk` of its own (own QUIC endpoint, own
//! session) wrapped in a `RecordingClerk`, issuing one operation at a time
//! until the workload ends. Every operation ends up in the history,
//! whatever its end; the recorder decides `ok`, `fail` or `info` from the
//! clerk's answer (a timeout is never `fail`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kv_clerk::quic::QuicConnector;
use kv_clerk::{Clerk, ClerkConfig, Op, Recorder, RecordingClerk, WriteOp};
use raft_transport::TlsCredentials;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::cluster::Cluster;
use crate::schedule::Rng;

/// What every client does.
#[derive(Clone)]
pub struct WorkloadConfig {
    /// The keys the clients work on.
    pub keys: Vec<String>,
    /// How long one operation may take before the client gives up on it
    /// (and it is recorded as `info`, or `fail` when it certainly did not
    /// happen).
    pub op_timeout: Duration,
    /// Mean pause between two operations of one client (uniform in
    /// `0..=2 * think`), which keeps the history small enough to check.
    pub think: Duration,
    /// When the clients stop starting operations.
    pub end_at: Instant,
    /// How many clients run: a client's ids in the history step by this.
    pub clients: u64,
    /// Where every client's operations go.
    pub recorder: Arc<dyn Recorder>,
}

/// Out of 100 operations: reads below this, puts below
/// [`PUT_PERCENT_END`], appends for the rest. Puts reset the value, which
/// keeps appended values short.
const GET_PERCENT_END: u64 = 40;
const PUT_PERCENT_END: u64 = 60;

/// How one client's run went, apart from the history.
#[derive(Debug, Default)]
pub struct ClientTally {
    /// Operations that did not complete, by the clerk's reason.
    pub errors: BTreeMap<String, u64>,
}

/// A clerk for the cluster with short attempts, so that a paused or cut
/// off node costs an operation half a second before the clerk tries the
/// next one.
pub fn new_clerk(
    cluster: &Cluster,
    credentials: &TlsCredentials,
    seed: u64,
) -> anyhow::Result<Clerk<QuicConnector>> {
    let connector = QuicConnector::new(credentials, cluster.servers())?;
    let mut config = ClerkConfig::new(cluster.ids());
    config.attempt_timeout = Duration::from_millis(500);
    config.backoff_min = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(200);
    config.seed = seed;
    Ok(Clerk::new(connector, config)?)
}

/// The reason of an error in a few words, for the tally. A timeout says
/// what its last attempt ran into, without the server and the details.
fn reason(error: &kv_clerk::Error) -> String {
    match error {
        kv_clerk::Error::Timeout { last_error, .. } => {
            let without_server = match last_error.split_once(": ") {
                Some((server, rest)) if server.starts_with("server ") => rest,
                _ => last_error.as_str(),
            };
            let gist = without_server.split(':').next().unwrap_or_default();
            format!("timeout ({gist})")
        }
        kv_clerk::Error::Rejected { error, .. } => {
            let debug = format!("{error:?}");
            let variant: String = debug
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            format!("rejected: {variant}")
        }
        kv_clerk::Error::SessionExpired => "session expired".into(),
        kv_clerk::Error::UnexpectedReply { .. } => "unexpected reply".into(),
        kv_clerk::Error::InvalidConfig(_) => "invalid config".into(),
    }
}

/// Runs client `client` until `config.end_at` or until `stop` turns true,
/// and gives back its recording clerk (for the final reads) and tally.
pub async fn run_client(
    clerk: Clerk<QuicConnector>,
    client: u64,
    config: WorkloadConfig,
    mut rng: Rng,
    mut stop: watch::Receiver<bool>,
) -> (RecordingClerk<QuicConnector>, ClientTally) {
    let mut tally = ClientTally::default();
    let mut writes: u64 = 0;
    // The client's id in the history: `client` at first, then `client` +
    // k × clients after k operations of unknown outcome.
    let mut history_id = client;
    let mut clerk = RecordingClerk::new(clerk, history_id, Arc::clone(&config.recorder));
    while Instant::now() < config.end_at && !*stop.borrow() {
        let key = Bytes::from(config.keys[rng.below(config.keys.len() as u64) as usize].clone());
        let roll = rng.below(100);
        let op = if roll < GET_PERCENT_END {
            Op::Get { key }
        } else {
            // Unique per write, so a read tells which writes it saw; the
            // `;` keeps appended values readable.
            writes += 1;
            let value = Bytes::from(format!("c{client}-{writes};"));
            if roll < PUT_PERCENT_END {
                Op::Write(WriteOp::Put { key, value })
            } else {
                Op::Write(WriteOp::Append { key, value })
            }
        };
        let is_read = matches!(op, Op::Get { .. });
        let deadline = Instant::now() + config.op_timeout;
        if let Err(error) = clerk.execute(op, deadline).await {
            debug!(client, history_id, %error, "operation failed");
            *tally.errors.entry(reason(&error)).or_default() += 1;
            // The recorder's rule for `info`: the operation may still be
            // pending, so this id has an operation in flight for good.
            // Like Jepsen, go on under a new id, so that every id of the
            // history has at most one operation in flight.
            let unknown = error.may_have_happened()
                || (is_read && matches!(error, kv_clerk::Error::Timeout { .. }));
            if unknown {
                history_id += config.clients;
                clerk = RecordingClerk::new(
                    clerk.clerk().clone(),
                    history_id,
                    Arc::clone(&config.recorder),
                );
            }
        }

        let think_ms = config.think.as_millis() as u64;
        let pause = rng.millis_between(0, 2 * think_ms);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
    (clerk, tally)
}

/// Reads every key once through `clerk` (recorded), after the cluster has
/// healed: the reads that show the final state of each key. Returns how
/// many answered.
pub async fn final_reads(
    clerk: &mut RecordingClerk<QuicConnector>,
    keys: &[String],
    deadline: Duration,
) -> usize {
    let mut answered = 0;
    for key in keys {
        let op = Op::Get {
            key: Bytes::from(key.clone()),
        };
        if clerk.execute(op, Instant::now() + deadline).await.is_ok() {
            answered += 1;
        }
    }
    answered
}
