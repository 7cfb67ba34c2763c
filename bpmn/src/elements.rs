//! What each kind of flow node does: reads its event definition or extension elements into
//! its [`ElementKind`], and checks that the event definition is allowed where it stands.

use std::sync::Arc;

use crate::compile::{Compiler, EventDef, ProcessBuild};
use crate::diagnostic::DiagnosticKind as K;
use crate::dom::Ns;
use crate::expression::{Expression, FeelExpression};
use crate::model::*;
use crate::timer::TimerDefinition;

/// A placeholder for a link target until every link catch event is known.
pub(crate) const UNRESOLVED: ElementIndex = ElementIndex(u32::MAX);

const ACTIVITIES: &[&str] = &[
    "task",
    "serviceTask",
    "sendTask",
    "receiveTask",
    "userTask",
    "manualTask",
    "scriptTask",
    "businessRuleTask",
    "subProcess",
    "adHocSubProcess",
    "callActivity",
];

impl<'d> Compiler<'d> {
    pub(crate) fn fill_element(&mut self, build: &mut ProcessBuild<'d>, index: ElementIndex) {
        let slot = index.0 as usize;
        let node = build.drafts[slot].node;
        let local = build.drafts[slot].local;
        self.check_extensions(node);
        let kind = match local {
            "startEvent" => self.start_event(build, index, node),
            "endEvent" => self.end_event(build, node),
            "intermediateCatchEvent" => self.catch_event(node),
            "intermediateThrowEvent" => self.throw_event(build, node),
            "boundaryEvent" => self.boundary_event(build, index, node),
            "serviceTask" => self
                .required_job(node, "the service task")
                .map(ElementKind::ServiceTask),
            "sendTask" => self
                .required_job(node, "the send task")
                .map(ElementKind::SendTask),
            "userTask" => Some(self.user_task(node)),
            "scriptTask" => self.script_task(node),
            "businessRuleTask" => self.business_rule_task(node),
            "receiveTask" => self.receive_task(node),
            "manualTask" => Some(ElementKind::ManualTask),
            "task" => Some(ElementKind::UndefinedTask),
            "exclusiveGateway" => Some(ElementKind::ExclusiveGateway {
                default: self.default_flow(build, index, node),
            }),
            "inclusiveGateway" => Some(ElementKind::InclusiveGateway {
                default: self.default_flow(build, index, node),
            }),
            "parallelGateway" => Some(ElementKind::ParallelGateway),
            "eventBasedGateway" => Some(ElementKind::EventBasedGateway),
            "subProcess" => {
                if self.boolean(node, "triggeredByEvent", false) {
                    Some(ElementKind::EventSubProcess)
                } else {
                    Some(ElementKind::SubProcess)
                }
            }
            "adHocSubProcess" => self.ad_hoc(node),
            "callActivity" => self.call_activity(node),
            other => unreachable!("{other} is not in FLOW_NODES"),
        };
        let io_mapping = self.io_mapping(node);
        let properties = self.properties(node);
        let listeners = self.execution_listeners(node);
        if let Some(kind) = &kind {
            self.check_listeners(node, kind, &listeners);
        }
        let multi_instance = if ACTIVITIES.contains(&local) {
            self.loop_characteristics(node)
        } else {
            None
        };
        build.failed[slot] = kind.is_none();
        let element = &mut build.elements[slot];
        // A kind that failed to compile was reported; `UndefinedTask` keeps the graph checks
        // meaningful without adding errors of its own.
        element.kind = kind.unwrap_or_else(|| match local {
            // Its inner elements still run when activated: keep them reachable.
            "adHocSubProcess" => ElementKind::AdHocSubProcess(Box::new(AdHoc {
                active_elements: None,
                completion_condition: None,
                cancel_remaining_instances: true,
                output_collection: None,
                output_element: None,
                job: None,
                inner_instance_id: Arc::from(""),
            })),
            _ => ElementKind::UndefinedTask,
        });
        element.io_mapping = io_mapping;
        element.properties = properties;
        element.multi_instance = multi_instance;
        element.listeners = listeners;
    }

