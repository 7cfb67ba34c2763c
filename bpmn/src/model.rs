//! The compiled form of one executable process, built for the engine's hot path.
//!
//! Elements are numbered densely ([`ElementIndex`]), the process itself is element 0, and
//! every relation (outgoing and incoming flows, the children of a scope, the boundary events of
//! an activity) is a slice into one shared array. Nothing on the hot path looks up a string.

use std::ops::Range;
use std::sync::Arc;

use crate::diagnostic::Position;
use crate::expression::{Expression, FeelExpression};
use crate::timer::TimerDefinition;

/// Dense index of an element within its [`ProcessDefinition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElementIndex(pub u32);

/// Dense index of a sequence flow within its [`ProcessDefinition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowIndex(pub u32);

/// A slice of one of the definition's index arrays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// One executable process, validated and compiled.
#[derive(Clone, Debug)]
pub struct ProcessDefinition {
    /// The BPMN process id (`<process id="...">`), which versions are kept under.
    pub bpmn_process_id: Arc<str>,
    /// The process name, if the model gives one.
    pub name: Option<String>,
    /// `zeebe:versionTag`, if the model gives one.
    pub version_tag: Option<String>,
    pub(crate) elements: Vec<Element>,
    pub(crate) flows: Vec<SequenceFlow>,
    pub(crate) flow_slots: Vec<FlowIndex>,
    pub(crate) element_slots: Vec<ElementIndex>,
    /// Whether any activity has a compensation boundary event.
    pub(crate) compensable: bool,
    /// Whether any element (or the process) has an execution listener.
    pub(crate) listening: bool,
}

impl ProcessDefinition {
    /// The process itself: the root scope.
    pub const ROOT: ElementIndex = ElementIndex(0);

    /// Every element, the process first.
    pub fn elements(&self) -> &[Element] {
        &self.elements
    }

    /// Every sequence flow.
    pub fn flows(&self) -> &[SequenceFlow] {
        &self.flows
    }

    /// One element.
    pub fn element(&self, index: ElementIndex) -> &Element {
        &self.elements[index.0 as usize]
    }

    /// One sequence flow.
    pub fn flow(&self, index: FlowIndex) -> &SequenceFlow {
        &self.flows[index.0 as usize]
    }

    /// The element with BPMN id `id`. A linear scan: for tools and tests, not the hot path.
    pub fn find(&self, id: &str) -> Option<ElementIndex> {
        let position = self
            .elements
            .iter()
            .position(|element| *element.id == *id)?;
        Some(ElementIndex(position as u32))
    }

    /// Sequence flows leaving `index`, in document order.
    pub fn outgoing(&self, index: ElementIndex) -> &[FlowIndex] {
        &self.flow_slots[self.element(index).outgoing.range()]
    }

    /// Sequence flows entering `index`, in document order.
    pub fn incoming(&self, index: ElementIndex) -> &[FlowIndex] {
        &self.flow_slots[self.element(index).incoming.range()]
    }

    /// The flow nodes directly inside a scope (process, subprocess, event subprocess).
    pub fn children(&self, index: ElementIndex) -> &[ElementIndex] {
        &self.element_slots[self.element(index).children.range()]
    }

    /// The start events directly inside a scope (not those of its event subprocesses).
    pub fn start_events(&self, index: ElementIndex) -> &[ElementIndex] {
        &self.element_slots[self.element(index).start_events.range()]
    }

    /// The event subprocesses directly inside a scope.
    pub fn event_subprocesses(&self, index: ElementIndex) -> &[ElementIndex] {
        &self.element_slots[self.element(index).event_subprocesses.range()]
    }

    /// The boundary events attached to an activity.
    pub fn boundary_events(&self, index: ElementIndex) -> &[ElementIndex] {
        &self.element_slots[self.element(index).boundary_events.range()]
    }

    /// The compensation handler of an activity: the handler its compensation boundary event
    /// is associated with, if it has one.
    pub fn compensation_handler(&self, index: ElementIndex) -> Option<ElementIndex> {
        self.boundary_events(index)
            .iter()
            .find_map(|boundary| match self.element(*boundary).kind {
                ElementKind::BoundaryEvent {
                    trigger: BoundaryTrigger::Compensation { handler },
                    ..
                } => handler,
                _ => None,
            })
    }

