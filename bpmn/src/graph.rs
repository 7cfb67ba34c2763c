//! Rules about the shape of a compiled process: start events per scope, what may have
//! incoming and outgoing flows, gateways, links, and that every flow node can be reached.

use crate::compile::Compiler;
use crate::diagnostic::{Diagnostic, DiagnosticKind as K};
use crate::elements::UNRESOLVED;
use crate::expression::Expression;
use crate::from_ai::tool_parameters;
use crate::model::*;

impl Compiler<'_> {
    fn report_element(&mut self, kind: K, element: &Element, message: String) {
        self.diagnostics.push(Diagnostic {
            kind,
            position: element.position,
            element_id: Some(element.id.to_string()),
            message,
        });
    }

    fn report_flow(&mut self, kind: K, flow: &SequenceFlow, message: String) {
        self.diagnostics.push(Diagnostic {
            kind,
            position: flow.position,
            element_id: Some(flow.id.clone()),
            message,
        });
    }
}

/// What earlier steps already reported, so that the graph rules do not report it again.
pub(crate) struct Skips {
    /// `failed[i]` is the BPMN element name of element `i` when its own definition failed.
    pub failed: Vec<Option<&'static str>>,
    /// `broken_conditions[f]` when flow `f` had a condition that did not parse.
    pub broken_conditions: Vec<bool>,
    /// Targets of flows from unsupported elements.
    pub orphans: Vec<ElementIndex>,
}

pub(crate) fn check(
    compiler: &mut Compiler<'_>,
    definition: &mut ProcessDefinition,
    skips: &Skips,
) {
    let failed = &skips.failed[..];
    let broken_conditions = &skips.broken_conditions[..];
    let before = compiler.diagnostics.len();
    for index in 0..definition.elements.len() {
        if failed[index].is_some() {
            continue;
        }
        let index = ElementIndex(index as u32);
        // A scope with a start event that failed to compile has been reported already.
        let failed_start = definition
            .children(index)
            .iter()
            .any(|child| failed[child.0 as usize] == Some("startEvent"));
        if !failed_start {
            check_scope_starts(compiler, definition, index);
        }
        let gateway_target_failed = definition
            .outgoing(index)
            .iter()
            .any(|flow| failed[definition.flow(*flow).target.0 as usize].is_some());
        if !(gateway_target_failed
            && matches!(
                definition.element(index).kind,
                ElementKind::EventBasedGateway
            ))
        {
            check_flows_of(compiler, definition, index);
        }
        check_compensation(compiler, definition, index);
    }
    fill_tool_parameters(compiler, definition);
    check_conditions(compiler, definition, failed, broken_conditions);
    resolve_links(compiler, definition);
    // Reachability is only meaningful on a graph whose other rules hold.
    if compiler.diagnostics.len() == before {
        check_reachability(compiler, definition, failed, &skips.orphans);
    }
}

/// A compensation throw's `activityRef` names an activity of its own scope (for a throw in
/// an event subprocess, also of the scope that holds it) that has something to compensate;
/// a compensation handler has no boundary events.
fn check_compensation(
    compiler: &mut Compiler<'_>,
    definition: &ProcessDefinition,
    index: ElementIndex,
) {
    let element = definition.element(index);
    let compensating = matches!(
        element.kind,
        ElementKind::BoundaryEvent {
            trigger: BoundaryTrigger::Compensation { .. },
            ..
        } | ElementKind::IntermediateThrowEvent(ThrowResult::Compensation(_))
            | ElementKind::EndEvent(EndResult::Compensation(_))
    );
    if compensating && inside_ad_hoc(definition, index) {
        let text = "compensation inside an ad-hoc subprocess is not supported yet";
        compiler.report_element(K::UnsupportedElement, element, text.to_string());
        return;
    }
    if element.for_compensation && !definition.boundary_events(index).is_empty() {
        let text = "a compensation handler cannot have boundary events";
        compiler.report_element(K::InvalidFlow, element, text.to_string());
    }
    let (ElementKind::IntermediateThrowEvent(ThrowResult::Compensation(Some(target)))
    | ElementKind::EndEvent(EndResult::Compensation(Some(target)))) = element.kind
    else {
        return;
    };
    let scope = element.scope;
    let outer = scope.and_then(|scope| match definition.element(scope).kind {
        ElementKind::EventSubProcess => definition.element(scope).scope,
        _ => None,
    });
    let target_element = definition.element(target);
    let target_id = &target_element.id;
    let text = if target_element.scope != scope && target_element.scope != outer {
        format!(
            "activityRef `{target_id}` must name an activity in the throw event's scope (or, \
             in an event subprocess, in the scope that holds it)"
        )
    } else if !definition.is_compensable(target) {
        format!(
            "activityRef `{target_id}` has nothing to compensate: it has no compensation \
             boundary event and holds no activity that has one"
        )
    } else {
        return;
    };
    compiler.report_element(K::InvalidReference, element, text);
}