    /// Refuses execution listeners where Camunda 8 does not run them.
    fn check_listeners(&mut self, node: usize, kind: &ElementKind, listeners: &ExecutionListeners) {
        let refused = match kind {
            ElementKind::BoundaryEvent {
                trigger: BoundaryTrigger::Compensation { .. },
                ..
            } if !listeners.start.is_empty() || !listeners.end.is_empty() => {
                "execution listeners are not supported on compensation boundary events; put \
                 them on the compensation handler"
            }
            ElementKind::StartEvent { .. } if !listeners.start.is_empty() => {
                "start execution listeners are not supported on start events; put them on the \
                 process or subprocess"
            }
            ElementKind::BoundaryEvent { .. } if !listeners.start.is_empty() => {
                "start execution listeners are not supported on boundary events; put them on \
                 the activity the event is attached to"
            }
            ElementKind::ExclusiveGateway { .. }
            | ElementKind::InclusiveGateway { .. }
            | ElementKind::ParallelGateway
            | ElementKind::EventBasedGateway
                if !listeners.end.is_empty() =>
            {
                "end execution listeners are not supported on gateways; put start listeners on \
                 the elements after it"
            }
            ElementKind::EndEvent(EndResult::Error(_)) if !listeners.end.is_empty() => {
                "end execution listeners are not supported on error end events: the error \
                 ends the element; put them on the event that catches it"
            }
            _ => return,
        };
        self.report(K::UnsupportedElement, node, refused.to_string());
    }

    fn scope_is_event_subprocess(&self, build: &ProcessBuild<'d>, index: ElementIndex) -> bool {
        let scope = build.elements[index.0 as usize]
            .scope
            .expect("flow nodes have a scope");
        matches!(
            build.elements[scope.0 as usize].kind,
            ElementKind::EventSubProcess
        )
    }

    fn start_event(
        &mut self,
        build: &ProcessBuild<'d>,
        index: ElementIndex,
        node: usize,
    ) -> Option<ElementKind> {
        let in_event_subprocess = self.scope_is_event_subprocess(build, index);
        let scope = build.elements[index.0 as usize]
            .scope
            .expect("flow nodes have a scope");
        let in_process = scope == ProcessDefinition::ROOT;
        let interrupting = self.boolean(node, "isInterrupting", true);
        let definition = self.event_definition(node);
        let trigger = match definition {
            EventDef::None => StartTrigger::None,
            EventDef::Message(definition) => {
                let message = self.message_ref(node, definition)?;
                if in_process {
                    if message.name.is_feel() {
                        let text = "the message name of a message start event must be static: \
                                    it is subscribed to when the process is deployed";
                        self.report(K::InvalidExpression, node, text.to_string());
                    }
                } else if message.correlation_key.is_none() {
                    self.missing_correlation_key(node);
                }
                StartTrigger::Message(message)
            }
            EventDef::Timer(timer) => {
                let timer = timer?;
                if in_process && matches!(timer, TimerDefinition::Duration(_)) {
                    let text = "a timer start event of a process needs timeDate or timeCycle; a \
                                duration has no instant to count from";
                    self.report(K::InvalidTimer, node, text.to_string());
                }
                StartTrigger::Timer(timer)
            }
            EventDef::Signal(signal) => {
                StartTrigger::Signal(self.required_code(node, signal, "signal")?)
            }
            EventDef::Error(code) if in_event_subprocess => {
                if !interrupting {
                    let text = "an error start event always interrupts; remove \
                                isInterrupting=\"false\"";
                    self.report(K::InvalidEventDefinition, node, text.to_string());
                }
                StartTrigger::Error(code)
            }
            EventDef::Escalation(code) if in_event_subprocess => StartTrigger::Escalation(code),
            EventDef::Conditional(condition) if in_event_subprocess => {
                StartTrigger::Conditional(condition?)
            }
            EventDef::Conditional(condition) if in_process => {
                let condition = condition?;
                if !(condition.on_create && condition.on_update) {
                    let text = "variableEvents has no meaning on a conditional start event of \
                                a process: it is evaluated on request (EvaluateConditional), \
                                against the variables given, not on variable changes";
                    self.report(K::InvalidValue, node, text.to_string());
                }
                StartTrigger::Conditional(condition)
            }
            other => {
                return self.misplaced(
                    node,
                    other,
                    "a start event",
                    "none, message, timer, \
                signal or conditional (error and escalation too in event subprocesses)",
                );
            }
        };
        Some(ElementKind::StartEvent {
            trigger,
            interrupting,
        })
    }

