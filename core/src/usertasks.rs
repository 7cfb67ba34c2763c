//! User tasks: their assignment, schedule and priority.
//!
//! A user task is a job (of type `io.camunda.zeebe:userTask` unless the model names one).
//! When the engine creates it, it evaluates the task's `zeebe:assignmentDefinition`
//! (`assignee`, `candidateGroups`, `candidateUsers`), `zeebe:taskSchedule` (`dueDate`,
//! `followUpDate`) and, for a Camunda user task (`zeebe:userTask`),
//! `zeebe:priorityDefinition` (`priority`, 50 when absent), in the task's scope after its
//! input mappings. The job keeps the results, and a worker reads them, with the
//! `zeebe:formDefinition formKey`, as headers named as in Camunda 8:
//!
//! | header | value |
//! |---|---|
//! | `io.camunda.zeebe:assignee` | the user's id |
//! | `io.camunda.zeebe:candidateGroups` | a JSON array of strings, e.g. `["sales","ops"]` |
//! | `io.camunda.zeebe:candidateUsers` | a JSON array of strings |
//! | `io.camunda.zeebe:dueDate` | an ISO 8601 date-time with a zone |
//! | `io.camunda.zeebe:followUpDate` | an ISO 8601 date-time with a zone |
//! | `io.camunda.zeebe:formKey` | the form key, as the model gives it |
//! | `io.camunda.zeebe:priority` | a whole number from 0 to 100 (Camunda user tasks) |
//!
//! A static candidate list is split at commas (`"sales, ops"` is two groups). A FEEL one
//! must give a list of strings. FEEL dates must give a date and time with a zone, or text
//! that is one. A FEEL value of null leaves the property out. Anything else is an incident
//! at the task's activation that names the property and what it gave; resolving it
//! evaluates them again.
//!
//! ## Task listeners
//!
//! A Camunda user task's `zeebe:taskListeners` are jobs that its transitions wait for, one
//! after the other (the `listeners` machinery, with `ListenerEvent::Creating` and
//! `ListenerEvent::Completing`):
//!
//! | event | when | what is held (`State::user_task_holds`) |
//! |---|---|---|
//! | creating | after the properties are evaluated, before the task's job is made | the properties; the job is made with them once the last listener is done |
//! | assigning | when the task is assigned (`AssignUserTask`), or made with an assignee (made unassigned, then assigned) | the properties with the new assignee and the task's job (same key); the job comes back, ready, once the last listener is done |
//! | updating | when the task is updated (`UpdateUserTask`) | the properties as the update leaves them and the task's job (same key); the job comes back, ready, once the last listener is done |
//! | completing | when the task's job is completed: the job goes | the properties and the completion's variables; set (the task completes) once the last listener is done |
//!
//! A listener's worker answers with a [`TaskListenerResult`] (`CompleteTaskListenerJob`): it
//! may correct the properties; a completing listener may deny the completion, which gives
//! the task a new job with its properties and the reason, and an assigning or updating
//! listener the change, which gives the task its job back as it was. A listener's job takes no
//! variables. Termination drops what is held with the element.
//!
//! A completion, assignment or update that waits for listeners is answered
//! [`Response::UserTaskTransitionHeld`]; the command that ends it (the last approval, a
//! denial, the task's termination) carries [`crate::Effect::UserTaskTransitionEnded`], with
//! which the shard answers the caller once that command is durable.

use std::sync::Arc;

use ringflow_bpmn::{
    ElementIndex, ElementKind, Expression, ProcessDefinition, USER_TASK_PRIORITY_DEFAULT,
    USER_TASK_PRIORITY_MAX, UserTask,
};
use serde_json::Value;

use crate::engine::{
    Ctx, Event, Keys, Outcome, Rejection, RejectionCode, Response, TransitionEnd, UserTaskCreated,
    Variables,
};
use crate::instance::{IncidentRetry, ListenerEvent, UserTaskHold, UserTaskProperties};
use crate::key::Key;
use crate::run::Run;
use crate::state::State;

