//! Linearizable key-value service on raft-core.
