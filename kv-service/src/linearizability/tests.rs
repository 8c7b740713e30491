//! Tests of the checker on hand-made and generated histories.

use super::*;
use crate::history::Output;

/// Builds operations tersely.
struct Builder {
    operations: Vec<Operation>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            operations: Vec::new(),
        }
    }

    fn push(
        &mut self,
        client: u64,
        op: OpKind,
        value: Option<&str>,
        output: Option<Output>,
        (call, return_at): (u64, Option<u64>),
        status: Status,
    ) -> &mut Builder {
        self.operations.push(Operation {
            client,
            op,
            key: "k".into(),
            value: value.map(Into::into),
            expected: None,
            output,
            call,
            return_at,
            status,
        });
        self
    }

    fn put(&mut self, client: u64, value: &str, call: u64, return_at: u64) -> &mut Builder {
        self.push(
            client,
            OpKind::Put,
            Some(value),
            None,
            (call, Some(return_at)),
            Status::Ok,
        )
    }

    fn append(&mut self, client: u64, value: &str, call: u64, return_at: u64) -> &mut Builder {
        self.push(
            client,
            OpKind::Append,
            Some(value),
            None,
            (call, Some(return_at)),
            Status::Ok,
        )
    }

    fn append_info(&mut self, client: u64, value: &str, call: u64) -> &mut Builder {
        self.push(
            client,
            OpKind::Append,
            Some(value),
            None,
            (call, None),
            Status::Info,
        )
    }

    fn append_fail(&mut self, client: u64, value: &str, call: u64, return_at: u64) -> &mut Builder {
        let status = Status::Fail;
        self.push(
            client,
            OpKind::Append,
            Some(value),
            None,
            (call, Some(return_at)),
            status,
        )
    }

    fn get(&mut self, client: u64, read: &str, call: u64, return_at: u64) -> &mut Builder {
        let output = Some(Output::Text(read.into()));
        self.push(
            client,
            OpKind::Get,
            None,
            output,
            (call, Some(return_at)),
            Status::Ok,
        )
    }

    fn on_key(&mut self, key: &str) -> &mut Builder {
        self.operations.last_mut().unwrap().key = key.into();
        self
    }

    fn verdict(&self) -> Verdict {
        check(&self.operations, &CheckConfig::default()).verdict
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_eq!(
        check(&[], &CheckConfig::default()).verdict,
        Verdict::Linearizable
    );
}

#[test]
fn sequential_history_is_linearizable() {
    let verdict = Builder::new()
        .get(1, "", 0, 1)
        .put(1, "a", 2, 3)
        .append(1, "b", 4, 5)
        .get(1, "ab", 6, 7)
        .verdict();
    assert_eq!(verdict, Verdict::Linearizable);
}

#[test]
fn concurrent_read_may_see_either_side_of_a_write() {
    for read in ["a", "ab"] {
        let verdict = Builder::new()
            .put(1, "a", 0, 10)
            .append(1, "b", 20, 40)
            .get(2, read, 25, 35)
            .verdict();
        assert_eq!(verdict, Verdict::Linearizable, "read {read:?}");
    }
}

#[test]
fn concurrent_appends_may_land_in_either_order() {
    for read in ["xy", "yx"] {
        let verdict = Builder::new()
            .append(1, "x", 0, 10)
            .append(2, "y", 5, 15)
            .get(3, read, 20, 30)
            .verdict();
        assert_eq!(verdict, Verdict::Linearizable, "read {read:?}");
    }
}

#[test]
fn stale_read_is_rejected() {
    let verdict = Builder::new()
        .put(1, "a", 0, 10)
        .put(1, "b", 20, 30)
        .get(2, "a", 40, 50)
        .verdict();
    assert_eq!(verdict, Verdict::NotLinearizable);
}

#[test]
fn read_of_absent_key_after_a_put_is_rejected() {
    let verdict = Builder::new()
        .put(1, "a", 0, 10)
        .get(2, "", 20, 30)
        .verdict();
    assert_eq!(verdict, Verdict::NotLinearizable);
}

#[test]
fn lost_append_is_rejected() {
    let verdict = Builder::new()
        .append(1, "x", 0, 10)
        .append(2, "y", 20, 30)
        .get(3, "y", 40, 50)
        .verdict();
    assert_eq!(verdict, Verdict::NotLinearizable);
}

