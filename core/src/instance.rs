//! What the state holds about running process instances.

use std::sync::Arc;

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
    /// The call activity instance (in the parent process instance) that started it.
    pub parent: Option<Key>,
    /// The correlation key of the message that started it at a message start event: while
    /// it runs, no other message with this key starts the same process.
    pub message_start_key: Option<String>,
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
    /// Its part in a multi-instance activity.
    pub role: ElementRole,
    /// For a call activity: the child process instance it waits for.
    pub called: Option<Key>,
}

/// The part an element instance plays in a multi-instance activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementRole {
    /// An ordinary element instance.
    Plain,
    /// The multi-instance body: it holds the inner instances and the boundary events.
    Body,
    /// One inner instance of a multi-instance activity, counted from 1.
    Inner {
        /// `loopCounter`: which item of the input collection it works on, from 1.
        loop_counter: u32,
    },
    /// One activation inside an ad-hoc subprocess (its element is the ad-hoc subprocess,
    /// its id `<id>#innerInstance`, as in Camunda): the scope of the activated element and
    /// of the flow after it, and of their variables (see `adhoc`).
    AdHocInner,
}

/// What a multi-instance body keeps between its inner instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiBody {
    /// The input collection, as evaluated when the body was entered.
    pub items: Vec<serde_json::Value>,
    /// Inner instances started so far.
    pub started: u32,
    /// Inner instances that completed.
    pub completed: u32,
    /// Inner instances that were terminated (by the completion condition).
    pub terminated: u32,
}

/// A timer of a timer event: a catch event, a boundary event, an event subprocess start or a
/// process start event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    /// The timer key.
    pub key: Key,
    /// When it fires, in milliseconds since the Unix epoch.
    pub due_millis: i64,
    /// The process definition the event belongs to.
    pub process_definition_key: Key,
    /// The timer event in the model.
    pub element: ElementIndex,
    /// The element instance that waits (the catch event, the activity a boundary event is
    /// attached to, the scope of an event subprocess, the event-based gateway); `None` for a
    /// process start event.
    pub owner: Option<Key>,
    /// Firings left for a cycle, this one included (`None`: without end); `Some(1)` for a
    /// timer that fires once.
    pub repetitions: Option<u32>,
    /// How a cycle goes on after this firing (its interval or cron expression).
    pub interval: Option<ringflow_bpmn::timer::Repeat>,
}

/// A message subscription: an element instance waits for a message with this name and
/// correlation key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The subscription key.
    pub key: Key,
    /// The message name.
    pub name: String,
    /// The correlation key, as evaluated when the subscription opened.
    pub correlation_key: String,
    /// The process definition the event belongs to.
    pub process_definition_key: Key,
    /// The message event (or receive task) in the model.
    pub element: ElementIndex,
    /// The element instance that waits (see [`Timer::owner`]).
    pub owner: Key,
    /// The process instance.
    pub process_instance_key: Key,
}

/// A signal subscription: an element instance waits for a signal with this name. Unlike a
/// message, a signal goes to every subscription of its name (see `signals`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalSubscription {
    /// The subscription key.
    pub key: Key,
    /// The signal name, as evaluated when the subscription opened.
    pub name: String,
    /// The process definition the event belongs to.
    pub process_definition_key: Key,
    /// The signal event in the model.
    pub element: ElementIndex,
    /// The element instance that waits (see [`Timer::owner`]).
    pub owner: Key,
    /// The process instance.
    pub process_instance_key: Key,
}

/// A conditional subscription: an element instance waits for the condition of a conditional
/// event to hold (see `conditionals`). It is evaluated when it opens and after every change
/// of a variable it watches, in a scope its owner sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionalSubscription {
    /// The subscription key.
    pub key: Key,
    /// The process definition the event belongs to.
    pub process_definition_key: Key,
    /// The conditional event in the model.
    pub element: ElementIndex,
    /// The element instance that waits (see [`Timer::owner`]); the condition is evaluated
    /// with the variables it sees.
    pub owner: Key,
    /// The process instance.
    pub process_instance_key: Key,
}