/// Whether an ad-hoc subprocess holds `index`, at any depth.
fn inside_ad_hoc(definition: &ProcessDefinition, index: ElementIndex) -> bool {
    let mut scope = definition.element(index).scope;
    while let Some(current) = scope {
        if let ElementKind::AdHocSubProcess(_) = definition.element(current).kind {
            return true;
        }
        scope = definition.element(current).scope;
    }
    false
}

fn check_scope_starts(
    compiler: &mut Compiler<'_>,
    definition: &ProcessDefinition,
    scope: ElementIndex,
) {
    let element = definition.element(scope);
    let starts = definition.start_events(scope);
    let none_starts = starts
        .iter()
        .filter(|start| {
            matches!(
                definition.element(**start).kind,
                ElementKind::StartEvent {
                    trigger: StartTrigger::None,
                    ..
                }
            )
        })
        .count();
    match element.kind {
        ElementKind::Process => {
            if starts.is_empty() {
                let text = "the process has no start event";
                compiler.report_element(K::MissingStartEvent, element, text.to_string());
            } else if none_starts > 1 {
                let text = format!("the process has {none_starts} none start events; at most one");
                compiler.report_element(K::InvalidStartEvent, element, text);
            }
            // As in Camunda 8: the conditions of a process's conditional start events differ.
            let mut conditions: Vec<&str> = Vec::new();
            for start in starts {
                if let ElementKind::StartEvent {
                    trigger: StartTrigger::Conditional(condition),
                    ..
                } = &definition.element(*start).kind
                {
                    let source = condition.expression.source();
                    if conditions.contains(&source) {
                        let text = format!(
                            "another conditional start event of the process has the condition \
                             `{source}`; each needs its own"
                        );
                        compiler.report_element(
                            K::InvalidStartEvent,
                            definition.element(*start),
                            text,
                        );
                    }
                    conditions.push(source);
                }
            }
        }
        ElementKind::SubProcess => {
            if starts.is_empty() {
                let text =
                    "the subprocess has no start event; it needs exactly one none start event";
                compiler.report_element(K::MissingStartEvent, element, text.to_string());
            } else if starts.len() > 1 || none_starts != 1 {
                let text = "a subprocess needs exactly one start event, a none start event";
                compiler.report_element(K::InvalidStartEvent, element, text.to_string());
            }
        }
        ElementKind::AdHocSubProcess(_) => check_ad_hoc(compiler, definition, scope),
        ElementKind::EventSubProcess => {
            if starts.is_empty() {
                let text = "the event subprocess has no start event";
                compiler.report_element(K::MissingStartEvent, element, text.to_string());
            } else if starts.len() > 1 || none_starts > 0 {
                let text = "an event subprocess needs exactly one start event with a message, \
                            timer, signal, error or escalation event definition";
                compiler.report_element(K::InvalidStartEvent, element, text.to_string());
            }
            if !definition.incoming(scope).is_empty() || !definition.outgoing(scope).is_empty() {
                let text = "an event subprocess has no incoming or outgoing sequence flows";
                compiler.report_element(K::InvalidFlow, element, text.to_string());
            }
        }
        _ => {}
    }
}

/// As in Camunda 8: an ad-hoc subprocess holds at least one activity and no start or end
/// events (its elements start when activated).
fn check_ad_hoc(compiler: &mut Compiler<'_>, definition: &ProcessDefinition, scope: ElementIndex) {
    let element = definition.element(scope);
    let children = definition.children(scope);
    for child in children {
        let inner = definition.element(*child);
        let text = match inner.kind {
            ElementKind::StartEvent { .. } => {
                "an ad-hoc subprocess cannot contain start events: its elements start when \
                 activated (activeElementsCollection or ActivateAdHocActivities)"
            }
            ElementKind::EndEvent(_) => "an ad-hoc subprocess cannot contain end events",
            _ => continue,
        };
        compiler.report_element(K::InvalidFlow, inner, text.to_string());
    }
    let activity = children.iter().any(|child| {
        let inner = definition.element(*child);
        inner.kind.is_activity() && !inner.for_compensation
    });
    if !activity {
        let text = "an ad-hoc subprocess needs at least one activity";
        compiler.report_element(K::InvalidFlow, element, text.to_string());
    }
}

