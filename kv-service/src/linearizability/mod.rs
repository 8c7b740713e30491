//! A linearizability checker for key-value histories.
//!
//! [`check`] decides whether one order of the operations of a history
//! (see [`crate::history`]) explains every answer, with each operation taking
//! effect at one instant between its call and its return. It uses the
//! Wing–Gong search with Lowe's list-based improvements and the memoization
//! of Porcupine (a cache of "set of placed operations + state" pairs already
//! explored), run separately for each key: keys are independent objects, and
//! linearizability is compositional (Herlihy & Wing, 1990), so a history is
//! linearizable iff the history of each key is.
//!
//! How operations count:
//!
//! - `ok`: must be placed between its call and its return, and its output
//!   must match the model.
//! - `fail`: certainly had no effect; left out.
//! - `info`: unknown outcome. It may be placed at any point after its call,
//!   or never. A `get` of unknown outcome tells nothing and is left out, and
//!   so is a put or append of unknown outcome that no read observed (see
//!   `prune_unobserved_unknown_writes`: "never" explains it whenever
//!   anything does).
//!
//! The search is exponential in the worst case, so it runs under a budget
//! ([`CheckConfig`]); when the budget runs out the verdict is
//! [`Verdict::Unknown`], never a guess.
//!
//! ```
//! use kv_service::history::{Operation, OpKind, Output, Status};
//! use kv_service::linearizability::{check, CheckConfig, Verdict};
//!
//! let op = |op, value: Option<&str>, output: Option<&str>, call, return_at| Operation {
//!     client: 1, op, key: "k".into(), value: value.map(Into::into), expected: None,
//!     output: output.map(|text| Output::Text(text.into())),
//!     call, return_at: Some(return_at), status: Status::Ok,
//! };
//! // The read starts after the append has returned but misses it: stale.
//! let history = vec![
//!     op(OpKind::Append, Some("a"), None, 0, 10),
//!     op(OpKind::Get, None, Some(""), 20, 30),
//! ];
//! let report = check(&history, &CheckConfig::default());
//! assert_eq!(report.verdict, Verdict::NotLinearizable);
//! ```

mod model;
mod search;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::history::{OpKind, Operation, Status};
use model::KeyOp;
use search::{Limits, Outcome};

/// Budget of a check.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// Upper bound on search steps for one key.
    pub steps_per_key_max: u64,
    /// Upper bound on the wall-clock time of the whole check.
    pub time_max: Option<Duration>,
}

impl Default for CheckConfig {
    /// Fifty million steps per key (some seconds) and two minutes in all.
    fn default() -> CheckConfig {
        CheckConfig {
            steps_per_key_max: 50_000_000,
            time_max: Some(Duration::from_secs(120)),
        }
    }
}

/// The answer of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some linear order explains every completed operation.
    Linearizable,
    /// No linear order does: the history shows a bug.
    NotLinearizable,
    /// The budget ran out before the search decided.
    Unknown,
}

/// Evidence that a key's history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The longest order the search found that explains a prefix of the
    /// history, as 0-based positions in the checked slice of operations.
    pub longest_linearized: Vec<usize>,
    /// The key's value after that order.
    pub value_after: String,
    /// The completed operation, not in that order, that returns first: the
    /// search could not place it (or the operations it forces) next.
    pub first_unplaced: Option<usize>,
}

/// The result for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyReport {
    /// The key.
    pub key: String,
    /// The verdict for this key.
    pub verdict: Verdict,
    /// Operations that took part in the search (after leaving out `fail`
    /// operations, `info` reads, and `info` writes no read observed).
    pub operations: usize,
    /// Search steps taken.
    pub steps: u64,
    /// Set when the verdict is [`Verdict::NotLinearizable`].
    pub violation: Option<Violation>,
}

/// The result of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// `NotLinearizable` if any key is; else `Unknown` if any key is; else
    /// `Linearizable`.
    pub verdict: Verdict,
    /// One report per key, in key order.
    pub keys: Vec<KeyReport>,
}

impl CheckReport {
    /// Whether the history is linearizable.
    pub fn is_linearizable(&self) -> bool {
        self.verdict == Verdict::Linearizable
    }

    /// Total search steps over all keys.
    pub fn steps(&self) -> u64 {
        self.keys.iter().map(|key| key.steps).sum()
    }
}

/// Checks whether `history` is linearizable for a key-value store whose keys
/// start absent, with the semantics of `shared/HISTORY.md`.
pub fn check(history: &[Operation], config: &CheckConfig) -> CheckReport {
    let deadline = config.time_max.map(|time_max| Instant::now() + time_max);
    let limits = Limits {
        steps_max: config.steps_per_key_max,
        deadline,
    };

    // Split by key, leaving out what cannot matter.
    let mut by_key: BTreeMap<&str, Vec<KeyOp>> = BTreeMap::new();
    for (history_index, operation) in history.iter().enumerate() {
        let no_effect = operation.status == Status::Fail
            || (operation.status == Status::Info && operation.op == OpKind::Get);
        if no_effect {
            continue;
        }
        let text = |field: &Option<String>| Arc::from(field.as_deref().unwrap_or(""));
        let completed = operation.status == Status::Ok;
        by_key.entry(&operation.key).or_default().push(KeyOp {
            history_index,
            kind: operation.op,
            value: text(&operation.value),
            expected: text(&operation.expected),
            output: if completed {
                operation.output.clone()
            } else {
                None
            },
            call: operation.call,
            return_at: if completed { operation.return_at } else { None },
            status: operation.status,
        });
    }

    let mut keys = Vec::with_capacity(by_key.len());
    for (key, mut ops) in by_key {
        prune_unobserved_unknown_writes(&mut ops);
        let (outcome, steps) = search::search(&ops, limits);
        let (verdict, violation) = match outcome {
            Outcome::Linearizable => (Verdict::Linearizable, None),
            Outcome::Exhausted => (Verdict::Unknown, None),
            Outcome::Violation {
                longest,
                value_after,
            } => (
                Verdict::NotLinearizable,
                Some(explain(&ops, &longest, value_after)),
            ),
        };
        tracing::debug!(key, ?verdict, steps, operations = ops.len(), "key checked");
        keys.push(KeyReport {
            key: key.to_owned(),
            verdict,
            operations: ops.len(),
            steps,
            violation,
        });
    }

    let any = |verdict| keys.iter().any(|key: &KeyReport| key.verdict == verdict);
    let verdict = if any(Verdict::NotLinearizable) {
        Verdict::NotLinearizable
    } else if any(Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Linearizable
    };
    CheckReport { verdict, keys }
}

