//! From the element tree to compiled, validated process definitions.
//!
//! One pass collects the definitions-level elements (messages, errors, signals, escalations)
//! and the ids of everything; then each executable process is compiled in four steps:
//! create its flow nodes (scopes recursively), resolve its sequence flows, fill in what each
//! node does (which needs the flows, for default flows), and finally check the graph rules
//! (`graph.rs`). Every problem becomes a [`Diagnostic`]; compilation carries on after one, so
//! that a user sees all errors at once.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::diagnostic::{Diagnostic, DiagnosticKind, LineIndex, Position};
use crate::dom::{Document, Ns};
use crate::expression::{Expression, FeelExpression};
use crate::limits::PROCESS_ELEMENTS_MAX;
use crate::model::*;
use crate::timer::{self, TimerDefinition, TimerValue};

use DiagnosticKind as K;

/// The outcome of compiling one document.
pub(crate) struct Compiled {
    pub processes: Vec<ProcessDefinition>,
    pub non_executable: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
    /// What is allowed but likely wrong (see [`crate::Model::warnings`]).
    pub warnings: Vec<Diagnostic>,
}

pub(crate) struct Compiler<'d> {
    pub(crate) doc: &'d Document,
    text: &'d str,
    lines: OnceLock<LineIndex<'d>>,
    pub(crate) diagnostics: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Every id in the kept tree, to the node that carries it.
    ids: HashMap<&'d str, usize>,
    messages: HashMap<&'d str, usize>,
    errors: HashMap<&'d str, usize>,
    signals: HashMap<&'d str, usize>,
    escalations: HashMap<&'d str, usize>,
}

/// Flow-node element names that ringflow executes.
const FLOW_NODES: &[&str] = &[
    "startEvent",
    "endEvent",
    "intermediateCatchEvent",
    "intermediateThrowEvent",
    "boundaryEvent",
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
    "exclusiveGateway",
    "parallelGateway",
    "inclusiveGateway",
    "eventBasedGateway",
];

/// BPMN elements that are valid inside a process but ringflow does not execute.
const UNSUPPORTED_FLOW_ELEMENTS: &[(&str, &str)] = &[
    (
        "complexGateway",
        "complex gateways are not supported; use inclusive or exclusive gateways",
    ),
    ("transaction", "transaction subprocesses are not supported"),
    ("callChoreography", "choreographies are not executable"),
    ("subChoreography", "choreographies are not executable"),
    ("choreographyTask", "choreographies are not executable"),
];

/// BPMN elements inside a process with no execution semantics: read, then left alone.
const IGNORED_ELEMENTS: &[&str] = &[
    "documentation",
    "extensionElements",
    "laneSet",
    "lane",
    "childLaneSet",
    "flowNodeRef",
    "dataObject",
    "dataObjectReference",
    "dataStoreReference",
    "dataState",
    "textAnnotation",
    "text",
    "association",
    "group",
    "property",
    "ioSpecification",
    "ioBinding",
    "dataInput",
    "dataOutput",
    "inputSet",
    "outputSet",
    "dataInputRefs",
    "dataOutputRefs",
    "dataInputAssociation",
    "dataOutputAssociation",
    "sourceRef",
    "targetRef",
    "assignment",
    "transformation",
    "auditing",
    "monitoring",
    "performer",
    "humanPerformer",
    "potentialOwner",
    "resourceRole",
    "resourceRef",
    "resourceAssignmentExpression",
    "resourceParameterBinding",
    "rendering",
    "supports",
    "correlationSubscription",
    "incoming",
    "outgoing",
    "categoryValueRef",
];

/// Every element name BPMN 2.0 defines, to tell vendor mistakes from unsupported BPMN.
const OTHER_BPMN_ELEMENTS: &[&str] = &[
    "definitions",
    "process",
    "collaboration",
    "participant",
    "messageFlow",
    "sequenceFlow",
    "conditionExpression",
    "multiInstanceLoopCharacteristics",
    "standardLoopCharacteristics",
    "loopCardinality",
    "loopCondition",
    "completionCondition",
    "message",
    "error",
    "signal",
    "escalation",
    "itemDefinition",
    "interface",
    "operation",
    "inMessageRef",
    "outMessageRef",
    "import",
    "category",
    "categoryValue",
    "dataStore",
    "resource",
    "globalTask",
    "globalUserTask",
    "globalScriptTask",
    "globalManualTask",
    "globalBusinessRuleTask",
    "eventDefinitionRef",
    "script",
    "timeDuration",
    "timeDate",
    "timeCycle",
    "condition",
    "inputDataItem",
    "outputDataItem",
    "loopDataInputRef",
    "loopDataOutputRef",
    "complexBehaviorDefinition",
];

fn is_event_definition(local: &str) -> bool {
    local.ends_with("EventDefinition")
}