/// Reads the tool parameters (`fromAi(...)` calls in the input mappings) of every element an
/// ad-hoc subprocess can activate, as Camunda does when it deploys; one that cannot be read
/// is a deploy error naming the element and the mapping.
fn fill_tool_parameters(compiler: &mut Compiler<'_>, definition: &mut ProcessDefinition) {
    for index in 0..definition.elements.len() {
        let scope = ElementIndex(index as u32);
        if !matches!(
            definition.element(scope).kind,
            ElementKind::AdHocSubProcess(_)
        ) {
            continue;
        }
        let activatable: Vec<ElementIndex> = definition.activatable(scope).collect();
        for child in activatable {
            let element = definition.element(child);
            let mut parameters = Vec::new();
            for mapping in &element.io_mapping.inputs {
                let Expression::Feel(feel) = &mapping.source else {
                    continue;
                };
                match tool_parameters(feel.source()) {
                    Ok(found) => parameters.extend(found),
                    Err(reason) => {
                        let text = format!(
                            "the input mapping to `{}` describes a tool parameter that cannot be \
                             read: {reason}",
                            mapping.target
                        );
                        compiler.report_element(K::InvalidExpression, element, text);
                    }
                }
            }
            definition.elements[child.0 as usize].tool_parameters = parameters;
        }
    }
}

fn check_flows_of(
    compiler: &mut Compiler<'_>,
    definition: &ProcessDefinition,
    index: ElementIndex,
) {
    let element = definition.element(index);
    let incoming = definition.incoming(index).len();
    let outgoing = definition.outgoing(index).len();
    let problem = match &element.kind {
        ElementKind::StartEvent { .. } if incoming > 0 => {
            Some("a start event cannot have incoming sequence flows")
        }
        ElementKind::EndEvent(_) if outgoing > 0 => {
            Some("an end event cannot have outgoing sequence flows")
        }
        ElementKind::BoundaryEvent { .. } if incoming > 0 => {
            Some("a boundary event cannot have incoming sequence flows")
        }
        ElementKind::BoundaryEvent {
            trigger: BoundaryTrigger::Compensation { .. },
            ..
        } if outgoing > 0 => Some(
            "a compensation boundary event has no outgoing flows; it is associated with its handler",
        ),
        ElementKind::BoundaryEvent { trigger, .. }
            if outgoing == 0 && !matches!(trigger, BoundaryTrigger::Compensation { .. }) =>
        {
            Some("a boundary event needs an outgoing sequence flow")
        }
        _ if element.for_compensation && incoming + outgoing > 0 => {
            Some("a compensation handler cannot have sequence flows")
        }
        ElementKind::EventBasedGateway => check_event_gateway(definition, index),
        _ => None,
    };
    if let Some(text) = problem {
        let kind = if matches!(element.kind, ElementKind::EventBasedGateway) {
            K::InvalidGateway
        } else {
            K::InvalidFlow
        };
        compiler.report_element(kind, element, text.to_string());
    }
}

fn check_event_gateway(
    definition: &ProcessDefinition,
    index: ElementIndex,
) -> Option<&'static str> {
    let outgoing = definition.outgoing(index);
    if outgoing.len() < 2 {
        return Some("an event-based gateway needs at least two outgoing sequence flows");
    }
    let all_catch = outgoing.iter().all(|flow| {
        let target = definition.element(definition.flow(*flow).target);
        matches!(
            target.kind,
            ElementKind::IntermediateCatchEvent(
                CatchTrigger::Message(_)
                    | CatchTrigger::Timer(_)
                    | CatchTrigger::Signal(_)
                    | CatchTrigger::Conditional(_)
            )
        )
    });
    (!all_catch).then_some(
        "every flow leaving an event-based gateway must lead to an intermediate message, timer, \
         signal or conditional catch event",
    )
}

