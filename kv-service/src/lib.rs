//! Linearizable key-value service on raft-core.
//!
//! Main parts:
//!
//! - [`history`]: operation histories in the JSON Lines format of
//!   `shared/HISTORY.md`, read and written.
//! - [`linearizability`]: a checker that decides whether a history is
//!   linearizable (Wing–Gong search with Porcupine's memoization, per key).
#![deny(missing_docs)]

pub mod history;
pub mod linearizability;