    /// Whether any activity of the process has a compensation boundary event: without one,
    /// nothing ever needs to be kept for compensation (one check per completion, on the
    /// hot path, instead of a look at each element's boundary events).
    pub fn has_compensable_activities(&self) -> bool {
        self.compensable
    }

    /// Whether any element of the process, or the process itself, has an execution
    /// listener: without one, no activation or completion needs to look (one check on the
    /// hot path).
    pub fn has_execution_listeners(&self) -> bool {
        self.listening
    }

    /// Whether compensating `index` can do anything: it has a compensation handler, or it is
    /// a subprocess with an activity inside (at any depth) that has one.
    pub fn is_compensable(&self, index: ElementIndex) -> bool {
        if self.compensation_handler(index).is_some() {
            return true;
        }
        matches!(
            self.element(index).kind,
            ElementKind::SubProcess
                | ElementKind::EventSubProcess
                | ElementKind::AdHocSubProcess(_)
        ) && self
            .children(index)
            .iter()
            .any(|child| self.is_compensable(*child))
    }

    /// The elements an ad-hoc subprocess can activate: its flow nodes without incoming
    /// sequence flows (not its boundary events' targets inside, event subprocesses or
    /// compensation handlers), in document order. Not for the hot path.
    pub fn activatable(&self, ad_hoc: ElementIndex) -> impl Iterator<Item = ElementIndex> + '_ {
        self.children(ad_hoc).iter().copied().filter(|child| {
            let element = self.element(*child);
            self.incoming(*child).is_empty()
                && !element.for_compensation
                && !matches!(
                    element.kind,
                    ElementKind::EventSubProcess | ElementKind::BoundaryEvent { .. }
                )
        })
    }

    /// How many elements of each kind, by BPMN element name, sorted by name.
    pub fn element_counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        let names = self.elements[1..]
            .iter()
            .map(|element| element.kind.bpmn_name())
            .chain(self.flows.iter().map(|_| "sequenceFlow"));
        for name in names {
            match counts.iter_mut().find(|(known, _)| *known == name) {
                Some((_, count)) => *count += 1,
                None => counts.push((name, 1)),
            }
        }
        counts.sort_unstable();
        counts
    }
}

/// A flow node (or the process itself).
#[derive(Clone, Debug)]
pub struct Element {
    /// The BPMN id (shared: every event about an instance of this element names it).
    pub id: Arc<str>,
    /// The name, if given.
    pub name: Option<String>,
    /// The text of its `<documentation>` elements, joined by newlines, if it has any.
    pub documentation: Option<String>,
    /// What the element is and does.
    pub kind: ElementKind,
    /// The scope it lives in (process, subprocess or event subprocess); `None` for the process.
    pub scope: Option<ElementIndex>,
    /// Where it starts in the source document.
    pub position: Position,
    /// `zeebe:ioMapping` inputs and outputs.
    pub io_mapping: IoMapping,
    /// Multi-instance characteristics, for activities.
    pub multi_instance: Option<MultiInstance>,
    /// `zeebe:properties`, in document order.
    pub properties: Vec<(String, String)>,
    /// For an element that an ad-hoc subprocess can activate: the inputs an AI agent fills,
    /// one for each `fromAi(...)` call in its input mappings, in order (see
    /// [`crate::from_ai`]). Empty for every other element.
    pub tool_parameters: Vec<crate::ToolParameter>,
    /// `isForCompensation="true"`: a compensation handler, started only by compensation.
    pub for_compensation: bool,
    /// `zeebe:executionListeners`: jobs that run, one after the other, when the element
    /// starts and when it ends.
    pub listeners: ExecutionListeners,
    pub(crate) outgoing: Span,
    pub(crate) incoming: Span,
    pub(crate) children: Span,
    pub(crate) start_events: Span,
    pub(crate) event_subprocesses: Span,
    pub(crate) boundary_events: Span,
}

/// A sequence flow.
#[derive(Clone, Debug)]
pub struct SequenceFlow {
    /// The BPMN id.
    pub id: String,
    /// Where it starts.
    pub source: ElementIndex,
    /// Where it leads.
    pub target: ElementIndex,
    /// The FEEL condition, on flows leaving exclusive and inclusive gateways.
    pub condition: Option<FeelExpression>,
    /// Where it starts in the source document.
    pub position: Position,
}

