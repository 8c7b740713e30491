//! Randomized scenarios, each on several seeds; every history must be
//! linearizable, the Raft invariants must hold, and replicas must converge.

use std::time::Duration;

use kv_service::history::Status;
use kv_service::SessionConfig;
use raft_core::testkit::NetConfig;

use crate::harness::{for_each_seed, run_scenario, Nemesis, Scenario};

#[test]
fn one_client_history_is_linearizable() {
    let scenario = Scenario {
        ops_per_client: 300,
        ..Scenario::new("one_client")
    };
    for_each_seed(scenario.name, 3, |seed| {
        let scenario = scenario.clone();
        async move {
            let report = run_scenario(&scenario, seed).await;
            // Nothing fails on a healthy cluster.
            assert_eq!(report.count(Status::Ok), 300 + scenario.keys, "seed {seed}");
        }
    });
}

#[test]
fn many_concurrent_clients_history_is_linearizable() {
    let scenario = Scenario {
        clients: 8,
        clients_per_clerk: 2,
        ops_per_client: 80,
        ..Scenario::new("many_clients")
    };
    for_each_seed(scenario.name, 3, |seed| {
        let scenario = scenario.clone();
        async move {
            let report = run_scenario(&scenario, seed).await;
            assert_eq!(
                report.count(Status::Ok),
                8 * 80 + scenario.keys,
                "seed {seed}"
            );
        }
    });
}

#[test]
fn unreliable_network_history_is_linearizable() {
    let scenario = Scenario {
        clients: 5,
        ops_per_client: 60,
        network: NetConfig::unreliable(),
        ..Scenario::new("unreliable_network")
    };
    for_each_seed(scenario.name, 3, |seed| {
        let scenario = scenario.clone();
        async move {
            let report = run_scenario(&scenario, seed).await;
            assert!(
                report.count(Status::Ok) > 5 * 30,
                "seed {seed}: too little progress"
            );
        }
    });
}

#[test]
fn leader_in_minority_partition_completes_nothing_while_majority_goes_on() {
    let scenario = Scenario {
        nodes: 5,
        clients: 4,
        ops_per_client: 1000,
        client_time_max: Duration::from_secs(14),
        nemesis: Nemesis::LeaderMinority,
        ..Scenario::new("leader_minority")
    };
    for_each_seed(scenario.name, 3, |seed| {
        let scenario = scenario.clone();
        async move {
            let report = run_scenario(&scenario, seed).await;
            let (start, heal) = report.partition_window.expect("partition happened");

            // The minority side's client: nothing it starts during the
            // partition completes before the partition heals.
            let minority_ok = report.history.iter().filter(|op| {
                report.first_group.contains(&op.client)
                    && op.status == Status::Ok
                    && op.call >= start
                    && op.return_at.is_some_and(|at| at < heal)
            });
            assert_eq!(
                minority_ok.count(),
                0,
                "seed {seed}: minority completed an operation"
            );

            // The majority side elects a leader and goes on.
            let settled = start + Duration::from_secs(3).as_nanos() as u64;
            let majority_ok = report.history.iter().filter(|op| {
                !report.first_group.contains(&op.client)
                    && op.status == Status::Ok
                    && op.call >= settled
                    && op.return_at.is_some_and(|at| at < heal)
            });
            assert!(
                majority_ok.count() > 50,
                "seed {seed}: majority made little progress"
            );
        }
    });
}

#[test]
fn repeated_partitions_one_client_history_is_linearizable() {
    let scenario = Scenario {
        ops_per_client: 10_000,
        client_time_max: Duration::from_secs(20),
        nemesis: Nemesis::Partitions,
        ..Scenario::new("partitions_one_client")
    };
    for_each_seed(scenario.name, 3, |seed| {
        let scenario = scenario.clone();
        async move {
            run_scenario(&scenario, seed).await;
        }
    });
}

#[test]
fn repeated_partitions_many_clients_history_is_linearizable() {
    let scenario = Scenario {
        clients: 6,
        clients_per_clerk: 2,
        ops_per_client: 10_000,
        client_time_max: Duration::from_secs(20),
        nemesis: Nemesis::Partitions,
        op_deadline: Duration::from_millis(1500),
        ..Scenario::new("partitions_many_clients")
    };
    for_each_seed(scenario.name, 3, |seed| {
        let scenario = scenario.clone();
        async move {
            run_scenario(&scenario, seed).await;
        }
    });
}