    fn end_event(&mut self, build: &ProcessBuild<'d>, node: usize) -> Option<ElementKind> {
        let result = match self.event_definition(node) {
            EventDef::None => EndResult::None,
            EventDef::Terminate => EndResult::Terminate,
            EventDef::Error(code) => EndResult::Error(self.required_code(node, code, "error")?),
            EventDef::Escalation(code) => {
                EndResult::Escalation(self.required_code(node, code, "escalation")?)
            }
            EventDef::Signal(signal) => {
                EndResult::Signal(self.required_code(node, signal, "signal")?)
            }
            EventDef::Message(_) => {
                EndResult::Message(self.required_job(node, "a message end event")?)
            }
            EventDef::Compensate(activity) => {
                EndResult::Compensation(self.compensation_target(build, node, activity)?)
            }
            other => {
                return self.misplaced(
                    node,
                    other,
                    "an end event",
                    "none, terminate, error, \
                escalation, signal, message or compensation",
                );
            }
        };
        Some(ElementKind::EndEvent(result))
    }

    fn catch_event(&mut self, node: usize) -> Option<ElementKind> {
        let trigger = match self.event_definition(node) {
            EventDef::Message(definition) => {
                let message = self.message_ref(node, definition)?;
                if message.correlation_key.is_none() {
                    self.missing_correlation_key(node);
                }
                CatchTrigger::Message(message)
            }
            EventDef::Timer(timer) => {
                let timer = timer?;
                if matches!(timer, TimerDefinition::Cycle(_)) {
                    let text = "an intermediate timer catch event fires once: use timeDuration or \
                                timeDate, not timeCycle";
                    self.report(K::InvalidTimer, node, text.to_string());
                }
                CatchTrigger::Timer(timer)
            }
            EventDef::Signal(signal) => {
                CatchTrigger::Signal(self.required_code(node, signal, "signal")?)
            }
            EventDef::Link(Some(name)) => CatchTrigger::Link(name),
            EventDef::Link(None) => {
                self.report(
                    K::MissingAttribute,
                    node,
                    "the link event has no name".to_string(),
                );
                return None;
            }
            EventDef::Conditional(condition) => CatchTrigger::Conditional(condition?),
            other => {
                return self.misplaced(
                    node,
                    other,
                    "an intermediate catch event",
                    "message, timer, signal, conditional or link",
                );
            }
        };
        Some(ElementKind::IntermediateCatchEvent(trigger))
    }

    fn throw_event(&mut self, build: &ProcessBuild<'d>, node: usize) -> Option<ElementKind> {
        let result = match self.event_definition(node) {
            EventDef::None => ThrowResult::None,
            EventDef::Escalation(code) => {
                ThrowResult::Escalation(self.required_code(node, code, "escalation")?)
            }
            EventDef::Signal(signal) => {
                ThrowResult::Signal(self.required_code(node, signal, "signal")?)
            }
            EventDef::Message(_) => {
                ThrowResult::Message(self.required_job(node, "a message throw event")?)
            }
            EventDef::Link(Some(name)) => ThrowResult::Link {
                name,
                target: UNRESOLVED,
            },
            EventDef::Link(None) => {
                self.report(
                    K::MissingAttribute,
                    node,
                    "the link event has no name".to_string(),
                );
                return None;
            }
            EventDef::Compensate(activity) => {
                ThrowResult::Compensation(self.compensation_target(build, node, activity)?)
            }
            other => {
                return self.misplaced(
                    node,
                    other,
                    "an intermediate throw event",
                    "none, escalation, signal, message, link or compensation",
                );
            }
        };
        Some(ElementKind::IntermediateThrowEvent(result))
    }

    fn boundary_event(
        &mut self,
        build: &mut ProcessBuild<'d>,
        index: ElementIndex,
        node: usize,
    ) -> Option<ElementKind> {
        let interrupting = self.boolean(node, "cancelActivity", true);
        let attached_to = self.attached_to(build, index, node);
        let trigger = match self.event_definition(node) {
            EventDef::Message(definition) => {
                let message = self.message_ref(node, definition)?;
                if message.correlation_key.is_none() {
                    self.missing_correlation_key(node);
                }
                BoundaryTrigger::Message(message)
            }
            EventDef::Timer(timer) => {
                let timer = timer?;
                if interrupting && matches!(timer, TimerDefinition::Cycle(_)) {
                    let text = "a timer cycle is only allowed on a non-interrupting boundary \
                                event (cancelActivity=\"false\")";
                    self.report(K::InvalidTimer, node, text.to_string());
                }
                BoundaryTrigger::Timer(timer)
            }
            EventDef::Signal(signal) => {
                BoundaryTrigger::Signal(self.required_code(node, signal, "signal")?)
            }
            EventDef::Error(code) => {
                if !interrupting {
                    let text = "an error boundary event always interrupts; remove \
                                cancelActivity=\"false\"";
                    self.report(K::InvalidEventDefinition, node, text.to_string());
                }
                BoundaryTrigger::Error(code)
            }
            EventDef::Escalation(code) => BoundaryTrigger::Escalation(code),
            EventDef::Compensate(_) => {
                let handler = self.compensation_handler(build, node);
                BoundaryTrigger::Compensation { handler }
            }
            EventDef::Conditional(condition) => BoundaryTrigger::Conditional(condition?),
            other => {
                return self.misplaced(
                    node,
                    other,
                    "a boundary event",
                    "message, timer, signal, error, escalation, conditional or compensation",
                );
            }
        };
        let attached_to = attached_to?;
        build.boundaries[attached_to.0 as usize].push(index);
        Some(ElementKind::BoundaryEvent {
            attached_to,
            interrupting,
            trigger,
        })
    }