/// The header that carries the assignee.
pub const ASSIGNEE_HEADER: &str = "io.camunda.zeebe:assignee";
/// The header that carries the candidate groups (a JSON array).
pub const CANDIDATE_GROUPS_HEADER: &str = "io.camunda.zeebe:candidateGroups";
/// The header that carries the candidate users (a JSON array).
pub const CANDIDATE_USERS_HEADER: &str = "io.camunda.zeebe:candidateUsers";
/// The header that carries the due date.
pub const DUE_DATE_HEADER: &str = "io.camunda.zeebe:dueDate";
/// The header that carries the follow-up date.
pub const FOLLOW_UP_DATE_HEADER: &str = "io.camunda.zeebe:followUpDate";
/// The header that carries the form key.
pub const FORM_KEY_HEADER: &str = "io.camunda.zeebe:formKey";
/// The header that carries a Camunda user task's priority.
pub const PRIORITY_HEADER: &str = "io.camunda.zeebe:priority";
/// The header that carries why a completing listener denied the task's last completion.
pub const DENIED_REASON_HEADER: &str = "ringflow:deniedReason";
/// The most candidate groups and users one task listener's corrections may name together.
pub const CANDIDATES_MAX: usize = 1_000;

/// What a task listener's worker decided (`CompleteTaskListenerJob`; a plain `CompleteJob`
/// of a listener's job is the default: go on, nothing corrected).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskListenerResult {
    /// Refuse the transition (completing listeners only): the task stays open.
    pub denied: bool,
    /// Why, for the person (kept with the task as `ringflow:deniedReason`).
    pub denied_reason: String,
    /// Properties to change (not with a denial).
    pub corrections: UserTaskCorrections,
}

/// Changes to a user task's properties from a task listener. `None` leaves a property as it
/// is; an empty text or list clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserTaskCorrections {
    /// The assignee.
    pub assignee: Option<String>,
    /// The candidate groups.
    pub candidate_groups: Option<Vec<String>>,
    /// The candidate users.
    pub candidate_users: Option<Vec<String>>,
    /// The due date: an ISO 8601 date-time with a zone.
    pub due_date: Option<String>,
    /// The follow-up date: an ISO 8601 date-time with a zone.
    pub follow_up_date: Option<String>,
    /// The priority, 0 to 100 (Camunda user tasks have one).
    pub priority: Option<u8>,
}

impl UserTaskCorrections {
    /// Whether nothing is corrected.
    pub fn is_empty(&self) -> bool {
        *self == UserTaskCorrections::default()
    }

    /// Checks the values before anything changes.
    fn check(&self) -> Result<(), String> {
        for (what, date) in [
            ("due date", &self.due_date),
            ("follow-up date", &self.follow_up_date),
        ] {
            if let Some(date) = date.as_deref().filter(|date| !date.is_empty()) {
                ringflow_bpmn::timer::parse_date_time(date)
                    .map_err(|error| format!("the corrected {what}: {error}"))?;
            }
        }
        if let Some(priority) = self.priority.filter(|p| *p > USER_TASK_PRIORITY_MAX) {
            return Err(format!(
                "the corrected priority {priority} is not from 0 to {USER_TASK_PRIORITY_MAX}"
            ));
        }
        let texts = [&self.assignee, &self.due_date, &self.follow_up_date]
            .into_iter()
            .flatten();
        let lists = [&self.candidate_groups, &self.candidate_users]
            .into_iter()
            .flatten()
            .flatten();
        for text in texts.chain(lists) {
            if text.len() > crate::limits::NAME_BYTES_MAX {
                return Err(format!(
                    "a corrected value is {} bytes, over NAME_BYTES_MAX ({})",
                    text.len(),
                    crate::limits::NAME_BYTES_MAX
                ));
            }
        }
        let items = self.candidate_groups.as_ref().map_or(0, Vec::len)
            + self.candidate_users.as_ref().map_or(0, Vec::len);
        if items > CANDIDATES_MAX {
            return Err(format!(
                "the corrections name {items} candidates, over CANDIDATES_MAX ({CANDIDATES_MAX})"
            ));
        }
        Ok(())
    }

