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

use ringflow_bpmn::{BoundaryTrigger, ElementIndex, ElementKind, Expression, StartTrigger};

use crate::engine::{Ctx, Keys, Outcome, Rejection, RejectionCode, Response};
use crate::instance::{ElementRole, IncidentRetry, JobState};
use crate::key::Key;
use crate::limits::{MESSAGE_BYTES_MAX, NAME_BYTES_MAX};
use crate::run::Run;
use crate::state::State;

pub(crate) fn throw(
    state: &mut State,
    key: Key,
    error_code: String,
    message: String,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let job = state.jobs.get(&key).ok_or_else(|| {
        Rejection::new(
            RejectionCode::JobNotFound,
            format!("job {key} does not exist or was already completed"),
        )
    })?;
    if !matches!(job.state, JobState::Activated { .. }) {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!("job {key} is not activated; only a job a worker holds can throw an error"),
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
    if !run.throw_error(element, &error_code) {
        run.state.jobs.get_mut(&key).expect("checked").state = JobState::Failed;
        let text = if message.is_empty() {
            format!("an error with code `{error_code}` was thrown and nothing catches it")
        } else {
            format!(
                "an error with code `{error_code}` was thrown and nothing catches it: {message}"
            )
        };
        run.incident_with(element, text, IncidentRetry::Job);
    }
    run.run();
    Ok(Outcome {
        response: Response::JobUpdated { key },
        events: run.events,
        effects: run.effects,
        next_key: run.keys.next(),
    })
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
    /// Throws `code` from the element instance `from`. Returns whether something caught it
    /// (and the catch has been set in motion).
    pub(crate) fn throw_error(&mut self, from: Key, code: &str) -> bool {
        match self.find_catch(from, code, Thrown::Error) {
            Some(catch) => {
                self.take_catch(catch);
                true
            }
            None => false,
        }
    }

    /// Throws an escalation from `from`. Not being caught is not a problem (Camunda 8): the
    /// throw event just goes on. A non-interrupting catch lets the thrower go on too.
    pub(crate) fn throw_escalation(&mut self, from: Key, code: &str) {
        if let Some(catch) = self.find_catch(from, code, Thrown::Escalation) {
            self.take_catch(catch);
        }
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
            if !first && instance.role != ElementRole::Body {
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
            if !matches!(instance.role, ElementRole::Inner { .. }) {
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
                // A parent on another shard is not searched (see `remote`): an incident.
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
            Some(Expression::Static(wanted)) => wanted == code,
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
