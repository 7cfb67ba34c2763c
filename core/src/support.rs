//! What this engine version does not execute: refused at deploy with a reason, so that a
//! model never fails half-way through a run for want of a feature.
//!
//! | refused | why |
//! |---|---|
//! | signal events (start, catch, boundary, throw, end) | a signal is a broadcast to every instance on every shard; the shard-to-shard channel that needs is not built yet |
//! | compensation (boundary events, throw and end events, `isForCompensation` handlers) | not built yet |
//! | business rule tasks with `zeebe:calledDecision` | DMN decisions are not evaluated yet; use a job worker (`zeebe:taskDefinition`) |
//! | timer start events whose value needs variables | a start timer is armed at deploy, when there are none |
//! | message start events whose name needs variables | the name is needed at deploy to route messages to the process |

use ringflow_bpmn::{
    BoundaryTrigger, BusinessRuleTask, CatchTrigger, ElementKind, EndResult, ProcessDefinition,
    StartTrigger, ThrowResult,
};

/// Every reason `definition` cannot run on this engine, one line each, naming the element.
pub(crate) fn unsupported(definition: &ProcessDefinition, now_millis: i64) -> Vec<String> {
    let mut problems = Vec::new();
    for element in definition.elements() {
        let why = match &element.kind {
            ElementKind::StartEvent {
                trigger: StartTrigger::Signal(_),
                ..
            }
            | ElementKind::IntermediateCatchEvent(CatchTrigger::Signal(_))
            | ElementKind::BoundaryEvent {
                trigger: BoundaryTrigger::Signal(_),
                ..
            }
            | ElementKind::IntermediateThrowEvent(ThrowResult::Signal(_))
            | ElementKind::EndEvent(EndResult::Signal(_)) => Some(
                "signal events are not supported yet (a signal is a broadcast to every shard)"
                    .to_string(),
            ),
            ElementKind::BoundaryEvent {
                trigger: BoundaryTrigger::Compensation { .. },
                ..
            }
            | ElementKind::IntermediateThrowEvent(ThrowResult::Compensation(_))
            | ElementKind::EndEvent(EndResult::Compensation(_)) => {
                Some("compensation events are not supported yet".to_string())
            }
            ElementKind::BusinessRuleTask(BusinessRuleTask::Decision { .. }) => Some(
                "DMN decisions (zeebe:calledDecision) are not evaluated yet; use a job worker \
                 (zeebe:taskDefinition)"
                    .to_string(),
            ),
            _ if element.for_compensation => {
                Some("compensation handlers are not supported yet".to_string())
            }
            _ => None,
        };
        if let Some(why) = why {
            problems.push(format!("{}: `{}`: {why}", element.position, element.id));
        }
    }
    problems.extend(start_problems(definition, now_millis));
    problems
}

fn start_problems(definition: &ProcessDefinition, now_millis: i64) -> Vec<String> {
    let mut problems = Vec::new();
    for start in definition.start_events(ProcessDefinition::ROOT) {
        let element = definition.element(*start);
        match &element.kind {
            ElementKind::StartEvent {
                trigger: StartTrigger::Timer(timer),
                ..
            } => {
                let evaluate = |feel: &ringflow_bpmn::FeelExpression| {
                    crate::feel::evaluate(feel, &crate::engine::Variables::new(), now_millis)
                        .map(|evaluated| evaluated.value)
                };
                if let Err(error) = crate::timers::schedule(timer, now_millis, evaluate) {
                    problems.push(format!(
                        "{}: `{}`: the start timer cannot be worked out without variables: {error}",
                        element.position, element.id
                    ));
                }
            }
            ElementKind::StartEvent {
                trigger: StartTrigger::Message(message),
                ..
            } if crate::timers::static_text(&message.name).is_none() => {
                problems.push(format!(
                    "{}: `{}`: a message start event's name must be known without variables",
                    element.position, element.id
                ));
            }
            _ => {}
        }
    }
    problems
}