/// What an element is.
#[derive(Clone, Debug)]
pub enum ElementKind {
    /// The process: the root scope.
    Process,
    /// A start event of a process, subprocess or event subprocess.
    StartEvent {
        /// What starts it.
        trigger: StartTrigger,
        /// For event subprocess starts: whether it interrupts the enclosing scope.
        interrupting: bool,
    },
    /// An end event.
    EndEvent(EndResult),
    /// An intermediate catch event.
    IntermediateCatchEvent(CatchTrigger),
    /// An intermediate throw event.
    IntermediateThrowEvent(ThrowResult),
    /// A boundary event.
    BoundaryEvent {
        /// The activity it is attached to.
        attached_to: ElementIndex,
        /// `cancelActivity`: whether it interrupts the activity.
        interrupting: bool,
        /// What it catches.
        trigger: BoundaryTrigger,
    },
    /// A service task: a job for a worker.
    ServiceTask(JobDefinition),
    /// A send task: a job for a worker.
    SendTask(JobDefinition),
    /// A user task.
    UserTask(Box<UserTask>),
    /// A script task.
    ScriptTask(ScriptTask),
    /// A business rule task.
    BusinessRuleTask(BusinessRuleTask),
    /// A receive task: waits for a message.
    ReceiveTask(MessageRef),
    /// A manual task: passes through.
    ManualTask,
    /// A task with no type: passes through.
    UndefinedTask,
    /// An exclusive gateway.
    ExclusiveGateway {
        /// The default flow, taken when no condition holds.
        default: Option<FlowIndex>,
    },
    /// An inclusive gateway.
    InclusiveGateway {
        /// The default flow, taken when no condition holds.
        default: Option<FlowIndex>,
    },
    /// A parallel gateway.
    ParallelGateway,
    /// An event-based gateway.
    EventBasedGateway,
    /// An embedded subprocess.
    SubProcess,
    /// An ad-hoc subprocess: its inner elements run when activated, each in an inner
    /// instance of its own.
    AdHocSubProcess(Box<AdHoc>),
    /// An event subprocess.
    EventSubProcess,
    /// A call activity.
    CallActivity(CalledElement),
}

impl ElementKind {
    /// The BPMN element name of this kind (`serviceTask`, `exclusiveGateway`, ...).
    pub fn bpmn_name(&self) -> &'static str {
        match self {
            ElementKind::Process => "process",
            ElementKind::StartEvent { .. } => "startEvent",
            ElementKind::EndEvent(_) => "endEvent",
            ElementKind::IntermediateCatchEvent(_) => "intermediateCatchEvent",
            ElementKind::IntermediateThrowEvent(_) => "intermediateThrowEvent",
            ElementKind::BoundaryEvent { .. } => "boundaryEvent",
            ElementKind::ServiceTask(_) => "serviceTask",
            ElementKind::SendTask(_) => "sendTask",
            ElementKind::UserTask(_) => "userTask",
            ElementKind::ScriptTask(_) => "scriptTask",
            ElementKind::BusinessRuleTask(_) => "businessRuleTask",
            ElementKind::ReceiveTask(_) => "receiveTask",
            ElementKind::ManualTask => "manualTask",
            ElementKind::UndefinedTask => "task",
            ElementKind::ExclusiveGateway { .. } => "exclusiveGateway",
            ElementKind::InclusiveGateway { .. } => "inclusiveGateway",
            ElementKind::ParallelGateway => "parallelGateway",
            ElementKind::EventBasedGateway => "eventBasedGateway",
            ElementKind::SubProcess => "subProcess",
            ElementKind::AdHocSubProcess(_) => "adHocSubProcess",
            ElementKind::EventSubProcess => "eventSubProcess",
            ElementKind::CallActivity(_) => "callActivity",
        }
    }

    /// Whether this is an activity (can carry boundary events, mappings, multi-instance).
    pub fn is_activity(&self) -> bool {
        matches!(
            self,
            ElementKind::ServiceTask(_)
                | ElementKind::SendTask(_)
                | ElementKind::UserTask(_)
                | ElementKind::ScriptTask(_)
                | ElementKind::BusinessRuleTask(_)
                | ElementKind::ReceiveTask(_)
                | ElementKind::ManualTask
                | ElementKind::UndefinedTask
                | ElementKind::SubProcess
                | ElementKind::AdHocSubProcess(_)
                | ElementKind::CallActivity(_)
        )
    }
}

