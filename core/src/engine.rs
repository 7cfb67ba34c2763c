//! The engine's entry point and the types that go in and come out.

use std::fmt;
use std::sync::Arc;

use crate::key::Key;
use crate::state::State;

/// What the engine takes from outside for one command. The shard journals it with the
/// command, so that replay sees the same inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// The shard's clock when the command was accepted, in milliseconds since the Unix epoch.
    pub now_millis: i64,
    /// The first key this command may hand out; [`Outcome::next_key`] says where it stopped.
    pub next_key: Key,
}

/// A command for the engine.
#[derive(Clone, Debug)]
pub enum Command {
    /// Deploy one or more BPMN resources in one atomic step.
    Deploy {
        /// The resources, in the order given.
        resources: Vec<Resource>,
    },
    /// Start an instance of a deployed process.
    CreateInstance {
        /// Which process version.
        process: ProcessRef,
        /// Variables of the new instance (its root scope).
        variables: Variables,
        /// An optional business key, kept with the instance.
        business_key: Option<String>,
        /// Whether the caller waits for the instance to complete
        /// ([`Effect::InstanceResult`] answers it).
        await_result: bool,
    },
    /// Cancel a running process instance.
    CancelInstance {
        /// The process instance key.
        key: Key,
    },
    /// Hand out up to `max_jobs` ready jobs of one type to a worker.
    ActivateJobs {
        /// The job type.
        job_type: String,
        /// The worker's name, kept with each job.
        worker: String,
        /// At most this many jobs (capped by `JOBS_PER_ACTIVATION_MAX`).
        max_jobs: u32,
        /// How long the worker holds each job before it is handed out again.
        lease_millis: u64,
        /// Zeebe's `fetchVariables`: each job carries only the visible variables named here
        /// (a name not visible is left out); empty: every visible variable. At most
        /// `FETCH_VARIABLES_MAX` names of at most `NAME_BYTES_MAX` bytes each.
        fetch_variables: Vec<String>,
    },
    /// A worker finished a job.
    CompleteJob {
        /// The job key.
        key: Key,
        /// Variables the job produced.
        variables: Variables,
    },
    /// A worker could not do a job. With retries left it is handed out again (after the
    /// backoff); with none, an incident stops the element.
    FailJob {
        /// The job key.
        key: Key,
        /// Tries left after this failure.
        retries: u32,
        /// How long to wait before the job is handed out again, in milliseconds.
        retry_backoff_millis: u64,
        /// What went wrong, for the incident.
        message: String,
    },
    /// A worker reports a BPMN error: the nearest matching error catch takes over, else an
    /// incident.
    ThrowError {
        /// The job key.
        key: Key,
        /// The error code, matched against error catch events.
        error_code: String,
        /// What happened, for the incident when nothing catches it.
        message: String,
    },
    /// The shard's timer: a job's lease ran out without completion or failure.
    JobLeaseExpired {
        /// The job key.
        key: Key,
    },
    /// The shard's timer: a failed job's backoff is over.
    JobRetryDue {
        /// The job key.
        key: Key,
    },
    /// Sets a job's retries (to let a failed job be tried again once its incident is resolved).
    UpdateJobRetries {
        /// The job key.
        key: Key,
        /// The new number of tries left.
        retries: u32,
    },
    /// Assigns a user task (its job) to a user, or unassigns it (`None`): Camunda's assign
    /// and unassign (see `usertasks`).
    AssignUserTask {
        /// The user task's job key.
        key: Key,
        /// The new assignee; `None` unassigns.
        assignee: Option<String>,
    },
    /// Changes a user task's candidates, dates or priority (not its assignee): Camunda's
    /// update (see `usertasks`).
    UpdateUserTask {
        /// The user task's job key.
        key: Key,
        /// What changes (`None` fields stay; empty ones are cleared). Boxed: large, rare.
        changes: Box<crate::usertasks::UserTaskCorrections>,
    },
    /// Retries what an incident stopped.
    ResolveIncident {
        /// The incident key.
        key: Key,
    },
    /// Publishes a message: buffered for `ttl_millis` (not at all when 0).
    PublishMessage {
        /// The message name.
        name: String,
        /// The correlation key.
        correlation_key: String,
        /// The message's variables.
        variables: Variables,
        /// How long the message is buffered, in milliseconds.
        ttl_millis: u64,
        /// Deduplicates the message while it is buffered.
        message_id: Option<String>,
    },
    /// Broadcasts a signal to every signal subscription of its name on every shard, and
    /// starts every process with a signal start event of that name (see [`crate::signals`]).
    BroadcastSignal {
        /// The signal name.
        name: String,
        /// The signal's variables.
        variables: Variables,
    },
    /// Evaluates the conditional start events of processes (the latest version of each)
    /// against `variables`, and starts an instance, with those variables, at each whose
    /// condition is `true` (see `conditionals`). Camunda's `EvaluateConditional`.
    EvaluateConditional {
        /// Only this BPMN process id; `None`: every process with a conditional start event.
        bpmn_process_id: Option<String>,
        /// The variables the conditions read, and the new instances get.
        variables: Variables,
    },
    /// Completes the job of an ad-hoc subprocess's worker (`zeebe:taskDefinition` on the
    /// subprocess) with its decision: elements to activate, whether the subprocess is done,
    /// whether what runs is cancelled (see `adhoc`). Camunda's job result for an ad-hoc
    /// subprocess.
    CompleteAdHocJob {
        /// The job key.
        key: Key,
        /// The job's variables, propagated from the subprocess.
        variables: Variables,
        /// The worker's decision.
        result: crate::adhoc::AdHocJobResult,
    },
    /// Completes the job of a user task's task listener with what its worker decided: deny
    /// the completion (completing listeners), or correct the task's properties (see
    /// `usertasks`). Camunda's job result for a user task listener.
    CompleteTaskListenerJob {
        /// The job key.
        key: Key,
        /// The worker's decision (boxed: it is large and rare).
        result: Box<crate::usertasks::TaskListenerResult>,
    },
    /// Activates elements of a running ad-hoc subprocess instance, each in an inner
    /// instance of its own (see `adhoc`). Camunda's `ActivateAdHocSubProcessActivities`.
    ActivateAdHocActivities {
        /// The ad-hoc subprocess's element instance key.
        key: Key,
        /// The elements to activate, in order, each with its inner instance's variables.
        elements: Vec<crate::adhoc::AdHocActivation>,
        /// Terminate the inner instances still running first.
        cancel_remaining_instances: bool,
    },
    /// The shard, after [`Effect::ContinueSignal`]: deliver a signal to the next
    /// subscriptions it reaches (see [`crate::signals`]).
    ContinueSignal {
        /// The signal key.
        key: Key,
    },
    /// The shard, after [`Effect::ContinueCompensation`]: start the next handlers of a
    /// compensation throw (see [`crate::compensation`]).
    ContinueCompensation {
        /// The throw event's element instance key.
        key: Key,
    },
    /// The shard's timer: a buffered message's time to live is over.
    ExpireMessage {
        /// The message key.
        key: Key,
    },
    /// The shard's timer: a timer event's timer is due.
    TriggerTimer {
        /// The timer key.
        key: Key,
    },
    /// Sets variables in a scope (a process instance or an element instance).
    SetVariables {
        /// The scope's element instance key (the process instance key for the root).
        scope: Key,
        /// The variables.
        variables: Variables,
        /// Only in this scope (`true`), or propagated outwards as in Camunda 8 (`false`).
        local: bool,
    },
    /// The runtime: the next mail from another shard (see [`crate::remote`]).
    Receive {
        /// The sending shard.
        from: u16,
        /// The mail's number in what `from` sent to this shard (1, 2, 3, ...).
        seq: u64,
        /// The mail.
        mail: crate::remote::Mail,
    },
    /// The runtime: shard `to` took this shard's mail up to `seq`; it leaves the outbox.
    Acknowledge {
        /// The receiving shard.
        to: u16,
        /// The highest number it took.
        seq: u64,
    },
}