/// An event definition as read from the model, before it is placed.
pub(crate) enum EventDef {
    None,
    /// The `messageEventDefinition` node: its message is read only where a message is caught.
    Message(usize),
    Timer(Option<TimerDefinition>),
    Error(Option<Expression>),
    Signal(Option<Expression>),
    Escalation(Option<Expression>),
    Compensate(Option<String>),
    Link(Option<String>),
    Terminate,
    /// A conditional event definition; `None` when it is broken (reported).
    Conditional(Option<Condition>),
    /// Cancel, or a definition by reference: not supported.
    Unsupported(&'static str),
}

/// A flow node during compilation: the compiled element, plus where it came from.
pub(crate) struct Draft {
    pub node: usize,
    pub local: &'static str,
    pub for_compensation: bool,
}

pub(crate) struct ProcessBuild<'d> {
    pub elements: Vec<Element>,
    pub drafts: Vec<Draft>,
    pub flows: Vec<SequenceFlow>,
    /// Flow-node and flow ids of this process.
    pub element_ids: HashMap<&'d str, ElementIndex>,
    pub flow_ids: HashMap<&'d str, FlowIndex>,
    /// Ids of unsupported elements, so flows to them are not reported a second time.
    pub unsupported_ids: Vec<&'d str>,
    /// Children of each scope, boundary events of each activity (by element).
    pub children: Vec<Vec<ElementIndex>>,
    pub boundaries: Vec<Vec<ElementIndex>>,
    pub associations: Vec<(String, String)>,
    /// Elements whose own definition failed (reported): graph rules skip them, so that one
    /// mistake is not reported again as a missing start event or a broken gateway.
    pub failed: Vec<bool>,
    /// Flows whose condition failed to parse (reported), by flow index.
    pub broken_conditions: Vec<bool>,
    /// Targets of flows that leave an unsupported element (reported): they count as reached.
    pub orphans: Vec<ElementIndex>,
    pub over_limit: bool,
}

impl<'d> Compiler<'d> {
    pub(crate) fn new(doc: &'d Document, text: &'d str) -> Self {
        Compiler {
            doc,
            text,
            lines: OnceLock::new(),
            diagnostics: Vec::new(),
            warnings: Vec::new(),
            ids: HashMap::new(),
            messages: HashMap::new(),
            errors: HashMap::new(),
            signals: HashMap::new(),
            escalations: HashMap::new(),
        }
    }

    pub(crate) fn position(&self, offset: usize) -> Position {
        self.lines
            .get_or_init(|| LineIndex::new(self.text.as_bytes()))
            .position(offset)
    }