/// An ad-hoc subprocess (`<adHocSubProcess>` with `zeebe:adHoc`, Camunda 8.7 and 8.8).
#[derive(Clone, Debug)]
pub struct AdHoc {
    /// `zeebe:adHoc activeElementsCollection`: the ids of the elements to activate when the
    /// subprocess is entered (a list of strings).
    pub active_elements: Option<FeelExpression>,
    /// `<completionCondition>`: evaluated in the subprocess each time an inner instance
    /// completes; without one, the subprocess completes when no inner instance is left.
    pub completion_condition: Option<FeelExpression>,
    /// `cancelRemainingInstances` (default true): whether the inner instances still running
    /// are terminated when the completion condition holds, or waited for.
    pub cancel_remaining_instances: bool,
    /// `zeebe:adHoc outputCollection`: a local list variable of the subprocess that each
    /// completed inner instance appends its output element to, propagated on completion.
    pub output_collection: Option<String>,
    /// `zeebe:adHoc outputElement`: evaluated in each completed inner instance.
    pub output_element: Option<FeelExpression>,
    /// `zeebe:taskDefinition` on the subprocess (Camunda 8.8's job-worker implementation): a
    /// worker decides what to activate and when it is done, by job results.
    pub job: Option<JobDefinition>,
    /// `<id>#innerInstance`, the id its inner instances are recorded under (as in Camunda),
    /// made once here instead of for every event.
    pub inner_instance_id: Arc<str>,
}

/// What starts a start event.
#[derive(Clone, Debug)]
pub enum StartTrigger {
    /// A none start event.
    None,
    /// A message.
    Message(MessageRef),
    /// A timer.
    Timer(TimerDefinition),
    /// A signal.
    Signal(Expression),
    /// A BPMN error (event subprocesses only); `None` catches every error.
    Error(Option<Expression>),
    /// An escalation (event subprocesses only); `None` catches every escalation.
    Escalation(Option<Expression>),
    /// A condition on the variables (event subprocesses only; see [`Condition`]).
    Conditional(Condition),
}

/// A conditional event's condition (Camunda 8.9): the event fires when the condition is
/// `true` as its wait opens, or after a change of a variable it watches, in a scope it
/// sees. Anything but `true` (false, null, another value) does not fire it.
#[derive(Clone, Debug)]
pub struct Condition {
    /// The FEEL condition.
    pub expression: FeelExpression,
    /// The variables whose change re-evaluates it, sorted: those named by
    /// `zeebe:conditionalFilter variableNames`, else every name the condition mentions.
    pub variables: Vec<String>,
    /// Whether a change that creates a variable re-evaluates it (`variableEvents`; both
    /// when no filter says).
    pub on_create: bool,
    /// Whether a change of an existing variable re-evaluates it.
    pub on_update: bool,
}

impl Condition {
    /// Whether a change of `name` (`created`: it did not exist in its scope) re-evaluates
    /// the condition.
    pub fn watches(&self, name: &str, created: bool) -> bool {
        (if created {
            self.on_create
        } else {
            self.on_update
        }) && self
            .variables
            .binary_search_by(|watched| watched.as_str().cmp(name))
            .is_ok()
    }
}

/// What an intermediate catch event waits for.
#[derive(Clone, Debug)]
pub enum CatchTrigger {
    /// A message.
    Message(MessageRef),
    /// A timer.
    Timer(TimerDefinition),
    /// A signal.
    Signal(Expression),
    /// The target of link throw events with this name.
    Link(String),
    /// A condition on the variables.
    Conditional(Condition),
}

/// What a boundary event catches.
#[derive(Clone, Debug)]
pub enum BoundaryTrigger {
    /// A message.
    Message(MessageRef),
    /// A timer.
    Timer(TimerDefinition),
    /// A signal.
    Signal(Expression),
    /// A BPMN error; `None` catches every error.
    Error(Option<Expression>),
    /// An escalation; `None` catches every escalation.
    Escalation(Option<Expression>),
    /// Compensation: runs the handler when the activity is compensated.
    Compensation {
        /// The compensation handler (an activity with `isForCompensation="true"`).
        handler: Option<ElementIndex>,
    },
    /// A condition on the variables.
    Conditional(Condition),
}