/// Variables: a JSON object.
pub type Variables = serde_json::Map<String, serde_json::Value>;

/// Which version of a process to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessRef {
    /// The latest version of a BPMN process id.
    Latest(String),
    /// One process definition version, by key.
    Key(Key),
}

/// One named BPMN file of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// The name, usually the file name (`order-process.bpmn`).
    pub name: String,
    /// The file's bytes.
    pub content: Arc<[u8]>,
}

/// What an accepted command did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The answer for the caller.
    pub response: Response,
    /// What happened, in order: for history and export.
    pub events: Vec<Event>,
    /// What the shard must do once the command is durable.
    pub effects: Vec<Effect>,
    /// The first key not handed out by this command.
    pub next_key: Key,
}

/// A process instance started by a conditional start event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedInstance {
    /// The process instance key.
    pub process_instance_key: Key,
    /// The process definition version it runs.
    pub process_definition_key: Key,
    /// The BPMN process id.
    pub bpmn_process_id: Arc<str>,
    /// The version.
    pub version: u32,
    /// The start event's id.
    pub start_event_id: Arc<str>,
}

/// The answer to a command.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// A deployment was made.
    Deployed(Deployment),
    /// A process instance was started.
    InstanceCreated {
        /// The process instance key.
        process_instance_key: Key,
        /// The process definition version it runs.
        process_definition_key: Key,
        /// The BPMN process id (the definition's own, shared).
        bpmn_process_id: Arc<str>,
        /// The version.
        version: u32,
    },
    /// A process instance was cancelled.
    InstanceCanceled {
        /// The process instance key.
        process_instance_key: Key,
    },
    /// Jobs handed to a worker (possibly none).
    JobsActivated(Vec<ActivatedJob>),
    /// A job was completed.
    JobCompleted {
        /// The job key.
        key: Key,
    },
    /// A command about a job was carried out (fail, lease expiry, retry, retries update).
    JobUpdated {
        /// The job key.
        key: Key,
    },
    /// A user task's completion, assignment or update (`event`) waits for its task
    /// listeners; [`Effect::UserTaskTransitionEnded`] tells how it ends. The shard answers
    /// the caller then (`seq`, 0 from the engine, is the shard's number for the wait).
    UserTaskTransitionHeld {
        /// The user task's job key (the request's).
        key: Key,
        /// The user task's element instance key.
        element_instance_key: Key,
        /// Completing, Assigning or Updating.
        event: crate::instance::ListenerEvent,
        /// The shard's number for the wait (0 from the engine).
        seq: u64,
    },
    /// An incident was resolved and its element retried.
    IncidentResolved {
        /// The incident key.
        key: Key,
    },
    /// Variables were set.
    VariablesSet {
        /// The scope.
        scope: Key,
    },
    /// A message was published.
    MessagePublished {
        /// The message key.
        key: Key,
    },
    /// A buffered message expired.
    MessageExpired {
        /// The message key.
        key: Key,
    },
    /// Conditional start events were evaluated: the instances started, in order (empty
    /// when no condition held).
    ConditionalEvaluated(Vec<StartedInstance>),
    /// Elements of an ad-hoc subprocess were activated.
    AdHocActivitiesActivated {
        /// The ad-hoc subprocess's element instance key.
        key: Key,
    },
    /// A signal was broadcast (here, and as mail to every other shard).
    SignalBroadcast {
        /// The signal's key.
        key: Key,
    },
    /// A signal went to the next subscriptions it reaches.
    SignalContinued {
        /// The signal's key.
        key: Key,
    },
    /// A compensation throw started its next handlers.
    CompensationContinued {
        /// The throw event's element instance key.
        key: Key,
    },
    /// A timer fired.
    TimerTriggered {
        /// The timer key.
        key: Key,
    },
    /// Mail from another shard was taken.
    MailTaken {
        /// The sending shard.
        from: u16,
        /// Its number.
        seq: u64,
    },
    /// Mail to another shard left the outbox.
    MailAcknowledged {
        /// The receiving shard.
        to: u16,
        /// Up to this number.
        seq: u64,
    },
}