#[test]
fn crashes_one_at_a_time_history_is_linearizable() {
    let scenario = Scenario {
        clients: 4,
        ops_per_client: 10_000,
        client_time_max: Duration::from_secs(20),
        nemesis: Nemesis::CrashOne,
        snapshot_entries: Some(50),
        ..Scenario::new("crash_one")
    };
    for_each_seed(scenario.name, 3, |seed| {
        let scenario = scenario.clone();
        async move {
            run_scenario(&scenario, seed).await;
        }
    });
}

#[test]
fn crashes_of_all_servers_at_once_history_is_linearizable() {
    let scenario = Scenario {
        clients: 4,
        ops_per_client: 10_000,
        client_time_max: Duration::from_secs(20),
        nemesis: Nemesis::CrashAll,
        snapshot_entries: Some(50),
        ..Scenario::new("crash_all")
    };
    for_each_seed(scenario.name, 3, |seed| {
        let scenario = scenario.clone();
        async move {
            run_scenario(&scenario, seed).await;
        }
    });
}

#[test]
fn everything_together_history_is_linearizable() {
    let scenario = Scenario {
        nodes: 5,
        clients: 6,
        clients_per_clerk: 2,
        ops_per_client: 10_000,
        client_time_max: Duration::from_secs(25),
        network: NetConfig::unreliable(),
        nemesis: Nemesis::Everything,
        snapshot_entries: Some(50),
        op_deadline: Duration::from_millis(1500),
        ..Scenario::new("everything")
    };
    for_each_seed(scenario.name, 3, |seed| {
        let scenario = scenario.clone();
        async move {
            run_scenario(&scenario, seed).await;
        }
    });
}

#[test]
fn same_seed_replays_the_same_history() {
    let scenario = Scenario {
        clients: 3,
        ops_per_client: 10_000,
        client_time_max: Duration::from_secs(8),
        network: NetConfig::unreliable(),
        nemesis: Nemesis::Everything,
        snapshot_entries: Some(50),
        ..Scenario::new("replay")
    };
    let seed = 11;
    let run = || raft_core::testkit::run_simulation(run_scenario(&scenario, seed)).history;
    let first = run();
    let second = run();
    assert!(first.len() > 50);
    if let Some(at) = (0..first.len()).find(|i| first.get(*i) != second.get(*i)) {
        panic!(
            "seed {seed} gave two different histories; first difference at {at}:\n{:?}\n{:?}",
            first[at],
            second.get(at)
        );
    }
    assert_eq!(first.len(), second.len());
}

#[test]
fn sessions_evicted_and_expired_under_faults_never_apply_a_write_twice() {
    // Six clerks but room for three sessions, and sessions that expire after
    // two idle seconds: writes keep meeting expired sessions, some of them
    // while an earlier attempt is in doubt.
    let scenario = Scenario {
        clients: 6,
        ops_per_client: 10_000,
        think_time_max: Duration::from_millis(400),
        client_time_max: Duration::from_secs(20),
        network: NetConfig::unreliable(),
        nemesis: Nemesis::Partitions,
        op_deadline: Duration::from_millis(1500),
        sessions: SessionConfig {
            session_ttl: Duration::from_secs(2),
            sessions_max: 3,
        },
        ..Scenario::new("session_churn")
    };
    for_each_seed(scenario.name, 3, |seed| {
        let scenario = scenario.clone();
        async move {
            let report = run_scenario(&scenario, seed).await;
            assert!(
                report.count(Status::Ok) > 100,
                "seed {seed}: too little progress"
            );
        }
    });
}

#[test]
fn scenarios_with_a_snapshot_every_few_entries_stay_linearizable() {
    // Snapshots happen constantly: every history must still be
    // linearizable, and exactly-once must survive restores, installs on
    // lagging followers and crashes in the middle of either.
    let nemeses = [
        (Nemesis::Partitions, "tiny_snapshots_partitions"),
        (Nemesis::CrashOne, "tiny_snapshots_crash_one"),
        (Nemesis::CrashAll, "tiny_snapshots_crash_all"),
        (Nemesis::Everything, "tiny_snapshots_everything"),
    ];
    for (nemesis, name) in nemeses {
        let scenario = Scenario {
            nodes: 3,
            clients: 4,
            ops_per_client: 10_000,
            client_time_max: Duration::from_secs(15),
            network: NetConfig::unreliable(),
            nemesis,
            snapshot_entries: Some(3),
            op_deadline: Duration::from_millis(1500),
            ..Scenario::new(name)
        };
        for_each_seed(scenario.name, 3, |seed| {
            let scenario = scenario.clone();
            async move {
                run_scenario(&scenario, seed).await;
            }
        });
    }
}
