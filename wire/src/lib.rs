//! # ringflow-wire
//!
//! The binary protocol: the flatbuffers schema, framing, error codes, key-to-shard routing and
//! the Rust client library (see `DESIGN.md`). It never depends on `ringflow-core`, so that the
//! protocol crate stays small for clients.
//!
//! **Status:** not built yet; the protocol arrives with the wire-protocol issue.