/// A job as a worker receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivatedJob {
    /// The job key.
    pub key: Key,
    /// The job type.
    pub job_type: Arc<str>,
    /// The process instance it belongs to.
    pub process_instance_key: Key,
    /// The BPMN process id.
    pub bpmn_process_id: Arc<str>,
    /// The id of the task (or event) in the model.
    pub element_id: Arc<str>,
    /// The element instance it belongs to.
    pub element_instance_key: Key,
    /// Tries left.
    pub retries: u32,
    /// When the lease runs out, in milliseconds since the Unix epoch.
    pub deadline_millis: i64,
    /// The task headers from the model.
    pub custom_headers: Vec<(String, String)>,
    /// The variables visible at the task, innermost scope winning (only those the
    /// activation's `fetch_variables` names when it names any), as a JSON object's text: the
    /// form the wire carries, written straight from the scopes' documents (see
    /// [`ActivatedJob::variables`] for a map).
    pub variables_json: String,
    /// `None`: the element's own work; else the event of the execution listener the job
    /// runs (see `listeners`).
    pub listener: Option<crate::instance::ListenerEvent>,
}

impl ActivatedJob {
    /// Bytes of answer per text, over its own: a flatbuffers string's length prefix, its
    /// terminator and padding, and the offset to it, with room to spare.
    const ANSWER_BYTES_PER_TEXT: usize = 16;
    /// Bytes of answer per job, over its texts: its table, vtable, keys and numbers, and its
    /// place in the answer's vector, with room to spare.
    const ANSWER_BYTES_PER_JOB: usize = 256;