    fn attached_to(
        &mut self,
        build: &ProcessBuild<'d>,
        index: ElementIndex,
        node: usize,
    ) -> Option<ElementIndex> {
        let Some(reference) = self.doc.attr(node, Ns::None, "attachedToRef") else {
            let text = "the boundary event is attached to nothing: set attachedToRef";
            self.report(K::MissingAttribute, node, text.to_string());
            return None;
        };
        let Some(target) = Self::lookup(&build.element_ids, reference) else {
            if !build.unsupported_ids.contains(&reference) {
                let text = format!("attachedToRef `{reference}` names no activity");
                self.report(K::UnknownReference, node, text);
            }
            return None;
        };
        let target_draft = &build.drafts[target.0 as usize];
        let is_activity = ACTIVITIES.contains(&target_draft.local)
            && self
                .doc
                .attr(target_draft.node, Ns::None, "triggeredByEvent")
                != Some("true");
        let same_scope =
            build.elements[target.0 as usize].scope == build.elements[index.0 as usize].scope;
        if !is_activity || !same_scope {
            let text = format!(
                "attachedToRef `{reference}` must name an activity (task, subprocess or call \
                 activity) in the same scope"
            );
            self.report(K::InvalidReference, node, text);
            return None;
        }
        Some(target)
    }

    fn compensation_handler(
        &mut self,
        build: &ProcessBuild<'d>,
        node: usize,
    ) -> Option<ElementIndex> {
        let id = self.id(node).unwrap_or("");
        let handler = build.associations.iter().find(|(source, _)| source == id);
        let Some((_, target)) = handler else {
            let text = "the compensation boundary event has no handler: associate it with an \
                        activity that has isForCompensation=\"true\"";
            self.report(K::MissingAttribute, node, text.to_string());
            return None;
        };
        match Self::lookup(&build.element_ids, target) {
            Some(handler) if build.drafts[handler.0 as usize].for_compensation => Some(handler),
            _ => {
                let text = format!(
                    "the compensation handler `{target}` must be an activity with \
                     isForCompensation=\"true\""
                );
                self.report(K::InvalidReference, node, text);
                None
            }
        }
    }

    fn compensation_target(
        &mut self,
        build: &ProcessBuild<'d>,
        node: usize,
        activity: Option<String>,
    ) -> Option<Option<ElementIndex>> {
        let Some(activity) = activity else {
            return Some(None);
        };
        match Self::lookup(&build.element_ids, &activity) {
            Some(target) if ACTIVITIES.contains(&build.drafts[target.0 as usize].local) => {
                Some(Some(target))
            }
            Some(_) => {
                let text = format!("activityRef `{activity}` is not an activity");
                self.report(K::InvalidReference, node, text);
                None
            }
            None => {
                let text = format!("activityRef `{activity}` names no activity");
                self.report(K::UnknownReference, node, text);
                None
            }
        }
    }

    fn missing_correlation_key(&mut self, node: usize) {
        let text = "the message has no correlation key: add <zeebe:subscription \
                    correlationKey=\"=...\"/> to the message's extensionElements";
        self.report(K::MissingCorrelationKey, node, text.to_string());
    }

    /// An error, escalation or signal thrown must say which: a missing reference is reported.
    fn required_code(
        &mut self,
        node: usize,
        code: Option<Expression>,
        what: &str,
    ) -> Option<Expression> {
        if code.is_none() {
            let reference = match what {
                "error" => "errorRef",
                "signal" => "signalRef",
                _ => "escalationRef",
            };
            // A broken reference was reported already; only a missing one is reported here.
            let has_reference = self
                .doc
                .children(node)
                .any(|definition| self.doc.attr(definition, Ns::None, reference).is_some());
            if !has_reference {
                let text = format!("the {what} event has no {reference}: say which {what}");
                self.report(K::MissingAttribute, node, text);
            }
        }
        code
    }

