//! The five workloads of the kvbench/1 format and the closed-loop runner
//! that measures them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::stats::{cpu_json, load_average_now, summarize, CpuSample};

/// One client connection of the store under test.
#[async_trait]
pub trait BenchClient: Send + Sync + 'static {
    async fn put(&self, key: Bytes, value: Bytes) -> Result<(), String>;
    async fn get(&self, key: Bytes) -> Result<Option<Bytes>, String>;
    async fn append(&self, key: Bytes, value: Bytes) -> Result<(), String>;
}

/// The store under test.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    type Client: BenchClient;
    /// Opens one connection (one client instance).
    async fn connect(&self) -> Result<Self::Client, String>;
    fn name(&self) -> &'static str;
    fn describe(&self) -> String;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    Put,
    Get,
    Mixed,
    Append,
}

impl Mix {
    fn text(self) -> &'static str {
        match self {
            Mix::Put => "put",
            Mix::Get => "get",
            Mix::Mixed => "50% put / 50% get",
            Mix::Append => "append",
        }
    }

    fn reads(self) -> bool {
        matches!(self, Mix::Get | Mix::Mixed)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub name: &'static str,
    pub clients: usize,
    pub mix: Mix,
    /// Operations per second of phase that the budget allows.
    pub budget_rate: u64,
}

/// The standard workloads, in the order they run.
pub fn standard() -> Vec<Spec> {
    let spec = |name, clients, mix, budget_rate| Spec {
        name,
        clients,
        mix,
        budget_rate,
    };
    vec![
        spec("put-1", 1, Mix::Put, 10_000),
        spec("put-64", 64, Mix::Put, 200_000),
        spec("get-64", 64, Mix::Get, 200_000),
        spec("mixed-64", 64, Mix::Mixed, 200_000),
        spec("append-64", 64, Mix::Append, 200_000),
    ]
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub keyspace: u64,
    pub value_size: usize,
    pub seed: u64,
    pub scale: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub op_timeout: Duration,
    pub label: String,
    pub server_pids: Vec<String>,
}

pub fn key(index: u64) -> Bytes {
    Bytes::from(format!("k{index:08}"))
}

/// raft-core's seeded generator, seeded per workload and client so each run
/// draws the same keys and values.
pub struct Draw(raft_core::Rng);

impl Draw {
    pub fn new(seed: u64, workload: &str, client: usize) -> Draw {
        let mut state = seed ^ 0xA076_1D64_78BD_642F;
        for byte in workload.bytes() {
            state = (state ^ u64::from(byte)).wrapping_mul(0x1000_0000_01B3);
        }
        Draw(raft_core::Rng::new(
            state ^ (client as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ))
    }

    pub fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    pub fn value(&mut self, size: usize) -> Bytes {
        let mut value = Vec::with_capacity(size + 8);
        while value.len() < size {
            value.extend_from_slice(&self.next().to_le_bytes());
        }
        value.truncate(size);
        Bytes::from(value)
    }
}

/// What one client did in the window and the warm-up.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    misses: u64,
    first_error: Option<String>,
    last_end: Option<Instant>,
    warmup_ops: u64,
    warmup_errors: u64,
}

async fn one_op<C: BenchClient>(
    client: &C,
    mix: Mix,
    draw: &mut Draw,
    settings: &Settings,
) -> Result<bool, String> {
    let key = key(draw.below(settings.keyspace));
    let op = match mix {
        Mix::Mixed if draw.below(2) == 0 => Mix::Put,
        Mix::Mixed => Mix::Get,
        other => other,
    };
    let call = async {
        match op {
            Mix::Put => client
                .put(key, draw.value(settings.value_size))
                .await
                .map(|_| false),
            Mix::Append => client
                .append(key, draw.value(settings.value_size))
                .await
                .map(|_| false),
            _ => match client.get(key).await? {
                None => Ok(true),
                Some(value) if !value.is_empty() && value.len() % settings.value_size == 0 => {
                    Ok(false)
                }
                Some(value) => Err(format!("get returned {} bytes", value.len())),
            },
        }
    };
    match tokio::time::timeout(settings.op_timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {:?}", settings.op_timeout)),
    }
}

pub async fn connect_all<B: Backend>(
    backend: &B,
    count: usize,
) -> Result<Vec<Arc<B::Client>>, String> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let client = backend.connect().await?;
        // One untimed call per connection, so setup never lands in a sample.
        client.get(key(0)).await?;
        clients.push(Arc::new(client));
    }
    Ok(clients)
}