    /// At least the bytes this job takes in an answer on the wire (what
    /// `ACTIVATION_ANSWER_BYTES_MAX` bounds): its texts and a generous allowance for the
    /// encoding around them.
    pub fn answer_bytes(&self) -> usize {
        let per_text = Self::ANSWER_BYTES_PER_TEXT;
        let headers: usize = self
            .custom_headers
            .iter()
            .map(|(name, value)| name.len() + value.len() + 3 * per_text)
            .sum();
        Self::ANSWER_BYTES_PER_JOB
            + self.job_type.len()
            + self.bpmn_process_id.len()
            + self.element_id.len()
            + self.variables_json.len()
            + 4 * per_text
            + headers
    }

    /// The job's variables as a map, parsed from [`ActivatedJob::variables_json`].
    ///
    /// # Panics
    ///
    /// Not for a job the engine made: its text is a JSON object the engine wrote.
    pub fn variables(&self) -> Variables {
        serde_json::from_str(&self.variables_json).expect("the engine writes a JSON object")
    }
}

/// A user task as its job was made (`Event::UserTaskCreated`): what a tasklist lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserTaskCreated {
    /// The task's job (its state is the job's).
    pub job_key: Key,
    /// The process instance.
    pub process_instance_key: Key,
    /// The user task's element instance.
    pub element_instance_key: Key,
    /// The user task's id in the model.
    pub element_id: Arc<str>,
    /// Its assignment, schedule and priority, as evaluated and corrected.
    pub properties: crate::instance::UserTaskProperties,
    /// `zeebe:formDefinition formKey`.
    pub form_key: Option<Arc<str>>,
}

/// The result of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The deployment's key.
    pub key: Key,
    /// Every process of every resource, in order.
    pub processes: Vec<DeployedProcess>,
    /// Every decision of every DMN resource, in order.
    pub decisions: Vec<DeployedDecision>,
}

/// One decision of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployedDecision {
    /// The decision id.
    pub decision_id: String,
    /// The decision's name.
    pub name: String,
    /// Its version: 1 for the first deployment of this id.
    pub version: u32,
    /// The key of this decision version.
    pub decision_key: Key,
    /// The resource it came from.
    pub resource_name: String,
    /// Whether this exact DMN was the latest version already, so no version was made.
    pub duplicate: bool,
}

/// One process of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployedProcess {
    /// The BPMN process id.
    pub bpmn_process_id: String,
    /// Its version: 1 for the first deployment of this id.
    pub version: u32,
    /// The key of this process definition version.
    pub process_definition_key: Key,
    /// The resource it came from.
    pub resource_name: String,
    /// Whether this exact XML was the latest version already, so no version was made.
    pub duplicate: bool,
}

