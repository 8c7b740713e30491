//! Client library for the linearizable key-value service.
