//! Every limit the model crate enforces, in one place.
//!
//! Each one is checked, and input over it is rejected with a diagnostic that names the limit,
//! so that a hostile or broken file costs bounded time and memory.

/// Largest BPMN document accepted, in bytes (before decoding). Camunda 8 gateways default to a
/// 4 MiB message; real models are far below that, generated ones rarely above 2 MiB.
pub const MODEL_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Deepest XML element nesting accepted. Real models nest processes, subprocesses and
/// extension elements a few dozen levels at most; the limit keeps recursive walks bounded.
pub const XML_DEPTH_MAX: usize = 256;

/// Most XML elements kept from one document (diagram interchange elements are not kept).
pub const XML_ELEMENTS_MAX: usize = 1_000_000;

/// Most flow elements (events, activities, gateways, sequence flows) in one process,
/// counting nested subprocesses. Element ids are dense `u32` indexes, so this also keeps
/// every index well inside `u32`.
pub const PROCESS_ELEMENTS_MAX: usize = 100_000;

/// Longest FEEL expression accepted, in bytes.
pub const EXPRESSION_BYTES_MAX: usize = 64 * 1024;

/// Most diagnostics reported for one document; past this, one more says how many were cut.
pub const DIAGNOSTICS_MAX: usize = 500;

const _: () = assert!(PROCESS_ELEMENTS_MAX < u32::MAX as usize);
const _: () = assert!(XML_ELEMENTS_MAX < u32::MAX as usize);
const _: () = assert!(MODEL_BYTES_MAX < u32::MAX as usize);