    fn misplaced(
        &mut self,
        node: usize,
        definition: EventDef,
        what: &str,
        allowed: &str,
    ) -> Option<ElementKind> {
        let found = match definition {
            EventDef::Unsupported("") => return None,
            EventDef::Unsupported(why) => {
                self.report(
                    K::UnsupportedElement,
                    node,
                    format!("{why} are not supported"),
                );
                return None;
            }
            EventDef::Message(_) | EventDef::Timer(_) => {
                // Reported while reading, or a valid definition in the wrong place.
                "this event definition"
            }
            EventDef::None => "no event definition",
            EventDef::Error(_) => "an error event definition",
            EventDef::Signal(_) => "a signal event definition",
            EventDef::Escalation(_) => "an escalation event definition",
            EventDef::Compensate(_) => "a compensation event definition",
            EventDef::Link(_) => "a link event definition",
            EventDef::Terminate => "a terminate event definition",
            EventDef::Conditional(None) => return None,
            EventDef::Conditional(Some(_)) => "a conditional event definition",
        };
        let text = format!("{what} with {found} is not allowed; allowed are {allowed}");
        self.report(K::InvalidEventDefinition, node, text);
        None
    }

    fn user_task(&mut self, node: usize) -> ElementKind {
        let camunda_user_task = self.zeebe_child(node, "userTask").is_some();
        let job = match self.job_definition(node) {
            Some(Some(job)) => job,
            _ => JobDefinition {
                job_type: Expression::Static("io.camunda.zeebe:userTask".into()),
                retries: Expression::Static("3".into()),
                headers: self.task_headers(node),
            },
        };
        let assignment = self.zeebe_child(node, "assignmentDefinition");
        let mut read = |attribute: &str| {
            let raw = assignment.and_then(|a| self.doc.attr(a, Ns::None, attribute))?;
            let raw = raw.trim().to_string();
            if raw.is_empty() {
                return None;
            }
            self.expression(node, &raw, attribute)
        };
        let assignee = read("assignee");
        let candidate_groups = read("candidateGroups");
        let candidate_users = read("candidateUsers");
        let schedule = self.zeebe_child(node, "taskSchedule");
        let due_date = self.user_task_date(node, schedule, "dueDate");
        let follow_up_date = self.user_task_date(node, schedule, "followUpDate");
        let priority = if camunda_user_task {
            self.user_task_priority(node)
        } else {
            None
        };
        let form_key = self
            .zeebe_child(node, "formDefinition")
            .and_then(|form| self.doc.attr(form, Ns::None, "formKey"))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(Arc::from);
        ElementKind::UserTask(Box::new(UserTask {
            job,
            camunda_user_task,
            assignee,
            candidate_groups,
            candidate_users,
            due_date,
            follow_up_date,
            priority,
            form_key,
            listeners: self.task_listeners(node, camunda_user_task),
        }))
    }