/// A completed activity that a compensation throw event can still compensate (see
/// `compensation`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compensation {
    /// The compensation's key.
    pub key: Key,
    /// The process instance.
    pub process_instance_key: Key,
    /// The live scope element instance it belongs to now: the one the activity completed
    /// in, then, as each enclosing subprocess completes, the scope that holds that one.
    pub scope: Key,
    /// The activity of that scope it came through: the compensated activity itself, or the
    /// completed subprocess that held it (what a throw's `activityRef` names).
    pub via: ElementIndex,
    /// The compensated activity.
    pub activity: ElementIndex,
    /// Its compensation handler.
    pub handler: ElementIndex,
    /// The local variables of the activity and of the subprocesses it completed in, as
    /// they were when each completed (the innermost winning): the handler's local
    /// variables.
    pub variables: serde_json::Map<String, serde_json::Value>,
}

/// Where a job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Ready for a worker.
    Activatable,
    /// Leased to a worker until the deadline.
    Activated {
        /// The worker's name (shared by every job one activation handed out).
        worker: Arc<str>,
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
    /// The job type (shared with the model when it is static).
    pub job_type: Arc<str>,
    /// The element instance that waits for it.
    pub element_instance_key: Key,
    /// The process instance it belongs to.
    pub process_instance_key: Key,
    /// Tries left.
    pub retries: u32,
    /// Ready or leased.
    pub state: JobState,
    /// For an execution listener's job: which listener of the element it is (see
    /// `listeners`); `None` for the element's own job.
    pub listener: Option<Listener>,
    /// For a user task's job: its assignment, schedule and priority as evaluated when the
    /// job was created (see `usertasks`); `None` for any other job.
    pub user_task: Option<Box<UserTaskProperties>>,
}

/// What the engine evaluated for a user task when it created the task's job: the model's
/// `zeebe:assignmentDefinition`, `zeebe:taskSchedule` and `zeebe:priorityDefinition`. A
/// worker reads them as the job's `io.camunda.zeebe:` headers, as from Camunda 8.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserTaskProperties {
    /// The user the task is assigned to.
    pub assignee: Option<String>,
    /// The groups whose users may claim it.
    pub candidate_groups: Option<Vec<String>>,
    /// The users who may claim it.
    pub candidate_users: Option<Vec<String>>,
    /// When it is due: an ISO 8601 date-time with a zone.
    pub due_date: Option<String>,
    /// When to follow it up: an ISO 8601 date-time with a zone.
    pub follow_up_date: Option<String>,
    /// From 0 to 100, for a Camunda user task (`zeebe:userTask`).
    pub priority: Option<u8>,
    /// Why a completing task listener denied the task's last completion, if one did (a
    /// `ringflow:deniedReason` header).
    pub denied_reason: Option<String>,
}

/// A user task whose transition waits for its task listeners (see `usertasks`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserTaskHold {
    /// The task's properties, as the listeners so far corrected them.
    pub properties: UserTaskProperties,
    /// `None` while the task is being created (it has no job yet) or assigned; the variables
    /// its completion was asked with while it is being completed.
    pub completion: Option<crate::engine::Variables>,
    /// While it is being assigned or updated: its job, taken out of the jobs (its `user_task` the
    /// properties before the assignment, kept for a denial).
    pub job: Option<Box<Job>>,
}

/// When an execution listener or a user task's task listener runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerEvent {
    /// Before the element does its work (`eventType="start"`).
    Start,
    /// Once it is done, before it is left (`eventType="end"`).
    End,
    /// A task listener: before a user task's job is made (`eventType="creating"`).
    Creating,
    /// A task listener: before a user task's completion is applied
    /// (`eventType="completing"`).
    Completing,
    /// A task listener: before a user task's new assignee is applied
    /// (`eventType="assigning"`).
    Assigning,
    /// A task listener: before a user task's update is applied (`eventType="updating"`).
    Updating,
}

impl ListenerEvent {
    /// Whether this is a user task's task listener (not an execution listener).
    pub fn is_task_listener(self) -> bool {
        matches!(
            self,
            ListenerEvent::Creating
                | ListenerEvent::Completing
                | ListenerEvent::Assigning
                | ListenerEvent::Updating
        )
    }
}

/// The execution listener a job is for: the `index`th (from 0) of the element's `event`
/// listeners, in document order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Start or end.
    pub event: ListenerEvent,
    /// Its place among the element's listeners of that event.
    pub index: u32,
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
    /// Runs a user task's completing listeners again, from the first (one of them could not
    /// be made).
    Completing,
    /// Runs a user task's assigning listeners again, from the first.
    Assigning,
    /// Runs a user task's updating listeners again, from the first.
    Updating,
}
