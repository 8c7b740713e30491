//! Tools to test Raft backends and applications: in-memory storage, a
//! simulated network on virtual time, a cluster harness with an invariant
//! checker, and the storage conformance suite. Enabled by the `testkit`
//! feature.
//!
//! A simulation runs on a current-thread tokio runtime whose clock is
//! paused: time advances only when every task waits, straight to the next
//! timer, so a minute of cluster life costs milliseconds. All randomness
//! comes from one seed, so a failing seed replays exactly.
//!
//! ```text
//! use raft_core::testkit::{run_seeds, LogMachine, SimCluster, SimOptions};
//! run_seeds("my_test", 0..100, |seed| async move {
//!     let mut cluster = SimCluster::start(SimOptions::new(seed, 3), |_| LogMachine::new()).await;
//!     let leader = cluster.await_leader(std::time::Duration::from_secs(5)).await.unwrap();
//!     cluster.node(leader).unwrap().propose("x".into()).await.unwrap();
//!     cluster.assert_invariants();
//! });
//! ```

mod cluster;
pub mod conformance;
mod invariants;
mod machine;
mod mem_storage;
mod network;

use std::future::Future;
use std::ops::Range;
use std::panic::AssertUnwindSafe;

pub use cluster::{SimCluster, SimOptions};
pub use invariants::InvariantChecker;
pub use machine::{AppliedLog, LogMachine};
pub use mem_storage::{MemDisk, MemStorage};
pub use network::{NetConfig, SimNetwork, SimTransport};

/// Runs `simulation` on a fresh current-thread runtime with a paused clock,
/// and returns its output.
pub fn run_simulation<F: Future>(simulation: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(simulation)
}

/// Runs `simulation` once per seed, each on its own simulated runtime. On a
/// failure it prints the test name and the seed, and how to replay it, then
/// fails. Set `RAFT_SEED` to run one seed only.
pub fn run_seeds<F, Fut>(name: &str, seeds: Range<u64>, simulation: F)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let seeds: Vec<u64> = match std::env::var("RAFT_SEED") {
        Ok(seed) => vec![seed.parse().expect("RAFT_SEED must be an integer")],
        Err(_) => seeds.collect(),
    };
    for seed in seeds {
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| run_simulation(simulation(seed))));
        if let Err(panic) = result {
            eprintln!("{name}: FAILED with seed {seed}; replay with RAFT_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

/// The number of seeds a randomized test should run: `default`, or the
/// value of the environment variable `RAFT_SEEDS` when set (the soak).
pub fn seed_count(default: u64) -> u64 {
    std::env::var("RAFT_SEEDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