    /// `zeebe:taskListeners` of a user task.
    fn task_listeners(&mut self, node: usize, camunda_user_task: bool) -> TaskListeners {
        let mut listeners = TaskListeners::default();
        let Some(list) = self.zeebe_child(node, "taskListeners") else {
            return listeners;
        };
        if !camunda_user_task {
            let message = "zeebe:taskListeners need a Camunda user task: add <zeebe:userTask/> \
                           to the task's extensionElements"
                .to_string();
            self.report(K::UnsupportedElement, node, message);
            return listeners;
        }
        let mut seen: Vec<(&'static str, String)> = Vec::new();
        for listener in self.zeebe_children(list, "taskListener") {
            let event = match self
                .doc
                .attr(listener, Ns::None, "eventType")
                .map(str::trim)
            {
                Some("creating" | "create") => "creating",
                Some("completing" | "complete") => "completing",
                Some("assigning" | "assignment") => "assigning",
                Some("updating" | "update") => "updating",
                Some(other @ ("canceling" | "cancel")) => {
                    let message = format!(
                        "a zeebe:taskListener with eventType=\"{other}\" is not supported yet \
                         (ringflow runs creating, assigning, updating and completing task \
                         listeners; a task's termination does not wait for listeners)"
                    );
                    self.report(K::UnsupportedElement, node, message);
                    continue;
                }
                Some(other) => {
                    let message = format!(
                        "a zeebe:taskListener has eventType=\"{other}\"; it must be creating, \
                         assigning, updating, completing or canceling"
                    );
                    self.report(K::InvalidValue, node, message);
                    continue;
                }
                None => {
                    let message =
                        "a zeebe:taskListener has no eventType (creating, assigning or completing)";
                    self.report(K::MissingAttribute, node, message.to_string());
                    continue;
                }
            };
            let Some(definition) = self.listener_job(node, listener, event, "task", &mut seen)
            else {
                continue;
            };
            match event {
                "creating" => listeners.creating.push(definition),
                "assigning" => listeners.assigning.push(definition),
                "updating" => listeners.updating.push(definition),
                _ => listeners.completing.push(definition),
            }
        }
        listeners
    }

    /// `zeebe:taskSchedule`'s `dueDate` or `followUpDate`: FEEL, or a date-time with a zone
    /// checked here.
    fn user_task_date(
        &mut self,
        node: usize,
        schedule: Option<usize>,
        attribute: &str,
    ) -> Option<Expression> {
        let raw = schedule.and_then(|s| self.doc.attr(s, Ns::None, attribute))?;
        let raw = raw.trim().to_string();
        if raw.is_empty() {
            return None;
        }
        let expression = self.expression(node, &raw, attribute)?;
        if let Some(Err(error)) = expression.as_static().map(crate::timer::parse_date_time) {
            let message = format!("zeebe:taskSchedule {attribute}: {error}");
            self.report(K::InvalidValue, node, message);
            return None;
        }
        Some(expression)
    }

    /// `zeebe:priorityDefinition priority`: FEEL, or a whole number from 0 to 100 checked
    /// here.
    fn user_task_priority(&mut self, node: usize) -> Option<Expression> {
        let definition = self.zeebe_child(node, "priorityDefinition")?;
        let raw = self
            .doc
            .attr(definition, Ns::None, "priority")?
            .trim()
            .to_string();
        if raw.is_empty() {
            return None;
        }
        let expression = self.expression(node, &raw, "priority")?;
        if let Some(text) = expression
            .as_static()
            .filter(|text| !matches!(text.trim().parse::<u8>(), Ok(0..=USER_TASK_PRIORITY_MAX)))
        {
            let message = format!(
                "zeebe:priorityDefinition priority `{text}` is not a whole number from 0 to \
                 {USER_TASK_PRIORITY_MAX}"
            );
            self.report(K::InvalidValue, node, message);
            return None;
        }
        Some(expression)
    }

    fn script_task(&mut self, node: usize) -> Option<ElementKind> {
        if let Some(script) = self.zeebe_child(node, "script") {
            let expression = self
                .doc
                .attr(script, Ns::None, "expression")
                .unwrap_or("")
                .to_string();
            let result = self
                .doc
                .attr(script, Ns::None, "resultVariable")
                .unwrap_or("")
                .trim();
            let result_variable = result.to_string();
            if result_variable.is_empty() {
                let text = "zeebe:script has no resultVariable";
                self.report(K::MissingAttribute, node, text.to_string());
            }
            let expression = self.feel(node, &expression, "script expression")?;
            if result_variable.is_empty() {
                return None;
            }
            return Some(ElementKind::ScriptTask(ScriptTask::Expression {
                expression,
                result_variable,
            }));
        }
        match self.job_definition(node) {
            Some(job) => job.map(|job| ElementKind::ScriptTask(ScriptTask::Job(job))),
            None => {
                let text = "the script task needs <zeebe:script expression=\"=...\" \
                            resultVariable=\"...\"/> or a <zeebe:taskDefinition type=\"...\"/> \
                            (inline scripts in other languages are not run)";
                self.report(K::MissingJobType, node, text.to_string());
                None
            }
        }
    }

    fn business_rule_task(&mut self, node: usize) -> Option<ElementKind> {
        if let Some(decision) = self.zeebe_child(node, "calledDecision") {
            let id = self
                .doc
                .attr(decision, Ns::None, "decisionId")
                .unwrap_or("")
                .trim();
            let result = self
                .doc
                .attr(decision, Ns::None, "resultVariable")
                .unwrap_or("")
                .trim();
            let (id, result) = (id.to_string(), result.to_string());
            if id.is_empty() || result.is_empty() {
                let text = "zeebe:calledDecision needs decisionId and resultVariable";
                self.report(K::MissingAttribute, node, text.to_string());
                return None;
            }
            let decision_id = self.expression(node, &id, "decision id")?;
            return Some(ElementKind::BusinessRuleTask(BusinessRuleTask::Decision {
                decision_id,
                result_variable: result,
            }));
        }
        match self.job_definition(node) {
            Some(job) => job.map(|job| ElementKind::BusinessRuleTask(BusinessRuleTask::Job(job))),
            None => {
                let text = "the business rule task needs <zeebe:calledDecision decisionId=\"...\" \
                            resultVariable=\"...\"/> or a <zeebe:taskDefinition type=\"...\"/>";
                self.report(K::MissingJobType, node, text.to_string());
                None
            }
        }
    }

    fn receive_task(&mut self, node: usize) -> Option<ElementKind> {
        let message = self.message_ref(node, node)?;
        if message.correlation_key.is_none() {
            self.missing_correlation_key(node);
        }
        Some(ElementKind::ReceiveTask(message))
    }

    fn call_activity(&mut self, node: usize) -> Option<ElementKind> {
        let Some(called) = self.zeebe_child(node, "calledElement") else {
            let text = "the call activity needs <zeebe:calledElement processId=\"...\"/> in its \
                        extensionElements";
            self.report(K::MissingAttribute, node, text.to_string());
            return None;
        };
        let process_id = self
            .doc
            .attr(called, Ns::None, "processId")
            .unwrap_or("")
            .trim();
        if process_id.is_empty() {
            let text = "zeebe:calledElement has no processId";
            self.report(K::MissingAttribute, node, text.to_string());
            return None;
        }
        let process_id = process_id.to_string();
        let process_id = self.expression(node, &process_id, "called process id")?;
        let child = self.boolean_of(node, called, "propagateAllChildVariables", true);
        let parent = self.boolean_of(node, called, "propagateAllParentVariables", true);
        let binding = match self
            .doc
            .attr(called, Ns::None, "bindingType")
            .map(str::trim)
        {
            None | Some("latest") => Binding::Latest,
            Some("deployment") => Binding::Deployment,
            Some("versionTag") => {
                match self.doc.attr(called, Ns::None, "versionTag").map(str::trim) {
                    Some(tag) if !tag.is_empty() => Binding::VersionTag(tag.to_string()),
                    _ => {
                        let text = "bindingType=\"versionTag\" needs a versionTag";
                        self.report(K::MissingAttribute, node, text.to_string());
                        return None;
                    }
                }
            }
            Some(other) => {
                let text =
                    format!("bindingType=\"{other}\" is not one of latest, deployment, versionTag");
                self.report(K::InvalidValue, node, text);
                return None;
            }
        };
        let business_key = match self
            .properties(node)
            .into_iter()
            .find(|(name, _)| name == CHILD_BUSINESS_KEY_PROPERTY)
        {
            None => None,
            Some((_, value)) if value.trim().is_empty() => {
                let text = format!("the property `{CHILD_BUSINESS_KEY_PROPERTY}` has no value");
                self.report(K::InvalidValue, node, text);
                return None;
            }
            Some((_, value)) => Some(self.expression(node, value.trim(), "child business key")?),
        };
        Some(ElementKind::CallActivity(CalledElement {
            process_id,
            propagate_all_child_variables: child,
            propagate_all_parent_variables: parent,
            binding,
            business_key,
        }))
    }

    fn default_flow(
        &mut self,
        build: &ProcessBuild<'d>,
        index: ElementIndex,
        node: usize,
    ) -> Option<FlowIndex> {
        let reference = self.doc.attr(node, Ns::None, "default")?;
        match Self::lookup(&build.flow_ids, reference) {
            Some(flow) if build.flows[flow.0 as usize].source == index => Some(flow),
            Some(_) => {
                let text = format!("the default flow `{reference}` does not leave this gateway");
                self.report(K::InvalidReference, node, text);
                None
            }
            None => {
                let text = format!("the default flow `{reference}` names no sequence flow");
                self.report(K::UnknownReference, node, text);
                None
            }
        }
    }

    fn loop_characteristics(&mut self, node: usize) -> Option<MultiInstance> {
        if let Some(standard) = self
            .doc
            .children(node)
            .find(|c| self.is_bpmn(*c, "standardLoopCharacteristics"))
        {
            let text = "standard loops are not supported; use multi-instance with \
                        zeebe:loopCharacteristics";
            self.report_at(K::UnsupportedElement, standard, node, text.to_string());
            return None;
        }
        let characteristics = self
            .doc
            .children(node)
            .find(|c| self.is_bpmn(*c, "multiInstanceLoopCharacteristics"))?;
        let sequential = self.boolean(characteristics, "isSequential", false);
        let Some(zeebe) = self.zeebe_child(characteristics, "loopCharacteristics") else {
            let text = "multi-instance needs <zeebe:loopCharacteristics inputCollection=\"=...\"/> \
                        (loopCardinality and camunda:collection are not read)";
            self.report(K::InvalidMultiInstance, node, text.to_string());
            return None;
        };
        let attribute = |name: &str| {
            self.doc
                .attr(zeebe, Ns::None, name)
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_string)
        };
        let input_collection = attribute("inputCollection");
        let input_element = attribute("inputElement");
        let output_collection = attribute("outputCollection");
        let output_element = attribute("outputElement");
        let Some(input_collection) = input_collection else {
            let text = "zeebe:loopCharacteristics has no inputCollection";
            self.report(K::InvalidMultiInstance, node, text.to_string());
            return None;
        };
        let input_collection = self.feel(node, &input_collection, "input collection")?;
        if output_collection.is_some() != output_element.is_some() {
            let text = "outputCollection and outputElement go together: set both or neither";
            self.report(K::InvalidMultiInstance, node, text.to_string());
            return None;
        }
        let output_element = match output_element {
            Some(raw) => Some(self.feel(node, &raw, "output element")?),
            None => None,
        };
        let completion_condition = self.completion_condition(characteristics)?;
        Some(MultiInstance {
            sequential,
            input_collection,
            input_element,
            output_collection,
            output_element,
            completion_condition,
        })
    }