    /// Applies the corrections to `properties`.
    fn apply(self, properties: &mut UserTaskProperties) {
        let text = |value: String| (!value.is_empty()).then_some(value);
        let list = |value: Vec<String>| (!value.is_empty()).then_some(value);
        if let Some(assignee) = self.assignee {
            properties.assignee = text(assignee);
        }
        if let Some(groups) = self.candidate_groups {
            properties.candidate_groups = list(groups);
        }
        if let Some(users) = self.candidate_users {
            properties.candidate_users = list(users);
        }
        if let Some(due_date) = self.due_date {
            properties.due_date = text(due_date);
        }
        if let Some(follow_up_date) = self.follow_up_date {
            properties.follow_up_date = text(follow_up_date);
        }
        if let Some(priority) = self.priority {
            properties.priority = Some(priority);
        }
    }
}

impl Run<'_> {
    /// Activates a user task: evaluates its properties, then creates its job. A property
    /// that cannot be evaluated is an incident, and no job is made.
    pub(crate) fn create_user_task(&mut self, key: Key, task: &UserTask) {
        if !task.has_properties() {
            return self.make_user_task_job(key, task, UserTaskProperties::default(), true);
        }
        let properties = match self.user_task_properties(key, task) {
            Ok(properties) => properties,
            Err(message) => return self.incident(key, message),
        };
        if task.listeners.creating.is_empty() {
            return self.make_user_task_job(key, task, properties, true);
        }
        let hold = UserTaskHold {
            properties,
            completion: None,
            job: None,
        };
        self.state.user_task_holds.insert(key, hold);
        let element = self.state.elements[&key].element;
        self.listen(key, element, ListenerEvent::Creating, 0);
    }

    /// Makes the job of the user task `key` with its properties (none kept for a task
    /// without any), and records the task (`Event::UserTaskCreated`).
    /// A `new` task with an assignee and assigning listeners is made unassigned, and then
    /// assigned through its listeners, as in Camunda 8.
    fn make_user_task_job(
        &mut self,
        key: Key,
        task: &UserTask,
        mut properties: UserTaskProperties,
        new: bool,
    ) {
        let assign_later = if !new || task.listeners.assigning.is_empty() {
            None
        } else {
            properties.assignee.take()
        };
        let Some(job) = self.create_job_for(key, &task.job, None) else {
            return;
        };
        let (definition, element) = self.user_task_model(key);
        let process_instance_key = self.state.elements[&key].process_instance_key;
        self.events
            .push(Event::UserTaskCreated(Box::new(UserTaskCreated {
                job_key: job,
                process_instance_key,
                element_instance_key: key,
                element_id: definition.element(element).id.clone(),
                properties: properties.clone(),
                form_key: task.form_key.clone(),
            })));
        if task.has_properties() {
            self.state
                .jobs
                .get_mut(&job)
                .expect("just created")
                .user_task = Some(Box::new(properties));
        }
        if assign_later.is_some() {
            self.begin_assignment(job, assign_later);
        }
    }

    /// Takes the user task's job `job_key` out of the jobs and runs the task's assigning
    /// listeners for `assignee`; the job comes back when they are done.
    fn begin_assignment(&mut self, job_key: Key, assignee: Option<String>) {
        let mut properties = self.state.jobs[&job_key]
            .user_task
            .as_deref()
            .cloned()
            .unwrap_or_default();
        properties.assignee = assignee;
        self.begin_change(job_key, properties, ListenerEvent::Assigning);
    }

    /// Takes the user task's job `job_key` out of the jobs and runs the task's `event`
    /// (assigning or updating) listeners for its `properties` after the change; the job
    /// comes back when they are done.
    fn begin_change(
        &mut self,
        job_key: Key,
        mut properties: UserTaskProperties,
        event: ListenerEvent,
    ) {
        let job = self.state.remove_job(job_key);
        let key = job.element_instance_key;
        self.state.elements.get_mut(&key).expect("live").job = None;
        properties.denied_reason = None;
        let hold = UserTaskHold {
            properties,
            completion: None,
            job: Some(Box::new(job)),
        };
        self.state.user_task_holds.insert(key, hold);
        let element = self.state.elements[&key].element;
        self.listen(key, element, event, 0);
    }

    /// The last assigning or updating listener is done: the job comes back, ready to be
    /// taken, with the properties as the listeners left them.
    pub(crate) fn after_change_listeners(&mut self, key: Key, event: ListenerEvent) {
        let hold = self
            .state
            .user_task_holds
            .remove(&key)
            .expect("a user task being changed is held");
        let mut job = *hold.job.expect("a user task being changed holds its job");
        let job_key = job.key;
        let changed = match event {
            ListenerEvent::Assigning => Event::UserTaskAssigned {
                key: job_key,
                assignee: hold.properties.assignee.clone(),
            },
            _ => Event::UserTaskUpdated {
                key: job_key,
                properties: Box::new(hold.properties.clone()),
            },
        };
        job.user_task = Some(Box::new(hold.properties));
        self.restore_user_task_job(job);
        self.events.push(changed);
        self.transition_ended(key, TransitionEnd::Done);
    }

    /// An assigning or updating listener denied the change: the job comes back as it was.
    fn deny_change(&mut self, key: Key, reason: String) {
        let hold = self
            .state
            .user_task_holds
            .remove(&key)
            .expect("a user task being changed is held");
        let job = *hold.job.expect("a user task being changed holds its job");
        self.restore_user_task_job(job);
        self.transition_ended(key, TransitionEnd::Denied(reason));
    }

    /// A held completion, assignment or update of the user task `key` ended: whoever asked
    /// for it is answered once this command is durable.
    pub(crate) fn transition_ended(&mut self, key: Key, end: TransitionEnd) {
        self.effects
            .push(crate::engine::Effect::UserTaskTransitionEnded {
                element_instance_key: key,
                end,
            });
    }

    /// Puts a held user task's job back (same key), ready to be taken.
    fn restore_user_task_job(&mut self, job: crate::instance::Job) {
        let (job_key, key, job_type) = (job.key, job.element_instance_key, job.job_type.clone());
        self.state.jobs.insert(job_key, job);
        self.state.make_ready(job_key);
        self.state.elements.get_mut(&key).expect("live").job = Some(job_key);
        let available = crate::engine::Effect::JobsAvailable { job_type };
        if !self.effects.contains(&available) {
            self.effects.push(available);
        }
    }

    /// The model of the user task `key`.
    fn user_task_model(&self, key: Key) -> (Arc<ProcessDefinition>, ElementIndex) {
        let element = self.state.elements[&key].element;
        (self.definition_of(key), element)
    }

    /// The last creating listener is done: the task's job is made, with the properties as
    /// the listeners corrected them.
    pub(crate) fn after_creating_listeners(&mut self, key: Key) {
        let hold = self
            .state
            .user_task_holds
            .remove(&key)
            .expect("a user task being created is held");
        let (definition, element) = self.user_task_model(key);
        let ElementKind::UserTask(task) = &definition.element(element).kind else {
            unreachable!("task listeners belong to user tasks");
        };
        self.make_user_task_job(key, task, hold.properties, true);
    }

    /// The last completing listener is done: the completion's variables are applied and the
    /// task completes. Variables that no longer fit their scope (it grew meanwhile) are an
    /// incident; resolving it runs the completing listeners again.
    pub(crate) fn after_completing_listeners(&mut self, key: Key) {
        let variables = self.state.user_task_holds[&key]
            .completion
            .clone()
            .expect("a user task being completed holds its variables");
        match crate::jobs::completion_documents(self.state, key, variables) {
            Ok(documents) => {
                self.state.user_task_holds.remove(&key);
                for update in documents {
                    self.merge_variables(update);
                }
                self.complete_later(key);
                self.transition_ended(key, TransitionEnd::Done);
            }
            Err(rejection) => {
                let message = format!("the user task's completion: {}", rejection.message);
                self.incident_with(key, message, IncidentRetry::Completing);
            }
        }
    }

    /// A completing listener denied the completion: the task gets a new job, with its
    /// properties as they were and the reason (`ringflow:deniedReason`).
    fn deny_completion(&mut self, key: Key, reason: String) {
        let hold = self
            .state
            .user_task_holds
            .remove(&key)
            .expect("a user task being completed is held");
        let (definition, element) = self.user_task_model(key);
        let ElementKind::UserTask(task) = &definition.element(element).kind else {
            unreachable!("task listeners belong to user tasks");
        };
        let mut properties = hold.properties;
        properties.denied_reason = Some(reason.clone());
        // The task as it was: assigned already, its assigning listeners do not run again.
        self.make_user_task_job(key, task, properties, false);
        self.transition_ended(key, TransitionEnd::Denied(reason));
    }

    fn user_task_properties(
        &self,
        key: Key,
        task: &UserTask,
    ) -> Result<UserTaskProperties, String> {
        let assignee = match self.user_task_value(key, &task.assignee, "assignee")? {
            None => None,
            Some((_, Value::String(text))) if !text.trim().is_empty() => Some(text),
            Some((_, Value::String(_))) => None,
            Some((expression, other)) => {
                return Err(format!(
                    "the user task's assignee `{expression}` gave {other}, not a string"
                ));
            }
        };
        let list = |expression: &Option<Expression>, what: &str| {
            Ok::<_, String>(match self.user_task_value(key, expression, what)? {
                None => None,
                Some((Expression::Static(text), _)) => Some(
                    text.split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(String::from)
                        .collect(),
                ),
                Some((expression, Value::Array(items))) => Some(
                    items
                        .into_iter()
                        .map(|item| match item {
                            Value::String(text) => Ok(text),
                            other => Err(format!(
                                "the user task's {what} `{expression}` gave a list holding \
                                 {other}, not a list of strings"
                            )),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some((expression, other)) => {
                    return Err(format!(
                        "the user task's {what} `{expression}` gave {other}, not a list of \
                         strings"
                    ));
                }
            })
        };
        let candidate_groups = list(&task.candidate_groups, "candidate groups")?;
        let candidate_users = list(&task.candidate_users, "candidate users")?;
        let date = |expression: &Option<Expression>, what: &str| {
            Ok::<_, String>(match self.user_task_value(key, expression, what)? {
                None => None,
                Some((expression, Value::String(text))) => {
                    let text = text.trim().to_string();
                    if let Err(error) = ringflow_bpmn::timer::parse_date_time(&text) {
                        return Err(format!("the user task's {what} `{expression}`: {error}"));
                    }
                    Some(text)
                }
                Some((expression, other)) => {
                    return Err(format!(
                        "the user task's {what} `{expression}` gave {other}, not a date and \
                         time"
                    ));
                }
            })
        };
        let due_date = date(&task.due_date, "due date")?;
        let follow_up_date = date(&task.follow_up_date, "follow-up date")?;
        let priority = if task.camunda_user_task {
            match self.user_task_value(key, &task.priority, "priority")? {
                None => Some(USER_TASK_PRIORITY_DEFAULT),
                Some((expression, value)) => {
                    let number = match &value {
                        Value::Number(number) => number.as_u64(),
                        Value::String(text) => text.trim().parse::<u64>().ok(),
                        _ => None,
                    };
                    match number {
                        Some(number) if number <= u64::from(USER_TASK_PRIORITY_MAX) => {
                            Some(number as u8)
                        }
                        _ => {
                            return Err(format!(
                                "the user task's priority `{expression}` gave {value}, not a \
                                 whole number from 0 to {USER_TASK_PRIORITY_MAX}"
                            ));
                        }
                    }
                }
            }
        } else {
            None
        };
        Ok(UserTaskProperties {
            assignee,
            candidate_groups,
            candidate_users,
            due_date,
            follow_up_date,
            priority,
            denied_reason: None,
        })
    }
}

impl Run<'_> {
    /// A property's value: `None` without the property or when FEEL gave null.
    fn user_task_value<'e>(
        &self,
        key: Key,
        expression: &'e Option<Expression>,
        what: &str,
    ) -> Result<Option<(&'e Expression, Value)>, String> {
        match expression {
            None => Ok(None),
            Some(expression) => match self.value_at(key, expression) {
                Ok(Value::Null) => Ok(None),
                Ok(value) => Ok(Some((expression, value))),
                Err(error) => Err(format!("the user task's {what}: {error}")),
            },
        }
    }
}