#[test]
fn doubled_append_is_rejected() {
    let verdict = Builder::new()
        .append(1, "x", 0, 10)
        .append(1, "y", 20, 30)
        .get(2, "xyy", 40, 50)
        .verdict();
    assert_eq!(verdict, Verdict::NotLinearizable);
}

#[test]
fn doubled_retried_append_is_rejected_even_when_its_outcome_is_unknown() {
    // A retried append is one operation: seen twice, it was applied twice.
    let verdict = Builder::new()
        .append_info(1, "x", 0)
        .get(2, "xx", 40, 50)
        .verdict();
    assert_eq!(verdict, Verdict::NotLinearizable);
}

#[test]
fn read_may_not_see_a_write_from_its_future() {
    let verdict = Builder::new()
        .get(1, "a", 0, 10)
        .put(2, "a", 20, 30)
        .verdict();
    assert_eq!(verdict, Verdict::NotLinearizable);
}

#[test]
fn unknown_outcome_append_may_have_happened() {
    let verdict = Builder::new()
        .append(1, "a", 0, 10)
        .append_info(2, "b", 20)
        .get(3, "ab", 100, 110)
        .verdict();
    assert_eq!(verdict, Verdict::Linearizable);
}

#[test]
fn unknown_outcome_append_may_never_happen() {
    let verdict = Builder::new()
        .append(1, "a", 0, 10)
        .append_info(2, "b", 20)
        .get(3, "a", 100, 110)
        .get(3, "a", 120, 130)
        .verdict();
    assert_eq!(verdict, Verdict::Linearizable);
}

#[test]
fn unknown_outcome_append_may_happen_long_after_its_call() {
    let verdict = Builder::new()
        .append_info(2, "b", 0)
        .get(3, "", 100, 110)
        .append(1, "a", 200, 210)
        .get(3, "ab", 300, 310)
        .verdict();
    assert_eq!(verdict, Verdict::Linearizable);
}

#[test]
fn unknown_outcome_append_cannot_happen_before_its_call() {
    let verdict = Builder::new()
        .get(3, "b", 0, 10)
        .append_info(2, "b", 20)
        .verdict();
    assert_eq!(verdict, Verdict::NotLinearizable);
}

#[test]
fn unknown_outcome_append_cannot_flicker() {
    // Seen, then unseen: a write cannot be undone.
    let verdict = Builder::new()
        .append_info(2, "b", 0)
        .get(3, "b", 10, 20)
        .get(3, "", 30, 40)
        .verdict();
    assert_eq!(verdict, Verdict::NotLinearizable);
}

#[test]
fn failed_operation_must_not_be_seen() {
    let builder = {
        let mut builder = Builder::new();
        builder.append_fail(1, "x", 0, 10).get(2, "", 20, 30);
        builder
    };
    assert_eq!(builder.verdict(), Verdict::Linearizable);
    let verdict = Builder::new()
        .append_fail(1, "x", 0, 10)
        .get(2, "x", 20, 30)
        .verdict();
    assert_eq!(verdict, Verdict::NotLinearizable);
}

#[test]
fn unknown_outcome_read_is_ignored() {
    let mut builder = Builder::new();
    builder.put(1, "a", 0, 10);
    builder.push(2, OpKind::Get, None, None, (20, None), Status::Info);
    assert_eq!(builder.verdict(), Verdict::Linearizable);
}

#[test]
fn touching_intervals_count_as_concurrent() {
    let verdict = Builder::new()
        .put(1, "a", 0, 10)
        .get(2, "", 10, 20)
        .verdict();
    assert_eq!(verdict, Verdict::Linearizable);
}

#[test]
fn keys_are_checked_independently() {
    let mut builder = Builder::new();
    builder.put(1, "a", 0, 10).on_key("k1");
    builder.get(2, "", 20, 30).on_key("k2");
    builder.get(2, "a", 40, 50).on_key("k1");
    let report = check(&builder.operations, &CheckConfig::default());
    assert_eq!(report.verdict, Verdict::Linearizable);
    assert_eq!(report.keys.len(), 2);

    builder.get(3, "", 60, 70).on_key("k1");
    let report = check(&builder.operations, &CheckConfig::default());
    assert_eq!(report.verdict, Verdict::NotLinearizable);
    let bad: Vec<&str> = report
        .keys
        .iter()
        .filter(|key| key.verdict == Verdict::NotLinearizable)
        .map(|key| key.key.as_str())
        .collect();
    assert_eq!(bad, ["k1"]);
}