/// What an end event does.
#[derive(Clone, Debug)]
pub enum EndResult {
    /// Nothing: the token ends.
    None,
    /// Terminates the enclosing scope.
    Terminate,
    /// Throws a BPMN error with this code.
    Error(Expression),
    /// Throws an escalation with this code.
    Escalation(Expression),
    /// Broadcasts a signal.
    Signal(Expression),
    /// A message end event: a job for a worker, as in Camunda 8.
    Message(JobDefinition),
    /// Throws compensation, for one activity or (with `None`) for the whole scope.
    Compensation(Option<ElementIndex>),
}

/// What an intermediate throw event does.
#[derive(Clone, Debug)]
pub enum ThrowResult {
    /// Nothing: passes through.
    None,
    /// Throws an escalation with this code.
    Escalation(Expression),
    /// Broadcasts a signal.
    Signal(Expression),
    /// A message throw event: a job for a worker.
    Message(JobDefinition),
    /// Jumps to the link catch event with this name in the same scope.
    Link {
        /// The link name.
        name: String,
        /// The catch event it jumps to.
        target: ElementIndex,
    },
    /// Throws compensation, for one activity or (with `None`) for the whole scope.
    Compensation(Option<ElementIndex>),
}

/// A message that a catch event, receive task or start event waits for.
#[derive(Clone, Debug)]
pub struct MessageRef {
    /// The message name (`<message name>`), static or FEEL.
    pub name: Expression,
    /// `zeebe:subscription correlationKey`; required everywhere but on process start events.
    pub correlation_key: Option<Expression>,
}

/// `zeebe:taskDefinition` with `zeebe:taskHeaders`.
#[derive(Clone, Debug)]
pub struct JobDefinition {
    /// The job type workers subscribe to.
    pub job_type: Expression,
    /// How many times a job may be tried (default `3`).
    pub retries: Expression,
    /// Static headers handed to the worker, in document order.
    pub headers: Vec<(String, String)>,
}

/// The execution listeners of an element or of the process (`zeebe:executionListeners`),
/// as Camunda 8.6 defines them. Each is a job for a worker, with the element's headers;
/// the element waits until it is completed.
///
/// - `start` listeners run after the input mappings and before the element opens its
///   event waits, evaluates its expressions or does its work. A listener job's variables
///   become local variables of the element.
/// - `end` listeners run after the output mappings, once the element's boundary events and
///   event subprocesses can no longer trigger, and before it is left. A listener job's
///   variables are propagated from the element's scope, like output mappings.
///
/// Start listeners are refused on start and boundary events, end listeners on gateways and
/// error end events, and both on compensation boundary events (as in Camunda 8). On a
/// multi-instance activity they run around each inner instance.
#[derive(Clone, Debug, Default)]
pub struct ExecutionListeners {
    /// `eventType="start"`, in document order.
    pub start: Vec<JobDefinition>,
    /// `eventType="end"`, in document order.
    pub end: Vec<JobDefinition>,
}

/// The highest priority of a Camunda user task (`zeebe:priorityDefinition`), as in Camunda 8.
pub const USER_TASK_PRIORITY_MAX: u8 = 100;
/// The priority of a Camunda user task without `zeebe:priorityDefinition`, as in Camunda 8.
pub const USER_TASK_PRIORITY_DEFAULT: u8 = 50;

/// A user task: a Camunda user task (`zeebe:userTask`) or, without it, a job of type
/// `io.camunda.zeebe:userTask` as in Camunda 8.
#[derive(Clone, Debug)]
pub struct UserTask {
    /// The job that represents the task.
    pub job: JobDefinition,
    /// Whether the model marks it as a Camunda user task (`zeebe:userTask`).
    pub camunda_user_task: bool,
    /// `zeebe:assignmentDefinition assignee`.
    pub assignee: Option<Expression>,
    /// `zeebe:assignmentDefinition candidateGroups`.
    pub candidate_groups: Option<Expression>,
    /// `zeebe:assignmentDefinition candidateUsers`.
    pub candidate_users: Option<Expression>,
    /// `zeebe:taskSchedule dueDate`: an ISO 8601 date-time with a zone (static ones are
    /// checked when the model is read).
    pub due_date: Option<Expression>,
    /// `zeebe:taskSchedule followUpDate`, like `due_date`.
    pub follow_up_date: Option<Expression>,
    /// `zeebe:priorityDefinition priority` of a Camunda user task: a whole number from 0
    /// to 100 (static ones are checked when the model is read); 50 when absent.
    pub priority: Option<Expression>,
    /// `zeebe:formDefinition formKey`.
    pub form_key: Option<Arc<str>>,
    /// `zeebe:taskListeners` (Camunda user tasks only).
    pub listeners: TaskListeners,
}

