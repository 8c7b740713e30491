//! The clock a leader stamps its commands with.
//!
//! Only the proposing leader reads a clock; the state machine sees the
//! stamp through the log (see [`crate::sessions`]). A clock that jumps does
//! not break safety: the log clock never goes back, and a jump forward only
//! expires sessions early, which clients see as `SessionExpired`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds from some fixed origin that every server of a cluster
/// shares (roughly).
pub trait Clock: Send + Sync + 'static {
    /// The current reading.
    fn now_ms(&self) -> u64;
}

/// Wall-clock time: milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64)
    }
}

/// Tokio's clock, from an origin taken at creation. Under a paused test
/// clock it reads virtual time, so a simulation replays exactly.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads zero now.
    pub fn new() -> TokioClock {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> TokioClock {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}