#[test]
fn cas_and_delete_follow_the_model() {
    let cas = |client, expected: &str, value: &str, output, call, return_at| Operation {
        client,
        op: OpKind::Cas,
        key: "k".into(),
        value: Some(value.into()),
        expected: Some(expected.into()),
        output: Some(Output::Bool(output)),
        call,
        return_at: Some(return_at),
        status: Status::Ok,
    };
    let mut builder = Builder::new();
    builder.put(1, "a", 0, 10);
    builder.operations.push(cas(1, "a", "b", true, 20, 30));
    builder.operations.push(cas(2, "a", "c", false, 40, 50));
    builder.push(1, OpKind::Delete, None, None, (60, Some(70)), Status::Ok);
    builder.get(2, "", 80, 90);
    assert_eq!(builder.verdict(), Verdict::Linearizable);

    // Two swaps from the same value cannot both succeed.
    let mut builder = Builder::new();
    builder.put(1, "a", 0, 10);
    builder.operations.push(cas(1, "a", "b", true, 20, 30));
    builder.operations.push(cas(2, "a", "c", true, 25, 35));
    assert_eq!(builder.verdict(), Verdict::NotLinearizable);
}

#[test]
fn violation_names_the_operation_that_cannot_be_placed() {
    let mut builder = Builder::new();
    builder
        .put(1, "a", 0, 10)
        .put(1, "b", 20, 30)
        .get(2, "a", 40, 50);
    let report = check(&builder.operations, &CheckConfig::default());
    let violation = report.keys[0].violation.clone().unwrap();
    assert_eq!(violation.longest_linearized, vec![0, 1]);
    assert_eq!(violation.value_after, "b");
    assert_eq!(violation.first_unplaced, Some(2));
    let text = Explanation {
        report: &report,
        history: &builder.operations,
    }
    .to_string();
    assert!(text.contains("cannot then place #2"), "{text}");
}

#[test]
fn exhausted_budget_gives_unknown_not_a_guess() {
    let history = generated_history(7, 6, 60, 4);
    let config = CheckConfig {
        steps_per_key_max: 3,
        time_max: None,
    };
    assert_eq!(check(&history, &config).verdict, Verdict::Unknown);
}

