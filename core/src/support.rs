//! What this engine version does not execute: refused at deploy with a reason, so that a
//! model never fails half-way through a run for want of a feature.
//!
//! | refused | why |
//! |---|---|
//! | timer start events whose value needs variables | a start timer is armed at deploy, when there are none |
//! | message start events whose name needs variables | the name is needed at deploy to route messages to the process |
//! | signal start events whose name needs variables | the name is needed when a signal arrives, before there is an instance |

use ringflow_bpmn::{ElementKind, ProcessDefinition, StartTrigger};

/// Why the engine refuses an element of a model that parses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Where the element starts in the source document.
    pub position: ringflow_bpmn::Position,
    /// The element's BPMN id.
    pub element_id: String,
    /// Why it is refused, for a person.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: `{}`: {}",
            self.position, self.element_id, self.reason
        )
    }
}

/// Every reason `definition` cannot run on this engine (empty: it can), each naming the
/// element. `Deploy` refuses a model with any; `ringflow validate` reports them. `now_millis`
/// is when start timers would be armed.
pub fn refusals(definition: &ProcessDefinition, now_millis: i64) -> Vec<Refusal> {
    let mut problems = Vec::new();
    for start in definition.start_events(ProcessDefinition::ROOT) {
        let element = definition.element(*start);
        match &element.kind {
            ElementKind::StartEvent {
                trigger: StartTrigger::Timer(timer),
                ..
            } => {
                let evaluate = |feel: &ringflow_bpmn::FeelExpression| {
                    crate::feel::evaluate(
                        feel,
                        &crate::engine::Variables::new(),
                        crate::feel::Inputs::at(now_millis),
                    )
                    .map(|evaluated| evaluated.value)
                };
                if let Err(error) = crate::timers::schedule(timer, now_millis, evaluate) {
                    problems.push(Refusal {
                        position: element.position,
                        element_id: element.id.to_string(),
                        reason: format!(
                            "the start timer cannot be worked out without variables: {error}"
                        ),
                    });
                }
            }
            ElementKind::StartEvent {
                trigger: StartTrigger::Message(message),
                ..
            } if crate::timers::static_text(&message.name).is_none() => {
                problems.push(Refusal {
                    position: element.position,
                    element_id: element.id.to_string(),
                    reason: "a message start event's name must be known without variables"
                        .to_string(),
                });
            }
            ElementKind::StartEvent {
                trigger: StartTrigger::Signal(name),
                ..
            } if crate::timers::static_text(name).is_none() => {
                problems.push(Refusal {
                    position: element.position,
                    element_id: element.id.to_string(),
                    reason: "a signal start event's name must be known without variables"
                        .to_string(),
                });
            }
            _ => {}
        }
    }
    problems
}