/// Something that happened, for history and export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A flow node (or the process) was entered.
    ElementActivated {
        /// The element instance key.
        key: Key,
        /// The process instance key.
        process_instance_key: Key,
        /// The element's id in the model (shared with the model: no copy per event).
        element_id: Arc<str>,
    },
    /// A flow node (or the process) completed normally.
    ElementCompleted {
        /// The element instance key.
        key: Key,
        /// The process instance key.
        process_instance_key: Key,
        /// The element's id in the model (shared with the model: no copy per event).
        element_id: Arc<str>,
    },
    /// A flow node (or the process) was ended early: cancelled or terminated.
    ElementTerminated {
        /// The element instance key.
        key: Key,
        /// The process instance key.
        process_instance_key: Key,
        /// The element's id in the model (shared with the model: no copy per event).
        element_id: Arc<str>,
    },
    /// A process instance began (its root `ElementActivated` follows).
    InstanceCreated {
        /// The process instance key.
        key: Key,
        /// The process definition version it runs.
        process_definition_key: Key,
        /// The business key it was created with.
        business_key: Option<String>,
        /// The call activity instance that called it, for a child instance.
        parent: Option<Key>,
    },
    /// A job was created and is ready for workers.
    JobCreated {
        /// The job key.
        key: Key,
        /// The job type.
        job_type: Arc<str>,
        /// The process instance.
        process_instance_key: Key,
        /// The element instance it belongs to.
        element_instance_key: Key,
        /// Its retries.
        retries: u32,
    },
    /// A user task's job was made: the task with its properties (boxed: rare and large).
    UserTaskCreated(Box<UserTaskCreated>),
    /// A user task was assigned (or unassigned: `None`).
    UserTaskAssigned {
        /// The user task's job key.
        key: Key,
        /// The new assignee.
        assignee: Option<String>,
    },
    /// A user task's candidates, dates or priority changed: its properties now.
    UserTaskUpdated {
        /// The user task's job key.
        key: Key,
        /// All its properties after the change.
        properties: Box<crate::instance::UserTaskProperties>,
    },
    /// A worker completed a job.
    JobCompleted {
        /// The job key.
        key: Key,
    },
    /// A job was withdrawn while its element goes on: an ad-hoc subprocess's worker job,
    /// replaced by a new one when an activation ends or the subprocess completes.
    JobCancelled {
        /// The job key.
        key: Key,
    },
    /// A worker reported a failure; with retries left the job is handed out again.
    JobFailed {
        /// The job key.
        key: Key,
        /// Retries left.
        retries: u32,
        /// The worker's message.
        message: String,
    },
    /// A worker threw a BPMN error from a job.
    JobErrorThrown {
        /// The job key.
        key: Key,
        /// The error code.
        error_code: String,
    },
    /// A job's retries were set from outside.
    JobRetriesUpdated {
        /// The job key.
        key: Key,
        /// The new retries.
        retries: u32,
    },
    /// An element cannot go on until a person resolves the problem.
    IncidentCreated {
        /// The incident key.
        key: Key,
        /// The process instance.
        process_instance_key: Key,
        /// The element instance it stopped.
        element_instance_key: Key,
        /// What went wrong.
        message: String,
    },
    /// An incident was resolved and the element tries again.
    IncidentResolved {
        /// The incident key.
        key: Key,
    },
    /// A scope's variables changed during the command (emitted once per command and scope,
    /// or when the scope ends): at least every variable the command set there, with its
    /// value as the command left it. Where the command set variables by name (a job's or a
    /// message's variables, `SetVariables`, ...) only those come, so a small change to a
    /// large document does not copy it, also when the scope ends in the same command;
    /// where it changed the document otherwise (input mappings, a new instance, ...), the
    /// whole document comes. History keeps the latest value of each (scope, name).
    VariablesUpdated {
        /// The scope: a process instance or an element instance.
        scope_key: Key,
        /// The process instance.
        process_instance_key: Key,
        /// The variables (see above).
        variables: Variables,
    },
    /// A message was published.
    MessagePublished {
        /// The message key.
        key: Key,
        /// The message name.
        name: String,
        /// The correlation key.
        correlation_key: String,
    },
    /// A buffered message's time to live ran out.
    MessageExpired {
        /// The message key.
        key: Key,
    },
    /// A message was correlated: to a waiting element, or it started an instance.
    MessageCorrelated {
        /// The message key .
        message_key: Option<Key>,
        /// The subscription it went to (`Key(0)` when it started an instance).
        subscription_key: Key,
        /// The process instance.
        process_instance_key: Key,
        /// The element instance that waited (the instance's root when it started one).
        element_instance_key: Key,
    },
    /// A timer fired.
    TimerTriggered {
        /// The timer key.
        key: Key,
        /// The element instance that waited; `None` for a process start timer.
        element_instance_key: Option<Key>,
    },
    /// A new decision version exists.
    DecisionDeployed {
        /// The decision definition key.
        key: Key,
        /// The decision id.
        decision_id: String,
        /// The version.
        version: u32,
        /// The deployment it came with.
        deployment_key: Key,
        /// The resource it came from.
        resource_name: String,
        /// The resource's bytes (the DMN XML).
        resource: Arc<[u8]>,
    },
    /// A new process definition version exists.
    ProcessDeployed {
        /// The process definition key.
        key: Key,
        /// The BPMN process id.
        bpmn_process_id: String,
        /// The version.
        version: u32,
        /// The deployment it came with.
        deployment_key: Key,
        /// The resource it came from.
        resource_name: String,
        /// The resource's bytes (the BPMN XML).
        resource: Arc<[u8]>,
    },
}