/// raft-core's seeded generator, so a failure replays.
struct Rng(raft_core::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(raft_core::Rng::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A linearizable history by construction: `clients` clients each run
/// `ops_per_client` operations back to back on `keys` keys; each operation
/// takes effect at a random instant inside its interval, and outputs come
/// from applying the operations in the order of those instants. One in ten
/// writes has an unknown outcome and takes effect or not at random.
fn generated_history(seed: u64, clients: u64, ops_per_client: u64, keys: u64) -> Vec<Operation> {
    let mut rng = Rng::new(seed);
    // (effect instant, operation, takes effect)
    let mut planned: Vec<(u64, Operation, bool)> = Vec::new();
    for client in 0..clients {
        let mut now = rng.below(50);
        for n in 0..ops_per_client {
            let call = now;
            let return_at = call + 1 + rng.below(100);
            let effect_at = call + rng.below(return_at - call + 1);
            let key = format!("k{}", rng.below(keys));
            let unique = format!("c{client}-{n};");
            let (op, value) = match rng.below(3) {
                0 => (OpKind::Get, None),
                1 => (OpKind::Put, Some(unique)),
                _ => (OpKind::Append, Some(unique)),
            };
            let unknown = op != OpKind::Get && rng.below(10) == 0;
            let takes_effect = !unknown || rng.below(2) == 0;
            let operation = Operation {
                client,
                op,
                key,
                value,
                expected: None,
                output: None,
                call,
                return_at: if unknown { None } else { Some(return_at) },
                status: if unknown { Status::Info } else { Status::Ok },
            };
            planned.push((effect_at, operation, takes_effect));
            now = return_at + rng.below(20);
            if unknown {
                // A client whose request timed out moves on.
                now += 100;
            }
        }
    }
    planned.sort_by_key(|(effect_at, _, _)| *effect_at);

    let mut store: BTreeMap<String, String> = BTreeMap::new();
    let mut history = Vec::new();
    for (_, mut operation, takes_effect) in planned {
        if !takes_effect {
            history.push(operation);
            continue;
        }
        let current = store.entry(operation.key.clone()).or_default();
        match operation.op {
            OpKind::Get => operation.output = Some(Output::Text(current.clone())),
            OpKind::Put => *current = operation.value.clone().unwrap(),
            OpKind::Append => current.push_str(operation.value.as_deref().unwrap()),
            OpKind::Cas | OpKind::Delete => unreachable!("not generated"),
        }
        history.push(operation);
    }
    history.sort_by_key(|operation| operation.call);
    history
}

#[test]
fn generated_linearizable_histories_are_accepted() {
    for seed in 0..40 {
        let history = generated_history(seed, 5, 40, 3);
        let report = check(&history, &CheckConfig::default());
        assert_eq!(report.verdict, Verdict::Linearizable, "seed {seed}");
    }
}

#[test]
fn generated_histories_with_a_corrupted_read_are_rejected() {
    let mut rejected = 0;
    for seed in 0..40 {
        let mut history = generated_history(seed, 5, 40, 3);
        // Make one nonempty read see one character less: no write ever
        // produced that value, since every written value ends with ';'.
        let Some(read) = history.iter_mut().find(
            |operation| matches!(&operation.output, Some(Output::Text(text)) if !text.is_empty()),
        ) else {
            continue;
        };
        if let Some(Output::Text(text)) = &mut read.output {
            text.pop();
        }
        let report = check(&history, &CheckConfig::default());
        assert_eq!(report.verdict, Verdict::NotLinearizable, "seed {seed}");
        rejected += 1;
    }
    assert!(
        rejected > 30,
        "only {rejected} histories had a nonempty read"
    );
}

#[test]
fn large_generated_history_is_checked_quickly() {
    let history = generated_history(99, 10, 300, 5);
    let started = Instant::now();
    let report = check(&history, &CheckConfig::default());
    assert_eq!(report.verdict, Verdict::Linearizable);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn many_unobserved_unknown_writes_do_not_blow_up_the_search() {
    // Forty writes of unknown outcome, never observed, each concurrent with
    // everything after it; without pruning, the search would try them at
    // every point.
    let mut builder = Builder::new();
    for n in 0..20 {
        builder.append_info(100 + n, &format!("lost-a{n};"), n * 10);
        builder.push(
            200 + n,
            OpKind::Put,
            Some(&format!("lost-p{n};")),
            None,
            (n * 10, None),
            Status::Info,
        );
    }
    let mut at = 1000;
    let mut expected = String::new();
    for n in 0..100 {
        let value = format!("v{n};");
        builder.append(1, &value, at, at + 5);
        expected.push_str(&value);
        builder.get(2, &expected, at + 10, at + 15);
        at += 20;
    }
    let config = CheckConfig {
        steps_per_key_max: 100_000,
        time_max: None,
    };
    let report = check(&builder.operations, &config);
    assert_eq!(report.verdict, Verdict::Linearizable);
    assert_eq!(
        report.keys[0].operations, 200,
        "the 40 unobserved writes are left out"
    );
}

#[test]
fn observed_unknown_write_is_kept_and_can_still_contradict() {
    // The read sees the unknown append twice: pruning must not hide that.
    let verdict = Builder::new()
        .append_info(1, "x;", 0)
        .get(2, "x;x;", 10, 20)
        .verdict();
    assert_eq!(verdict, Verdict::NotLinearizable);
}

#[test]
fn unknown_put_whose_value_starts_a_read_is_kept() {
    let verdict = Builder::new()
        .push(1, OpKind::Put, Some("p;"), None, (0, None), Status::Info)
        .append(2, "a;", 10, 20)
        .get(3, "p;a;", 30, 40)
        .verdict();
    assert_eq!(verdict, Verdict::Linearizable);
}