/// Appends a user task's headers to the model's own (`zeebe:taskHeaders`): its evaluated
/// properties, then its form key.
pub(crate) fn add_headers(
    headers: &mut Vec<(String, String)>,
    properties: Option<&UserTaskProperties>,
    task: &UserTask,
) {
    let mut add = |name: &str, value: String| headers.push((name.to_string(), value));
    if let Some(properties) = properties {
        let list = |items: &Vec<String>| serde_json::to_string(items).expect("strings serialize");
        if let Some(assignee) = &properties.assignee {
            add(ASSIGNEE_HEADER, assignee.clone());
        }
        if let Some(groups) = &properties.candidate_groups {
            add(CANDIDATE_GROUPS_HEADER, list(groups));
        }
        if let Some(users) = &properties.candidate_users {
            add(CANDIDATE_USERS_HEADER, list(users));
        }
        if let Some(due_date) = &properties.due_date {
            add(DUE_DATE_HEADER, due_date.clone());
        }
        if let Some(follow_up_date) = &properties.follow_up_date {
            add(FOLLOW_UP_DATE_HEADER, follow_up_date.clone());
        }
        if let Some(priority) = properties.priority {
            add(PRIORITY_HEADER, priority.to_string());
        }
        if let Some(reason) = &properties.denied_reason {
            add(DENIED_REASON_HEADER, reason.clone());
        }
    }
    if let Some(form_key) = &task.form_key {
        add(FORM_KEY_HEADER, form_key.to_string());
    }
}

