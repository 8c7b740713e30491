//! Latency percentiles and CPU accounting for the benchmark.

/// Latencies of one window, in microseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latencies {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// The value at 1-based rank ⌈q·n⌉ of `sorted` (nearest rank), with `q`
/// given in thousandths so the arithmetic stays exact.
pub fn nearest_rank(sorted: &[u64], q_thousandths: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len() as u64;
    let rank = (q_thousandths * n).div_ceil(1000).clamp(1, n);
    sorted[(rank - 1) as usize]
}

pub fn summarize(mut samples: Vec<u64>) -> Latencies {
    if samples.is_empty() {
        return Latencies::default();
    }
    samples.sort_unstable();
    let total: u128 = samples.iter().map(|v| u128::from(*v)).sum();
    Latencies {
        p50: nearest_rank(&samples, 500),
        p99: nearest_rank(&samples, 990),
        p999: nearest_rank(&samples, 999),
        max: *samples.last().expect("not empty"),
        mean: total as f64 / samples.len() as f64,
    }
}

/// CPU counters at one instant, in clock ticks, from /proc.
#[derive(Clone, Debug, Default)]
pub struct CpuSample {
    available: bool,
    machine_busy: u64,
    machine_total: u64,
    own: u64,
    servers: u64,
    servers_missing: usize,
}

fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() < 5 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields[4];
    Some((total - idle, total))
}

/// User plus system ticks of process `pid` (fields 14 and 15 of its stat).
fn process_ticks(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

impl CpuSample {
    pub fn take(server_pids: &[String]) -> CpuSample {
        let Some((machine_busy, machine_total)) = machine_ticks() else {
            return CpuSample::default();
        };
        let mut sample = CpuSample {
            available: true,
            machine_busy,
            machine_total,
            own: process_ticks("self").unwrap_or(0),
            ..CpuSample::default()
        };
        for pid in server_pids {
            match process_ticks(pid) {
                Some(ticks) => sample.servers += ticks,
                None => sample.servers_missing += 1,
            }
        }
        sample
    }
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU use between two samples as the result line's `cpu` object, or null
/// when /proc could not be read.
pub fn cpu_json(
    start: &CpuSample,
    end: &CpuSample,
    load_at_start: Option<f64>,
) -> serde_json::Value {
    if !start.available || !end.available || end.machine_total <= start.machine_total {
        return serde_json::Value::Null;
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let total = (end.machine_total - start.machine_total) as f64;
    let busy = end.machine_busy.saturating_sub(start.machine_busy) as f64;
    // /proc/stat counts ticks over all cpus; a core is total / ncpu.
    let cores = |ticks: u64| (ticks as f64) * ncpu / total;
    let loadgen = cores(end.own.saturating_sub(start.own));
    let servers = cores(end.servers.saturating_sub(start.servers));
    let machine = busy * ncpu / total;
    let round = |x: f64| (x * 100.0).round() / 100.0;
    serde_json::json!({
        "ncpu": ncpu as u64,
        "machine_busy_pct": round(busy / total * 100.0),
        "loadgen_cores": round(loadgen),
        "servers_cores": round(servers),
        "other_cores": round((machine - loadgen - servers).max(0.0)),
        "servers_missing": end.servers_missing,
        "loadavg_1m": load_at_start,
    })
}

pub fn load_average_now() -> Option<f64> {
    load_average()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_the_ceiling_rank() {
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(nearest_rank(&samples, 500), 500);
        assert_eq!(nearest_rank(&samples, 990), 990);
        assert_eq!(nearest_rank(&samples, 999), 999);
        assert_eq!(nearest_rank(&[7], 999), 7);
        assert_eq!(nearest_rank(&[1, 2, 3], 500), 2);
    }

    #[test]
    fn summary_orders_percentiles_and_averages() {
        let summary = summarize(vec![5, 1, 3, 2, 4]);
        assert_eq!((summary.p50, summary.max), (3, 5));
        assert!((summary.mean - 3.0).abs() < 1e-9);
        assert!(summary.p50 <= summary.p99 && summary.p99 <= summary.p999);
    }
}
