//! RocksDB log storage for raft-core.
