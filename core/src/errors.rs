//! BPMN errors: thrown by a worker (`ThrowError`) or by an error end event, caught by the
//! nearest matching catch, innermost first.
//!
//! From the element that threw, outwards: first the error boundary events of the element
//! itself; then, for each enclosing scope, its error event subprocesses (which take
//! precedence, as in Camunda), then the error boundary events attached to the scope; past a
//! process instance's root, on from the call activity that started it. A catch without an
//! error reference catches every code. Nothing catching it is an incident. Escalations are
//! looked for the same way; they may be caught without interrupting, and an escalation that
//! nothing catches is not an incident.
//!
//! Past the root of an instance whose call activity is on another shard, the search goes on
//! there: the thrower waits while `ChildThrew` mail asks that shard, which looks from the
//! call activity outwards (and asks further up in turn), and answers whether and how it was
//! caught (see [`crate::remote`]). An error nobody caught is then an incident at the thrower,
//! as on one shard; an escalation nobody caught, or caught without interrupting, goes on.

use ringflow_bpmn::{BoundaryTrigger, ElementIndex, ElementKind, Expression, StartTrigger};

use crate::engine::{Ctx, Keys, Outcome, Rejection, RejectionCode, Response};
use crate::instance::{ElementRole, IncidentRetry, JobState};
use crate::key::Key;
use crate::limits::{MESSAGE_BYTES_MAX, NAME_BYTES_MAX};
use crate::remote::PendingThrow;
use crate::run::Run;
use crate::state::State;

pub(crate) fn throw(
    state: &mut State,
    key: Key,
    error_code: String,
    message: String,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let job = state
        .jobs
        .get(&key)
        .ok_or_else(|| crate::usertasks::missing_job(state, key))?;
    if !matches!(job.state, JobState::Activated { .. }) {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!("job {key} is not activated; only a job a worker holds can throw an error"),
        ));
    }
    if job.listener.is_some() {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!(
                "job {key} is {} listener's job, and a listener cannot throw a BPMN error; \
                 fail the job instead",
                if job.listener.is_some_and(|l| l.event.is_task_listener()) {
                    "a task"
                } else {
                    "an execution"
                }
            ),
        ));
    }
    if error_code.is_empty()
        || error_code.len() > NAME_BYTES_MAX
        || message.len() > MESSAGE_BYTES_MAX
    {
        return Err(Rejection::new(
            RejectionCode::InvalidArgument,
            format!(
                "the error code must be 1 to NAME_BYTES_MAX ({NAME_BYTES_MAX}) bytes and the \
                 message at most MESSAGE_BYTES_MAX ({MESSAGE_BYTES_MAX})"
            ),
        ));
    }
    let element = job.element_instance_key;
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    run.throw_error(element, &error_code, &message, true);
    run.run();
    Ok(run.outcome(Response::JobUpdated { key }))
}

/// Where an error or escalation is caught.
enum Catch {
    /// By this boundary event, attached to this live activity instance.
    Boundary {
        activity: Key,
        boundary: ElementIndex,
        interrupting: bool,
    },
    /// By this event subprocess, inside this live scope instance.
    EventSubProcess {
        scope: Key,
        subprocess: ElementIndex,
        interrupting: bool,
    },
}

/// Which kind of throw is looked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Thrown {
    Error,
    Escalation,
}

