//! Integration tests of raft-transport on 127.0.0.1, in one binary so that
//! the crate links once.

mod bad_input;
mod cluster;
mod frame_fuzz;
mod link;
mod support;
mod tls_files;
