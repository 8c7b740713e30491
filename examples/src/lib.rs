//! Reference cluster tools: see the binaries under `src/bin`.