/// Writes every key once with 64 clients, untimed.
pub async fn preload<B: Backend>(backend: &B, settings: &Settings) -> Result<(), String> {
    let clients = connect_all(backend, 64).await?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (index, client) in clients.into_iter().enumerate() {
        let next = Arc::clone(&next);
        let settings = settings.clone();
        tasks.push(tokio::spawn(async move {
            let mut draw = Draw::new(settings.seed, "preload", index);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= settings.keyspace {
                    return Ok::<(), String>(());
                }
                let value = draw.value(settings.value_size);
                let put = client.put(key(i), value);
                tokio::time::timeout(Duration::from_secs(60), put)
                    .await
                    .map_err(|_| format!("preload of key {i} timed out"))??;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Runs one workload and returns its result line.
pub async fn run<B: Backend>(
    backend: &B,
    spec: Spec,
    settings: &Settings,
) -> Result<Value, String> {
    let clients = connect_all(backend, spec.clients).await?;
    let max_ops = (spec.budget_rate as f64 * settings.duration.as_secs_f64()).ceil() as u64;
    let warmup_budget = (spec.budget_rate as f64 * settings.warmup.as_secs_f64()).ceil() as u64;
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    let started = Instant::now();
    let window_start = started + settings.warmup;
    let window_end = window_start + settings.duration;
    let window_ops = Arc::new(AtomicU64::new(0));
    let warmup_ops = Arc::new(AtomicU64::new(0));
    let budget_hit = Arc::new(AtomicBool::new(false));

    // CPU is measured over the window only.
    let pids = settings.server_pids.clone();
    let cpu_task = tokio::spawn(async move {
        tokio::time::sleep_until(window_start.into()).await;
        let load = load_average_now();
        let first = CpuSample::take(&pids);
        tokio::time::sleep_until(window_end.into()).await;
        (first, CpuSample::take(&pids), load)
    });

    let mut tasks = Vec::new();
    for (index, client) in clients.into_iter().enumerate() {
        let settings = settings.clone();
        let (window_ops, warmup_ops, budget_hit) = (
            Arc::clone(&window_ops),
            Arc::clone(&warmup_ops),
            Arc::clone(&budget_hit),
        );
        tasks.push(tokio::spawn(async move {
            let mut draw = Draw::new(settings.seed, spec.name, index);
            let mut tally = Tally::default();
            loop {
                let now = Instant::now();
                if now >= window_end {
                    break;
                }
                let in_window = now >= window_start;
                if in_window {
                    if window_ops.fetch_add(1, Ordering::Relaxed) >= max_ops {
                        budget_hit.store(true, Ordering::Relaxed);
                        break;
                    }
                } else if warmup_ops.fetch_add(1, Ordering::Relaxed) >= warmup_budget {
                    tokio::time::sleep_until(window_start.into()).await;
                    continue;
                }
                let begun = Instant::now();
                let result = one_op(client.as_ref(), spec.mix, &mut draw, &settings).await;
                let ended = Instant::now();
                if !in_window {
                    tally.warmup_ops += 1;
                    tally.warmup_errors += u64::from(result.is_err());
                    continue;
                }
                match result {
                    Ok(missed) => {
                        tally.latencies_us.push((ended - begun).as_micros() as u64);
                        tally.misses += u64::from(missed);
                        tally.last_end = Some(tally.last_end.map_or(ended, |t| t.max(ended)));
                    }
                    Err(error) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(error);
                    }
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.map_err(|e| e.to_string())?;
        total.latencies_us.extend(tally.latencies_us);
        total.errors += tally.errors;
        total.misses += tally.misses;
        total.warmup_ops += tally.warmup_ops;
        total.warmup_errors += tally.warmup_errors;
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
        total.last_end = match (total.last_end, tally.last_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    let cpu = if budget_hit.load(Ordering::Relaxed) {
        cpu_task.abort();
        Value::Null
    } else {
        let (first, last, load) = cpu_task.await.map_err(|e| e.to_string())?;
        cpu_json(&first, &last, load)
    };
    let ops_ok = total.latencies_us.len() as u64;
    let elapsed_s = total.last_end.map_or(0.0, |end| {
        end.saturating_duration_since(window_start).as_secs_f64()
    });
    let ops_per_s = if elapsed_s > 0.0 {
        ops_ok as f64 / elapsed_s
    } else {
        0.0
    };
    let latencies = summarize(std::mem::take(&mut total.latencies_us));
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    Ok(json!({
        "schema": "kvbench/1",
        "kind": "run",
        "label": settings.label,
        "backend": backend.name(),
        "describe": backend.describe(),
        "workload": spec.name,
        "mix": spec.mix.text(),
        "clients": spec.clients,
        "conns": spec.clients,
        "keyspace": settings.keyspace,
        "value_size": settings.value_size,
        "seed": settings.seed,
        "scale": settings.scale,
        "warmup_s": settings.warmup.as_secs_f64(),
        "duration_s": settings.duration.as_secs_f64(),
        "max_ops": max_ops,
        "unix_time": unix_time,
        "supported": true,
        "ops_ok": ops_ok,
        "errors": total.errors,
        "misses": total.misses,
        "first_error": total.first_error,
        "stopped_by": if budget_hit.load(Ordering::Relaxed) { "max_ops" } else { "duration" },
        "elapsed_s": elapsed_s,
        "ops_per_s": round2(ops_per_s),
        "lat_us": {
            "p50": latencies.p50,
            "p99": latencies.p99,
            "p999": latencies.p999,
            "max": latencies.max,
            "mean": round2(latencies.mean),
        },
        "warmup_ops": total.warmup_ops,
        "warmup_errors": total.warmup_errors,
        "cpu": cpu,
    }))
}

/// Runs the named workloads in the standard order, preloading before the
/// first one that reads; calls `emit` with each result line.
pub async fn run_all<B: Backend>(
    backend: &B,
    names: &[String],
    settings: &Settings,
    mut emit: impl FnMut(&Value),
) -> Result<(), String> {
    let mut preloaded = false;
    for spec in standard() {
        if !names.iter().any(|name| name == spec.name) {
            continue;
        }
        if spec.mix.reads() && !preloaded {
            preload(backend, settings).await?;
            preloaded = true;
        }
        let line = run(backend, spec, settings).await?;
        emit(&line);
    }
    Ok(())
}

/// A backend that keeps everything in this process, to test the runner.
#[derive(Clone, Default)]
pub struct MemBackend {
    map: Arc<Mutex<std::collections::HashMap<Bytes, Bytes>>>,
}

#[async_trait]
impl BenchClient for MemBackend {
    async fn put(&self, key: Bytes, value: Bytes) -> Result<(), String> {
        self.map.lock().unwrap().insert(key, value);
        Ok(())
    }

    async fn get(&self, key: Bytes) -> Result<Option<Bytes>, String> {
        Ok(self.map.lock().unwrap().get(&key).cloned())
    }

    async fn append(&self, key: Bytes, value: Bytes) -> Result<(), String> {
        let mut map = self.map.lock().unwrap();
        let mut joined = map.get(&key).map(|v| v.to_vec()).unwrap_or_default();
        joined.extend_from_slice(&value);
        map.insert(key, Bytes::from(joined));
        Ok(())
    }
}

#[async_trait]
impl Backend for MemBackend {
    type Client = MemBackend;

    async fn connect(&self) -> Result<MemBackend, String> {
        Ok(self.clone())
    }

    fn name(&self) -> &'static str {
        "mem"
    }

    fn describe(&self) -> String {
        "in-process map (tests the harness only)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            keyspace: 100,
            value_size: 256,
            seed: 7,
            scale: 0.01,
            warmup: Duration::from_millis(20),
            duration: Duration::from_millis(100),
            op_timeout: Duration::from_secs(1),
            label: "test".into(),
            server_pids: Vec::new(),
        }
    }

    #[tokio::test]
    async fn every_workload_reports_a_complete_consistent_line() {
        let names: Vec<String> = standard().iter().map(|s| s.name.to_string()).collect();
        let mut lines = Vec::new();
        run_all(&MemBackend::default(), &names, &settings(), |line| {
            lines.push(line.clone())
        })
        .await
        .unwrap();
        assert_eq!(lines.len(), 5);
        for line in &lines {
            let ops = line["ops_ok"].as_u64().unwrap();
            let elapsed = line["elapsed_s"].as_f64().unwrap();
            assert!(ops > 0, "{line}");
            assert_eq!(line["errors"], 0, "{line}");
            assert_eq!(line["misses"], 0, "gets run on preloaded keys: {line}");
            let rate = line["ops_per_s"].as_f64().unwrap();
            assert!((rate - ops as f64 / elapsed).abs() / rate < 0.01, "{line}");
            let lat = &line["lat_us"];
            assert!(lat["p50"].as_u64() <= lat["p99"].as_u64(), "{line}");
        }
    }

    #[tokio::test]
    async fn the_budget_ends_a_window_early() {
        let mut settings = settings();
        settings.duration = Duration::from_millis(500);
        let spec = Spec {
            name: "put-64",
            clients: 4,
            mix: Mix::Put,
            budget_rate: 100,
        };
        let line = run(&MemBackend::default(), spec, &settings).await.unwrap();
        assert_eq!(line["stopped_by"], "max_ops");
        assert_eq!(line["ops_ok"], 50);
    }

    #[test]
    fn keys_and_values_have_the_agreed_shape() {
        assert_eq!(key(42), Bytes::from("k00000042"));
        let mut draw = Draw::new(1, "put-1", 0);
        let value = draw.value(256);
        assert_eq!(value.len(), 256);
        assert_ne!(value, draw.value(256), "values are fresh per write");
    }
}
