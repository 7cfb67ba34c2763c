//! Every limit the engine enforces. Input over a limit is rejected with
//! [`RejectionCode::LimitExceeded`](crate::RejectionCode::LimitExceeded), naming it.

/// Most resources (BPMN files) in one deployment.
pub const DEPLOYMENT_RESOURCES_MAX: usize = 64;

/// Most bytes of all resources of one deployment together. One file may be up to
/// `ringflow_bpmn::limits::MODEL_BYTES_MAX`; a deployment may carry a few of those.
pub const DEPLOYMENT_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Longest resource name, in bytes.
pub const RESOURCE_NAME_BYTES_MAX: usize = 1024;

/// Most versions kept per BPMN process id.
pub const PROCESS_VERSIONS_MAX: u32 = 1_000_000;

const _: () = assert!(DEPLOYMENT_BYTES_MAX >= ringflow_bpmn::limits::MODEL_BYTES_MAX);