/// Work for the shard once the command that caused it is durable.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// New jobs of this type are ready: wake subscribed workers.
    JobsAvailable {
        /// The job type.
        job_type: Arc<str>,
    },
    /// Arm a timer that sends `JobRetryDue` when a failed job's backoff is over.
    JobBackoff {
        /// The job key.
        key: Key,
        /// When it may be handed out again, in milliseconds since the Unix epoch.
        due_millis: i64,
    },
    /// Arm a timer that sends `JobLeaseExpired` at the deadline.
    JobLease {
        /// The job key.
        key: Key,
        /// When the lease runs out, in milliseconds since the Unix epoch.
        deadline_millis: i64,
    },
    /// Arm a timer that sends `ExpireMessage` when a buffered message's time to live is over.
    MessageTtl {
        /// The message key.
        key: Key,
        /// When it expires, in milliseconds since the Unix epoch.
        deadline_millis: i64,
    },
    /// A signal has subscriptions left to deliver to: send `ContinueSignal` (at once: the
    /// due time is the command's).
    ContinueSignal {
        /// The signal key.
        key: Key,
        /// The command's time, in milliseconds since the Unix epoch.
        due_millis: i64,
    },
    /// A compensation throw has handlers left to start: send `ContinueCompensation` (at
    /// once: the due time is the command's).
    ContinueCompensation {
        /// The throw event's element instance key.
        key: Key,
        /// The command's time, in milliseconds since the Unix epoch.
        due_millis: i64,
    },
    /// Arm a timer that sends `TriggerTimer` when a timer event is due.
    Timer {
        /// The timer key.
        key: Key,
        /// When it is due, in milliseconds since the Unix epoch.
        due_millis: i64,
    },
    /// Send the outbox entry `(to, seq)` to shard `to` (and again until it is acknowledged).
    Send {
        /// The destination shard.
        to: u16,
        /// The mail's number.
        seq: u64,
        /// The mail (also kept in the state's outbox).
        mail: crate::remote::Mail,
    },
    /// Answer a create-with-result caller: the instance completed.
    InstanceResult {
        /// The process instance key.
        process_instance_key: Key,
        /// The instance's variables at its end.
        variables: Variables,
    },
    /// Answer the caller whose completion, assignment or update of a user task waited for
    /// its task listeners ([`Response::UserTaskTransitionHeld`]): it ended.
    UserTaskTransitionEnded {
        /// The user task's element instance key.
        element_instance_key: Key,
        /// How it ended.
        end: TransitionEnd,
    },
}

/// How a user task's completion, assignment or update that waited for its task listeners
/// ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransitionEnd {
    /// The last listener approved: it was applied.
    Done,
    /// A listener denied it, with this reason (maybe empty): nothing changed.
    Denied(String),
    /// The user task was terminated (its instance cancelled, an interrupting event) first.
    Terminated,
}

/// Why a command was refused. A rejection changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// What kind of refusal.
    pub code: RejectionCode,
    /// What was wrong, for a person.
    pub message: String,
}