/// The task listeners of a Camunda user task (`zeebe:taskListeners`, Camunda 8.8): jobs that
/// run, one after the other in document order, when the task is being created, assigned,
/// updated and completed, and that the transition waits for. `canceling` listeners are
/// refused (not supported yet).
#[derive(Clone, Debug, Default)]
pub struct TaskListeners {
    /// `eventType="creating"` (or the older `create`).
    pub creating: Vec<JobDefinition>,
    /// `eventType="assigning"` (or the older `assignment`).
    pub assigning: Vec<JobDefinition>,
    /// `eventType="updating"` (or the older `update`).
    pub updating: Vec<JobDefinition>,
    /// `eventType="completing"` (or the older `complete`).
    pub completing: Vec<JobDefinition>,
}

impl UserTask {
    /// Whether the engine evaluates anything of the task's own when it creates its job
    /// (assignment, schedule, priority): then the job carries the results as headers.
    pub fn has_properties(&self) -> bool {
        self.camunda_user_task
            || self.assignee.is_some()
            || self.candidate_groups.is_some()
            || self.candidate_users.is_some()
            || self.due_date.is_some()
            || self.follow_up_date.is_some()
    }
}

/// A script task: a FEEL expression evaluated by the engine, or a job for a worker.
#[derive(Clone, Debug)]
pub enum ScriptTask {
    /// `zeebe:script expression resultVariable`.
    Expression {
        /// The expression.
        expression: FeelExpression,
        /// Where the result goes.
        result_variable: String,
    },
    /// `zeebe:taskDefinition`.
    Job(JobDefinition),
}

/// A business rule task: a DMN decision called by the engine, or a job for a worker.
#[derive(Clone, Debug)]
pub enum BusinessRuleTask {
    /// `zeebe:calledDecision decisionId resultVariable`.
    Decision {
        /// The decision id.
        decision_id: Expression,
        /// Where the result goes.
        result_variable: String,
    },
    /// `zeebe:taskDefinition`.
    Job(JobDefinition),
}

/// Which version of a called process a call activity starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The latest deployed version (the default).
    Latest,
    /// The version deployed together with the caller.
    Deployment,
    /// The version with this version tag.
    VersionTag(String),
}

/// `zeebe:calledElement`.
#[derive(Clone, Debug)]
pub struct CalledElement {
    /// The BPMN process id to start, static or FEEL.
    pub process_id: Expression,
    /// Whether every child variable is copied back (default `true`).
    pub propagate_all_child_variables: bool,
    /// Whether every parent variable is copied in (default `true`).
    pub propagate_all_parent_variables: bool,
    /// Which version to start.
    pub binding: Binding,
    /// The child's business key, from the extension property `ringflow:businessKey` (static
    /// or FEEL). The child is placed on the shard that key routes to, as a created instance
    /// with that business key would be; without it the child runs on the parent's shard.
    pub business_key: Option<Expression>,
}

/// The `zeebe:property` name of a call activity that gives its child's business key (see
/// [`CalledElement::business_key`]).
pub const CHILD_BUSINESS_KEY_PROPERTY: &str = "ringflow:businessKey";

/// `zeebe:ioMapping`.
#[derive(Clone, Debug, Default)]
pub struct IoMapping {
    /// Inputs: evaluated when the element is entered, creating local variables.
    pub inputs: Vec<Mapping>,
    /// Outputs: evaluated when the element completes, deciding what propagates.
    pub outputs: Vec<Mapping>,
}

/// One `zeebe:input` or `zeebe:output`.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// The value: FEEL, or a static value.
    pub source: Expression,
    /// The variable (or `a.b` path) it is written to.
    pub target: String,
}

/// Multi-instance characteristics with `zeebe:loopCharacteristics`.
#[derive(Clone, Debug)]
pub struct MultiInstance {
    /// Sequential (`isSequential="true"`) or parallel.
    pub sequential: bool,
    /// The collection that makes one instance per item.
    pub input_collection: FeelExpression,
    /// The local variable that holds the item.
    pub input_element: Option<String>,
    /// The variable that collects the outputs.
    pub output_collection: Option<String>,
    /// What each instance contributes to the output collection.
    pub output_element: Option<FeelExpression>,
    /// When it holds, the remaining instances are cancelled.
    pub completion_condition: Option<FeelExpression>,
}