/// `CompleteJob` of a user task's job or of one of its task listeners' jobs. A user task with
/// completing listeners holds the completion (the job goes, with its variables kept) and
/// runs them; it completes when the last is done. A task listener's job takes no variables.
pub(crate) fn complete(
    state: &mut State,
    key: Key,
    variables: Variables,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let job = &state.jobs[&key];
    let element_instance_key = job.element_instance_key;
    if job.listener.is_some() {
        if !variables.is_empty() {
            return Err(Rejection::new(
                RejectionCode::InvalidArgument,
                format!(
                    "job {key} is a task listener's job: it takes no variables (correct the \
                     task's properties instead)"
                ),
            ));
        }
        return complete_listener_job(state, key, TaskListenerResult::default(), ctx);
    }
    let element = &state.elements[&element_instance_key];
    let instance = &state.instances[&element.process_instance_key];
    let definition = &state.processes[&instance.process_definition_key].definition;
    let has_completing = matches!(
        &definition.element(element.element).kind,
        ElementKind::UserTask(task) if !task.listeners.completing.is_empty()
    );
    if !has_completing {
        return crate::jobs::complete_plain(state, key, element_instance_key, None, variables, ctx);
    }
    // Checked now, so that a completion that cannot be stored is refused to its sender.
    crate::jobs::completion_documents(state, element_instance_key, variables.clone())?;
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    let job = run.state.remove_job(key);
    run.state
        .elements
        .get_mut(&element_instance_key)
        .expect("a job's element is live")
        .job = None;
    let hold = UserTaskHold {
        properties: job
            .user_task
            .map(|properties| *properties)
            .unwrap_or_default(),
        completion: Some(variables),
        job: None,
    };
    run.state.user_task_holds.insert(element_instance_key, hold);
    let element = run.state.elements[&element_instance_key].element;
    run.listen(element_instance_key, element, ListenerEvent::Completing, 0);
    run.run();
    Ok(run.outcome(Response::UserTaskTransitionHeld {
        key,
        element_instance_key,
        event: ListenerEvent::Completing,
        seq: 0,
    }))
}

