//! The protocol's messages as Rust values, and their flatbuffers encoding.
//!
//! [`Request`] and [`Response`] mirror the `Body` union of `schema/ringflow.fbs`. A frame
//! carries one or more [`Envelope`]s, each a request id and a message; [`FrameEncoder`]
//! builds frames, [`decode_frame`] verifies one and copies it out.

use std::sync::Arc;

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, VerifierOptions, WIPOffset};

use crate::fb;
use crate::routing::SlotTable;
use crate::topology::{Node, Topology};

/// The protocol version this crate speaks (the `version` field of every frame).
pub const PROTOCOL_VERSION: u16 = 1;

/// Why a request was refused: the `ErrorCode` enum of the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A number this crate does not know (a newer server).
    Unknown,
    /// A request that cannot be carried out as given.
    InvalidArgument,
    /// A BPMN resource that does not validate.
    InvalidModel,
    /// Over one of the engine's named limits.
    LimitExceeded,
    /// The shard has handed out every key it can.
    KeysExhausted,
    /// No deployed process matches.
    ProcessNotFound,
    /// No running process instance has this key.
    InstanceNotFound,
    /// No open job has this key.
    JobNotFound,
    /// Not in a state that allows this.
    InvalidState,
    /// No open incident has this key.
    IncidentNotFound,
    /// Backpressure: retry after `retry_after_ms`.
    Busy,
    /// The key belongs to another shard; the error carries the topology.
    WrongShard,
    /// The frame or request could not be decoded.
    Malformed,
    /// The frame's protocol version is not spoken here.
    UnsupportedVersion,
    /// The frame is over `frame_bytes_max`.
    FrameTooLarge,
    /// Understood, but not carried out by this server yet.
    Unsupported,
    /// The shard stopped or is shutting down.
    Unavailable,
    /// An awaited result did not come in time.
    Timeout,
    /// A buffered message with the same name, correlation key and message id exists.
    AlreadyExists,
}

impl ErrorCode {
    const ALL: [(ErrorCode, fb::ErrorCode, &'static str); 19] = [
        (ErrorCode::Unknown, fb::ErrorCode::UNKNOWN, "UNKNOWN"),
        (
            ErrorCode::InvalidArgument,
            fb::ErrorCode::INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        ),
        (
            ErrorCode::InvalidModel,
            fb::ErrorCode::INVALID_MODEL,
            "INVALID_MODEL",
        ),
        (
            ErrorCode::LimitExceeded,
            fb::ErrorCode::LIMIT_EXCEEDED,
            "LIMIT_EXCEEDED",
        ),
        (
            ErrorCode::KeysExhausted,
            fb::ErrorCode::KEYS_EXHAUSTED,
            "KEYS_EXHAUSTED",
        ),
        (
            ErrorCode::ProcessNotFound,
            fb::ErrorCode::PROCESS_NOT_FOUND,
            "PROCESS_NOT_FOUND",
        ),
        (
            ErrorCode::InstanceNotFound,
            fb::ErrorCode::INSTANCE_NOT_FOUND,
            "INSTANCE_NOT_FOUND",
        ),
        (
            ErrorCode::JobNotFound,
            fb::ErrorCode::JOB_NOT_FOUND,
            "JOB_NOT_FOUND",
        ),
        (
            ErrorCode::InvalidState,
            fb::ErrorCode::INVALID_STATE,
            "INVALID_STATE",
        ),
        (
            ErrorCode::IncidentNotFound,
            fb::ErrorCode::INCIDENT_NOT_FOUND,
            "INCIDENT_NOT_FOUND",
        ),
        (ErrorCode::Busy, fb::ErrorCode::BUSY, "BUSY"),
        (
            ErrorCode::WrongShard,
            fb::ErrorCode::WRONG_SHARD,
            "WRONG_SHARD",
        ),
        (ErrorCode::Malformed, fb::ErrorCode::MALFORMED, "MALFORMED"),
        (
            ErrorCode::UnsupportedVersion,
            fb::ErrorCode::UNSUPPORTED_VERSION,
            "UNSUPPORTED_VERSION",
        ),
        (
            ErrorCode::FrameTooLarge,
            fb::ErrorCode::FRAME_TOO_LARGE,
            "FRAME_TOO_LARGE",
        ),
        (
            ErrorCode::Unsupported,
            fb::ErrorCode::UNSUPPORTED,
            "UNSUPPORTED",
        ),
        (
            ErrorCode::Unavailable,
            fb::ErrorCode::UNAVAILABLE,
            "UNAVAILABLE",
        ),
        (ErrorCode::Timeout, fb::ErrorCode::TIMEOUT, "TIMEOUT"),
        (
            ErrorCode::AlreadyExists,
            fb::ErrorCode::ALREADY_EXISTS,
            "ALREADY_EXISTS",
        ),
    ];

    /// The stable name, as in the schema (`BUSY`, `WRONG_SHARD`, ...).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|entry| entry.0 == self)
            .map_or("UNKNOWN", |entry| entry.2)
    }

    /// The code with this stable name (as the engine's rejection codes spell it).
    pub fn from_name(name: &str) -> ErrorCode {
        Self::ALL
            .iter()
            .find(|entry| entry.2 == name)
            .map_or(ErrorCode::Unknown, |entry| entry.0)
    }

    fn to_fb(self) -> fb::ErrorCode {
        Self::ALL
            .iter()
            .find(|entry| entry.0 == self)
            .map_or(fb::ErrorCode::UNKNOWN, |entry| entry.1)
    }

    fn from_fb(code: fb::ErrorCode) -> ErrorCode {
        Self::ALL
            .iter()
            .find(|entry| entry.1 == code)
            .map_or(ErrorCode::Unknown, |entry| entry.0)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One BPMN file of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Its name, usually the file name.
    pub name: String,
    /// The file's bytes.
    pub content: Vec<u8>,
}

/// `CreateInstanceRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateInstance {
    /// The latest version of this process id (when `process_definition_key` is 0).
    pub bpmn_process_id: String,
    /// One version by key, or 0.
    pub process_definition_key: u64,
    /// JSON object text, or empty.
    pub variables: String,
    /// Routes the instance to this key's shard; kept with the instance. Empty for none.
    pub business_key: String,
    /// Answer when the instance completes, with its variables.
    pub await_result: bool,
    /// How long to wait for the result, 0 for the server's default.
    pub await_timeout_ms: u32,
}

/// `PublishMessageRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishMessage {
    /// The message name.
    pub name: String,
    /// Routes the message and correlates it.
    pub correlation_key: String,
    /// JSON object text, or empty.
    pub variables: String,
    /// How long the message is buffered, in milliseconds.
    pub ttl_ms: u64,
    /// Deduplicates while the message lives; empty for none.
    pub message_id: String,
}

/// `ActivateJobsRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivateJobs {
    /// The job type.
    pub job_type: String,
    /// The worker's name.
    pub worker: String,
    /// At most this many jobs.
    pub max_jobs: u32,
    /// The lease per job in milliseconds, 0 for the server's default.
    pub lease_ms: u64,
    /// Wait up to this long when none is ready; 0 answers at once.
    pub long_poll_ms: u32,
    /// Only these variables (by name) in each job; empty: all of them (Zeebe's
    /// `fetchVariables`).
    pub fetch_variables: Vec<String>,
}

/// `SubscribeJobsRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeJobs {
    /// The job type.
    pub job_type: String,
    /// The worker's name.
    pub worker: String,
    /// How many jobs the server may push before more are granted.
    pub credits: u32,
    /// The lease per job in milliseconds, 0 for the server's default.
    pub lease_ms: u64,
    /// Only these variables (by name) in each job; empty: all of them.
    pub fetch_variables: Vec<String>,
}

