//! Client library for the linearizable key-value service.
#![deny(missing_docs)]