    /// An ad-hoc subprocess: `zeebe:adHoc`, `<completionCondition>`,
    /// `cancelRemainingInstances`, and `zeebe:taskDefinition` for the job-worker
    /// implementation, which excludes the other three as in Camunda.
    fn ad_hoc(&mut self, node: usize) -> Option<ElementKind> {
        let job = match self.job_definition(node) {
            Some(Some(job)) => Some(job),
            Some(None) => return None,
            None => None,
        };
        let cancel_remaining_instances = self.boolean(node, "cancelRemainingInstances", true);
        let attribute = |name: &str, holder: Option<usize>| {
            holder
                .and_then(|holder| self.doc.attr(holder, Ns::None, name))
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_string)
        };
        let zeebe = self.zeebe_child(node, "adHoc");
        let active_elements = attribute("activeElementsCollection", zeebe);
        let output_collection = attribute("outputCollection", zeebe);
        let output_element = attribute("outputElement", zeebe);
        let active_elements = match active_elements {
            Some(raw) => Some(self.feel(node, &raw, "active elements collection")?),
            None => None,
        };
        if output_collection.is_some() != output_element.is_some() {
            let text = "zeebe:adHoc outputCollection and outputElement go together: set both \
                        or neither";
            self.report(K::MissingAttribute, node, text.to_string());
            return None;
        }
        let output_element = match output_element {
            Some(raw) => Some(self.feel(node, &raw, "output element")?),
            None => None,
        };
        let completion_condition = self.completion_condition(node)?;
        if job.is_some() {
            // As Camunda: with a worker, the worker decides all three.
            let conflicts = [
                (active_elements.is_some(), "activeElementsCollection"),
                (completion_condition.is_some(), "a completionCondition"),
                (
                    !cancel_remaining_instances,
                    "cancelRemainingInstances=\"false\"",
                ),
            ];
            let mut refused = false;
            for (_, what) in conflicts.iter().filter(|(set, _)| *set) {
                let text = format!(
                    "an ad-hoc subprocess with zeebe:taskDefinition (a job worker decides what \
                     to activate and when it is done) cannot have {what}"
                );
                self.report(K::InvalidValue, node, text);
                refused = true;
            }
            if refused {
                return None;
            }
        }
        Some(ElementKind::AdHocSubProcess(Box::new(AdHoc {
            active_elements,
            completion_condition,
            cancel_remaining_instances,
            output_collection,
            output_element,
            job,
            inner_instance_id: format!("{}#innerInstance", self.id(node).unwrap_or("")).into(),
        })))
    }

    /// `Some(None)` when there is no condition, `None` when it is broken (reported).
    fn completion_condition(&mut self, characteristics: usize) -> Option<Option<FeelExpression>> {
        let Some(condition) = self
            .doc
            .children(characteristics)
            .find(|c| self.is_bpmn(*c, "completionCondition"))
        else {
            return Some(None);
        };
        let text = self.doc.node(condition).text.clone().unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            return Some(None);
        }
        self.feel(characteristics, text, "completion condition")
            .map(Some)
    }
}