/// A request: one member of the schema's `Body` union.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `TopologyRequest`.
    Topology,
    /// `DeployRequest`.
    Deploy {
        /// The files.
        resources: Vec<Resource>,
    },
    /// `CreateInstanceRequest`.
    CreateInstance(CreateInstance),
    /// `CancelInstanceRequest`.
    CancelInstance {
        /// The process instance key.
        process_instance_key: u64,
    },
    /// `PublishMessageRequest`.
    PublishMessage(PublishMessage),
    /// `ActivateJobsRequest`.
    ActivateJobs(ActivateJobs),
    /// `SubscribeJobsRequest`.
    SubscribeJobs(SubscribeJobs),
    /// `JobCreditsRequest`.
    JobCredits {
        /// The id of the `SubscribeJobs` request on this connection.
        subscription_request_id: u64,
        /// Credits to add.
        credits: u32,
    },
    /// `CompleteJobRequest`.
    CompleteJob {
        /// The job key.
        job_key: u64,
        /// JSON object text, or empty.
        variables: String,
    },
    /// `FailJobRequest`.
    FailJob {
        /// The job key.
        job_key: u64,
        /// Tries left.
        retries: u32,
        /// Wait before the next try, in milliseconds.
        retry_backoff_ms: u64,
        /// What went wrong.
        message: String,
    },
    /// `ThrowErrorRequest`.
    ThrowError {
        /// The job key.
        job_key: u64,
        /// The BPMN error code.
        error_code: String,
        /// What happened.
        message: String,
    },
    /// `UpdateJobRetriesRequest`.
    UpdateJobRetries {
        /// The job key.
        job_key: u64,
        /// The new retries.
        retries: u32,
    },
    /// `SetVariablesRequest`.
    SetVariables {
        /// The scope's element instance key.
        scope_key: u64,
        /// JSON object text.
        variables: String,
        /// Only in this scope.
        local: bool,
    },
    /// `ResolveIncidentRequest`.
    ResolveIncident {
        /// The incident key.
        incident_key: u64,
    },
    /// `BroadcastSignalRequest`: any shard takes it.
    BroadcastSignal {
        /// The signal name.
        name: String,
        /// JSON object text, or empty.
        variables: String,
    },
    /// `EvaluateConditionalRequest`: any shard takes it; the instances start there.
    EvaluateConditional {
        /// Only this BPMN process id; empty: every process with a conditional start event.
        bpmn_process_id: String,
        /// JSON object text, or empty.
        variables: String,
    },
    /// `CompleteJobRequest` with an `ad_hoc_result`: the decision of an ad-hoc subprocess's
    /// worker, routed by the job key.
    CompleteAdHocJob {
        /// The job key.
        job_key: u64,
        /// JSON object text, or empty.
        variables: String,
        /// Elements to activate, in order: (element id, JSON object text or empty).
        activate_elements: Vec<(String, String)>,
        /// The subprocess is done.
        completion_condition_fulfilled: bool,
        /// Terminate the activations that run.
        cancel_remaining_instances: bool,
    },
    /// `CompleteJobRequest` with a `task_listener_result`: the decision of a user task's
    /// task listener's worker, routed by the job key.
    CompleteTaskListenerJob {
        /// The job key.
        job_key: u64,
        /// What the listener decided (boxed: it is large and rare, and every request is as
        /// large as the largest).
        decision: Box<TaskListenerDecision>,
    },
    /// `UpdateUserTaskRequest`: routed by the key.
    UpdateUserTask {
        /// The user task's job key.
        job_key: u64,
        /// What changes (boxed: large and rare).
        changes: Box<UserTaskChanges>,
    },
    /// `AssignUserTaskRequest`: routed by the key.
    AssignUserTask {
        /// The user task's job key.
        job_key: u64,
        /// The new assignee; empty: unassign.
        assignee: String,
    },
    /// `ActivateAdHocActivitiesRequest`: routed by the key.
    ActivateAdHocActivities {
        /// The ad-hoc subprocess's element instance key.
        ad_hoc_key: u64,
        /// The elements to activate, in order: (element id, JSON object text or empty).
        elements: Vec<(String, String)>,
        /// Terminate the inner instances still running first.
        cancel_remaining_instances: bool,
    },
    /// `ShardMailRequest`: between shards only.
    ShardMail {
        /// The sending shard.
        from_shard: u16,
        /// The receiving shard.
        to_shard: u16,
        /// The mail, in order: (number, encoded mail).
        mails: Vec<(u64, Vec<u8>)>,
    },
}

impl Request {
    /// The schema's name of the request, for messages and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Topology => "Topology",
            Request::Deploy { .. } => "Deploy",
            Request::CreateInstance(_) => "CreateInstance",
            Request::CancelInstance { .. } => "CancelInstance",
            Request::PublishMessage(_) => "PublishMessage",
            Request::ActivateJobs(_) => "ActivateJobs",
            Request::SubscribeJobs(_) => "SubscribeJobs",
            Request::JobCredits { .. } => "JobCredits",
            Request::CompleteJob { .. } => "CompleteJob",
            Request::FailJob { .. } => "FailJob",
            Request::ThrowError { .. } => "ThrowError",
            Request::UpdateJobRetries { .. } => "UpdateJobRetries",
            Request::SetVariables { .. } => "SetVariables",
            Request::ResolveIncident { .. } => "ResolveIncident",
            Request::ShardMail { .. } => "ShardMail",
            Request::BroadcastSignal { .. } => "BroadcastSignal",
            Request::EvaluateConditional { .. } => "EvaluateConditional",
            Request::ActivateAdHocActivities { .. } => "ActivateAdHocActivities",
            Request::CompleteAdHocJob { .. } => "CompleteJob",
            Request::CompleteTaskListenerJob { .. } => "CompleteJob",
            Request::AssignUserTask { .. } => "AssignUserTask",
            Request::UpdateUserTask { .. } => "UpdateUserTask",
        }
    }
}

/// One process of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployedProcess {
    /// The BPMN process id.
    pub bpmn_process_id: String,
    /// Its version.
    pub version: u32,
    /// The process definition key (on the shard that answered).
    pub process_definition_key: u64,
    /// The resource it came from.
    pub resource_name: String,
    /// Whether this XML was already the latest version.
    pub duplicate: bool,
}

/// One DMN decision of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployedDecision {
    /// The decision id.
    pub decision_id: String,
    /// The decision's name.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// The decision key (on the shard that answered).
    pub decision_key: u64,
    /// The resource it came from.
    pub resource_name: String,
    /// Whether this DMN was already the latest version.
    pub duplicate: bool,
}

/// `DeployResponse`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    /// The deployment key (on the shard that answered).
    pub deployment_key: u64,
    /// Every process of every resource.
    pub processes: Vec<DeployedProcess>,
    /// Every decision of every DMN resource.
    pub decisions: Vec<DeployedDecision>,
}

/// `InstanceCreated`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceCreated {
    /// The process instance key.
    pub process_instance_key: u64,
    /// The version it runs.
    pub process_definition_key: u64,
    /// The BPMN process id (shared, as in [`Job`]).
    pub bpmn_process_id: Arc<str>,
    /// The version number.
    pub version: u32,
}

/// `InstanceResult`: an awaited instance completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceResult {
    /// The instance.
    pub created: InstanceCreated,
    /// Its variables at the end, as JSON object text.
    pub variables: String,
}

/// `StartedInstance`: an instance a conditional start event started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedInstance {
    /// The instance.
    pub created: InstanceCreated,
    /// The start event's id.
    pub start_event_id: String,
}

/// Which listener a job is for (the schema's `JobKind` and `ListenerEventType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobListener {
    /// An execution start listener: the element has not begun its work.
    Start,
    /// An execution end listener: the element has done its work.
    End,
    /// A user task's creating task listener: the task's job is not made yet.
    Creating,
    /// A user task's completing task listener: the task's completion waits for it.
    Completing,
    /// A user task's assigning task listener: the task's new assignee waits for it.
    Assigning,
    /// A user task's updating task listener: the task's update waits for it.
    Updating,
}

/// Changes to a user task's candidates, dates and priority (`UpdateUserTaskRequest`'s
/// `UserTaskCorrections` without an assignee). `None` leaves a property as it is; an empty
/// text or list clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserTaskChanges {
    /// The candidate groups.
    pub candidate_groups: Option<Vec<String>>,
    /// The candidate users.
    pub candidate_users: Option<Vec<String>>,
    /// The due date (ISO 8601 with a zone).
    pub due_date: Option<String>,
    /// The follow-up date (ISO 8601 with a zone).
    pub follow_up_date: Option<String>,
    /// The priority.
    pub priority: Option<u8>,
}

/// What a user task's task listener decided (the schema's `TaskListenerJobResult`). `None`
/// leaves a property as it is; an empty text or list clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskListenerDecision {
    /// Refuse the completion (completing listeners only).
    pub denied: bool,
    /// Why (empty: no reason given).
    pub denied_reason: String,
    /// The corrected assignee.
    pub assignee: Option<String>,
    /// The corrected candidate groups.
    pub candidate_groups: Option<Vec<String>>,
    /// The corrected candidate users.
    pub candidate_users: Option<Vec<String>>,
    /// The corrected due date (ISO 8601 with a zone).
    pub due_date: Option<String>,
    /// The corrected follow-up date (ISO 8601 with a zone).
    pub follow_up_date: Option<String>,
    /// The corrected priority.
    pub priority: Option<u8>,
}

/// A job handed to a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The job key.
    pub key: u64,
    /// The job type. (The three names are shared: a server hands out its model's own
    /// copies, so a job costs no copy of them until it is encoded.)
    pub job_type: Arc<str>,
    /// Its process instance.
    pub process_instance_key: u64,
    /// The BPMN process id.
    pub bpmn_process_id: Arc<str>,
    /// The task's id in the model.
    pub element_id: Arc<str>,
    /// Its element instance.
    pub element_instance_key: u64,
    /// Tries left.
    pub retries: u32,
    /// When the lease runs out, in milliseconds since the Unix epoch.
    pub deadline_ms: i64,
    /// The task headers.
    pub custom_headers: Vec<(String, String)>,
    /// The variables visible at the task, as JSON object text.
    pub variables: String,
    /// `None`: the element's own work; else the execution listener the job is for.
    pub listener: Option<JobListener>,
}

/// `Error`: why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    /// The code.
    pub code: ErrorCode,
    /// What was wrong, for a person.
    pub message: String,
    /// With BUSY: wait this long before retrying.
    pub retry_after_ms: u32,
    /// With WRONG_SHARD: the current topology.
    pub topology: Option<Topology>,
}

impl WireError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
            retry_after_ms: 0,
            topology: None,
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for WireError {}