/// `CompleteTaskListenerJob`: a task listener's worker is done, with what it decided.
pub(crate) fn complete_listener_job(
    state: &mut State,
    key: Key,
    result: TaskListenerResult,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let invalid = |message: String| Err(Rejection::new(RejectionCode::InvalidArgument, message));
    let Some(job) = state.jobs.get(&key) else {
        return Err(Rejection::new(
            RejectionCode::JobNotFound,
            format!("job {key} does not exist or was already completed"),
        ));
    };
    let Some(listener) = job
        .listener
        .filter(|listener| listener.event.is_task_listener())
    else {
        return invalid(format!(
            "job {key} is not a task listener's job: complete it without a result"
        ));
    };
    if matches!(
        job.state,
        crate::instance::JobState::Failed | crate::instance::JobState::Backoff { .. }
    ) {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!("job {key} failed and waits for a retry; it cannot be completed now"),
        ));
    }
    if result.denied && listener.event == ListenerEvent::Creating {
        return invalid(format!(
            "job {key} is a creating listener's job: only completing, assigning and updating \
             listeners can deny"
        ));
    }
    if result.denied && !result.corrections.is_empty() {
        return invalid(format!(
            "job {key}: a denial takes no corrections (the task keeps its properties)"
        ));
    }
    if !result.denied && !result.denied_reason.is_empty() {
        return invalid(format!("job {key}: a denied reason without a denial"));
    }
    if result.denied_reason.len() > crate::limits::MESSAGE_BYTES_MAX {
        return invalid(format!(
            "the denied reason is {} bytes, over MESSAGE_BYTES_MAX ({})",
            result.denied_reason.len(),
            crate::limits::MESSAGE_BYTES_MAX
        ));
    }
    if let Err(message) = result.corrections.check() {
        return invalid(format!("job {key}: {message}"));
    }
    let element_instance_key = job.element_instance_key;
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    run.state.remove_job(key);
    run.state
        .elements
        .get_mut(&element_instance_key)
        .expect("a job's element is live")
        .job = None;
    if result.denied
        && matches!(
            listener.event,
            ListenerEvent::Assigning | ListenerEvent::Updating
        )
    {
        run.deny_change(element_instance_key, result.denied_reason);
    } else if result.denied {
        run.deny_completion(element_instance_key, result.denied_reason);
    } else {
        let hold = run
            .state
            .user_task_holds
            .get_mut(&element_instance_key)
            .expect("a task listener's task is held");
        result.corrections.apply(&mut hold.properties);
        run.listener_done(element_instance_key, listener);
    }
    run.run();
    Ok(run.outcome(Response::JobCompleted { key }))
}

