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

/// Most live process instances on one shard.
pub const LIVE_INSTANCES_MAX: usize = 10_000_000;

/// Most jobs one `ActivateJobs` hands out.
pub const JOBS_PER_ACTIVATION_MAX: u32 = 1_000;

/// Most bytes of jobs in one answer to `ActivateJobs` (or one push to a subscription), as
/// [`crate::ActivatedJob::answer_bytes`] counts them: half the wire's default frame limit
/// (`ringflow_wire::FRAME_BYTES_MAX_DEFAULT`, 33 MiB), so that a client on its defaults can
/// read every answer. The jobs past it stay ready for the next activation; a job that alone
/// is larger (its variables gathered from many scopes) fails with an incident that says so.
pub const ACTIVATION_ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Most variable names one `ActivateJobs` may fetch (`fetch_variables`); each name is at
/// most `NAME_BYTES_MAX` bytes.
pub const FETCH_VARIABLES_MAX: usize = 1_000;

/// Most element instances alive at once in one process instance: stops a model that forks
/// without end from eating the shard's memory.
pub const ELEMENT_INSTANCES_PER_INSTANCE_MAX: u32 = 100_000;

/// Most element activations and completions one command may run. A loop of pass-through
/// elements never waits; past this limit it stops with an incident instead of running on.
pub const COMMAND_STEPS_MAX: u32 = 100_000;

/// Largest compiled size, in bytes, of the pattern of a FEEL `extract(string, pattern)` call
/// (the regex crate's default is 10 MiB): the pattern may come from a variable. A pattern over
/// it makes the call give null, with the reason, as a pattern that is not valid does.
pub const EXTRACT_PATTERN_BYTES_MAX: usize = 1 << 20;

/// Largest variable document (one scope's variables as JSON), in bytes.
pub const VARIABLE_DOCUMENT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest job type, worker name or business key, in bytes.
pub const NAME_BYTES_MAX: usize = 1024;

/// Longest failure or error message kept with a job or incident, in bytes.
pub const MESSAGE_BYTES_MAX: usize = 8 * 1024;

/// Most messages buffered on one shard at once.
pub const BUFFERED_MESSAGES_MAX: usize = 10_000_000;

/// The longest time to live of a message, in milliseconds (one year).
pub const MESSAGE_TTL_MILLIS_MAX: u64 = 365 * 24 * 3_600_000;

/// Most items in a multi-instance activity's input collection: each becomes an element
/// instance, so this is the per-instance element limit.
pub const MULTI_INSTANCE_ITEMS_MAX: usize = ELEMENT_INSTANCES_PER_INSTANCE_MAX as usize;

/// Most elements one activation of an ad-hoc subprocess starts: the ids its
/// `activeElementsCollection` gives, or the elements one `ActivateAdHocActivities` names.
/// Each starts an inner instance and the element, so a collection of a million ids is an
/// incident (a request, a rejection) instead of two million element instances.
pub const AD_HOC_ACTIVATIONS_MAX: usize = 1_000;

/// Most signals one command may broadcast: a thrown signal that starts a process which
/// throws it again would otherwise never end. The throw over it is an incident.
pub const SIGNALS_PER_COMMAND_MAX: u32 = 1_000;

/// Most signal subscriptions one command delivers a signal to. A signal that reaches more
/// goes on in `ContinueSignal` commands, this many at a time, so that a broadcast to a
/// million waiting instances does not hold its shard for a second in one command.
pub const SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX: usize = 1_000;

/// Most compensation handlers one command starts. A throw with more starts the rest in
/// `ContinueCompensation` commands, this many at a time, so that a throw with thousands of
/// handlers does not hold its shard in one command.
pub const COMPENSATION_HANDLERS_PER_COMMAND_MAX: usize = 1_000;

/// Most completed activities one process instance keeps for compensation: each is a
/// compensation handler a throw may start, so this is the per-instance element limit. An
/// activity whose completion would go over it stops with an incident.
pub const COMPENSATIONS_PER_INSTANCE_MAX: u32 = ELEMENT_INSTANCES_PER_INSTANCE_MAX;