/// A response: one member of the schema's `Body` union.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `Topology`.
    Topology(Topology),
    /// `DeployResponse`.
    Deployed(Deployed),
    /// `InstanceCreated`.
    InstanceCreated(InstanceCreated),
    /// `InstanceResult`.
    InstanceResult(InstanceResult),
    /// `Done`.
    Done {
        /// The key the command was about.
        key: u64,
        /// FailJob, ThrowError: the incident the command raised, or 0.
        incident_key: u64,
    },
    /// `Jobs`: activated or pushed jobs.
    Jobs(Vec<Job>),
    /// `InstancesStarted`: the answer to `EvaluateConditional`.
    InstancesStarted(Vec<StartedInstance>),
    /// `Error`.
    Error(WireError),
}

/// A request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// From a client.
    Request(Request),
    /// From a server.
    Response(Response),
}

/// One message of a frame with its request id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Chosen by the client; answers carry it back.
    pub request_id: u64,
    /// The message.
    pub message: Message,
}

/// Why a frame could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is over the limit. The connection cannot be resynchronised.
    #[error("frame of {length} bytes is over frame_bytes_max ({max})")]
    TooLarge {
        /// The announced length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// A zero-length or otherwise impossible frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame's version is not [`PROTOCOL_VERSION`].
    #[error("protocol version {version} is not supported (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version in the frame.
        version: u16,
    },
}

impl FrameError {
    /// The error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::Malformed(_) => ErrorCode::Malformed,
            FrameError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
        }
    }
}

/// Builds frames; reuse one to avoid allocating per frame.
pub struct FrameEncoder {
    builder: FlatBufferBuilder<'static>,
    envelopes: Vec<WIPOffset<fb::Envelope<'static>>>,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        FrameEncoder {
            builder: FlatBufferBuilder::with_capacity(1024),
            envelopes: Vec::new(),
        }
    }
}

impl FrameEncoder {
    /// Adds a request to the frame being built.
    pub fn push_request(&mut self, request_id: u64, request: &Request) {
        let (body_type, body) = encode_request(&mut self.builder, request);
        self.push(request_id, body_type, body);
    }

    /// Adds a response to the frame being built.
    pub fn push_response(&mut self, request_id: u64, response: &Response) {
        let (body_type, body) = encode_response(&mut self.builder, response);
        self.push(request_id, body_type, body);
    }

    fn push(
        &mut self,
        request_id: u64,
        body_type: fb::Body,
        body: WIPOffset<flatbuffers::UnionWIPOffset>,
    ) {
        let envelope = fb::Envelope::create(
            &mut self.builder,
            &fb::EnvelopeArgs {
                request_id,
                body_type,
                body: Some(body),
            },
        );
        self.envelopes.push(envelope);
    }

    /// Bytes of the frame being built so far (an estimate of its final size).
    pub fn pending_bytes(&self) -> usize {
        self.builder.unfinished_data().len()
    }

    /// Whether nothing was pushed since the last finish.
    pub fn is_empty(&self) -> bool {
        self.envelopes.is_empty()
    }

    /// Finishes the frame and appends it, length prefix first, to `out`.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        let envelopes = self.builder.create_vector(&self.envelopes);
        let frame = fb::Frame::create(
            &mut self.builder,
            &fb::FrameArgs {
                version: PROTOCOL_VERSION,
                envelopes: Some(envelopes),
            },
        );
        fb::finish_size_prefixed_frame_buffer(&mut self.builder, frame);
        out.extend_from_slice(self.builder.finished_data());
        self.builder.reset();
        self.envelopes.clear();
    }
}

/// Encodes one frame with one response (a convenience for servers and tests).
pub fn response_frame(request_id: u64, response: &Response) -> Vec<u8> {
    let mut encoder = FrameEncoder::default();
    encoder.push_response(request_id, response);
    let mut out = Vec::new();
    encoder.finish_into(&mut out);
    out
}

/// Encodes one frame with the requests given (a convenience for clients and tests).
pub fn request_frame(requests: &[(u64, Request)]) -> Vec<u8> {
    let mut encoder = FrameEncoder::default();
    for (id, request) in requests {
        encoder.push_request(*id, request);
    }
    let mut out = Vec::new();
    encoder.finish_into(&mut out);
    out
}

type Fbb = FlatBufferBuilder<'static>;
type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

fn opt_str<'a>(builder: &mut Fbb, text: &str) -> Option<WIPOffset<&'a str>> {
    (!text.is_empty()).then(|| builder.create_string(text))
}

fn encode_corrections<'a>(
    b: &mut Fbb,
    assignee: &Option<String>,
    changes: &UserTaskChanges,
) -> WIPOffset<fb::UserTaskCorrections<'a>> {
    let text =
        |b: &mut Fbb, value: &Option<String>| value.as_deref().map(|value| b.create_string(value));
    let list = |b: &mut Fbb, value: &Option<Vec<String>>| {
        value.as_ref().map(|items| {
            let items: Vec<_> = items.iter().map(|item| b.create_string(item)).collect();
            b.create_vector(&items)
        })
    };
    let corrections = fb::UserTaskCorrectionsArgs {
        assignee: text(b, assignee),
        candidate_groups: list(b, &changes.candidate_groups),
        candidate_users: list(b, &changes.candidate_users),
        due_date: text(b, &changes.due_date),
        follow_up_date: text(b, &changes.follow_up_date),
        priority: changes.priority.map_or(-1, i16::from),
    };
    fb::UserTaskCorrections::create(b, &corrections)
}

/// The assignee and the other changes of a `UserTaskCorrections` table.
fn decode_corrections(
    corrections: fb::UserTaskCorrections<'_>,
) -> Result<(Option<String>, UserTaskChanges), String> {
    let list = |items: Option<Vector<'_, ForwardsUOffset<&str>>>| {
        items.map(|items| items.iter().map(str::to_string).collect())
    };
    let changes = UserTaskChanges {
        candidate_groups: list(corrections.candidate_groups()),
        candidate_users: list(corrections.candidate_users()),
        due_date: corrections.due_date().map(str::to_string),
        follow_up_date: corrections.follow_up_date().map(str::to_string),
        priority: match corrections.priority() {
            -1 => None,
            priority => Some(u8::try_from(priority).map_err(|_| {
                format!("the priority {priority} is not from 0 to 100 (or -1: unchanged)")
            })?),
        },
    };
    Ok((corrections.assignee().map(str::to_string), changes))
}

fn encode_task_listener_decision<'a>(
    b: &mut Fbb,
    decision: &TaskListenerDecision,
) -> WIPOffset<fb::TaskListenerJobResult<'a>> {
    let changes = UserTaskChanges {
        candidate_groups: decision.candidate_groups.clone(),
        candidate_users: decision.candidate_users.clone(),
        due_date: decision.due_date.clone(),
        follow_up_date: decision.follow_up_date.clone(),
        priority: decision.priority,
    };
    let corrections = encode_corrections(b, &decision.assignee, &changes);
    let args = fb::TaskListenerJobResultArgs {
        denied: decision.denied,
        denied_reason: opt_str(b, &decision.denied_reason),
        corrections: Some(corrections),
    };
    fb::TaskListenerJobResult::create(b, &args)
}

fn decode_task_listener_decision(
    result: fb::TaskListenerJobResult<'_>,
) -> Result<TaskListenerDecision, String> {
    let mut decision = TaskListenerDecision {
        denied: result.denied(),
        denied_reason: text(result.denied_reason()),
        ..TaskListenerDecision::default()
    };
    if let Some(corrections) = result.corrections() {
        let (assignee, changes) = decode_corrections(corrections)?;
        decision.assignee = assignee;
        decision.candidate_groups = changes.candidate_groups;
        decision.candidate_users = changes.candidate_users;
        decision.due_date = changes.due_date;
        decision.follow_up_date = changes.follow_up_date;
        decision.priority = changes.priority;
    }
    Ok(decision)
}

