//! Throughput and latency of one peer-to-peer link on loopback, for 64-byte
//! and 64 KiB messages, over three paths measured in the same run:
//!
//! - `transport`: two [`QuicTransport`]s, node 1 to node 2, through the
//!   per-peer queue, the long-lived stream and the receiving sink;
//! - `quic-stream`: one raw quinn bidirectional stream with the same frame
//!   codec and mutual TLS, without the transport's queue and tasks;
//! - `tcp`: a plain `TcpStream` (no TLS, `TCP_NODELAY`) with the same codec,
//!   the baseline.
//!
//! Run it in release:
//!
//! ```text
//! cargo run --release -p raft-transport --example link_bench [-- --seconds 2]
//! ```
//!
//! Each measurement stops after its message count or `--seconds` (default
//! 2), whichever comes first, so the whole run takes well under a minute.
//! Latency is the round trip of one message echoed back (the next is sent
//! only after the answer); throughput is one-way, pipelined, with at most a
//! window of messages in flight.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, Message, MessageBody, Transport};
use raft_transport::frame::{self, FrameReader};
use raft_transport::{
    CertificateAuthority, Identity, MessageSink, QuicClient, QuicTransport, TlsCredentials,
    TransportConfig, CLIENT_ALPN,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

const PAYLOAD_MAX: usize = 1 << 20;

/// What the receiving end does with each message.
struct BenchSink {
    /// Echo messages back through this transport (latency runs).
    echo: OnceLock<QuicTransport>,
    /// Messages received.
    delivered: AtomicU64,
    /// Woken on each delivery.
    progress: Notify,
    /// Where echoed answers arrive at the sender.
    answers: Option<mpsc::UnboundedSender<Message>>,
}

impl MessageSink for BenchSink {
    fn deliver(&self, message: Message) -> bool {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(answers) = &self.answers {
            return answers.send(message).is_ok();
        }
        if let Some(transport) = self.echo.get() {
            if message.term > 0 {
                transport.send(Message {
                    from: message.to,
                    to: message.from,
                    ..message
                });
            }
        }
        self.progress.notify_one();
        true
    }
}

fn message(term: u64, payload: &Bytes) -> Message {
    Message {
        from: 1,
        to: 2,
        term,
        body: MessageBody::AppendEntries {
            prev_index: term,
            prev_term: 1,
            entries: vec![Entry {
                term: 1,
                index: term + 1,
                payload: EntryPayload::Command(payload.clone()),
            }],
            commit: term,
            read_seq: 0,
        },
    }
}

/// Bounds of one measurement.
#[derive(Clone, Copy)]
struct Limits {
    round_trips: usize,
    messages: u64,
    window: u64,
    duration: Duration,
}

#[derive(Default)]
struct Row {
    messages_per_second: f64,
    p50: Duration,
    p99: Duration,
    samples: usize,
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[rank]
}

fn summarize(mut rtts: Vec<Duration>, delivered: u64, elapsed: Duration) -> Row {
    rtts.sort_unstable();
    Row {
        messages_per_second: delivered as f64 / elapsed.as_secs_f64(),
        p50: percentile(&rtts, 0.50),
        p99: percentile(&rtts, 0.99),
        samples: rtts.len(),
    }
}

struct Credentials {
    ca: CertificateAuthority,
}

impl Credentials {
    fn of(&self, identity: Identity) -> TlsCredentials {
        self.ca
            .issue(&identity)
            .unwrap()
            .credentials(&self.ca)
            .unwrap()
    }
}

async fn bench_transport(credentials: &Credentials, payload: &Bytes, limits: Limits) -> Row {
    let addrs: Vec<SocketAddr> = (0..2)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|socket| socket.local_addr().unwrap())
        .collect();
    let config = |id: u64| {
        let peer = if id == 1 { 2 } else { 1 };
        let peers = BTreeMap::from([(peer, addrs[peer as usize - 1])]);
        let mut config = TransportConfig::new(
            id,
            addrs[id as usize - 1],
            peers,
            credentials.of(Identity::Node(id)),
        );
        config.payload_bytes_max = PAYLOAD_MAX;
        config
    };
    let (answers_sender, mut answers) = mpsc::unbounded_channel();
    let sender_sink = Arc::new(BenchSink {
        echo: OnceLock::new(),
        delivered: AtomicU64::new(0),
        progress: Notify::new(),
        answers: Some(answers_sender),
    });
    let receiver_sink = Arc::new(BenchSink {
        echo: OnceLock::new(),
        delivered: AtomicU64::new(0),
        progress: Notify::new(),
        answers: None,
    });
    let node_1 = QuicTransport::start(config(1), sender_sink).await.unwrap();
    let node_2 = QuicTransport::start(config(2), receiver_sink.clone())
        .await
        .unwrap();
    let _ = receiver_sink.echo.set(node_2.clone());

    // Latency: one message in flight, echoed back.
    let mut rtts = Vec::with_capacity(limits.round_trips);
    let started = Instant::now();
    for term in 1..=(limits.round_trips as u64 + 200) {
        let sent = Instant::now();
        node_1.send(message(term, payload));
        let answer = tokio::time::timeout(Duration::from_secs(5), answers.recv())
            .await
            .expect("echo did not come back")
            .unwrap();
        assert_eq!(answer.term, term);
        if term > 200 {
            rtts.push(sent.elapsed());
        }
        if started.elapsed() > limits.duration {
            break;
        }
    }

    // Throughput: one way, pipelined within a window; term 0 is not echoed.
    let base = receiver_sink.delivered.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut sent: u64 = 0;
    while sent < limits.messages && started.elapsed() < limits.duration {
        let delivered = receiver_sink.delivered.load(Ordering::Relaxed) - base;
        if sent - delivered >= limits.window {
            let _ = tokio::time::timeout(
                Duration::from_millis(100),
                receiver_sink.progress.notified(),
            )
            .await;
            continue;
        }
        node_1.send(message(0, payload));
        sent += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while receiver_sink.delivered.load(Ordering::Relaxed) - base < sent && Instant::now() < deadline
    {
        let _ = tokio::time::timeout(Duration::from_millis(10), receiver_sink.progress.notified())
            .await;
    }
    let delivered = receiver_sink.delivered.load(Ordering::Relaxed) - base;
    let elapsed = started.elapsed();
    let dropped = node_1.stats().peers[&2].messages_dropped;
    if dropped > 0 {
        eprintln!("transport dropped {dropped} messages (queue overflow)");
    }
    node_1.shutdown().await;
    node_2.shutdown().await;
    summarize(rtts, delivered, elapsed)
}

/// Echoes every frame on every stream (latency), or counts frames
/// (throughput), for the raw QUIC and TCP baselines.
async fn serve_frames<R, W>(mut reader: FrameReader<R>, mut writer: W, counter: Arc<AtomicU64>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    while let Ok(Some(message)) = reader.read::<Message>().await {
        counter.fetch_add(1, Ordering::Relaxed);
        if message.term > 0 {
            let bytes = frame::encode(&message, PAYLOAD_MAX).unwrap();
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }
}

/// The sender's half of a framed byte-stream benchmark.
async fn drive_stream<R, W>(
    mut reader: FrameReader<R>,
    writer: W,
    counter: Arc<AtomicU64>,
    payload: &Bytes,
    limits: Limits,
) -> Row
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    // Buffered like the transport's batches: a flush per round trip, and
    // in the throughput run only when the buffer fills.
    let mut writer = tokio::io::BufWriter::with_capacity(64 << 10, writer);
    let mut rtts = Vec::with_capacity(limits.round_trips);
    let started = Instant::now();
    for term in 1..=(limits.round_trips as u64 + 200) {
        let sent = Instant::now();
        let bytes = frame::encode(&message(term, payload), PAYLOAD_MAX).unwrap();
        writer.write_all(&bytes).await.unwrap();
        writer.flush().await.unwrap();
        let answer: Message = reader.read().await.unwrap().unwrap();
        assert_eq!(answer.term, term);
        if term > 200 {
            rtts.push(sent.elapsed());
        }
        if started.elapsed() > limits.duration {
            break;
        }
    }

    // Throughput: writes block on flow control, which bounds what is in
    // flight; each message is encoded on its own, as the transport does.
    let base = counter.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut sent = 0;
    while sent < limits.messages && started.elapsed() < limits.duration {
        let bytes = frame::encode(&message(0, payload), PAYLOAD_MAX).unwrap();
        writer.write_all(&bytes).await.unwrap();
        sent += 1;
    }
    writer.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter.load(Ordering::Relaxed) - base < sent && Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    let delivered = counter.load(Ordering::Relaxed) - base;
    summarize(rtts, delivered, started.elapsed())
}

async fn bench_quic_stream(credentials: &Credentials, payload: &Bytes, limits: Limits) -> Row {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config =
        TransportConfig::new(2, addr, BTreeMap::new(), credentials.of(Identity::Node(2)));
    config.client_alpn = Some(CLIENT_ALPN.to_vec());
    let (sink, _inbox) = mpsc::unbounded_channel();
    let node = QuicTransport::start(config, sink).await.unwrap();
    let mut connections = node.take_client_connections().unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let server_counter = counter.clone();
    let server = tokio::spawn(async move {
        let connection = connections.accept().await.unwrap();
        let (send, recv) = connection.accept_bi().await.unwrap();
        serve_frames(FrameReader::new(recv, PAYLOAD_MAX), send, server_counter).await;
    });

    let client =
        QuicClient::new(&credentials.of(Identity::client("bench").unwrap()), addr).unwrap();
    let connection = client.connect(node.local_addr()).await.unwrap();
    let (send, recv) = connection.open_bi().await.unwrap();
    let row = drive_stream(
        FrameReader::new(recv, PAYLOAD_MAX),
        send,
        counter,
        payload,
        limits,
    )
    .await;
    client.close().await;
    server.abort();
    node.shutdown().await;
    row
}

async fn bench_tcp(payload: &Bytes, limits: Limits) -> Row {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let server_counter = counter.clone();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        serve_frames(FrameReader::new(read, PAYLOAD_MAX), write, server_counter).await;
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (read, write) = stream.into_split();
    let row = drive_stream(
        FrameReader::new(read, PAYLOAD_MAX),
        write,
        counter,
        payload,
        limits,
    )
    .await;
    server.abort();
    row
}

fn main() {
    let mut seconds = 2.0;
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, value] = &arguments[..] {
        if flag == "--seconds" {
            seconds = value.parse().expect("--seconds takes a number");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(Duration::from_secs_f64(seconds)));
}

#[allow(clippy::print_stdout)] // A command's report goes to stdout.
async fn run(duration: Duration) {
    let credentials = Credentials {
        ca: CertificateAuthority::generate().unwrap(),
    };
    println!("one link on 127.0.0.1, 2 tokio worker threads, up to {duration:?} per measurement");
    println!("latency: round trip of one echoed message; throughput: one way, pipelined");
    println!();
    println!(
        "{:<12} {:>9} {:>14} {:>10} {:>10} {:>9}",
        "path", "message", "messages/s", "rtt p50", "rtt p99", "samples"
    );
    for (label, size, limits) in [
        (
            "64 B",
            64,
            Limits {
                round_trips: 20_000,
                messages: 500_000,
                window: 1024,
                duration,
            },
        ),
        (
            "64 KiB",
            64 << 10,
            Limits {
                round_trips: 2_000,
                messages: 20_000,
                window: 64,
                duration,
            },
        ),
    ] {
        let payload = Bytes::from(vec![0xab; size]);
        let rows = [
            (
                "transport",
                bench_transport(&credentials, &payload, limits).await,
            ),
            (
                "quic-stream",
                bench_quic_stream(&credentials, &payload, limits).await,
            ),
            ("tcp", bench_tcp(&payload, limits).await),
        ];
        for (path, row) in rows {
            println!(
                "{:<12} {:>9} {:>14.0} {:>8.1}µs {:>8.1}µs {:>9}",
                path,
                label,
                row.messages_per_second,
                row.p50.as_secs_f64() * 1e6,
                row.p99.as_secs_f64() * 1e6,
                row.samples
            );
        }
    }
}