    pub(crate) fn id(&self, node: usize) -> Option<&'d str> {
        self.doc.attr(node, Ns::None, "id")
    }

    pub(crate) fn report(&mut self, kind: DiagnosticKind, node: usize, message: String) {
        self.report_at(kind, node, node, message);
    }

    /// Reports at the position of `node`, naming the element `owner` (an event rather than its
    /// event definition, an activity rather than its loop characteristics).
    pub(crate) fn report_at(
        &mut self,
        kind: DiagnosticKind,
        node: usize,
        owner: usize,
        message: String,
    ) {
        let position = self.position(self.doc.node(node).offset as usize);
        let element_id = self.id(owner).map(str::to_string);
        self.diagnostics.push(Diagnostic {
            kind,
            position,
            element_id,
            message,
        });
    }

    /// Warns about each function `expression` calls that no built-in has (it evaluates to
    /// null), at `node`, naming `owner`.
    fn check_calls(&mut self, node: usize, owner: usize, expression: &FeelExpression, what: &str) {
        for name in expression.unknown_functions() {
            let position = self.position(self.doc.node(node).offset as usize);
            let element_id = self.id(owner).map(str::to_string);
            self.warnings.push(Diagnostic {
                kind: K::UnknownFunction,
                position,
                element_id,
                message: format!(
                    "the {what} `{}` calls `{name}(...)`, which no FEEL built-in function \
                     takes with these arguments: the call evaluates to null",
                    expression.source()
                ),
            });
        }
    }

    /// Looks up a reference; BPMN references are QNames, so `tns:x` finds `x` as well.
    pub(crate) fn lookup<T: Copy>(table: &HashMap<&'d str, T>, reference: &str) -> Option<T> {
        table.get(reference).copied().or_else(|| {
            let (_, local) = reference.split_once(':')?;
            table.get(local).copied()
        })
    }

    pub(crate) fn compile(mut self) -> Compiled {
        let root = self.doc.root();
        let root_node = self.doc.node(root);
        if root_node.ns != Ns::Bpmn || &*root_node.local != "definitions" {
            let namespace = match &root_node.uri {
                Some(uri) => format!("namespace {uri}"),
                None => "no namespace".to_string(),
            };
            let message = format!(
                "the root element is <{}> in {namespace}; a BPMN file has <definitions> in the \
                 BPMN 2.0 model namespace {}",
                root_node.local,
                crate::dom::BPMN_NAMESPACE
            );
            self.report(K::NotBpmn, root, message);
            return self.finish(Vec::new(), Vec::new());
        }
        self.collect_ids();
        self.collect_definitions(root);
        let mut processes = Vec::new();
        let mut non_executable = Vec::new();
        let mut executable = 0;
        let process_nodes: Vec<usize> = self
            .doc
            .children(root)
            .filter(|child| self.is_bpmn(*child, "process"))
            .collect();
        for node in process_nodes {
            match self.doc.attr(node, Ns::None, "isExecutable").map(str::trim) {
                Some("true") => {
                    executable += 1;
                    if let Some(process) = self.compile_process(node) {
                        processes.push(process);
                    }
                }
                Some("false") | None => {
                    non_executable.push(self.id(node).unwrap_or("(no id)").to_string());
                }
                Some(other) => {
                    executable += 1;
                    let message =
                        format!("isExecutable=\"{other}\" is not a boolean (true or false)");
                    self.report(K::InvalidValue, node, message);
                }
            }
        }
        if executable == 0 {
            let message = if non_executable.is_empty() {
                "the file has no process; ringflow deploys executable processes".to_string()
            } else {
                format!(
                    "no process is executable (found {}); set isExecutable=\"true\" on each \
                     process that ringflow should run",
                    non_executable.join(", ")
                )
            };
            self.report(K::NoExecutableProcess, root, message);
        }
        self.finish(processes, non_executable)
    }

    fn finish(self, processes: Vec<ProcessDefinition>, non_executable: Vec<String>) -> Compiled {
        let mut diagnostics = self.diagnostics;
        diagnostics.sort_by_key(|diagnostic| diagnostic.position);
        let mut warnings = self.warnings;
        warnings.sort_by_key(|diagnostic| diagnostic.position);
        warnings.truncate(crate::limits::DIAGNOSTICS_MAX);
        let processes = if diagnostics.is_empty() {
            processes
        } else {
            Vec::new()
        };
        Compiled {
            processes,
            non_executable,
            diagnostics,
            warnings,
        }
    }

    pub(crate) fn is_bpmn(&self, node: usize, local: &str) -> bool {
        let node = self.doc.node(node);
        node.ns == Ns::Bpmn && &*node.local == local
    }

    /// The arena holds elements in document order, so the first of two equal ids is the one
    /// that keeps it and the second is reported.
    fn collect_ids(&mut self) {
        for node in 0..self.doc.len() {
            let Some(id) = self.id(node) else { continue };
            if let Some(first) = self.ids.get(id).copied() {
                let first = self.position(self.doc.node(first).offset as usize);
                let message = format!("the id `{id}` is already used at line {first}");
                self.report(K::DuplicateId, node, message);
            } else {
                self.ids.insert(id, node);
            }
        }
    }

    fn collect_definitions(&mut self, root: usize) {
        for child in self.doc.children(root) {
            let Some(id) = self.id(child) else { continue };
            let node = self.doc.node(child);
            if node.ns != Ns::Bpmn {
                continue;
            }
            let table = match &*node.local {
                "message" => &mut self.messages,
                "error" => &mut self.errors,
                "signal" => &mut self.signals,
                "escalation" => &mut self.escalations,
                _ => continue,
            };
            table.entry(id).or_insert(child);
        }
    }

    fn compile_process(&mut self, node: usize) -> Option<ProcessDefinition> {
        let diagnostics_before = self.diagnostics.len();
        let mut build = ProcessBuild {
            elements: Vec::new(),
            drafts: Vec::new(),
            flows: Vec::new(),
            element_ids: HashMap::new(),
            flow_ids: HashMap::new(),
            unsupported_ids: Vec::new(),
            children: Vec::new(),
            boundaries: Vec::new(),
            associations: Vec::new(),
            failed: Vec::new(),
            broken_conditions: Vec::new(),
            orphans: Vec::new(),
            over_limit: false,
        };
        self.add_element(&mut build, node, "process", None);
        build.elements[0].listeners = self.execution_listeners(node);
        let mut flow_nodes = Vec::new();
        self.collect_scope(&mut build, node, ProcessDefinition::ROOT, &mut flow_nodes);
        if build.over_limit {
            let message = format!(
                "the process has more than PROCESS_ELEMENTS_MAX ({PROCESS_ELEMENTS_MAX}) elements"
            );
            self.report(K::Limit, node, message);
            return None;
        }
        self.resolve_flows(&mut build, &flow_nodes);
        for index in 1..build.elements.len() {
            self.fill_element(&mut build, ElementIndex(index as u32));
        }
        let failed: Vec<Option<&'static str>> = build
            .failed
            .iter()
            .zip(&build.drafts)
            .map(|(failed, draft)| failed.then_some(draft.local))
            .collect();
        let skips = crate::graph::Skips {
            failed,
            broken_conditions: build.broken_conditions.clone(),
            orphans: build.orphans.clone(),
        };
        let mut definition = self.assemble(build, node);
        crate::graph::check(self, &mut definition, &skips);
        (self.diagnostics.len() == diagnostics_before).then_some(definition)
    }

    fn add_element(
        &mut self,
        build: &mut ProcessBuild<'d>,
        node: usize,
        local: &'static str,
        scope: Option<ElementIndex>,
    ) -> ElementIndex {
        let index = ElementIndex(build.elements.len() as u32);
        let id = self.id(node).unwrap_or("");
        if id.is_empty() {
            self.report(K::MissingAttribute, node, format!("<{local}> has no id"));
        }
        build.element_ids.entry(id).or_insert(index);
        let name = self.doc.attr(node, Ns::None, "name").map(str::to_string);
        let documentation = self.documentation(node);
        let for_compensation = self.doc.attr(node, Ns::None, "isForCompensation") == Some("true");
        build.elements.push(Element {
            id: id.into(),
            name,
            documentation,
            kind: ElementKind::Process,
            scope,
            position: self.position(self.doc.node(node).offset as usize),
            io_mapping: IoMapping::default(),
            multi_instance: None,
            properties: Vec::new(),
            tool_parameters: Vec::new(),
            for_compensation,
            listeners: ExecutionListeners::default(),
            outgoing: Span::default(),
            incoming: Span::default(),
            children: Span::default(),
            start_events: Span::default(),
            event_subprocesses: Span::default(),
            boundary_events: Span::default(),
        });
        build.drafts.push(Draft {
            node,
            local,
            for_compensation,
        });
        build.children.push(Vec::new());
        build.boundaries.push(Vec::new());
        build.failed.push(false);
        index
    }

    /// The text of an element's `<documentation>` children, joined by newlines.
    fn documentation(&self, node: usize) -> Option<String> {
        let texts: Vec<&str> = self
            .doc
            .children(node)
            .filter(|child| self.is_bpmn(*child, "documentation"))
            .filter_map(|child| self.doc.node(child).text.as_deref())
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .collect();
        (!texts.is_empty()).then(|| texts.join("\n"))
    }

    /// Creates the flow nodes of one scope (recursively), and collects its sequence flows.
    fn collect_scope(
        &mut self,
        build: &mut ProcessBuild<'d>,
        scope_node: usize,
        scope: ElementIndex,
        flows: &mut Vec<(usize, ElementIndex)>,
    ) {
        let children: Vec<usize> = self.doc.children(scope_node).collect();
        for child in children {
            if build.elements.len() + flows.len() >= PROCESS_ELEMENTS_MAX {
                build.over_limit = true;
                return;
            }
            let node = self.doc.node(child);
            if node.ns != Ns::Bpmn {
                continue;
            }
            let local: &str = &node.local;
            if let Some(name) = FLOW_NODES.iter().find(|name| **name == local) {
                let index = self.add_element(build, child, name, Some(scope));
                build.children[scope.0 as usize].push(index);
                if local == "subProcess" || local == "adHocSubProcess" {
                    self.collect_scope(build, child, index, flows);
                }
            } else if local == "sequenceFlow" {
                flows.push((child, scope));
            } else if local == "association" {
                let source = self.doc.attr(child, Ns::None, "sourceRef").unwrap_or("");
                let target = self.doc.attr(child, Ns::None, "targetRef").unwrap_or("");
                build
                    .associations
                    .push((source.to_string(), target.to_string()));
            } else if let Some((_, why)) = UNSUPPORTED_FLOW_ELEMENTS
                .iter()
                .find(|(name, _)| *name == local)
            {
                if let Some(id) = self.id(child) {
                    build.unsupported_ids.push(id);
                }
                self.report(K::UnsupportedElement, child, format!("<{local}>: {why}"));
            } else if IGNORED_ELEMENTS.contains(&local) || OTHER_BPMN_ELEMENTS.contains(&local) {
                // No execution semantics inside a process (or reported where it matters).
            } else if is_event_definition(local) {
                let message = format!("<{local}> is only allowed inside an event");
                self.report(K::InvalidEventDefinition, child, message);
            } else {
                let message = format!("<{local}> is not a BPMN 2.0 element");
                self.report(K::UnknownElement, child, message);
            }
        }
    }

    fn resolve_flows(&mut self, build: &mut ProcessBuild<'d>, flows: &[(usize, ElementIndex)]) {
        for &(node, scope) in flows {
            // BPMN makes `id` optional, and Camunda 7 models often leave it off sequence flows.
            // Nothing can refer to a flow without an id, so one is made from its position,
            // which no XML id can equal (an XML id cannot contain `@`).
            let position = self.position(self.doc.node(node).offset as usize);
            let id = match self.id(node) {
                Some(id) if !id.is_empty() => id.to_string(),
                _ => format!("sequenceFlow@{position}"),
            };
            let source = self.flow_end(build, node, scope, "sourceRef");
            let target = self.flow_end(build, node, scope, "targetRef");
            let errors_before = self.diagnostics.len();
            let condition = self.flow_condition(node);
            let broken_condition = self.diagnostics.len() > errors_before;
            let (Some(source), Some(target)) = (source, target) else {
                let unsupported_source = self
                    .doc
                    .attr(node, Ns::None, "sourceRef")
                    .is_some_and(|source| build.unsupported_ids.contains(&source));
                if let (true, Some(target)) = (unsupported_source, target) {
                    build.orphans.push(target);
                }
                continue;
            };
            build.broken_conditions.push(broken_condition);
            let index = FlowIndex(build.flows.len() as u32);
            if let Some(id) = self.id(node) {
                build.flow_ids.entry(id).or_insert(index);
            }
            build.flows.push(SequenceFlow {
                id,
                source,
                target,
                condition,
                position,
            });
        }
    }

    fn flow_end(
        &mut self,
        build: &ProcessBuild<'d>,
        node: usize,
        scope: ElementIndex,
        attribute: &str,
    ) -> Option<ElementIndex> {
        let Some(reference) = self.doc.attr(node, Ns::None, attribute) else {
            let message = format!("the sequence flow has no {attribute}");
            self.report(K::MissingAttribute, node, message);
            return None;
        };
        if build.unsupported_ids.contains(&reference) {
            return None;
        }
        match Self::lookup(&build.element_ids, reference) {
            Some(index) if build.elements[index.0 as usize].scope == Some(scope) => Some(index),
            Some(_) => {
                let message = format!(
                    "{attribute} `{reference}` is in another scope; sequence flows cannot cross \
                     subprocess boundaries"
                );
                self.report(K::InvalidReference, node, message);
                None
            }
            None if Self::lookup(&self.ids, reference).is_some() => {
                let message = format!("{attribute} `{reference}` is not a flow node");
                self.report(K::InvalidReference, node, message);
                None
            }
            None => {
                let message = format!("{attribute} `{reference}` names no element");
                self.report(K::UnknownReference, node, message);
                None
            }
        }
    }

    fn flow_condition(&mut self, node: usize) -> Option<FeelExpression> {
        let condition = self
            .doc
            .children(node)
            .find(|c| self.is_bpmn(*c, "conditionExpression"))?;
        let text = self.doc.node(condition).text.clone().unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        self.feel(node, text, "condition")
    }

    /// Parses a value that must be FEEL (leading `=`), reporting what is wrong.
    pub(crate) fn feel(&mut self, node: usize, raw: &str, what: &str) -> Option<FeelExpression> {
        let Some(source) = raw.trim_start().strip_prefix('=') else {
            let hint = if raw.contains("${") || raw.contains("#{") {
                " (`${...}` is Camunda 7 JUEL, not FEEL)"
            } else {
                ""
            };
            let message =
                format!("the {what} `{raw}` must be a FEEL expression starting with `=`{hint}");
            self.report(K::InvalidExpression, node, message);
            return None;
        };
        match FeelExpression::parse(source) {
            Ok(expression) => {
                self.check_calls(node, node, &expression, what);
                Some(expression)
            }
            Err(error) => {
                self.report(K::InvalidExpression, node, format!("the {what}: {error}"));
                None
            }
        }
    }

    /// Parses a value that may be static or FEEL.
    pub(crate) fn expression(&mut self, node: usize, raw: &str, what: &str) -> Option<Expression> {
        match Expression::parse(raw) {
            Ok(expression) => {
                if let Expression::Feel(feel) = &expression {
                    self.check_calls(node, node, feel, what);
                }
                Some(expression)
            }
            Err(error) => {
                self.report(K::InvalidExpression, node, format!("the {what}: {error}"));
                None
            }
        }
    }

    fn assemble(&mut self, build: ProcessBuild<'d>, node: usize) -> ProcessDefinition {
        let ProcessBuild {
            mut elements,
            flows,
            children,
            boundaries,
            ..
        } = build;
        let mut flow_slots = Vec::with_capacity(flows.len() * 2);
        let mut element_slots = Vec::new();
        let mut outgoing: Vec<Vec<FlowIndex>> = vec![Vec::new(); elements.len()];
        let mut incoming: Vec<Vec<FlowIndex>> = vec![Vec::new(); elements.len()];
        for (index, flow) in flows.iter().enumerate() {
            outgoing[flow.source.0 as usize].push(FlowIndex(index as u32));
            incoming[flow.target.0 as usize].push(FlowIndex(index as u32));
        }
        let span = |slots_len: usize, len: usize| Span {
            start: slots_len as u32,
            len: len as u32,
        };
        for (index, element) in elements.iter_mut().enumerate() {
            element.outgoing = span(flow_slots.len(), outgoing[index].len());
            flow_slots.extend_from_slice(&outgoing[index]);
            element.incoming = span(flow_slots.len(), incoming[index].len());
            flow_slots.extend_from_slice(&incoming[index]);
        }
        for index in 0..elements.len() {
            let scope_children = &children[index];
            elements[index].children = span(element_slots.len(), scope_children.len());
            element_slots.extend_from_slice(scope_children);
            let starts: Vec<ElementIndex> = scope_children
                .iter()
                .copied()
                .filter(|child| {
                    matches!(
                        elements[child.0 as usize].kind,
                        ElementKind::StartEvent { .. }
                    )
                })
                .collect();
            elements[index].start_events = span(element_slots.len(), starts.len());
            element_slots.extend_from_slice(&starts);
            let event_subprocesses: Vec<ElementIndex> = scope_children
                .iter()
                .copied()
                .filter(|child| {
                    matches!(
                        elements[child.0 as usize].kind,
                        ElementKind::EventSubProcess
                    )
                })
                .collect();
            elements[index].event_subprocesses =
                span(element_slots.len(), event_subprocesses.len());
            element_slots.extend_from_slice(&event_subprocesses);
            elements[index].boundary_events = span(element_slots.len(), boundaries[index].len());
            element_slots.extend_from_slice(&boundaries[index]);
        }
        let version_tag = self
            .zeebe_child(node, "versionTag")
            .and_then(|tag| self.doc.attr(tag, Ns::None, "value").map(str::to_string));
        let compensable = elements.iter().any(|element| {
            matches!(
                element.kind,
                ElementKind::BoundaryEvent {
                    trigger: BoundaryTrigger::Compensation { .. },
                    ..
                }
            )
        });
        let listening = elements.iter().any(|element| {
            !element.listeners.start.is_empty() || !element.listeners.end.is_empty()
        });
        ProcessDefinition {
            compensable,
            listening,
            bpmn_process_id: self.id(node).unwrap_or("").into(),
            name: self.doc.attr(node, Ns::None, "name").map(str::to_string),
            version_tag,
            elements,
            flows,
            flow_slots,
            element_slots,
        }
    }

    /// The first `zeebe:<local>` inside the element's `extensionElements`.
    pub(crate) fn zeebe_child(&self, node: usize, local: &str) -> Option<usize> {
        let extensions = self
            .doc
            .children(node)
            .find(|c| self.is_bpmn(*c, "extensionElements"))?;
        self.doc.children(extensions).find(|c| {
            let child = self.doc.node(*c);
            child.ns == Ns::Zeebe && &*child.local == local
        })
    }

    pub(crate) fn zeebe_children(&self, node: usize, local: &str) -> Vec<usize> {
        self.doc
            .children(node)
            .filter(|c| {
                let child = self.doc.node(*c);
                child.ns == Ns::Zeebe && &*child.local == local
            })
            .collect()
    }

    /// Reads the event definitions of an event; reports more than one.
    pub(crate) fn event_definition(&mut self, node: usize) -> EventDef {
        let definitions: Vec<usize> = self
            .doc
            .children(node)
            .filter(|c| {
                let child = self.doc.node(*c);
                child.ns == Ns::Bpmn
                    && (is_event_definition(&child.local) || &*child.local == "eventDefinitionRef")
            })
            .collect();
        match definitions[..] {
            [] => EventDef::None,
            [definition] => self.read_event_definition(node, definition),
            _ => {
                let names: Vec<String> = definitions
                    .iter()
                    .map(|d| format!("<{}>", self.doc.node(*d).local))
                    .collect();
                let message = format!(
                    "the event has {} event definitions ({}); ringflow supports exactly one \
                     (multiple and parallel-multiple events are not supported)",
                    definitions.len(),
                    names.join(", ")
                );
                self.report(K::MultipleEventDefinitions, node, message);
                EventDef::Unsupported("")
            }
        }
    }

    fn read_event_definition(&mut self, owner: usize, definition: usize) -> EventDef {
        let local: &str = &self.doc.node(definition).local;
        match local {
            "messageEventDefinition" => EventDef::Message(definition),
            "timerEventDefinition" => EventDef::Timer(self.timer(owner, definition)),
            "errorEventDefinition" => {
                let code = self.reference_code(owner, definition, "errorRef", "errorCode", "error");
                EventDef::Error(code)
            }
            "signalEventDefinition" => EventDef::Signal(self.reference_code(
                owner,
                definition,
                "signalRef",
                "name",
                "signal",
            )),
            "escalationEventDefinition" => EventDef::Escalation(self.reference_code(
                owner,
                definition,
                "escalationRef",
                "escalationCode",
                "escalation",
            )),
            "compensateEventDefinition" => {
                if self.doc.attr(definition, Ns::None, "waitForCompletion") == Some("false") {
                    let text = "waitForCompletion=\"false\" is not supported: a compensation \
                                throw event always waits for the handlers it starts";
                    self.report(K::InvalidEventDefinition, owner, text.to_string());
                }
                EventDef::Compensate(
                    self.doc
                        .attr(definition, Ns::None, "activityRef")
                        .map(str::to_string),
                )
            }
            "linkEventDefinition" => {
                let name = self.doc.attr(definition, Ns::None, "name").map(str::trim);
                EventDef::Link(name.filter(|n| !n.is_empty()).map(str::to_string))
            }
            "terminateEventDefinition" => EventDef::Terminate,
            "conditionalEventDefinition" => {
                EventDef::Conditional(self.condition_of(owner, definition))
            }
            "cancelEventDefinition" => {
                EventDef::Unsupported("cancel events (they belong to transactions)")
            }
            _ => EventDef::Unsupported("event definitions given by reference"),
        }
    }

    /// The condition of a `conditionalEventDefinition`, with its `zeebe:conditionalFilter`.
    fn condition_of(&mut self, owner: usize, definition: usize) -> Option<Condition> {
        let text = self
            .doc
            .children(definition)
            .find(|c| self.is_bpmn(*c, "condition"))
            .and_then(|c| self.doc.node(c).text.clone())
            .unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            let message = "the conditional event has no condition: add a <condition> with a FEEL \
                           expression, such as `= amount > 100`";
            self.report_at(K::MissingAttribute, definition, owner, message.to_string());
            return None;
        }
        let expression = self.feel(owner, text, "condition")?;
        let filter = self.zeebe_child(definition, "conditionalFilter");
        let mut variables: Vec<String> = match filter
            .and_then(|f| self.doc.attr(f, Ns::None, "variableNames"))
            .map(|names| {
                names
                    .split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<String>>()
            }) {
            Some(names) if !names.is_empty() => names,
            _ => expression.names(),
        };
        variables.sort();
        variables.dedup();
        let (mut on_create, mut on_update) = (true, true);
        let events = filter.and_then(|f| self.doc.attr(f, Ns::None, "variableEvents"));
        if let Some(events) = events.filter(|events| !events.trim().is_empty()) {
            (on_create, on_update) = (false, false);
            for event in events.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                match event {
                    "create" => on_create = true,
                    "update" => on_update = true,
                    other => {
                        let message = format!(
                            "variableEvents `{other}`: a conditional event can watch `create` \
                             and `update` only"
                        );
                        self.report_at(K::InvalidValue, definition, owner, message);
                        return None;
                    }
                }
            }
        }
        Some(Condition {
            expression,
            variables,
            on_create,
            on_update,
        })
    }

    /// The message a definition (or receive task) refers to, with its correlation key.
    /// Reports a missing reference or name; the caller decides whether a key is required.
    pub(crate) fn message_ref(&mut self, owner: usize, node: usize) -> Option<MessageRef> {
        let Some(reference) = self.doc.attr(node, Ns::None, "messageRef") else {
            let message = "no message: set messageRef to a <message> with a name".to_string();
            self.report_at(K::MissingMessageName, node, owner, message);
            return None;
        };
        let Some(message_node) = Self::lookup(&self.messages, reference) else {
            let message = format!("messageRef `{reference}` names no <message>");
            let kind = if Self::lookup(&self.ids, reference).is_some() {
                K::InvalidReference
            } else {
                K::UnknownReference
            };
            self.report_at(kind, node, owner, message);
            return None;
        };
        let name = match self.doc.attr(message_node, Ns::None, "name").map(str::trim) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => {
                let message = format!("the message `{reference}` has no name");
                self.report_at(K::MissingMessageName, node, owner, message);
                return None;
            }
        };
        let name = self.expression(owner, &name, "message name")?;
        let correlation_key = self
            .zeebe_child(message_node, "subscription")
            .and_then(|s| self.doc.attr(s, Ns::None, "correlationKey"))
            .map(str::to_string)
            .filter(|key| !key.trim().is_empty());
        let correlation_key = match correlation_key {
            Some(key) => Some(self.expression(owner, &key, "correlation key")?),
            None => None,
        };
        Some(MessageRef {
            name,
            correlation_key,
        })
    }

    /// The code (or name) of the error, signal or escalation a definition refers to. `None`
    /// when there is no reference (a catch-all) or it is broken (reported).
    fn reference_code(
        &mut self,
        owner: usize,
        node: usize,
        attribute: &str,
        code_attribute: &str,
        what: &str,
    ) -> Option<Expression> {
        let reference = self.doc.attr(node, Ns::None, attribute)?;
        let table = match what {
            "error" => &self.errors,
            "signal" => &self.signals,
            _ => &self.escalations,
        };
        let Some(target) = Self::lookup(table, reference) else {
            let message = format!("{attribute} `{reference}` names no <{what}>");
            let kind = if Self::lookup(&self.ids, reference).is_some() {
                K::InvalidReference
            } else {
                K::UnknownReference
            };
            self.report_at(kind, node, owner, message);
            return None;
        };
        match self
            .doc
            .attr(target, Ns::None, code_attribute)
            .map(str::trim)
        {
            Some(code) if !code.is_empty() => self.expression(owner, code, code_attribute),
            _ => {
                let message = format!("the {what} `{reference}` has no {code_attribute}");
                self.report_at(K::MissingAttribute, node, owner, message);
                None
            }
        }
    }

    fn timer(&mut self, owner: usize, definition: usize) -> Option<TimerDefinition> {
        let parts: Vec<usize> = self
            .doc
            .children(definition)
            .filter(|c| {
                let local: &str = &self.doc.node(*c).local;
                matches!(local, "timeDuration" | "timeDate" | "timeCycle")
            })
            .collect();
        let [part] = parts[..] else {
            let message = if parts.is_empty() {
                "the timer has no timeDuration, timeDate or timeCycle".to_string()
            } else {
                "the timer has more than one of timeDuration, timeDate and timeCycle".to_string()
            };
            self.report_at(K::InvalidTimer, definition, owner, message);
            return None;
        };
        let local = self.doc.node(part).local.clone();
        let text = self.doc.node(part).text.clone().unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            self.report_at(
                K::InvalidTimer,
                definition,
                owner,
                format!("the <{local}> is empty"),
            );
            return None;
        }
        if let Some(source) = text.strip_prefix('=') {
            let expression = match FeelExpression::parse(source) {
                Ok(expression) => {
                    self.check_calls(definition, owner, &expression, "timer");
                    expression
                }
                Err(error) => {
                    self.report_at(
                        K::InvalidExpression,
                        definition,
                        owner,
                        format!("the timer: {error}"),
                    );
                    return None;
                }
            };
            return Some(match &*local {
                "timeDuration" => TimerDefinition::Duration(TimerValue::Expression(expression)),
                "timeDate" => TimerDefinition::Date(TimerValue::Expression(expression)),
                _ => TimerDefinition::Cycle(TimerValue::Expression(expression)),
            });
        }
        let parsed =
            match &*local {
                "timeDuration" => timer::parse_duration(text)
                    .map(|d| TimerDefinition::Duration(TimerValue::Fixed(d))),
                "timeDate" => timer::parse_date_time(text)
                    .map(|d| TimerDefinition::Date(TimerValue::Fixed(d))),
                _ => timer::parse_cycle(text).map(|c| TimerDefinition::Cycle(TimerValue::Fixed(c))),
            };
        match parsed {
            Ok(definition) => Some(definition),
            Err(error) => {
                self.report_at(K::InvalidTimer, definition, owner, error);
                None
            }
        }
    }

    /// `zeebe:taskDefinition` and `zeebe:taskHeaders`, if the element has a task definition.
    pub(crate) fn job_definition(&mut self, node: usize) -> Option<Option<JobDefinition>> {
        let definition = self.zeebe_child(node, "taskDefinition")?;
        let job_type = self
            .doc
            .attr(definition, Ns::None, "type")
            .map(str::trim)
            .unwrap_or("");
        if job_type.is_empty() {
            let message = "zeebe:taskDefinition has no type".to_string();
            self.report(K::MissingJobType, node, message);
            return Some(None);
        }
        let job_type = self.expression(node, job_type, "job type");
        let retries = self.retries(node, definition);
        let headers = self.task_headers(node);
        match (job_type, retries) {
            (Some(job_type), Some(retries)) => Some(Some(JobDefinition {
                job_type,
                retries,
                headers,
            })),
            _ => Some(None),
        }
    }

    /// `zeebe:taskHeaders`: static key-value pairs, in document order.
    pub(crate) fn task_headers(&self, node: usize) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let Some(header_list) = self.zeebe_child(node, "taskHeaders") {
            for header in self.zeebe_children(header_list, "header") {
                let attr = |name| self.doc.attr(header, Ns::None, name).unwrap_or("");
                headers.push((attr("key").to_string(), attr("value").to_string()));
            }
        }
        headers
    }

    /// The `retries` attribute of `holder` (default 3): a whole number or FEEL.
    pub(crate) fn retries(&mut self, node: usize, holder: usize) -> Option<Expression> {
        let retries = self
            .doc
            .attr(holder, Ns::None, "retries")
            .unwrap_or("3")
            .trim();
        match self.expression(node, retries, "retries") {
            Some(Expression::Static(value)) if value.parse::<u32>().is_err() => {
                let message = format!("retries=\"{value}\" is not a whole number");
                self.report(K::InvalidValue, node, message);
                None
            }
            other => other,
        }
    }

    /// `zeebe:executionListeners` of a flow node or of the process (see
    /// [`ExecutionListeners`]): each needs an `eventType` of `start` or `end` and a job
    /// `type`; one `(eventType, type)` pair may appear once.
    pub(crate) fn execution_listeners(&mut self, node: usize) -> ExecutionListeners {
        let mut listeners = ExecutionListeners::default();
        let Some(list) = self.zeebe_child(node, "executionListeners") else {
            return listeners;
        };
        let mut seen: Vec<(&'static str, String)> = Vec::new();
        for listener in self.zeebe_children(list, "executionListener") {
            let event = match self
                .doc
                .attr(listener, Ns::None, "eventType")
                .map(str::trim)
            {
                Some("start") => "start",
                Some("end") => "end",
                Some(other) => {
                    let message = format!(
                        "a zeebe:executionListener has eventType=\"{other}\"; it must be start \
                         or end"
                    );
                    self.report(K::InvalidValue, node, message);
                    continue;
                }
                None => {
                    let message = "a zeebe:executionListener has no eventType (start or end)";
                    self.report(K::MissingAttribute, node, message.to_string());
                    continue;
                }
            };
            let Some(definition) = self.listener_job(node, listener, event, "execution", &mut seen)
            else {
                continue;
            };
            match event {
                "start" => listeners.start.push(definition),
                _ => listeners.end.push(definition),
            }
        }
        listeners
    }

    /// The job of an execution or task listener (`kind`) of `event`: its `type` (static or
    /// FEEL, required) and `retries`. Reports a missing type and an (event, type) pair seen
    /// before on the element.
    pub(crate) fn listener_job(
        &mut self,
        node: usize,
        listener: usize,
        event: &'static str,
        kind: &str,
        seen: &mut Vec<(&'static str, String)>,
    ) -> Option<JobDefinition> {
        let job_type = self
            .doc
            .attr(listener, Ns::None, "type")
            .map(str::trim)
            .unwrap_or("")
            .to_string();
        let element = if kind == "task" {
            "taskListener"
        } else {
            "executionListener"
        };
        if job_type.is_empty() {
            let message = format!("a {event} zeebe:{element} has no job type");
            self.report(K::MissingJobType, node, message);
            return None;
        }
        if seen.iter().any(|(e, t)| *e == event && *t == job_type) {
            let message = format!(
                "two {event} {kind} listeners have the type `{job_type}`; each (eventType, \
                 type) pair may appear once"
            );
            self.report(K::InvalidValue, node, message);
            return None;
        }
        let parsed = self.expression(node, &job_type, &format!("{kind} listener type"));
        seen.push((event, job_type));
        let retries = self.retries(node, listener);
        Some(JobDefinition {
            job_type: parsed?,
            retries: retries?,
            headers: Vec::new(),
        })
    }

    /// A job definition that must be there: reports a missing one.
    pub(crate) fn required_job(&mut self, node: usize, what: &str) -> Option<JobDefinition> {
        match self.job_definition(node) {
            Some(job) => job,
            None => {
                let message = format!(
                    "{what} needs a job type: add <zeebe:taskDefinition type=\"...\"/> to its \
                     extensionElements"
                );
                self.report(K::MissingJobType, node, message);
                None
            }
        }
    }

    pub(crate) fn io_mapping(&mut self, node: usize) -> IoMapping {
        let mut mapping = IoMapping::default();
        let Some(io) = self.zeebe_child(node, "ioMapping") else {
            return mapping;
        };
        for child in self.doc.children(io).collect::<Vec<_>>() {
            let local = self.doc.node(child).local.clone();
            if self.doc.node(child).ns != Ns::Zeebe || !matches!(&*local, "input" | "output") {
                continue;
            }
            let target = self
                .doc
                .attr(child, Ns::None, "target")
                .map(str::trim)
                .unwrap_or("");
            if target.is_empty() {
                let message = format!("a zeebe:{local} mapping has no target variable");
                self.report(K::MissingAttribute, node, message);
                continue;
            }
            let target = target.to_string();
            let source = self
                .doc
                .attr(child, Ns::None, "source")
                .unwrap_or("=null")
                .to_string();
            let Some(source) = self.expression(node, &source, &format!("{local} `{target}`"))
            else {
                continue;
            };
            let entry = Mapping { source, target };
            if &*local == "input" {
                mapping.inputs.push(entry);
            } else {
                mapping.outputs.push(entry);
            }
        }
        mapping
    }

    pub(crate) fn properties(&self, node: usize) -> Vec<(String, String)> {
        let Some(properties) = self.zeebe_child(node, "properties") else {
            return Vec::new();
        };
        self.zeebe_children(properties, "property")
            .into_iter()
            .map(|property| {
                let name = self.doc.attr(property, Ns::None, "name").unwrap_or("");
                let value = self.doc.attr(property, Ns::None, "value").unwrap_or("");
                (name.to_string(), value.to_string())
            })
            .collect()
    }

    pub(crate) fn boolean(&mut self, node: usize, attribute: &str, default: bool) -> bool {
        self.boolean_of(node, node, attribute, default)
    }

    /// Reads a boolean attribute of `node`, reporting a bad value on the element `owner`.
    pub(crate) fn boolean_of(
        &mut self,
        owner: usize,
        node: usize,
        attribute: &str,
        default: bool,
    ) -> bool {
        match self.doc.attr(node, Ns::None, attribute).map(str::trim) {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                let message = format!("{attribute}=\"{other}\" is not a boolean (true or false)");
                self.report_at(K::InvalidValue, node, owner, message);
                default
            }
        }
    }

    /// Checks every `zeebe:` extension element of a flow node: reports the ones that change
    /// behaviour and that ringflow does not implement, instead of silently ignoring them.
    pub(crate) fn check_extensions(&mut self, node: usize) {
        let Some(extensions) = self
            .doc
            .children(node)
            .find(|c| self.is_bpmn(*c, "extensionElements"))
        else {
            return;
        };
        for child in self.doc.children(extensions).collect::<Vec<_>>() {
            let child_node = self.doc.node(child);
            if child_node.ns != Ns::Zeebe {
                continue;
            }
            let local = child_node.local.clone();
            let why = match &*local {
                "taskDefinition"
                | "taskHeaders"
                | "ioMapping"
                | "subscription"
                | "calledElement"
                | "loopCharacteristics"
                | "script"
                | "calledDecision"
                | "properties"
                | "userTask"
                | "assignmentDefinition"
                | "taskSchedule"
                | "priorityDefinition"
                | "formDefinition"
                | "versionTag"
                | "executionListeners" => continue,
                // An embedded form, for a tasklist to read from the model; the engine
                // carries no behaviour for it.
                "userTaskForm" => continue,
                "adHoc" if &*self.doc.node(node).local == "adHocSubProcess" => continue,
                "adHoc" => "zeebe:adHoc belongs on an adHocSubProcess",
                "taskListeners" if &*self.doc.node(node).local == "userTask" => continue,
                "taskListeners" => "zeebe:taskListeners belong on a user task",
                _ => "this Camunda 8 extension is not supported",
            };
            self.report(K::UnsupportedElement, node, format!("zeebe:{local}: {why}"));
        }
    }
}
