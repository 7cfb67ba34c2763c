//! # ringflow-wire
//!
//! The binary protocol: the flatbuffers schema, framing, error codes, key-to-shard routing and
//! the Rust client library (see `DESIGN.md`). It never depends on `ringflow-core`, so that the
//! protocol crate stays small for clients.
//!
//! **Status:** key-to-shard routing ([`routing`]) is built and has published test vectors;
//! the schema, framing, error codes and client arrive with the rest of the wire-protocol
//! issue.

pub mod routing;