/// The task listeners of the user task whose own job is `key`; refused when there is no
/// such job.
fn user_task_of_job(state: &State, key: Key) -> Result<ringflow_bpmn::TaskListeners, Rejection> {
    let Some(job) = state.jobs.get(&key) else {
        if held_job(state, key) {
            return Err(held_job_rejection(key));
        }
        return Err(Rejection::new(
            RejectionCode::JobNotFound,
            format!("job {key} does not exist or was completed: no open user task has it"),
        ));
    };
    let element = &state.elements[&job.element_instance_key];
    let instance = &state.instances[&element.process_instance_key];
    let definition = &state.processes[&instance.process_definition_key].definition;
    if job.state == crate::instance::JobState::Failed {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!(
                "job {key} failed with no retries left: resolve its incident before the user \
                 task is assigned or updated"
            ),
        ));
    }
    match &definition.element(element.element).kind {
        ElementKind::UserTask(task) if job.listener.is_none() => Ok(task.listeners.clone()),
        _ => Err(Rejection::new(
            RejectionCode::InvalidArgument,
            format!("job {key} is not a user task's job"),
        )),
    }
}

/// `UpdateUserTask`: the user task's candidates, dates or priority change (its updating
/// listeners first, when it has any).
pub(crate) fn update(
    state: &mut State,
    key: Key,
    changes: UserTaskCorrections,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let invalid = |message: String| Err(Rejection::new(RejectionCode::InvalidArgument, message));
    let listeners = user_task_of_job(state, key)?;
    if changes.assignee.is_some() {
        return invalid("an update does not change the assignee: assign the task".to_string());
    }
    if changes.is_empty() {
        return invalid(format!("the update of job {key} changes nothing"));
    }
    if let Err(message) = changes.check() {
        return invalid(format!("job {key}: {message}"));
    }
    let mut properties = state.jobs[&key]
        .user_task
        .as_deref()
        .cloned()
        .unwrap_or_default();
    changes.apply(&mut properties);
    if !listeners.updating.is_empty() {
        let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
        let element_instance_key = state_element(run.state, key);
        run.begin_change(key, properties, ListenerEvent::Updating);
        run.run();
        return Ok(run.outcome(Response::UserTaskTransitionHeld {
            key,
            element_instance_key,
            event: ListenerEvent::Updating,
            seq: 0,
        }));
    }
    let event = Event::UserTaskUpdated {
        key,
        properties: Box::new(properties.clone()),
    };
    state.jobs.get_mut(&key).expect("checked above").user_task = Some(Box::new(properties));
    Ok(Outcome {
        response: Response::JobUpdated { key },
        events: vec![event],
        effects: Vec::new(),
        next_key: ctx.next_key,
    })
}