fn encode_request(b: &mut Fbb, request: &Request) -> (fb::Body, Union) {
    match request {
        Request::Topology => {
            let t = fb::TopologyRequest::create(b, &fb::TopologyRequestArgs {});
            (fb::Body::TopologyRequest, t.as_union_value())
        }
        Request::Deploy { resources } => {
            let items: Vec<_> = resources
                .iter()
                .map(|resource| {
                    let name = Some(b.create_string(&resource.name));
                    let content = Some(b.create_vector(&resource.content));
                    fb::Resource::create(b, &fb::ResourceArgs { name, content })
                })
                .collect();
            let resources = Some(b.create_vector(&items));
            let t = fb::DeployRequest::create(b, &fb::DeployRequestArgs { resources });
            (fb::Body::DeployRequest, t.as_union_value())
        }
        Request::CreateInstance(create) => {
            let args = fb::CreateInstanceRequestArgs {
                bpmn_process_id: opt_str(b, &create.bpmn_process_id),
                process_definition_key: create.process_definition_key,
                variables: opt_str(b, &create.variables),
                business_key: opt_str(b, &create.business_key),
                await_result: create.await_result,
                await_timeout_ms: create.await_timeout_ms,
            };
            let t = fb::CreateInstanceRequest::create(b, &args);
            (fb::Body::CreateInstanceRequest, t.as_union_value())
        }
        Request::CancelInstance {
            process_instance_key,
        } => {
            let args = fb::CancelInstanceRequestArgs {
                process_instance_key: *process_instance_key,
            };
            let t = fb::CancelInstanceRequest::create(b, &args);
            (fb::Body::CancelInstanceRequest, t.as_union_value())
        }
        Request::PublishMessage(publish) => {
            let args = fb::PublishMessageRequestArgs {
                name: Some(b.create_string(&publish.name)),
                correlation_key: Some(b.create_string(&publish.correlation_key)),
                variables: opt_str(b, &publish.variables),
                ttl_ms: publish.ttl_ms,
                message_id: opt_str(b, &publish.message_id),
            };
            let t = fb::PublishMessageRequest::create(b, &args);
            (fb::Body::PublishMessageRequest, t.as_union_value())
        }
        Request::BroadcastSignal { name, variables } => {
            let args = fb::BroadcastSignalRequestArgs {
                name: Some(b.create_string(name)),
                variables: opt_str(b, variables),
            };
            let t = fb::BroadcastSignalRequest::create(b, &args);
            (fb::Body::BroadcastSignalRequest, t.as_union_value())
        }
        Request::EvaluateConditional {
            bpmn_process_id,
            variables,
        } => {
            let args = fb::EvaluateConditionalRequestArgs {
                bpmn_process_id: opt_str(b, bpmn_process_id),
                variables: opt_str(b, variables),
            };
            let t = fb::EvaluateConditionalRequest::create(b, &args);
            (fb::Body::EvaluateConditionalRequest, t.as_union_value())
        }
        Request::ActivateAdHocActivities {
            ad_hoc_key,
            elements,
            cancel_remaining_instances,
        } => {
            let items = encode_activations(b, elements);
            let args = fb::ActivateAdHocActivitiesRequestArgs {
                ad_hoc_key: *ad_hoc_key,
                elements: Some(items),
                cancel_remaining_instances: *cancel_remaining_instances,
            };
            let t = fb::ActivateAdHocActivitiesRequest::create(b, &args);
            (fb::Body::ActivateAdHocActivitiesRequest, t.as_union_value())
        }
        Request::ActivateJobs(activate) => {
            let fetch_variables = names(b, &activate.fetch_variables);
            let args = fb::ActivateJobsRequestArgs {
                job_type: Some(b.create_string(&activate.job_type)),
                worker: opt_str(b, &activate.worker),
                max_jobs: activate.max_jobs,
                lease_ms: activate.lease_ms,
                long_poll_ms: activate.long_poll_ms,
                fetch_variables,
            };
            let t = fb::ActivateJobsRequest::create(b, &args);
            (fb::Body::ActivateJobsRequest, t.as_union_value())
        }
        Request::SubscribeJobs(subscribe) => {
            let fetch_variables = names(b, &subscribe.fetch_variables);
            let args = fb::SubscribeJobsRequestArgs {
                job_type: Some(b.create_string(&subscribe.job_type)),
                worker: opt_str(b, &subscribe.worker),
                credits: subscribe.credits,
                lease_ms: subscribe.lease_ms,
                fetch_variables,
            };
            let t = fb::SubscribeJobsRequest::create(b, &args);
            (fb::Body::SubscribeJobsRequest, t.as_union_value())
        }
        Request::JobCredits {
            subscription_request_id,
            credits,
        } => {
            let args = fb::JobCreditsRequestArgs {
                subscription_request_id: *subscription_request_id,
                credits: *credits,
            };
            let t = fb::JobCreditsRequest::create(b, &args);
            (fb::Body::JobCreditsRequest, t.as_union_value())
        }
        Request::CompleteJob { job_key, variables } => {
            let args = fb::CompleteJobRequestArgs {
                job_key: *job_key,
                variables: opt_str(b, variables),
                ad_hoc_result: None,
                task_listener_result: None,
            };
            let t = fb::CompleteJobRequest::create(b, &args);
            (fb::Body::CompleteJobRequest, t.as_union_value())
        }
        Request::CompleteAdHocJob {
            job_key,
            variables,
            activate_elements,
            completion_condition_fulfilled,
            cancel_remaining_instances,
        } => {
            let items = encode_activations(b, activate_elements);
            let result = fb::AdHocJobResult::create(
                b,
                &fb::AdHocJobResultArgs {
                    activate_elements: Some(items),
                    completion_condition_fulfilled: *completion_condition_fulfilled,
                    cancel_remaining_instances: *cancel_remaining_instances,
                },
            );
            let args = fb::CompleteJobRequestArgs {
                job_key: *job_key,
                variables: opt_str(b, variables),
                ad_hoc_result: Some(result),
                task_listener_result: None,
            };
            let t = fb::CompleteJobRequest::create(b, &args);
            (fb::Body::CompleteJobRequest, t.as_union_value())
        }
        Request::UpdateUserTask { job_key, changes } => {
            let changes = encode_corrections(b, &None, changes);
            let args = fb::UpdateUserTaskRequestArgs {
                job_key: *job_key,
                changes: Some(changes),
            };
            let t = fb::UpdateUserTaskRequest::create(b, &args);
            (fb::Body::UpdateUserTaskRequest, t.as_union_value())
        }
        Request::AssignUserTask { job_key, assignee } => {
            let args = fb::AssignUserTaskRequestArgs {
                job_key: *job_key,
                assignee: opt_str(b, assignee),
            };
            let t = fb::AssignUserTaskRequest::create(b, &args);
            (fb::Body::AssignUserTaskRequest, t.as_union_value())
        }
        Request::CompleteTaskListenerJob { job_key, decision } => {
            let result = encode_task_listener_decision(b, decision);
            let args = fb::CompleteJobRequestArgs {
                job_key: *job_key,
                variables: None,
                ad_hoc_result: None,
                task_listener_result: Some(result),
            };
            let t = fb::CompleteJobRequest::create(b, &args);
            (fb::Body::CompleteJobRequest, t.as_union_value())
        }
        Request::FailJob {
            job_key,
            retries,
            retry_backoff_ms,
            message,
        } => {
            let args = fb::FailJobRequestArgs {
                job_key: *job_key,
                retries: *retries,
                retry_backoff_ms: *retry_backoff_ms,
                message: opt_str(b, message),
            };
            let t = fb::FailJobRequest::create(b, &args);
            (fb::Body::FailJobRequest, t.as_union_value())
        }
        Request::ThrowError {
            job_key,
            error_code,
            message,
        } => {
            let args = fb::ThrowErrorRequestArgs {
                job_key: *job_key,
                error_code: Some(b.create_string(error_code)),
                message: opt_str(b, message),
            };
            let t = fb::ThrowErrorRequest::create(b, &args);
            (fb::Body::ThrowErrorRequest, t.as_union_value())
        }
        Request::UpdateJobRetries { job_key, retries } => {
            let args = fb::UpdateJobRetriesRequestArgs {
                job_key: *job_key,
                retries: *retries,
            };
            let t = fb::UpdateJobRetriesRequest::create(b, &args);
            (fb::Body::UpdateJobRetriesRequest, t.as_union_value())
        }
        Request::SetVariables {
            scope_key,
            variables,
            local,
        } => {
            let args = fb::SetVariablesRequestArgs {
                scope_key: *scope_key,
                variables: Some(b.create_string(variables)),
                local: *local,
            };
            let t = fb::SetVariablesRequest::create(b, &args);
            (fb::Body::SetVariablesRequest, t.as_union_value())
        }
        Request::ResolveIncident { incident_key } => {
            let args = fb::ResolveIncidentRequestArgs {
                incident_key: *incident_key,
            };
            let t = fb::ResolveIncidentRequest::create(b, &args);
            (fb::Body::ResolveIncidentRequest, t.as_union_value())
        }
        Request::ShardMail {
            from_shard,
            to_shard,
            mails,
        } => {
            let items: Vec<_> = mails
                .iter()
                .map(|(seq, mail)| {
                    let mail = Some(b.create_vector(mail));
                    fb::ShardMail::create(b, &fb::ShardMailArgs { seq: *seq, mail })
                })
                .collect();
            let mails = Some(b.create_vector(&items));
            let args = fb::ShardMailRequestArgs {
                from_shard: *from_shard,
                to_shard: *to_shard,
                mails,
            };
            let t = fb::ShardMailRequest::create(b, &args);
            (fb::Body::ShardMailRequest, t.as_union_value())
        }
    }
}

fn encode_topology<'a>(b: &mut Fbb, topology: &Topology) -> WIPOffset<fb::Topology<'a>> {
    let nodes: Vec<_> = topology
        .nodes
        .iter()
        .map(|node| {
            let host = Some(b.create_string(&node.host));
            fb::Node::create(
                b,
                &fb::NodeArgs {
                    id: node.id,
                    host,
                    base_port: node.base_port,
                    first_shard: node.first_shard,
                    shard_count: node.shard_count,
                },
            )
        })
        .collect();
    let nodes = Some(b.create_vector(&nodes));
    let slot_shards = Some(b.create_vector(topology.slots.as_slice()));
    fb::Topology::create(
        b,
        &fb::TopologyArgs {
            version: topology.version,
            nodes,
            slot_shards,
        },
    )
}