/// Leaves out writes of unknown outcome that no read could have observed.
///
/// An `info` append whose suffix occurs in no completed read's output, or an
/// `info` put whose value starts no completed read's output, has no read
/// between it and the next put or delete in any order that explains the
/// history (such a read would contain the suffix, or start with the value).
/// Leaving it out ("it never happened") therefore keeps every explaining
/// order valid, and adds none. This matters: each such write may otherwise
/// be placed at any point after its call, and the search tries them all.
/// The argument needs every state change to be a put, an append or a
/// delete, so keys with a `cas` keep all their operations.
fn prune_unobserved_unknown_writes(ops: &mut Vec<KeyOp>) {
    if ops.iter().any(|op| op.kind == OpKind::Cas) {
        return;
    }
    let reads: std::collections::HashSet<&str> = ops
        .iter()
        .filter_map(|op| match (&op.kind, &op.output) {
            (OpKind::Get, Some(crate::history::Output::Text(text))) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let unobserved = |op: &KeyOp| {
        if op.status != Status::Info || op.value.is_empty() {
            return false;
        }
        match op.kind {
            OpKind::Append => !reads.iter().any(|read| read.contains(&*op.value)),
            OpKind::Put => !reads.iter().any(|read| read.starts_with(&*op.value)),
            OpKind::Get | OpKind::Cas | OpKind::Delete => false,
        }
    };
    let unobserved: Vec<bool> = ops.iter().map(unobserved).collect();
    let mut index = 0;
    ops.retain(|_| {
        index += 1;
        !unobserved[index - 1]
    });
}

/// Turns the search's longest order (indexes into `ops`) into positions in
/// the history, and finds the completed operation that returns first among
/// those left out.
fn explain(ops: &[KeyOp], longest: &[usize], value_after: String) -> Violation {
    let mut in_order = vec![false; ops.len()];
    for &index in longest {
        in_order[index] = true;
    }
    let first_unplaced = ops
        .iter()
        .enumerate()
        .filter(|(index, op)| !in_order[*index] && op.is_required())
        .min_by_key(|(_, op)| op.return_at)
        .map(|(_, op)| op.history_index);
    Violation {
        longest_linearized: longest.iter().map(|&i| ops[i].history_index).collect(),
        value_after,
        first_unplaced,
    }
}

/// Renders an operation on one line, for reports.
pub fn describe(operation: &Operation) -> String {
    let mut text = format!(
        "client {} {:?}({:?}",
        operation.client, operation.op, operation.key
    );
    if let Some(expected) = &operation.expected {
        text.push_str(&format!(", expected {expected:?}"));
    }
    if let Some(value) = &operation.value {
        text.push_str(&format!(", {value:?}"));
    }
    text.push(')');
    if let Some(output) = &operation.output {
        text.push_str(&format!(" -> {output:?}"));
    }
    let return_at = operation
        .return_at
        .map_or_else(|| "never".to_owned(), |at| at.to_string());
    text.push_str(&format!(
        " [{:?}, call {}, return {}]",
        operation.status, operation.call, return_at
    ));
    text
}

/// A readable account of a report: one line per key that is not
/// linearizable or unknown, with the evidence, or one line saying all is
/// well. `history` must be the slice that was checked.
pub struct Explanation<'a> {
    /// The report to explain.
    pub report: &'a CheckReport,
    /// The history it is about.
    pub history: &'a [Operation],
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = self.report;
        writeln!(
            f,
            "{:?}: {} operations, {} keys, {} search steps",
            report.verdict,
            self.history.len(),
            report.keys.len(),
            report.steps()
        )?;
        for key in &report.keys {
            match key.verdict {
                Verdict::Linearizable => {}
                Verdict::Unknown => writeln!(
                    f,
                    "  key {:?}: unknown after {} steps over {} operations",
                    key.key, key.steps, key.operations
                )?,
                Verdict::NotLinearizable => {
                    writeln!(f, "  key {:?}: not linearizable", key.key)?;
                    let Some(violation) = &key.violation else {
                        continue;
                    };
                    writeln!(
                        f,
                        "    longest explainable order ({} operations) ends with value {:?}:",
                        violation.longest_linearized.len(),
                        violation.value_after
                    )?;
                    let tail_start = violation.longest_linearized.len().saturating_sub(5);
                    for &index in &violation.longest_linearized[tail_start..] {
                        writeln!(f, "      #{index} {}", describe(&self.history[index]))?;
                    }
                    if let Some(index) = violation.first_unplaced {
                        writeln!(
                            f,
                            "    cannot then place #{index} {}",
                            describe(&self.history[index])
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
