//! Exponential backoff with jitter, from a seeded generator so that a
//! simulation replays exactly.

use std::time::Duration;

/// A small deterministic generator (splitmix64). Not for cryptography.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The pause before the next attempt after `rounds` full rounds of failed
/// attempts: `min · 2^rounds`, capped at `max`, then scaled by a random
/// factor in [1/2, 1] so that clerks that failed together do not retry in
/// step.
pub(crate) fn backoff_delay(min: Duration, max: Duration, rounds: u32, rng: &mut Rng) -> Duration {
    let doubled = min.saturating_mul(1u32 << rounds.min(16));
    let capped = doubled.min(max).max(min);
    let nanos = capped.as_nanos() as u64;
    let jitter = if nanos < 2 {
        0
    } else {
        rng.next_u64() % (nanos / 2 + 1)
    };
    Duration::from_nanos(nanos - jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_round_until_the_cap_and_jitters_down_by_at_most_half() {
        let mut rng = Rng::new(1);
        let min = Duration::from_millis(10);
        let max = Duration::from_millis(100);
        for (rounds, ceiling) in [(0, 10), (1, 20), (2, 40), (3, 80), (4, 100), (30, 100)] {
            for _ in 0..50 {
                let delay = backoff_delay(min, max, rounds, &mut rng);
                let ceiling = Duration::from_millis(ceiling);
                assert!(
                    delay <= ceiling && delay >= ceiling / 2,
                    "{rounds}: {delay:?}"
                );
            }
        }
    }

    #[test]
    fn same_seed_gives_same_delays() {
        let delays = |seed| {
            let mut rng = Rng::new(seed);
            let (min, max) = (Duration::from_millis(1), Duration::from_secs(1));
            (0..10)
                .map(|round| backoff_delay(min, max, round, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(delays(7), delays(7));
        assert_ne!(delays(7), delays(8));
    }
}
