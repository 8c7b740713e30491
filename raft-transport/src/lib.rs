//! QUIC transport with mutual TLS for raft-core.