fn encode_created<'a>(
    b: &mut Fbb,
    created: &InstanceCreated,
) -> (u64, u64, Option<WIPOffset<&'a str>>, u32) {
    (
        created.process_instance_key,
        created.process_definition_key,
        Some(b.create_string(&created.bpmn_process_id)),
        created.version,
    )
}

fn encode_response(b: &mut Fbb, response: &Response) -> (fb::Body, Union) {
    match response {
        Response::Topology(topology) => {
            let t = encode_topology(b, topology);
            (fb::Body::Topology, t.as_union_value())
        }
        Response::Deployed(deployed) => {
            let processes: Vec<_> = deployed
                .processes
                .iter()
                .map(|process| {
                    let args = fb::DeployedProcessArgs {
                        bpmn_process_id: Some(b.create_string(&process.bpmn_process_id)),
                        version: process.version,
                        process_definition_key: process.process_definition_key,
                        resource_name: Some(b.create_string(&process.resource_name)),
                        duplicate: process.duplicate,
                    };
                    fb::DeployedProcess::create(b, &args)
                })
                .collect();
            let processes = Some(b.create_vector(&processes));
            let decisions: Vec<_> = deployed
                .decisions
                .iter()
                .map(|decision| {
                    let args = fb::DeployedDecisionArgs {
                        decision_id: Some(b.create_string(&decision.decision_id)),
                        name: Some(b.create_string(&decision.name)),
                        version: decision.version,
                        decision_key: decision.decision_key,
                        resource_name: Some(b.create_string(&decision.resource_name)),
                        duplicate: decision.duplicate,
                    };
                    fb::DeployedDecision::create(b, &args)
                })
                .collect();
            let decisions = Some(b.create_vector(&decisions));
            let args = fb::DeployResponseArgs {
                deployment_key: deployed.deployment_key,
                processes,
                decisions,
            };
            let t = fb::DeployResponse::create(b, &args);
            (fb::Body::DeployResponse, t.as_union_value())
        }
        Response::InstanceCreated(created) => {
            let (process_instance_key, process_definition_key, bpmn_process_id, version) =
                encode_created(b, created);
            let args = fb::InstanceCreatedArgs {
                process_instance_key,
                process_definition_key,
                bpmn_process_id,
                version,
            };
            let t = fb::InstanceCreated::create(b, &args);
            (fb::Body::InstanceCreated, t.as_union_value())
        }
        Response::InstanceResult(result) => {
            let (process_instance_key, process_definition_key, bpmn_process_id, version) =
                encode_created(b, &result.created);
            let args = fb::InstanceResultArgs {
                process_instance_key,
                process_definition_key,
                bpmn_process_id,
                version,
                variables: Some(b.create_string(&result.variables)),
            };
            let t = fb::InstanceResult::create(b, &args);
            (fb::Body::InstanceResult, t.as_union_value())
        }
        Response::Done { key, incident_key } => {
            let args = fb::DoneArgs {
                key: *key,
                incident_key: *incident_key,
            };
            let t = fb::Done::create(b, &args);
            (fb::Body::Done, t.as_union_value())
        }
        Response::Jobs(jobs) => {
            let items: Vec<_> = jobs.iter().map(|job| encode_job(b, job)).collect();
            let jobs = Some(b.create_vector(&items));
            let t = fb::Jobs::create(b, &fb::JobsArgs { jobs });
            (fb::Body::Jobs, t.as_union_value())
        }
        Response::InstancesStarted(started) => encode_started(b, started),
        Response::Error(error) => {
            let topology = error.topology.as_ref().map(|t| encode_topology(b, t));
            let args = fb::ErrorArgs {
                code: error.code.to_fb(),
                message: Some(b.create_string(&error.message)),
                retry_after_ms: error.retry_after_ms,
                topology,
            };
            let t = fb::Error::create(b, &args);
            (fb::Body::Error, t.as_union_value())
        }
    }
}

/// `InstancesStarted` (out of line: rare, and the encoder is on every answer's path).
#[cold]
#[inline(never)]
fn encode_started(
    b: &mut Fbb,
    started: &[StartedInstance],
) -> (fb::Body, WIPOffset<flatbuffers::UnionWIPOffset>) {
    let items: Vec<_> = started
        .iter()
        .map(|one| {
            let (process_instance_key, process_definition_key, bpmn_process_id, version) =
                encode_created(b, &one.created);
            let args = fb::StartedInstanceArgs {
                process_instance_key,
                process_definition_key,
                bpmn_process_id,
                version,
                start_event_id: Some(b.create_string(&one.start_event_id)),
            };
            fb::StartedInstance::create(b, &args)
        })
        .collect();
    let instances = Some(b.create_vector(&items));
    let t = fb::InstancesStarted::create(b, &fb::InstancesStartedArgs { instances });
    (fb::Body::InstancesStarted, t.as_union_value())
}

/// A list of names, or nothing for an empty one (an older reader sees no field).
fn names<'a>(
    b: &mut Fbb,
    names: &[String],
) -> Option<WIPOffset<Vector<'a, ForwardsUOffset<&'a str>>>> {
    if names.is_empty() {
        return None;
    }
    let items: Vec<_> = names.iter().map(|name| b.create_string(name)).collect();
    Some(b.create_vector(&items))
}

fn decode_names(names: Option<Vector<'_, ForwardsUOffset<&str>>>) -> Vec<String> {
    names
        .map(|names| names.iter().map(str::to_string).collect())
        .unwrap_or_default()
}

type Activations<'a> = WIPOffset<Vector<'a, ForwardsUOffset<fb::AdHocActivation<'a>>>>;

fn encode_activations<'a>(b: &mut Fbb, elements: &[(String, String)]) -> Activations<'a> {
    let items: Vec<_> = elements
        .iter()
        .map(|(element_id, variables)| {
            let args = fb::AdHocActivationArgs {
                element_id: Some(b.create_string(element_id)),
                variables: opt_str(b, variables),
            };
            fb::AdHocActivation::create(b, &args)
        })
        .collect();
    b.create_vector(&items)
}

fn decode_activations(
    items: Option<Vector<'_, ForwardsUOffset<fb::AdHocActivation<'_>>>>,
) -> Vec<(String, String)> {
    items
        .map(|items| {
            items
                .iter()
                .map(|item| (item.element_id().to_string(), text(item.variables())))
                .collect()
        })
        .unwrap_or_default()
}

fn encode_job<'a>(b: &mut Fbb, job: &Job) -> WIPOffset<fb::Job<'a>> {
    let headers: Vec<_> = job
        .custom_headers
        .iter()
        .map(|(key, value)| {
            let key = Some(b.create_string(key));
            let value = Some(b.create_string(value));
            fb::Header::create(b, &fb::HeaderArgs { key, value })
        })
        .collect();
    let custom_headers = Some(b.create_vector(&headers));
    let args = fb::JobArgs {
        key: job.key,
        job_type: Some(b.create_string(&job.job_type)),
        process_instance_key: job.process_instance_key,
        bpmn_process_id: Some(b.create_string(&job.bpmn_process_id)),
        element_id: Some(b.create_string(&job.element_id)),
        element_instance_key: job.element_instance_key,
        retries: job.retries,
        deadline_ms: job.deadline_ms,
        custom_headers,
        variables: Some(b.create_string(&job.variables)),
        kind: match job.listener {
            None => fb::JobKind::BPMN_ELEMENT,
            Some(JobListener::Start | JobListener::End) => fb::JobKind::EXECUTION_LISTENER,
            Some(
                JobListener::Creating
                | JobListener::Completing
                | JobListener::Assigning
                | JobListener::Updating,
            ) => fb::JobKind::TASK_LISTENER,
        },
        listener_event_type: match job.listener {
            None => fb::ListenerEventType::UNSPECIFIED,
            Some(JobListener::Start) => fb::ListenerEventType::START,
            Some(JobListener::End) => fb::ListenerEventType::END,
            Some(JobListener::Creating) => fb::ListenerEventType::CREATING,
            Some(JobListener::Completing) => fb::ListenerEventType::COMPLETING,
            Some(JobListener::Assigning) => fb::ListenerEventType::ASSIGNING,
            Some(JobListener::Updating) => fb::ListenerEventType::UPDATING,
        },
    };
    fb::Job::create(b, &args)
}

/// Most envelopes in one frame.
pub const ENVELOPES_PER_FRAME_MAX: usize = 65_536;