/// `AssignUserTask`: the user task's assignee changes (the job keeps its key and state; a
/// worker that holds it sees the new assignee when it takes the job again).
pub(crate) fn assign(
    state: &mut State,
    key: Key,
    assignee: Option<String>,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let invalid = |message: String| Err(Rejection::new(RejectionCode::InvalidArgument, message));
    let listeners = user_task_of_job(state, key)?;
    match assignee.as_deref() {
        Some("") => return invalid("the assignee is empty (unassign instead)".to_string()),
        Some(text) if text.len() > crate::limits::NAME_BYTES_MAX => {
            return invalid(format!(
                "the assignee is {} bytes, over NAME_BYTES_MAX ({})",
                text.len(),
                crate::limits::NAME_BYTES_MAX
            ));
        }
        _ => {}
    }
    if !listeners.assigning.is_empty() {
        let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
        let element_instance_key = state_element(run.state, key);
        run.begin_assignment(key, assignee);
        run.run();
        return Ok(run.outcome(Response::UserTaskTransitionHeld {
            key,
            element_instance_key,
            event: ListenerEvent::Assigning,
            seq: 0,
        }));
    }
    let job = state.jobs.get_mut(&key).expect("checked above");
    job.user_task.get_or_insert_default().assignee = assignee.clone();
    Ok(Outcome {
        response: Response::JobUpdated { key },
        events: vec![Event::UserTaskAssigned { key, assignee }],
        effects: Vec::new(),
        next_key: ctx.next_key,
    })
}

/// The headers of a job of a user task being activated, and for a completing listener's
/// job the variables the completion would set (out of line: the service task's activation
/// stays small).
///
/// - The task's own job: the model's headers, then its properties and form key.
/// - A task listener's job: the same, with the properties as the listeners left them.
/// - An execution listener's job: the model's headers.
#[cold]
#[inline(never)]
pub(crate) fn job_view(
    state: &State,
    job: &crate::instance::Job,
    task: &UserTask,
) -> (Vec<(String, String)>, Option<Variables>) {
    let mut headers = task.job.headers.clone();
    match job.listener {
        None => add_headers(&mut headers, job.user_task.as_deref(), task),
        Some(listener) if listener.event.is_task_listener() => {
            let hold = state.user_task_holds.get(&job.element_instance_key);
            add_headers(&mut headers, hold.map(|hold| &hold.properties), task);
            let completion = hold.and_then(|hold| hold.completion.clone());
            return (headers, completion);
        }
        Some(_) => {}
    }
    (headers, None)
}

/// The refusal of a command about the job `key`, which is not an open job: `INVALID_STATE`
/// when it is a user task's job held while its assigning or updating task listeners run
/// (it comes back, same key, when they are done), else `JOB_NOT_FOUND`.
pub(crate) fn missing_job(state: &State, key: Key) -> Rejection {
    if held_job(state, key) {
        return held_job_rejection(key);
    }
    Rejection::new(
        RejectionCode::JobNotFound,
        format!("job {key} does not exist or was already completed"),
    )
}

/// Whether `key` is a user task's job held while its task listeners run.
fn held_job(state: &State, key: Key) -> bool {
    !state.user_task_holds.is_empty()
        && state
            .user_task_holds
            .values()
            .any(|hold| hold.job.as_ref().is_some_and(|job| job.key == key))
}

fn held_job_rejection(key: Key) -> Rejection {
    Rejection::new(
        RejectionCode::InvalidState,
        format!(
            "job {key} is held while its user task's task listeners run (an assignment or an \
             update); it comes back when they are done"
        ),
    )
}

/// The element instance of the job `key` (checked to exist).
fn state_element(state: &State, key: Key) -> Key {
    state.jobs[&key].element_instance_key
}