/// The kinds of refusal, as stable codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectionCode {
    /// A request that cannot be carried out as given (empty deployment, duplicate names).
    InvalidArgument,
    /// A BPMN resource that does not validate.
    InvalidModel,
    /// Over one of the limits in [`crate::limits`].
    LimitExceeded,
    /// The shard has handed out every key it can.
    KeysExhausted,
    /// No deployed process matches.
    ProcessNotFound,
    /// No running process instance has this key.
    InstanceNotFound,
    /// No open job has this key.
    JobNotFound,
    /// The job exists but is not in a state that allows this.
    InvalidState,
    /// No open incident has this key.
    IncidentNotFound,
    /// A buffered message with the same name, correlation key and message id exists.
    AlreadyExists,
}

impl RejectionCode {
    /// The stable code, as used on the wire.
    pub fn code(self) -> &'static str {
        match self {
            RejectionCode::InvalidArgument => "INVALID_ARGUMENT",
            RejectionCode::InvalidModel => "INVALID_MODEL",
            RejectionCode::LimitExceeded => "LIMIT_EXCEEDED",
            RejectionCode::KeysExhausted => "KEYS_EXHAUSTED",
            RejectionCode::ProcessNotFound => "PROCESS_NOT_FOUND",
            RejectionCode::InstanceNotFound => "INSTANCE_NOT_FOUND",
            RejectionCode::JobNotFound => "JOB_NOT_FOUND",
            RejectionCode::InvalidState => "INVALID_STATE",
            RejectionCode::IncidentNotFound => "INCIDENT_NOT_FOUND",
            RejectionCode::AlreadyExists => "ALREADY_EXISTS",
        }
    }
}

impl fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Rejection {
    pub(crate) fn new(code: RejectionCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
        }
    }
}

/// Hands out keys from [`Ctx::next_key`] for one command.
pub(crate) struct Keys {
    next: Key,
}

impl Keys {
    pub(crate) fn new(ctx: &Ctx) -> Keys {
        Keys { next: ctx.next_key }
    }

    pub(crate) fn take(&mut self) -> Result<Key, Rejection> {
        let key = self.next;
        self.next = key.next().ok_or_else(|| {
            Rejection::new(
                RejectionCode::KeysExhausted,
                format!("shard {} has handed out every key", key.shard()),
            )
        })?;
        Ok(key)
    }

    pub(crate) fn next(&self) -> Key {
        self.next
    }
}

/// Applies one command to the state. On a rejection the state is unchanged.
pub fn process(state: &mut State, command: Command, ctx: &Ctx) -> Result<Outcome, Rejection> {
    assert_eq!(
        ctx.next_key.shard(),
        state.shard(),
        "a key of another shard in the context"
    );
    assert!(
        ctx.next_key > state.last_key(),
        "keys go backwards: {:?}",
        ctx.next_key
    );
    state.variables_dirty.clear();
    state.draws.start(ctx.next_key);
    let leading = leading_event(&command);
    let mut outcome = match run_command(state, command, ctx) {
        Ok(outcome) => outcome,
        Err(rejection) => {
            state.variables_dirty.clear();
            return Err(rejection);
        }
    };
    if let Some(event) = leading {
        outcome.events.insert(0, event);
    }
    state.flush_variable_events(&mut outcome.events);
    if state.draws.drawn() && outcome.next_key == ctx.next_key {
        // The next command's draws start from its first key: make it another one (see
        // `feel`). At the shard's very last key there is none left to skip to.
        if let Some(next) = ctx.next_key.next() {
            outcome.next_key = next;
        }
    }
    if outcome.next_key > ctx.next_key {
        state.set_last_key(Key(outcome.next_key.0 - 1));
    }
    Ok(outcome)
}

/// The event that a job or incident command adds in front of what it caused.
fn leading_event(command: &Command) -> Option<Event> {
    match command {
        Command::CompleteJob { key, .. }
        | Command::CompleteAdHocJob { key, .. }
        | Command::CompleteTaskListenerJob { key, .. } => Some(Event::JobCompleted { key: *key }),
        Command::FailJob {
            key,
            retries,
            message,
            ..
        } => Some(Event::JobFailed {
            key: *key,
            retries: *retries,
            message: message.clone(),
        }),
        Command::ThrowError {
            key, error_code, ..
        } => Some(Event::JobErrorThrown {
            key: *key,
            error_code: error_code.clone(),
        }),
        Command::UpdateJobRetries { key, retries } => Some(Event::JobRetriesUpdated {
            key: *key,
            retries: *retries,
        }),
        Command::ResolveIncident { key } => Some(Event::IncidentResolved { key: *key }),
        _ => None,
    }
}