/// Verifies a frame, length prefix included, and copies its envelopes out.
///
/// Every byte is checked by the flatbuffers verifier before anything is read; a frame that
/// fails it, has the wrong identifier or version, or carries an envelope without a body is
/// refused as a whole. (The verifier checks alignment relative to the start of the
/// size-prefixed buffer, so the prefix must be passed too.)
pub fn decode_frame(bytes: &[u8]) -> Result<Vec<Envelope>, FrameError> {
    if bytes.len() < 12 || !fb::frame_size_prefixed_buffer_has_identifier(bytes) {
        return Err(FrameError::Malformed(
            "no flatbuffers Frame with the identifier RFW1".to_string(),
        ));
    }
    let options = VerifierOptions {
        max_depth: 16,
        max_tables: ENVELOPES_PER_FRAME_MAX * 4 + bytes.len() / 8,
        max_apparent_size: bytes.len().saturating_mul(2),
        ignore_missing_null_terminator: false,
    };
    let frame = fb::size_prefixed_root_as_frame_with_opts(&options, bytes)
        .map_err(|error| FrameError::Malformed(format!("verification failed: {error}")))?;
    if frame.version() != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion {
            version: frame.version(),
        });
    }
    let envelopes = frame.envelopes();
    if envelopes.is_empty() || envelopes.len() > ENVELOPES_PER_FRAME_MAX {
        return Err(FrameError::Malformed(format!(
            "a frame carries 1 to {ENVELOPES_PER_FRAME_MAX} envelopes, not {}",
            envelopes.len()
        )));
    }
    envelopes
        .iter()
        .map(|envelope| {
            let request_id = envelope.request_id();
            let message = decode_body(&envelope).map_err(|reason| {
                FrameError::Malformed(format!("request {request_id}: {reason}"))
            })?;
            Ok(Envelope {
                request_id,
                message,
            })
        })
        .collect()
}

fn text(value: Option<&str>) -> String {
    value.unwrap_or_default().to_string()
}