impl Run<'_> {
    /// Throws the error `code` from the element instance `from` (for its job, when `job`,
    /// with the worker's `message`). Caught: the catch is set in motion. Not caught here and
    /// called from another shard: the parent's shard is asked and the thrower waits (its job
    /// no longer activatable). Otherwise: an incident at the thrower.
    pub(crate) fn throw_error(&mut self, from: Key, code: &str, message: &str, job: bool) {
        if self.catch_thrown(from, code, false).is_some() {
            return;
        }
        if job {
            self.fail_job_of(from);
        }
        let waiter = PendingThrow::Thrower {
            element: from,
            escalation: false,
            code: code.to_string(),
            message: message.to_string(),
            job,
        };
        if !self.ask_parent(from, false, code, waiter) {
            self.uncaught_error(from, code, message, job);
        }
    }

    /// An error nobody caught: an incident at the element that threw it.
    pub(crate) fn uncaught_error(&mut self, element: Key, code: &str, message: &str, job: bool) {
        let text = if message.is_empty() {
            format!("an error with code `{code}` was thrown and nothing catches it")
        } else {
            format!("an error with code `{code}` was thrown and nothing catches it: {message}")
        };
        if job {
            self.fail_job_of(element);
            self.incident_with(element, text, IncidentRetry::Job);
        } else {
            self.incident(element, text);
        }
    }

    /// The element's job stops being activatable until an incident on it is resolved.
    fn fail_job_of(&mut self, element: Key) {
        if let Some(job) = self.state.elements[&element].job {
            self.state
                .jobs
                .get_mut(&job)
                .expect("the element's job")
                .state = JobState::Failed;
        }
    }

    /// Throws an escalation from `from`. Not being caught is not a problem (Camunda 8): the
    /// throw event just goes on. A non-interrupting catch lets the thrower go on too. Returns
    /// false when a parent on another shard was asked: the thrower waits for its answer.
    pub(crate) fn throw_escalation(&mut self, from: Key, code: &str) -> bool {
        if self.catch_thrown(from, code, true).is_some() {
            return true;
        }
        let waiter = PendingThrow::Thrower {
            element: from,
            escalation: true,
            code: code.to_string(),
            message: String::new(),
            job: false,
        };
        !self.ask_parent(from, true, code, waiter)
    }

    /// Looks for a catch of an error (or an escalation) from `from` outwards on this shard
    /// and sets it in motion. Returns whether it interrupts; none: nothing here caught it.
    pub(crate) fn catch_thrown(&mut self, from: Key, code: &str, escalation: bool) -> Option<bool> {
        let thrown = if escalation {
            Thrown::Escalation
        } else {
            Thrown::Error
        };
        let catch = self.find_catch(from, code, thrown)?;
        let interrupting = match catch {
            Catch::Boundary { interrupting, .. } | Catch::EventSubProcess { interrupting, .. } => {
                interrupting
            }
        };
        self.take_catch(catch);
        Some(interrupting)
    }

    fn take_catch(&mut self, catch: Catch) {
        match catch {
            Catch::Boundary {
                activity,
                boundary,
                interrupting,
            } => {
                let scope = self.state.elements[&activity]
                    .scope
                    .expect("activities have a scope");
                if interrupting {
                    self.terminate(activity);
                    // The activity's token moves on to the boundary event.
                    self.activate_counted(boundary, scope);
                } else {
                    self.activate_uncounted(boundary, scope);
                }
            }
            Catch::EventSubProcess {
                scope,
                subprocess,
                interrupting,
            } => {
                if interrupting {
                    self.terminate_children(scope, None);
                }
                self.activate_uncounted(subprocess, scope);
            }
        }
    }

    /// From `from` outwards: the boundary events of each activity, the event subprocesses of
    /// each enclosing scope (they come first, as in Camunda), and past a process instance's
    /// root the call activity that started it.
    fn find_catch(&self, from: Key, code: &str, thrown: Thrown) -> Option<Catch> {
        let mut current = from;
        let mut first = true;
        loop {
            let definition = self.definition_of(current);
            let instance = &self.state.elements[&current];
            let element = instance.element;
            // Event subprocesses of a scope catch throws from inside it (not from itself); a
            // multi-instance body's are its inner instances'.
            // An ad-hoc subprocess's inner instance has neither: they are its subprocess's.
            if !first && !matches!(instance.role, ElementRole::Body | ElementRole::AdHocInner) {
                for subprocess in definition.event_subprocesses(element) {
                    let start = definition.start_events(*subprocess)[0];
                    let found = catch_of(&definition.element(start).kind, thrown);
                    if let Some((wanted, interrupting)) = found
                        && self.code_matches(current, wanted.as_ref(), code)
                    {
                        return Some(Catch::EventSubProcess {
                            scope: current,
                            subprocess: *subprocess,
                            interrupting: interrupting || thrown == Thrown::Error,
                        });
                    }
                }
            }
            // An inner instance's boundary events are its body's.
            if !matches!(
                instance.role,
                ElementRole::Inner { .. } | ElementRole::AdHocInner
            ) {
                for boundary in definition.boundary_events(element) {
                    let found = catch_of(&definition.element(*boundary).kind, thrown);
                    if let Some((wanted, interrupting)) = found
                        && self.code_matches(current, wanted.as_ref(), code)
                    {
                        return Some(Catch::Boundary {
                            activity: current,
                            boundary: *boundary,
                            interrupting: interrupting || thrown == Thrown::Error,
                        });
                    }
                }
            }
            current = match instance.scope {
                Some(scope) => scope,
                // A parent on another shard is asked by mail (see `throw_error`).
                None => self.state.instances[&current]
                    .parent
                    .filter(|parent| parent.shard() == self.state.shard())?,
            };
            first = false;
        }
    }

    fn code_matches(&self, at: Key, wanted: Option<&Expression>, code: &str) -> bool {
        match wanted {
            None => true,
            Some(Expression::Static(wanted)) => **wanted == *code,
            Some(feel) => {
                matches!(self.value_at(at, feel), Ok(serde_json::Value::String(wanted)) if wanted == code)
            }
        }
    }
}

/// What a start or boundary event catches of this kind of throw: its code (none: every
/// code) and whether it interrupts.
fn catch_of(kind: &ElementKind, thrown: Thrown) -> Option<(&Option<Expression>, bool)> {
    match (kind, thrown) {
        (
            ElementKind::StartEvent {
                trigger: StartTrigger::Error(wanted),
                interrupting,
            },
            Thrown::Error,
        )
        | (
            ElementKind::StartEvent {
                trigger: StartTrigger::Escalation(wanted),
                interrupting,
            },
            Thrown::Escalation,
        )
        | (
            ElementKind::BoundaryEvent {
                trigger: BoundaryTrigger::Error(wanted),
                interrupting,
                ..
            },
            Thrown::Error,
        )
        | (
            ElementKind::BoundaryEvent {
                trigger: BoundaryTrigger::Escalation(wanted),
                interrupting,
                ..
            },
            Thrown::Escalation,
        ) => Some((wanted, *interrupting)),
        _ => None,
    }
}
