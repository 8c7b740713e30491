//! Figures from a history: how many operations ended how, how long the
//! completed ones took, and the longest stretch without any completion.

use std::collections::BTreeMap;

use kv_service::history::{OpKind, Operation, Status};

/// Counts of one kind of operation, by how they ended.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Counts {
    /// Completed.
    pub ok: u64,
    /// Certainly without effect.
    pub fail: u64,
    /// Unknown outcome.
    pub info: u64,
}

impl Counts {
    fn add(&mut self, status: Status) {
        match status {
            Status::Ok => self.ok += 1,
            Status::Fail => self.fail += 1,
            Status::Info => self.info += 1,
        }
    }

    /// All operations counted.
    pub fn total(&self) -> u64 {
        self.ok + self.fail + self.info
    }
}

/// What a history shows, apart from the verdict.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Figures {
    /// Every operation.
    pub all: Counts,
    /// By kind (`get`, `put`, `append`).
    pub by_kind: BTreeMap<&'static str, Counts>,
    /// Median latency of completed operations, in milliseconds.
    pub latency_p50_ms: f64,
    /// 99th percentile (nearest rank), in milliseconds.
    pub latency_p99_ms: f64,
    /// Slowest completed operation, in milliseconds.
    pub latency_max_ms: f64,
    /// Longest time during the workload in which no operation completed,
    /// in milliseconds: about the longest unavailability the faults caused.
    pub longest_gap_ms: f64,
}

fn kind_name(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Get => "get",
        OpKind::Put => "put",
        OpKind::Append => "append",
        OpKind::Cas => "cas",
        OpKind::Delete => "delete",
    }
}

/// The value at `fraction` (0..=1) of sorted `values`, nearest rank.
fn nearest_rank(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Figures of `history`; the gap counts only completions between
/// `workload_start_ns` and `workload_end_ns` on the history's clock.
pub fn figures(history: &[Operation], workload_start_ns: u64, workload_end_ns: u64) -> Figures {
    let mut figures = Figures::default();
    let mut latencies_ns = Vec::new();
    for operation in history {
        figures.all.add(operation.status);
        figures
            .by_kind
            .entry(kind_name(operation.op))
            .or_default()
            .add(operation.status);
        let Some(return_at) = operation.return_at else {
            continue;
        };
        if operation.status != Status::Ok {
            continue;
        }
        latencies_ns.push(return_at.saturating_sub(operation.call));
    }
    latencies_ns.sort_unstable();
    let ms = |nanos: u64| nanos as f64 / 1e6;
    figures.latency_p50_ms = ms(nearest_rank(&latencies_ns, 0.50));
    figures.latency_p99_ms = ms(nearest_rank(&latencies_ns, 0.99));
    figures.latency_max_ms = ms(latencies_ns.last().copied().unwrap_or(0));
    figures.longest_gap_ms = longest_gap_ms(history, workload_start_ns, workload_end_ns);
    figures
}

/// The longest time between `from_ns` and `to_ns` in which no operation
/// of `history` completed, in milliseconds: how long a fault in that
/// window kept the clients from getting answers.
pub fn longest_gap_ms(history: &[Operation], from_ns: u64, to_ns: u64) -> f64 {
    let mut completions_ns = vec![from_ns, to_ns.max(from_ns)];
    completions_ns.extend(
        history
            .iter()
            .filter(|operation| operation.status == Status::Ok)
            .filter_map(|operation| operation.return_at)
            .filter(|return_at| (from_ns..=to_ns).contains(return_at)),
    );
    completions_ns.sort_unstable();
    let gap_ns = completions_ns
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or(0);
    gap_ns as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op: OpKind, call: u64, return_at: Option<u64>, status: Status) -> Operation {
        Operation {
            client: 1,
            op,
            key: "k".into(),
            value: (op != OpKind::Get).then(|| "v".into()),
            expected: None,
            output: None,
            call,
            return_at,
            status,
        }
    }

    #[test]
    fn figures_count_each_end_and_find_the_longest_gap() {
        let history = vec![
            op(OpKind::Put, 0, Some(2_000_000), Status::Ok),
            op(OpKind::Get, 1_000_000, Some(3_000_000), Status::Ok),
            op(OpKind::Append, 3_000_000, None, Status::Info),
            op(OpKind::Append, 4_000_000, Some(5_000_000), Status::Fail),
            op(OpKind::Put, 4_000_000, Some(10_000_000), Status::Ok),
        ];
        let figures = figures(&history, 0, 11_000_000);
        assert_eq!(
            (figures.all.ok, figures.all.fail, figures.all.info),
            (3, 1, 1)
        );
        assert_eq!(figures.by_kind["append"].total(), 2);
        assert_eq!(figures.latency_max_ms, 6.0);
        assert_eq!(figures.latency_p50_ms, 2.0);
        // From the get's return at 3 ms to the put's at 10 ms.
        assert_eq!(figures.longest_gap_ms, 7.0);
        assert_eq!(longest_gap_ms(&history, 0, 2_500_000), 2.0);
        assert_eq!(longest_gap_ms(&history, 3_000_000, 4_000_000), 1.0);
    }
}