fn decode_body(envelope: &fb::Envelope<'_>) -> Result<Message, String> {
    use fb::Body as B;
    let missing = || format!("body of type {:?} is missing", envelope.body_type());
    let request = |request: Request| Ok(Message::Request(request));
    let response = |response: Response| Ok(Message::Response(response));
    match envelope.body_type() {
        B::TopologyRequest => {
            envelope.body_as_topology_request().ok_or_else(missing)?;
            request(Request::Topology)
        }
        B::DeployRequest => {
            let deploy = envelope.body_as_deploy_request().ok_or_else(missing)?;
            let resources = deploy
                .resources()
                .iter()
                .map(|resource| Resource {
                    name: resource.name().to_string(),
                    content: resource.content().bytes().to_vec(),
                })
                .collect();
            request(Request::Deploy { resources })
        }
        B::CreateInstanceRequest => {
            let create = envelope
                .body_as_create_instance_request()
                .ok_or_else(missing)?;
            request(Request::CreateInstance(CreateInstance {
                bpmn_process_id: text(create.bpmn_process_id()),
                process_definition_key: create.process_definition_key(),
                variables: text(create.variables()),
                business_key: text(create.business_key()),
                await_result: create.await_result(),
                await_timeout_ms: create.await_timeout_ms(),
            }))
        }
        B::CancelInstanceRequest => {
            let cancel = envelope
                .body_as_cancel_instance_request()
                .ok_or_else(missing)?;
            request(Request::CancelInstance {
                process_instance_key: cancel.process_instance_key(),
            })
        }
        B::PublishMessageRequest => {
            let publish = envelope
                .body_as_publish_message_request()
                .ok_or_else(missing)?;
            request(Request::PublishMessage(PublishMessage {
                name: publish.name().to_string(),
                correlation_key: publish.correlation_key().to_string(),
                variables: text(publish.variables()),
                ttl_ms: publish.ttl_ms(),
                message_id: text(publish.message_id()),
            }))
        }
        B::BroadcastSignalRequest => {
            let signal = envelope
                .body_as_broadcast_signal_request()
                .ok_or_else(missing)?;
            request(Request::BroadcastSignal {
                name: signal.name().to_string(),
                variables: text(signal.variables()),
            })
        }
        B::EvaluateConditionalRequest => {
            let evaluate = envelope
                .body_as_evaluate_conditional_request()
                .ok_or_else(missing)?;
            request(Request::EvaluateConditional {
                bpmn_process_id: text(evaluate.bpmn_process_id()),
                variables: text(evaluate.variables()),
            })
        }
        B::ActivateAdHocActivitiesRequest => {
            let activate = envelope
                .body_as_activate_ad_hoc_activities_request()
                .ok_or_else(missing)?;
            request(Request::ActivateAdHocActivities {
                ad_hoc_key: activate.ad_hoc_key(),
                elements: decode_activations(Some(activate.elements())),
                cancel_remaining_instances: activate.cancel_remaining_instances(),
            })
        }
        B::ActivateJobsRequest => {
            let activate = envelope
                .body_as_activate_jobs_request()
                .ok_or_else(missing)?;
            request(Request::ActivateJobs(ActivateJobs {
                job_type: activate.job_type().to_string(),
                worker: text(activate.worker()),
                max_jobs: activate.max_jobs(),
                lease_ms: activate.lease_ms(),
                long_poll_ms: activate.long_poll_ms(),
                fetch_variables: decode_names(activate.fetch_variables()),
            }))
        }
        B::SubscribeJobsRequest => {
            let subscribe = envelope
                .body_as_subscribe_jobs_request()
                .ok_or_else(missing)?;
            request(Request::SubscribeJobs(SubscribeJobs {
                job_type: subscribe.job_type().to_string(),
                worker: text(subscribe.worker()),
                credits: subscribe.credits(),
                lease_ms: subscribe.lease_ms(),
                fetch_variables: decode_names(subscribe.fetch_variables()),
            }))
        }
        B::JobCreditsRequest => {
            let credits = envelope.body_as_job_credits_request().ok_or_else(missing)?;
            request(Request::JobCredits {
                subscription_request_id: credits.subscription_request_id(),
                credits: credits.credits(),
            })
        }
        B::CompleteJobRequest => {
            let complete = envelope
                .body_as_complete_job_request()
                .ok_or_else(missing)?;
            if let Some(result) = complete.task_listener_result() {
                return request(Request::CompleteTaskListenerJob {
                    job_key: complete.job_key(),
                    decision: Box::new(decode_task_listener_decision(result)?),
                });
            }
            match complete.ad_hoc_result() {
                None => request(Request::CompleteJob {
                    job_key: complete.job_key(),
                    variables: text(complete.variables()),
                }),
                Some(result) => request(Request::CompleteAdHocJob {
                    job_key: complete.job_key(),
                    variables: text(complete.variables()),
                    activate_elements: decode_activations(result.activate_elements()),
                    completion_condition_fulfilled: result.completion_condition_fulfilled(),
                    cancel_remaining_instances: result.cancel_remaining_instances(),
                }),
            }
        }
        B::UpdateUserTaskRequest => {
            let update = envelope
                .body_as_update_user_task_request()
                .ok_or_else(missing)?;
            let (assignee, changes) = decode_corrections(update.changes())?;
            if assignee.is_some() {
                return Err("an update does not change the assignee: assign the task".into());
            }
            request(Request::UpdateUserTask {
                job_key: update.job_key(),
                changes: Box::new(changes),
            })
        }
        B::AssignUserTaskRequest => {
            let assign = envelope
                .body_as_assign_user_task_request()
                .ok_or_else(missing)?;
            request(Request::AssignUserTask {
                job_key: assign.job_key(),
                assignee: text(assign.assignee()),
            })
        }
        B::FailJobRequest => {
            let fail = envelope.body_as_fail_job_request().ok_or_else(missing)?;
            request(Request::FailJob {
                job_key: fail.job_key(),
                retries: fail.retries(),
                retry_backoff_ms: fail.retry_backoff_ms(),
                message: text(fail.message()),
            })
        }
        B::ThrowErrorRequest => {
            let throw = envelope.body_as_throw_error_request().ok_or_else(missing)?;
            request(Request::ThrowError {
                job_key: throw.job_key(),
                error_code: throw.error_code().to_string(),
                message: text(throw.message()),
            })
        }
        B::UpdateJobRetriesRequest => {
            let update = envelope
                .body_as_update_job_retries_request()
                .ok_or_else(missing)?;
            request(Request::UpdateJobRetries {
                job_key: update.job_key(),
                retries: update.retries(),
            })
        }
        B::SetVariablesRequest => {
            let set = envelope
                .body_as_set_variables_request()
                .ok_or_else(missing)?;
            request(Request::SetVariables {
                scope_key: set.scope_key(),
                variables: set.variables().to_string(),
                local: set.local(),
            })
        }
        B::ShardMailRequest => {
            let mail = envelope.body_as_shard_mail_request().ok_or_else(missing)?;
            request(Request::ShardMail {
                from_shard: mail.from_shard(),
                to_shard: mail.to_shard(),
                mails: mail
                    .mails()
                    .iter()
                    .map(|entry| (entry.seq(), entry.mail().bytes().to_vec()))
                    .collect(),
            })
        }
        B::ResolveIncidentRequest => {
            let resolve = envelope
                .body_as_resolve_incident_request()
                .ok_or_else(missing)?;
            request(Request::ResolveIncident {
                incident_key: resolve.incident_key(),
            })
        }
        B::Topology => {
            let topology = envelope.body_as_topology().ok_or_else(missing)?;
            response(Response::Topology(decode_topology(&topology)?))
        }
        B::DeployResponse => {
            let deployed = envelope.body_as_deploy_response().ok_or_else(missing)?;
            let processes = deployed
                .processes()
                .iter()
                .map(|process| DeployedProcess {
                    bpmn_process_id: process.bpmn_process_id().to_string(),
                    version: process.version(),
                    process_definition_key: process.process_definition_key(),
                    resource_name: process.resource_name().to_string(),
                    duplicate: process.duplicate(),
                })
                .collect();
            let decisions = deployed
                .decisions()
                .map(|decisions| {
                    decisions
                        .iter()
                        .map(|decision| DeployedDecision {
                            decision_id: decision.decision_id().to_string(),
                            name: decision.name().to_string(),
                            version: decision.version(),
                            decision_key: decision.decision_key(),
                            resource_name: decision.resource_name().to_string(),
                            duplicate: decision.duplicate(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            response(Response::Deployed(Deployed {
                deployment_key: deployed.deployment_key(),
                processes,
                decisions,
            }))
        }
        B::InstanceCreated => {
            let created = envelope.body_as_instance_created().ok_or_else(missing)?;
            response(Response::InstanceCreated(InstanceCreated {
                process_instance_key: created.process_instance_key(),
                process_definition_key: created.process_definition_key(),
                bpmn_process_id: created.bpmn_process_id().into(),
                version: created.version(),
            }))
        }
        B::InstanceResult => {
            let result = envelope.body_as_instance_result().ok_or_else(missing)?;
            response(Response::InstanceResult(InstanceResult {
                created: InstanceCreated {
                    process_instance_key: result.process_instance_key(),
                    process_definition_key: result.process_definition_key(),
                    bpmn_process_id: result.bpmn_process_id().into(),
                    version: result.version(),
                },
                variables: result.variables().to_string(),
            }))
        }
        B::Done => {
            let done = envelope.body_as_done().ok_or_else(missing)?;
            response(Response::Done {
                key: done.key(),
                incident_key: done.incident_key(),
            })
        }
        B::Jobs => {
            let jobs = envelope.body_as_jobs().ok_or_else(missing)?;
            response(Response::Jobs(decode_jobs(jobs.jobs())))
        }
        B::InstancesStarted => {
            let started = envelope.body_as_instances_started().ok_or_else(missing)?;
            response(Response::InstancesStarted(
                started
                    .instances()
                    .iter()
                    .map(|one| StartedInstance {
                        created: InstanceCreated {
                            process_instance_key: one.process_instance_key(),
                            process_definition_key: one.process_definition_key(),
                            bpmn_process_id: one.bpmn_process_id().into(),
                            version: one.version(),
                        },
                        start_event_id: one.start_event_id().to_string(),
                    })
                    .collect(),
            ))
        }
        B::Error => {
            let error = envelope.body_as_error().ok_or_else(missing)?;
            let topology = error
                .topology()
                .map(|topology| decode_topology(&topology))
                .transpose()?;
            response(Response::Error(WireError {
                code: ErrorCode::from_fb(error.code()),
                message: error.message().to_string(),
                retry_after_ms: error.retry_after_ms(),
                topology,
            }))
        }
        other => Err(format!("unknown body type {}", other.0)),
    }
}

fn decode_jobs(jobs: Vector<'_, ForwardsUOffset<fb::Job<'_>>>) -> Vec<Job> {
    jobs.iter()
        .map(|job| Job {
            key: job.key(),
            job_type: job.job_type().into(),
            process_instance_key: job.process_instance_key(),
            bpmn_process_id: job.bpmn_process_id().into(),
            element_id: job.element_id().into(),
            element_instance_key: job.element_instance_key(),
            retries: job.retries(),
            deadline_ms: job.deadline_ms(),
            custom_headers: job
                .custom_headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key().to_string(), h.value().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            variables: job.variables().to_string(),
            // An unknown kind (from a newer server) reads as the element's own work.
            listener: match (job.kind(), job.listener_event_type()) {
                (fb::JobKind::EXECUTION_LISTENER, fb::ListenerEventType::START) => {
                    Some(JobListener::Start)
                }
                (fb::JobKind::EXECUTION_LISTENER, fb::ListenerEventType::END) => {
                    Some(JobListener::End)
                }
                (fb::JobKind::TASK_LISTENER, fb::ListenerEventType::CREATING) => {
                    Some(JobListener::Creating)
                }
                (fb::JobKind::TASK_LISTENER, fb::ListenerEventType::COMPLETING) => {
                    Some(JobListener::Completing)
                }
                (fb::JobKind::TASK_LISTENER, fb::ListenerEventType::ASSIGNING) => {
                    Some(JobListener::Assigning)
                }
                (fb::JobKind::TASK_LISTENER, fb::ListenerEventType::UPDATING) => {
                    Some(JobListener::Updating)
                }
                _ => None,
            },
        })
        .collect()
}

fn decode_topology(topology: &fb::Topology<'_>) -> Result<Topology, String> {
    let nodes: Vec<Node> = topology
        .nodes()
        .iter()
        .map(|node| Node {
            id: node.id(),
            host: node.host().to_string(),
            base_port: node.base_port(),
            first_shard: node.first_shard(),
            shard_count: node.shard_count(),
        })
        .collect();
    let shards: usize = nodes.iter().map(|node| usize::from(node.shard_count)).sum();
    let slots = SlotTable::from_slots(topology.slot_shards().iter().collect(), shards)
        .map_err(|error| error.to_string())?;
    Topology::new(topology.version(), nodes, slots).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::LENGTH_PREFIX_BYTES;

    fn body(frame: &[u8]) -> &[u8] {
        assert_eq!(
            frame.len(),
            LENGTH_PREFIX_BYTES + u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize
        );
        frame
    }

    fn topology() -> Topology {
        Topology::uniform(vec![
            Node {
                id: 0,
                host: "127.0.0.1".into(),
                base_port: 26500,
                first_shard: 0,
                shard_count: 2,
            },
            Node {
                id: 1,
                host: "127.0.0.2".into(),
                base_port: 26500,
                first_shard: 2,
                shard_count: 1,
            },
        ])
        .expect("valid")
    }

    fn every_request() -> Vec<Request> {
        vec![
            Request::Topology,
            Request::Deploy {
                resources: vec![
                    Resource {
                        name: "a.bpmn".into(),
                        content: b"<xml/>".to_vec(),
                    },
                    Resource {
                        name: "b.bpmn".into(),
                        content: vec![0, 1, 2, 255],
                    },
                ],
            },
            Request::CreateInstance(CreateInstance {
                bpmn_process_id: "order".into(),
                process_definition_key: 5,
                variables: r#"{"a":1}"#.into(),
                business_key: "order-4711".into(),
                await_result: true,
                await_timeout_ms: 1500,
            }),
            Request::CreateInstance(CreateInstance::default()),
            Request::CancelInstance {
                process_instance_key: u64::MAX,
            },
            Request::PublishMessage(PublishMessage {
                name: "paid".into(),
                correlation_key: "Größe".into(),
                variables: "{}".into(),
                ttl_ms: 60_000,
                message_id: "m-1".into(),
            }),
            Request::BroadcastSignal {
                name: "stop".into(),
                variables: r#"{"reason":"maintenance"}"#.into(),
            },
            Request::BroadcastSignal {
                name: "stop".into(),
                variables: String::new(),
            },
            Request::EvaluateConditional {
                bpmn_process_id: "order".into(),
                variables: r#"{"amount":150}"#.into(),
            },
            Request::EvaluateConditional {
                bpmn_process_id: String::new(),
                variables: String::new(),
            },
            Request::ActivateAdHocActivities {
                ad_hoc_key: 7 << 48 | 12,
                elements: vec![
                    ("review".into(), r#"{"reviewer":"kim"}"#.into()),
                    ("ship".into(), String::new()),
                ],
                cancel_remaining_instances: true,
            },
            Request::ActivateAdHocActivities {
                ad_hoc_key: 1,
                elements: Vec::new(),
                cancel_remaining_instances: false,
            },
            Request::CompleteAdHocJob {
                job_key: 3 << 48 | 5,
                variables: r#"{"memory":[1]}"#.into(),
                activate_elements: vec![
                    ("search".into(), r#"{"q":"a"}"#.into()),
                    ("search".into(), String::new()),
                ],
                completion_condition_fulfilled: false,
                cancel_remaining_instances: true,
            },
            Request::CompleteAdHocJob {
                job_key: 9,
                variables: String::new(),
                activate_elements: Vec::new(),
                completion_condition_fulfilled: true,
                cancel_remaining_instances: false,
            },
            Request::CompleteTaskListenerJob {
                job_key: 10,
                decision: Box::default(),
            },
            Request::AssignUserTask {
                job_key: 13,
                assignee: "ana".into(),
            },
            Request::AssignUserTask {
                job_key: 14,
                assignee: String::new(),
            },
            Request::UpdateUserTask {
                job_key: 15,
                changes: Box::new(UserTaskChanges {
                    candidate_groups: Some(vec!["ops".into()]),
                    due_date: Some(String::new()),
                    priority: Some(100),
                    ..UserTaskChanges::default()
                }),
            },
            Request::CompleteTaskListenerJob {
                job_key: 11,
                decision: Box::new(TaskListenerDecision {
                    denied: true,
                    denied_reason: "the amount is missing".into(),
                    ..TaskListenerDecision::default()
                }),
            },
            Request::CompleteTaskListenerJob {
                job_key: 12,
                decision: Box::new(TaskListenerDecision {
                    assignee: Some(String::new()),
                    candidate_groups: Some(vec!["a".into(), "b".into()]),
                    candidate_users: Some(Vec::new()),
                    due_date: Some("2026-12-24T12:00:00Z".into()),
                    priority: Some(0),
                    ..TaskListenerDecision::default()
                }),
            },
            Request::ActivateJobs(ActivateJobs {
                job_type: "pay".into(),
                worker: "w".into(),
                max_jobs: 10,
                lease_ms: 1000,
                long_poll_ms: 200,
                fetch_variables: Vec::new(),
            }),
            Request::ActivateJobs(ActivateJobs {
                job_type: "pay".into(),
                worker: String::new(),
                max_jobs: 1,
                lease_ms: 0,
                long_poll_ms: 0,
                fetch_variables: vec!["amount".into(), "Größe".into()],
            }),
            Request::SubscribeJobs(SubscribeJobs {
                job_type: "pay".into(),
                worker: String::new(),
                credits: 32,
                lease_ms: 0,
                fetch_variables: Vec::new(),
            }),
            Request::SubscribeJobs(SubscribeJobs {
                job_type: "pay".into(),
                worker: "w".into(),
                credits: 1,
                lease_ms: 5,
                fetch_variables: vec!["orderId".into()],
            }),
            Request::JobCredits {
                subscription_request_id: 3,
                credits: 7,
            },
            Request::CompleteJob {
                job_key: 9,
                variables: r#"{"ok":true}"#.into(),
            },
            Request::FailJob {
                job_key: 9,
                retries: 2,
                retry_backoff_ms: 100,
                message: "boom".into(),
            },
            Request::ThrowError {
                job_key: 9,
                error_code: "E1".into(),
                message: String::new(),
            },
            Request::UpdateJobRetries {
                job_key: 9,
                retries: 3,
            },
            Request::SetVariables {
                scope_key: 4,
                variables: r#"{"x":[1,2]}"#.into(),
                local: true,
            },
            Request::ResolveIncident { incident_key: 11 },
            Request::ShardMail {
                from_shard: 1,
                to_shard: 2,
                mails: vec![(7, vec![1, 2, 3]), (8, Vec::new())],
            },
        ]
    }

    fn every_response() -> Vec<Response> {
        let created = InstanceCreated {
            process_instance_key: 1,
            process_definition_key: 2,
            bpmn_process_id: "order".into(),
            version: 3,
        };
        vec![
            Response::Topology(topology()),
            Response::Deployed(Deployed {
                deployment_key: 1,
                processes: vec![DeployedProcess {
                    bpmn_process_id: "order".into(),
                    version: 2,
                    process_definition_key: 3,
                    resource_name: "a.bpmn".into(),
                    duplicate: true,
                }],
                decisions: vec![DeployedDecision {
                    decision_id: "discount".into(),
                    name: "Discount".into(),
                    version: 1,
                    decision_key: 4,
                    resource_name: "d.dmn".into(),
                    duplicate: false,
                }],
            }),
            Response::InstanceCreated(created.clone()),
            Response::InstanceResult(InstanceResult {
                created: created.clone(),
                variables: r#"{"a":1}"#.into(),
            }),
            Response::Done {
                key: 5,
                incident_key: 6,
            },
            Response::Jobs(vec![Job {
                key: 1,
                job_type: "pay".into(),
                process_instance_key: 2,
                bpmn_process_id: "order".into(),
                element_id: "task".into(),
                element_instance_key: 3,
                retries: 3,
                deadline_ms: -5,
                custom_headers: vec![("h".into(), "v".into())],
                variables: "{}".into(),
                listener: None,
            }]),
            Response::Jobs(
                [
                    Some(JobListener::Start),
                    Some(JobListener::End),
                    Some(JobListener::Creating),
                    Some(JobListener::Completing),
                    Some(JobListener::Assigning),
                    Some(JobListener::Updating),
                ]
                .into_iter()
                .map(|listener| Job {
                    key: 7,
                    job_type: "audit".into(),
                    process_instance_key: 2,
                    bpmn_process_id: "order".into(),
                    element_id: "task".into(),
                    element_instance_key: 3,
                    retries: 1,
                    deadline_ms: 9,
                    custom_headers: Vec::new(),
                    variables: "{}".into(),
                    listener,
                })
                .collect(),
            ),
            Response::Jobs(Vec::new()),
            Response::InstancesStarted(vec![StartedInstance {
                created: created.clone(),
                start_event_id: "when-large".into(),
            }]),
            Response::InstancesStarted(Vec::new()),
            Response::Error(WireError {
                code: ErrorCode::Busy,
                message: "busy".into(),
                retry_after_ms: 10,
                topology: None,
            }),
            Response::Error(WireError {
                code: ErrorCode::WrongShard,
                message: "elsewhere".into(),
                retry_after_ms: 0,
                topology: Some(topology()),
            }),
        ]
    }

    #[test]
    fn every_message_round_trips_in_one_batch_frame() {
        let mut encoder = FrameEncoder::default();
        let mut expected = Vec::new();
        for (id, request) in every_request().into_iter().enumerate() {
            encoder.push_request(id as u64, &request);
            expected.push(Envelope {
                request_id: id as u64,
                message: Message::Request(request),
            });
        }
        for (id, response) in every_response().into_iter().enumerate() {
            encoder.push_response(1000 + id as u64, &response);
            expected.push(Envelope {
                request_id: 1000 + id as u64,
                message: Message::Response(response),
            });
        }
        let mut frame = Vec::new();
        encoder.finish_into(&mut frame);
        assert_eq!(decode_frame(body(&frame)).expect("valid"), expected);
        // The encoder is reusable: a second frame decodes on its own.
        encoder.push_request(1, &Request::Topology);
        let mut second = Vec::new();
        encoder.finish_into(&mut second);
        assert_eq!(decode_frame(&second).expect("valid").len(), 1);
    }

    #[test]
    fn every_error_code_has_a_distinct_name_and_number() {
        let mut names = std::collections::BTreeSet::new();
        let mut numbers = std::collections::BTreeSet::new();
        for (code, fb_code, name) in ErrorCode::ALL {
            assert!(names.insert(name));
            assert!(numbers.insert(fb_code.0));
            assert_eq!(code.name(), name);
            assert_eq!(ErrorCode::from_fb(fb_code), code);
            assert_eq!(code.to_fb(), fb_code);
            assert_eq!(fb_code.variant_name(), Some(name));
        }
        assert_eq!(numbers.len(), fb::ErrorCode::ENUM_VALUES.len());
        assert_eq!(ErrorCode::from_fb(fb::ErrorCode(999)), ErrorCode::Unknown);
    }

    /// Damaged frames are refused or decode to something; they never panic.
    #[test]
    fn damaged_frames_never_panic() {
        let mut encoder = FrameEncoder::default();
        for (id, request) in every_request().into_iter().enumerate() {
            encoder.push_request(id as u64, &request);
        }
        for response in every_response() {
            encoder.push_response(0, &response);
        }
        let mut frame = Vec::new();
        encoder.finish_into(&mut frame);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut refused, mut decoded) = (0, 0);
        for _ in 0..20_000 {
            let mut damaged = frame.clone();
            for _ in 0..=(next() % 4) {
                let at =
                    LENGTH_PREFIX_BYTES + (next() as usize) % (damaged.len() - LENGTH_PREFIX_BYTES);
                damaged[at] = next() as u8;
            }
            if next() % 8 == 0 {
                let keep =
                    LENGTH_PREFIX_BYTES + (next() as usize) % (damaged.len() - LENGTH_PREFIX_BYTES);
                damaged.truncate(keep);
                let length = (keep - LENGTH_PREFIX_BYTES) as u32;
                damaged[..4].copy_from_slice(&length.to_le_bytes());
            }
            match decode_frame(&damaged) {
                Ok(_) => decoded += 1,
                Err(_) => refused += 1,
            }
        }
        // Both outcomes happen: a flipped string byte still decodes, a broken offset does not.
        assert!(refused > 1000, "refused {refused}");
        assert!(decoded > 100, "decoded {decoded}");
    }

    #[test]
    fn a_wrong_version_is_named() {
        let mut builder = FlatBufferBuilder::new();
        let body = fb::TopologyRequest::create(&mut builder, &fb::TopologyRequestArgs {});
        let envelope = fb::Envelope::create(
            &mut builder,
            &fb::EnvelopeArgs {
                request_id: 1,
                body_type: fb::Body::TopologyRequest,
                body: Some(body.as_union_value()),
            },
        );
        let envelopes = builder.create_vector(&[envelope]);
        let frame = fb::Frame::create(
            &mut builder,
            &fb::FrameArgs {
                version: 2,
                envelopes: Some(envelopes),
            },
        );
        fb::finish_size_prefixed_frame_buffer(&mut builder, frame);
        let error = decode_frame(builder.finished_data()).expect_err("version 2");
        assert_eq!(error, FrameError::UnsupportedVersion { version: 2 });
        assert_eq!(error.code(), ErrorCode::UnsupportedVersion);
    }

    #[test]
    fn a_topology_request_round_trips() {
        let frame = request_frame(&[(7, Request::Topology)]);
        let envelopes = decode_frame(body(&frame)).expect("valid");
        assert_eq!(envelopes[0].request_id, 7);
        assert_eq!(envelopes[0].message, Message::Request(Request::Topology));
    }
}