fn check_conditions(
    compiler: &mut Compiler<'_>,
    definition: &ProcessDefinition,
    failed: &[Option<&'static str>],
    broken_conditions: &[bool],
) {
    for (index, flow) in definition.flows.iter().enumerate() {
        if broken_conditions[index] {
            continue;
        }
        if failed[flow.source.0 as usize].is_some() {
            continue;
        }
        let source = definition.element(flow.source);
        let (branching, default) = match source.kind {
            ElementKind::ExclusiveGateway { default }
            | ElementKind::InclusiveGateway { default } => (true, default),
            _ => (false, None),
        };
        if !branching {
            if flow.condition.is_some() {
                let text = format!(
                    "conditions are only evaluated on flows leaving exclusive and inclusive \
                     gateways, and this flow leaves a {}",
                    source.kind.bpmn_name()
                );
                compiler.report_flow(K::InvalidFlow, flow, text);
            }
            continue;
        }
        let forks = definition.outgoing(flow.source).len() > 1;
        let is_default = default.is_some_and(|d| definition.flow(d).id == flow.id);
        if forks && !is_default && flow.condition.is_none() {
            let text = format!(
                "the flow leaves the {} `{}` among several and has no condition; give it a \
                 condition or make it the gateway's default flow",
                source.kind.bpmn_name(),
                source.id
            );
            compiler.report_flow(K::InvalidGateway, flow, text);
        }
    }
}

fn resolve_links(compiler: &mut Compiler<'_>, definition: &mut ProcessDefinition) {
    let mut catches: Vec<(Option<ElementIndex>, String, ElementIndex)> = Vec::new();
    for (index, element) in definition.elements.iter().enumerate() {
        if let ElementKind::IntermediateCatchEvent(CatchTrigger::Link(name)) = &element.kind {
            let index = ElementIndex(index as u32);
            if catches
                .iter()
                .any(|(scope, known, _)| *scope == element.scope && known == name)
            {
                let text = format!("two link catch events in one scope are named `{name}`");
                compiler.report_element(K::InvalidEventDefinition, element, text);
            }
            catches.push((element.scope, name.clone(), index));
        }
    }
    for index in 0..definition.elements.len() {
        let element = &definition.elements[index];
        let ElementKind::IntermediateThrowEvent(ThrowResult::Link { name, target }) = &element.kind
        else {
            continue;
        };
        debug_assert_eq!(*target, UNRESOLVED);
        let found = catches
            .iter()
            .find(|(scope, known, _)| *scope == element.scope && known == name)
            .map(|(_, _, catch)| *catch);
        match found {
            Some(catch) => {
                if let ElementKind::IntermediateThrowEvent(ThrowResult::Link { target, .. }) =
                    &mut definition.elements[index].kind
                {
                    *target = catch;
                }
            }
            None => {
                let text = format!("no link catch event named `{name}` in the same scope");
                let element = definition.elements[index].clone();
                compiler.report_element(K::InvalidReference, &element, text);
            }
        }
    }
}

/// Marks what can be reached from the start events, boundary events, event subprocesses,
/// link jumps and compensation handlers, and reports every flow node that cannot.
fn check_reachability(
    compiler: &mut Compiler<'_>,
    definition: &ProcessDefinition,
    failed: &[Option<&'static str>],
    orphans: &[ElementIndex],
) {
    let mut reached = vec![false; definition.elements.len()];
    let mut roots = vec![ProcessDefinition::ROOT];
    roots.extend_from_slice(orphans);
    // An element that failed to compile was reported; what follows it is not reported again.
    roots.extend(
        (0..failed.len())
            .filter(|i| failed[*i].is_some())
            .map(|i| ElementIndex(i as u32)),
    );
    spread(definition, &mut reached, roots);
    // One report per unreachable island: entry points (no incoming flow) first, then the rest
    // in document order; each report covers everything reachable from the reported node.
    let mut candidates: Vec<usize> = (0..reached.len()).filter(|i| !reached[*i]).collect();
    candidates.sort_by_key(|i| !definition.incoming(ElementIndex(*i as u32)).is_empty());
    let mut reported = Vec::new();
    for index in candidates {
        if reached[index] {
            continue;
        }
        spread(definition, &mut reached, vec![ElementIndex(index as u32)]);
        reported.push(index);
    }
    reported.sort_unstable();
    for index in reported {
        let element = &definition.elements[index];
        let text = format!(
            "no start event reaches this {}: it has no incoming sequence flow from anything \
             that runs",
            element.kind.bpmn_name()
        );
        compiler.report_element(K::Unreachable, element, text);
    }
}

/// Marks everything that runs once `roots` run: flow successors, the start events and event
/// subprocesses of scopes, boundary events, link targets and compensation handlers.
fn spread(definition: &ProcessDefinition, reached: &mut [bool], roots: Vec<ElementIndex>) {
    let mut work = Vec::new();
    for root in roots {
        if !reached[root.0 as usize] {
            reached[root.0 as usize] = true;
            work.push(root);
        }
    }
    while let Some(index) = work.pop() {
        let mut next: Vec<ElementIndex> = Vec::new();
        match &definition.element(index).kind {
            ElementKind::Process | ElementKind::SubProcess | ElementKind::EventSubProcess => {
                next.extend_from_slice(definition.start_events(index));
                next.extend_from_slice(definition.event_subprocesses(index));
            }
            ElementKind::AdHocSubProcess(_) => {
                next.extend(definition.activatable(index));
                next.extend_from_slice(definition.event_subprocesses(index));
            }
            ElementKind::IntermediateThrowEvent(ThrowResult::Link { target, .. }) => {
                next.push(*target);
            }
            ElementKind::BoundaryEvent {
                trigger:
                    BoundaryTrigger::Compensation {
                        handler: Some(handler),
                    },
                ..
            } => next.push(*handler),
            _ => {}
        }
        next.extend_from_slice(definition.boundary_events(index));
        next.extend(
            definition
                .outgoing(index)
                .iter()
                .map(|flow| definition.flow(*flow).target),
        );
        for element in next {
            if !reached[element.0 as usize] {
                reached[element.0 as usize] = true;
                work.push(element);
            }
        }
    }
}
