//! What the state holds about running process instances.

use ringflow_bpmn::ElementIndex;

use crate::key::Key;

/// A running process instance. Its key is also the key of its root element instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInstance {
    /// The process instance key.
    pub key: Key,
    /// The process definition version it runs.
    pub process_definition_key: Key,
    /// The business key given at creation, if any.
    pub business_key: Option<String>,
    /// Whether a caller waits for the result.
    pub await_result: bool,
    /// Element instances alive in it, the root included.
    pub live_elements: u32,
}

/// One activation of a flow node (or of the process itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementInstance {
    /// The element instance key.
    pub key: Key,
    /// The process instance it belongs to.
    pub process_instance_key: Key,
    /// The element in the process definition.
    pub element: ElementIndex,
    /// The enclosing scope's element instance; `None` for the process.
    pub scope: Option<Key>,
    /// Tokens inside this scope: live child element instances, plus tokens waiting at a
    /// parallel join. The scope completes when this reaches zero.
    pub tokens: u32,
    /// The job this element waits for, if any.
    pub job: Option<Key>,
    /// The incident that stopped it, if any.
    pub incident: Option<Key>,
}

/// Where a job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Ready for a worker.
    Activatable,
    /// Leased to a worker until the deadline.
    Activated {
        /// The worker's name.
        worker: String,
        /// When the lease runs out, in milliseconds since the Unix epoch.
        deadline_millis: i64,
    },
    /// Failed with retries left and a backoff: activatable again at `due_millis`.
    Backoff {
        /// When it may be handed out again.
        due_millis: i64,
    },
    /// Failed with no retries left: an incident waits for a person.
    Failed,
}

/// A unit of work for an external worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The job key.
    pub key: Key,
    /// The job type.
    pub job_type: String,
    /// The element instance that waits for it.
    pub element_instance_key: Key,
    /// The process instance it belongs to.
    pub process_instance_key: Key,
    /// Tries left.
    pub retries: u32,
    /// Ready or leased.
    pub state: JobState,
}

/// Something that stops an element until a person acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    /// The incident key.
    pub key: Key,
    /// The process instance.
    pub process_instance_key: Key,
    /// The element instance it stopped.
    pub element_instance_key: Key,
    /// What went wrong.
    pub message: String,
    /// What resolving it retries.
    pub retry: IncidentRetry,
}

/// What resolving an incident does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncidentRetry {
    /// Runs the element's activation again (input mappings and behaviour).
    Activation,
    /// Runs the element's completion again (output mappings and outgoing flows).
    Completion,
    /// Makes the element's failed job activatable again (its retries must be raised first).
    Job,
}