fn run_command(state: &mut State, command: Command, ctx: &Ctx) -> Result<Outcome, Rejection> {
    let outcome = match command {
        Command::Deploy { resources } => crate::deploy::deploy(state, resources, ctx)?,
        Command::CreateInstance {
            process,
            variables,
            business_key,
            await_result,
        } => crate::create::create(state, process, variables, business_key, await_result, ctx)?,
        Command::CancelInstance { key } => crate::cancel::cancel(state, key, ctx)?,
        Command::ActivateJobs {
            job_type,
            worker,
            max_jobs,
            lease_millis,
            fetch_variables,
        } => crate::jobs::activate(
            state,
            &job_type,
            &worker,
            max_jobs,
            lease_millis,
            &fetch_variables,
            ctx,
        )?,
        Command::CompleteJob { key, variables } => {
            crate::jobs::complete(state, key, variables, ctx)?
        }
        Command::FailJob {
            key,
            retries,
            retry_backoff_millis,
            message,
        } => crate::failures::fail(state, key, retries, retry_backoff_millis, message, ctx)?,
        Command::ThrowError {
            key,
            error_code,
            message,
        } => crate::errors::throw(state, key, error_code, message, ctx)?,
        Command::JobLeaseExpired { key } => crate::failures::lease_expired(state, key, ctx)?,
        Command::JobRetryDue { key } => crate::failures::retry_due(state, key, ctx)?,
        Command::UpdateJobRetries { key, retries } => {
            crate::failures::update_retries(state, key, retries, ctx)?
        }
        Command::ResolveIncident { key } => crate::failures::resolve(state, key, ctx)?,
        Command::SetVariables {
            scope,
            variables,
            local,
        } => crate::failures::set_variables(state, scope, variables, local, ctx)?,
        Command::PublishMessage {
            name,
            correlation_key,
            variables,
            ttl_millis,
            message_id,
        } => crate::messages::publish(
            state,
            name,
            correlation_key,
            variables,
            ttl_millis,
            message_id,
            ctx,
        )?,
        Command::BroadcastSignal { name, variables } => {
            crate::signals::broadcast(state, name, variables, ctx)?
        }
        Command::EvaluateConditional {
            bpmn_process_id,
            variables,
        } => crate::conditionals::evaluate_starts(state, bpmn_process_id, variables, ctx)?,
        Command::ActivateAdHocActivities {
            key,
            elements,
            cancel_remaining_instances,
        } => crate::adhoc::activate(state, key, elements, cancel_remaining_instances, ctx)?,
        Command::CompleteAdHocJob {
            key,
            variables,
            result,
        } => crate::adhoc::complete_job(state, key, variables, result, ctx)?,
        Command::AssignUserTask { key, assignee } => {
            crate::usertasks::assign(state, key, assignee, ctx)?
        }
        Command::UpdateUserTask { key, changes } => {
            crate::usertasks::update(state, key, *changes, ctx)?
        }
        Command::CompleteTaskListenerJob { key, result } => {
            crate::usertasks::complete_listener_job(state, key, *result, ctx)?
        }
        Command::ContinueSignal { key } => crate::signals::continue_delivery(state, key, ctx)?,
        Command::ContinueCompensation { key } => {
            crate::compensation::continue_throw(state, key, ctx)?
        }
        Command::ExpireMessage { key } => crate::messages::expire(state, key, ctx)?,
        Command::TriggerTimer { key } => crate::timers::trigger(state, key, ctx)?,
        Command::Receive { from, seq, mail } => {
            crate::remote::receive(state, from, seq, mail, ctx)?
        }
        Command::Acknowledge { to, seq } => crate::remote::acknowledge(state, to, seq, ctx)?,
    };
    Ok(outcome)
}
