//! Ad-hoc subprocesses (`<adHocSubProcess>` with `zeebe:adHoc`, Camunda 8.7 and 8.8).
//!
//! The elements inside an ad-hoc subprocess are not started by a start event: each is
//! *activated*, any number of times, in any order. The ones that can be activated are its
//! flow nodes without incoming sequence flows (not its event subprocesses, boundary events or
//! compensation handlers); sequence flows inside order what follows an activated element.
//!
//! Entering the subprocess (after its input mappings and the waits of its boundary events)
//! sets two local variables: `adHocSubProcessElements`, the activatable elements (each with
//! `elementId`, `elementName`, `documentation`, `properties` from `zeebe:properties`, and
//! `parameters`, the tools' inputs an AI agent fills, from the `fromAi(...)` calls in its
//! input mappings: see [`ringflow_bpmn::from_ai`]; empty fields left out, as in Camunda),
//! and the output collection (if any) as an empty list. It then evaluates
//! `activeElementsCollection` (which may read them): a list of element ids. Anything but a
//! list of activatable ids is an incident. Then it opens the waits of its event
//! subprocesses and activates each element named. Without the expression, or with an empty
//! list, nothing is activated and the subprocess waits.
//!
//! Each activation makes an *inner instance* (Camunda's `<id>#innerInstance`) inside the
//! subprocess, and the element inside that. The inner instance is the scope of the flow that
//! follows the element. Its local variables are those the activation was given
//! (`ActivateAdHocActivities`) and, when the output element is a variable or a path in one
//! (`= result`, `= result.text`), that variable as `null`, as Camunda does: a job of the
//! activation that sets `result` sets the inner instance's, so activations running side by
//! side do not overwrite each other's. Everything else propagates as anywhere (to the scope
//! that has the variable, else to the process).
//!
//! When an inner instance's flow is done (no token left in it), the output element is
//! evaluated in it and appended to the output collection, then the inner instance completes
//! and `completionCondition` is evaluated in the subprocess (seeing the appended output):
//!
//! - without a completion condition, the subprocess completes when no inner instance is left;
//! - when the condition holds and `cancelRemainingInstances` is true (the default), the inner
//!   instances still running are terminated and the subprocess completes; when it is false,
//!   the subprocess completes once none is left (the condition is evaluated again as each
//!   completes);
//! - when it does not hold, the subprocess waits, even with no inner instance left, for
//!   more activations (`ActivateAdHocActivities`).
//!
//! A completing subprocess propagates its output collection to the scope around it, then
//! applies its output mappings; its other local variables end with it. An event subprocess
//! inside that ends with nothing else running completes it too (an interrupting one always,
//! a non-interrupting one when no completion condition is set or it holds).
//!
//! `ActivateAdHocActivities` (see `activate`) activates elements of a running ad-hoc
//! subprocess from outside, each with variables local to its inner instance, optionally
//! terminating the inner instances still running first.
//!
//! **The job-worker implementation** (Camunda 8.8, `zeebe:taskDefinition` on the
//! subprocess; the pattern of Camunda's AI agent): there is no `activeElementsCollection`
//! and no completion condition; a worker decides. Entering the subprocess creates a job for
//! it. The worker completes it with a decision ([`AdHocJobResult`], `CompleteAdHocJob`):
//! elements to activate (each with its inner instance's variables; one element may be
//! activated several times), whether the subprocess is done, and whether the activations
//! still running are terminated. Each time an activation ends (or a non-interrupting event
//! subprocess inside), the open job is withdrawn and a new one is created, so the worker
//! decides again with what is known then; once the worker said it is done, no new job is
//! made and the subprocess completes when nothing runs any more. Done and activating at once
//! is refused. The job's own variables propagate from the subprocess. A plain `CompleteJob`
//! of such a job is a decision to activate nothing.

use std::sync::Arc;

use ringflow_bpmn::{AdHoc, ElementIndex, ElementKind, ProcessDefinition, ToolParameter};

use crate::engine::{Ctx, Event, Keys, Outcome, Rejection, RejectionCode, Response, Variables};
use crate::feel;
use crate::instance::{ElementInstance, ElementRole, IncidentRetry};
use crate::key::Key;
use crate::limits::{AD_HOC_ACTIVATIONS_MAX, ELEMENT_INSTANCES_PER_INSTANCE_MAX};
use crate::run::{Run, Step};
use crate::state::State;
use crate::variables::check_document_size;

/// The local variable that lists an ad-hoc subprocess's activatable elements.
pub const ELEMENTS_VARIABLE: &str = "adHocSubProcessElements";

/// One element to activate in [`crate::Command::ActivateAdHocActivities`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdHocActivation {
    /// The BPMN id of an activatable element of the subprocess.
    pub element_id: String,
    /// Variables created in the activation's inner instance.
    pub variables: Variables,
}

/// What the worker of an ad-hoc subprocess decided (Camunda's job result for one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdHocJobResult {
    /// Elements to activate, in order, each with its inner instance's variables; one element
    /// may be named several times.
    pub activate_elements: Vec<AdHocActivation>,
    /// The subprocess is done: it completes once no activation runs (at once when none
    /// does, or when `cancel_remaining_instances` ends them).
    pub completion_condition_fulfilled: bool,
    /// Terminate the activations running before this decision.
    pub cancel_remaining_instances: bool,
}

/// The `<id>#innerInstance` id of an ad-hoc subprocess's inner instances. Out of line: the
/// function that writes every element's events stays small enough to inline.
#[cold]
#[inline(never)]
pub(crate) fn inner_instance_id(definition: &ProcessDefinition, element: ElementIndex) -> Arc<str> {
    Arc::clone(&ad_hoc_of(definition, element).inner_instance_id)
}

fn ad_hoc_of(definition: &ProcessDefinition, element: ElementIndex) -> &AdHoc {
    match &definition.element(element).kind {
        ElementKind::AdHocSubProcess(ad_hoc) => ad_hoc,
        _ => unreachable!("the element is an ad-hoc subprocess"),
    }
}

/// The value of `adHocSubProcessElements`: for each activatable element, `elementId`,
/// `elementName`, `documentation`, `properties` (a property with an empty value as null) and
/// `parameters` (its tool parameters: `name`, `description`, `type`, `schema`, `options`).
/// As in Camunda, a field that is missing, null or empty is left out.
fn elements_metadata(definition: &ProcessDefinition, element: ElementIndex) -> serde_json::Value {
    use serde_json::{Map, Value};
    let text = |value: &Option<String>| {
        value
            .as_deref()
            .filter(|text| !text.is_empty())
            .map(|text| Value::String(text.to_string()))
    };
    let elements = definition
        .activatable(element)
        .map(|index| {
            let inner = definition.element(index);
            let mut metadata = Map::new();
            metadata.insert("elementId".into(), Value::String(inner.id.to_string()));
            if let Some(name) = text(&inner.name) {
                metadata.insert("elementName".into(), name);
            }
            if let Some(documentation) = text(&inner.documentation) {
                metadata.insert("documentation".into(), documentation);
            }
            if !inner.properties.is_empty() {
                let properties = inner
                    .properties
                    .iter()
                    .map(|(name, value)| {
                        let value = match value.is_empty() {
                            true => Value::Null,
                            false => Value::String(value.clone()),
                        };
                        (name.clone(), value)
                    })
                    .collect();
                metadata.insert("properties".into(), Value::Object(properties));
            }
            if !inner.tool_parameters.is_empty() {
                let parameters = inner.tool_parameters.iter().map(tool_parameter).collect();
                metadata.insert("parameters".into(), Value::Array(parameters));
            }
            Value::Object(metadata)
        })
        .collect();
    Value::Array(elements)
}

/// One of `parameters` in `adHocSubProcessElements` (empty fields left out, as in Camunda).
fn tool_parameter(parameter: &ToolParameter) -> serde_json::Value {
    use serde_json::Value;
    let mut fields = serde_json::Map::new();
    fields.insert("name".into(), Value::String(parameter.name.clone()));
    let texts = [
        ("description", &parameter.description),
        ("type", &parameter.type_name),
    ];
    for (field, value) in texts {
        if let Some(text) = value.as_deref().filter(|text| !text.is_empty()) {
            fields.insert(field.into(), Value::String(text.to_string()));
        }
    }
    for (field, value) in [
        ("schema", &parameter.schema),
        ("options", &parameter.options),
    ] {
        if let Some(map) = value.as_ref().filter(|map| !map.is_empty()) {
            fields.insert(field.into(), Value::Object(map.clone()));
        }
    }
    Value::Object(fields)
}

/// The activatable elements with these ids, in order, or why not.
fn resolve(
    definition: &ProcessDefinition,
    element: ElementIndex,
    ids: &[String],
) -> Result<Vec<ElementIndex>, String> {
    let mut targets = Vec::with_capacity(ids.len());
    let mut unknown = Vec::new();
    for id in ids {
        match definition
            .activatable(element)
            .find(|index| *definition.element(*index).id == **id)
        {
            Some(index) => targets.push(index),
            None => unknown.push(format!("`{id}`")),
        }
    }
    if unknown.is_empty() {
        return Ok(targets);
    }
    let known: Vec<String> = definition
        .activatable(element)
        .map(|index| format!("`{}`", definition.element(index).id))
        .collect();
    Err(format!(
        "ad-hoc subprocess `{}` has no activatable element {} (it can activate {})",
        definition.element(element).id,
        unknown.join(", "),
        known.join(", ")
    ))
}

impl Run<'_> {
    /// The subprocess was entered (input mappings applied, boundary waits open): set its
    /// variables, open its event subprocesses' waits and activate `activeElementsCollection`.
    pub(crate) fn start_ad_hoc(&mut self, key: Key, element: ElementIndex) {
        let definition = self.definition_of(key);
        let ad_hoc = ad_hoc_of(&definition, element);
        // First, as in Camunda: the collection may read them (`= adHocSubProcessElements.elementId`
        // activates every element).
        let metadata = elements_metadata(&definition, element);
        if let Err(message) = self.set_local(key, ELEMENTS_VARIABLE, metadata) {
            return self.incident(key, message);
        }
        if let Some(collection) = &ad_hoc.output_collection
            && let Err(message) =
                self.set_local(key, collection, serde_json::Value::Array(Vec::new()))
        {
            return self.incident(key, message);
        }
        let ids = match &ad_hoc.active_elements {
            None => Vec::new(),
            Some(expression) => {
                let lookup = |name: &str| self.lookup(key, name);
                match feel::evaluate_with(expression, lookup, self.feel_inputs()) {
                    Ok(evaluated) => match list_of_strings(evaluated.value) {
                        Ok(ids) => ids,
                        Err(other) => {
                            let message = format!(
                                "the active elements collection `{}` gave {other}, not a list of \
                                 element ids",
                                expression.source()
                            );
                            return self.incident(key, message);
                        }
                    },
                    Err(error) => {
                        return self.incident(key, format!("active elements collection: {error}"));
                    }
                }
            }
        };
        if ids.len() > AD_HOC_ACTIVATIONS_MAX {
            let message = format!(
                "the active elements collection has {} ids, over AD_HOC_ACTIVATIONS_MAX \
                 ({AD_HOC_ACTIVATIONS_MAX})",
                ids.len()
            );
            return self.incident(key, message);
        }
        let targets = match resolve(&definition, element, &ids) {
            Ok(targets) => targets,
            Err(message) => return self.incident(key, message),
        };
        if let Some(message) = over_element_limit(self.state, key, targets.len()) {
            return self.incident(key, message);
        }
        let esp_starts: Vec<ElementIndex> = definition
            .event_subprocesses(element)
            .iter()
            .flat_map(|esp| definition.start_events(*esp).iter().copied())
            .collect();
        if !esp_starts.is_empty() && !self.open_waits(key, &esp_starts) {
            return;
        }
        if let Some(job) = &ad_hoc.job {
            return self.create_worker_job(key, job);
        }
        for target in targets {
            self.activate_in_ad_hoc(key, target, Variables::new());
        }
    }

    /// Sets one local variable of `scope` in place (no copy of its document), noting the
    /// change for conditional events; refused, with nothing changed, when the document would
    /// grow past `VARIABLE_DOCUMENT_BYTES_MAX`.
    fn set_local(
        &mut self,
        scope: Key,
        name: &str,
        value: serde_json::Value,
    ) -> Result<(), String> {
        let instance = self.state.elements[&scope].process_instance_key;
        let watched = self.state.has_conditionals(instance);
        let document = self.state.variables_mut(scope);
        let old = document.insert(name.to_string(), value);
        if let Err(rejection) = check_document_size(document) {
            match old {
                Some(old) => document.insert(name.to_string(), old),
                None => document.remove(name),
            };
            return Err(rejection.message);
        }
        if watched {
            let changed = match &old {
                None => Some(true),
                Some(old) if Some(old) != document.get(name) => Some(false),
                Some(_) => None,
            };
            if let Some(created) = changed {
                self.note_change(instance, scope, name.to_string(), created);
            }
        }
        Ok(())
    }

    /// Creates the job of an ad-hoc subprocess's worker.
    fn create_worker_job(&mut self, key: Key, job: &ringflow_bpmn::JobDefinition) {
        self.create_job_for(key, job, None);
        if let Some(job) = self.state.elements[&key].job {
            self.state.index.ad_hoc_jobs.insert(job);
        }
    }

    /// Withdraws the open job of an ad-hoc subprocess's worker, if it has one.
    fn cancel_worker_job(&mut self, key: Key) {
        let Some(job_key) = self.state.elements[&key].job else {
            return;
        };
        self.state.remove_job(job_key);
        self.state.elements.get_mut(&key).expect("live").job = None;
        self.events.push(Event::JobCancelled { key: job_key });
    }

    /// After a path in a worker's subprocess ended: the worker decides again, unless it
    /// said the subprocess is done (then it completes once nothing runs).
    fn ask_worker_again(&mut self, ad_hoc: Key, job: &ringflow_bpmn::JobDefinition) {
        if self.state.elements[&ad_hoc].incident.is_some() {
            // Its job failed: resolving the incident hands it out again, and the worker
            // decides then, with what is known then.
            return;
        }
        self.cancel_worker_job(ad_hoc);
        if self.state.ad_hoc_fulfilled.contains(&ad_hoc) {
            if self.state.elements[&ad_hoc].tokens == 0 {
                self.finish_ad_hoc(ad_hoc);
            }
            return;
        }
        self.create_worker_job(ad_hoc, job);
    }

    /// Makes an inner instance of the ad-hoc subprocess `ad_hoc` with `variables` as its
    /// local variables (their size checked by the caller), and activates `target` in it.
    pub(crate) fn activate_in_ad_hoc(
        &mut self,
        ad_hoc: Key,
        target: ElementIndex,
        variables: Variables,
    ) {
        let (element, process_instance_key) = {
            let instance = &self.state.elements[&ad_hoc];
            (instance.element, instance.process_instance_key)
        };
        let key = self.key();
        self.state
            .instances
            .get_mut(&process_instance_key)
            .expect("live")
            .live_elements += 1;
        self.state.elements.insert(
            key,
            ElementInstance {
                key,
                process_instance_key,
                element,
                scope: Some(ad_hoc),
                tokens: 0,
                job: None,
                incident: None,
                role: ElementRole::AdHocInner,
                called: None,
            },
        );
        self.state.children.add(ad_hoc, key);
        self.state
            .elements
            .get_mut(&ad_hoc)
            .expect("the subprocess is live")
            .tokens += 1;
        self.element_event(key, |key, process_instance_key, element_id| {
            Event::ElementActivated {
                key,
                process_instance_key,
                element_id,
            }
        });
        let definition = self.definition_of(ad_hoc);
        let mut variables = variables;
        if let Some(name) = ad_hoc_of(&definition, element)
            .output_element
            .as_ref()
            .and_then(|output| feel::plain_reference(output.source()))
            && !variables.contains_key(name)
        {
            variables.insert(name.to_string(), serde_json::Value::Null);
        }
        if !variables.is_empty() {
            self.store_variables(key, variables);
        }
        self.queue(Step::Activate {
            element: target,
            scope: key,
            counted: false,
        });
    }

    /// An inner instance's flow is done: append its output, evaluate the completion
    /// condition, complete it and let the subprocess decide. A failing output element,
    /// condition or full output collection is an incident on the inner instance; resolving
    /// it tries again.
    pub(crate) fn complete_ad_hoc_inner(&mut self, key: Key) {
        let ad_hoc = self.state.elements[&key]
            .scope
            .expect("an inner instance has its subprocess");
        let definition = self.definition_of(key);
        let element = self.state.elements[&key].element;
        let spec = ad_hoc_of(&definition, element);
        let mut appended: Option<(&str, serde_json::Value)> = None;
        if let (Some(collection), Some(output)) = (&spec.output_collection, &spec.output_element) {
            let lookup = |name: &str| self.lookup(key, name);
            let value = match feel::evaluate_with(output, lookup, self.feel_inputs()) {
                Ok(evaluated) => evaluated.value,
                Err(error) => {
                    let message = format!("output element: {error}");
                    return self.incident_with(key, message, IncidentRetry::Completion);
                }
            };
            let current = self
                .state
                .variables
                .get(&ad_hoc)
                .and_then(|local| local.get(collection));
            let mut list = match current {
                None => Vec::new(),
                Some(serde_json::Value::Array(list)) => list.clone(),
                Some(other) => {
                    let message =
                        format!("the output collection `{collection}` holds {other}, not a list");
                    return self.incident_with(key, message, IncidentRetry::Completion);
                }
            };
            list.push(value);
            appended = Some((collection, serde_json::Value::Array(list)));
        }
        let fulfilled = match &spec.completion_condition {
            None => None,
            Some(condition) => {
                let lookup = |name: &str| match &appended {
                    Some((collection, list)) if *collection == name => Some(list),
                    _ => self.lookup(ad_hoc, name),
                };
                match feel::condition_with(condition, lookup, self.feel_inputs()) {
                    Ok(holds) => Some(holds),
                    Err(error) => {
                        let message = format!("completion condition: {error}");
                        return self.incident_with(key, message, IncidentRetry::Completion);
                    }
                }
            }
        };
        if let Some((collection, list)) = appended
            && let Err(message) = self.set_local(ad_hoc, collection, list)
        {
            return self.incident_with(key, message, IncidentRetry::Completion);
        }
        self.element_event(key, |key, process_instance_key, element_id| {
            Event::ElementCompleted {
                key,
                process_instance_key,
                element_id,
            }
        });
        self.remove_element_counted(key);
        if let Some(job) = &spec.job {
            return self.ask_worker_again(ad_hoc, job);
        }
        self.ad_hoc_decide(ad_hoc, fulfilled, spec.cancel_remaining_instances);
    }

    /// A path directly inside the subprocess (an event subprocess) ended and no token is
    /// left in it.
    pub(crate) fn ad_hoc_path_ended(&mut self, ad_hoc: Key, ended: ElementIndex) {
        let definition = self.definition_of(ad_hoc);
        let interrupting = matches!(definition.element(ended).kind, ElementKind::EventSubProcess)
            && matches!(
                definition.element(definition.start_events(ended)[0]).kind,
                ElementKind::StartEvent {
                    interrupting: true,
                    ..
                }
            );
        if interrupting {
            // The event subprocess ended the subprocess's work: it completes.
            return self.finish_ad_hoc(ad_hoc);
        }
        let element = self.state.elements[&ad_hoc].element;
        let spec = ad_hoc_of(&definition, element);
        if let Some(job) = &spec.job {
            return self.ask_worker_again(ad_hoc, job);
        }
        let fulfilled = match &spec.completion_condition {
            None => None,
            Some(condition) => {
                let lookup = |name: &str| self.lookup(ad_hoc, name);
                match feel::condition_with(condition, lookup, self.feel_inputs()) {
                    Ok(holds) => Some(holds),
                    Err(error) => {
                        let message = format!("completion condition: {error}");
                        return self.incident_with(ad_hoc, message, IncidentRetry::Completion);
                    }
                }
            }
        };
        self.ad_hoc_decide(ad_hoc, fulfilled, spec.cancel_remaining_instances);
    }

    /// After a path in the subprocess ended: complete it, terminate the rest, or wait.
    fn ad_hoc_decide(&mut self, ad_hoc: Key, fulfilled: Option<bool>, cancel_remaining: bool) {
        let left = self.state.elements[&ad_hoc].tokens;
        match fulfilled {
            None | Some(true) if left == 0 => self.finish_ad_hoc(ad_hoc),
            Some(true) if cancel_remaining => {
                self.terminate_children(ad_hoc, None);
                self.finish_ad_hoc(ad_hoc);
            }
            _ => {}
        }
    }

    /// The subprocess is done: its output collection goes to the scope around it, then it
    /// completes (output mappings, outgoing flows).
    fn finish_ad_hoc(&mut self, ad_hoc: Key) {
        if self.completing(ad_hoc) {
            return;
        }
        self.cancel_worker_job(ad_hoc);
        let definition = self.definition_of(ad_hoc);
        let instance = &self.state.elements[&ad_hoc];
        let (element, scope) = (
            instance.element,
            instance.scope.expect("a subprocess has a scope"),
        );
        if let Some(collection) = &ad_hoc_of(&definition, element).output_collection {
            let value = self
                .state
                .variables
                .get(&ad_hoc)
                .and_then(|local| local.get(collection))
                .cloned()
                .unwrap_or(serde_json::Value::Array(Vec::new()));
            let mut variables = Variables::new();
            variables.insert(collection.clone(), value);
            if !self.propagate(ad_hoc, scope, variables, IncidentRetry::Completion) {
                return;
            }
        }
        self.complete_later(ad_hoc);
    }
}

/// Why activating `count` more elements in the ad-hoc subprocess `key` would go over
/// `ELEMENT_INSTANCES_PER_INSTANCE_MAX` (each takes an inner instance and the element).
fn over_element_limit(state: &State, key: Key, count: usize) -> Option<String> {
    let instance = state.elements[&key].process_instance_key;
    let live = state.instances[&instance].live_elements as usize;
    (live + 2 * count > ELEMENT_INSTANCES_PER_INSTANCE_MAX as usize).then(|| {
        format!(
            "activating {count} elements would take the instance over \
             ELEMENT_INSTANCES_PER_INSTANCE_MAX ({ELEMENT_INSTANCES_PER_INSTANCE_MAX}) live \
             elements"
        )
    })
}

/// A list of strings, or the value that is not one.
fn list_of_strings(value: serde_json::Value) -> Result<Vec<String>, serde_json::Value> {
    let serde_json::Value::Array(items) = value else {
        return Err(value);
    };
    if items.iter().all(serde_json::Value::is_string) {
        Ok(items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(text) => text,
                _ => unreachable!("checked above"),
            })
            .collect())
    } else {
        Err(serde_json::Value::Array(items))
    }
}

/// `ActivateAdHocActivities`: activates elements of the running ad-hoc subprocess instance
/// `key`, each in an inner instance of its own with its variables there. With
/// `cancel_remaining_instances`, the inner instances still running are terminated first.
pub(crate) fn activate(
    state: &mut State,
    key: Key,
    elements: Vec<AdHocActivation>,
    cancel_remaining_instances: bool,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let not_found = || {
        Rejection::new(
            RejectionCode::InstanceNotFound,
            format!("no running ad-hoc subprocess instance has the key {key}"),
        )
    };
    let instance = state.elements.get(&key).ok_or_else(not_found)?;
    if instance.role == ElementRole::Body || instance.role == ElementRole::AdHocInner {
        return Err(not_found());
    }
    let process_instance = &state.instances[&instance.process_instance_key];
    let definition =
        Arc::clone(&state.processes[&process_instance.process_definition_key].definition);
    let element = instance.element;
    if !matches!(
        definition.element(element).kind,
        ElementKind::AdHocSubProcess(_)
    ) {
        return Err(not_found());
    }
    if instance.incident.is_some() {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!(
                "ad-hoc subprocess instance {key} is not active: it waits at an incident \
                 (resolve it first)"
            ),
        ));
    }
    if elements.is_empty() {
        return Err(Rejection::new(
            RejectionCode::InvalidArgument,
            "name at least one element to activate".to_string(),
        ));
    }
    if elements.len() > AD_HOC_ACTIVATIONS_MAX {
        return Err(Rejection::new(
            RejectionCode::LimitExceeded,
            format!(
                "{} elements to activate, over AD_HOC_ACTIVATIONS_MAX ({AD_HOC_ACTIVATIONS_MAX})",
                elements.len()
            ),
        ));
    }
    let ids: Vec<String> = elements.iter().map(|a| a.element_id.clone()).collect();
    for (position, id) in ids.iter().enumerate() {
        if ids[..position].contains(id) {
            return Err(Rejection::new(
                RejectionCode::InvalidArgument,
                format!("element `{id}` is named twice; activate each element once per request"),
            ));
        }
    }
    let targets = resolve(&definition, element, &ids)
        .map_err(|message| Rejection::new(RejectionCode::InvalidArgument, message))?;
    for activation in &elements {
        check_document_size(&activation.variables)?;
    }
    if let Some(message) = over_element_limit(state, key, targets.len()) {
        return Err(Rejection::new(RejectionCode::LimitExceeded, message));
    }
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    if cancel_remaining_instances {
        for child in run.state.children_of(key) {
            if run.state.elements[&child].role == ElementRole::AdHocInner {
                run.terminate(child);
            }
        }
    }
    for (target, activation) in targets.into_iter().zip(elements) {
        run.activate_in_ad_hoc(key, target, activation.variables);
    }
    run.run();
    Ok(run.outcome(Response::AdHocActivitiesActivated { key }))
}

/// `CompleteAdHocJob` (and a plain `CompleteJob` of such a job, with an empty result): the
/// worker of an ad-hoc subprocess decided. Checked before anything changes.
pub(crate) fn complete_job(
    state: &mut State,
    key: Key,
    variables: Variables,
    result: AdHocJobResult,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let Some(job) = state.jobs.get(&key) else {
        return Err(Rejection::new(
            RejectionCode::JobNotFound,
            format!("job {key} does not exist or was already completed"),
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
    let ad_hoc = job.element_instance_key;
    if !state.index.ad_hoc_jobs.contains(&key) {
        return Err(Rejection::new(
            RejectionCode::InvalidArgument,
            format!(
                "job {key} is not the job of an ad-hoc subprocess's worker; complete it \
                 without an ad-hoc result"
            ),
        ));
    }
    if result.completion_condition_fulfilled && !result.activate_elements.is_empty() {
        return Err(Rejection::new(
            RejectionCode::InvalidArgument,
            "a worker's result cannot both fulfil the completion condition and activate \
             elements"
                .to_string(),
        ));
    }
    if result.activate_elements.len() > AD_HOC_ACTIVATIONS_MAX {
        return Err(Rejection::new(
            RejectionCode::LimitExceeded,
            format!(
                "{} elements to activate, over AD_HOC_ACTIVATIONS_MAX ({AD_HOC_ACTIVATIONS_MAX})",
                result.activate_elements.len()
            ),
        ));
    }
    let instance = &state.elements[&ad_hoc];
    let element = instance.element;
    let process = &state.instances[&instance.process_instance_key];
    let definition = Arc::clone(&state.processes[&process.process_definition_key].definition);
    let ids: Vec<String> = result
        .activate_elements
        .iter()
        .map(|activation| activation.element_id.clone())
        .collect();
    let targets = resolve(&definition, element, &ids)
        .map_err(|message| Rejection::new(RejectionCode::InvalidArgument, message))?;
    for activation in &result.activate_elements {
        check_document_size(&activation.variables)?;
    }
    if let Some(message) = over_element_limit(state, ad_hoc, targets.len()) {
        return Err(Rejection::new(RejectionCode::LimitExceeded, message));
    }
    let updates = crate::variables::plan_propagation(state, ad_hoc, variables)?;
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    for update in updates {
        run.merge_variables(update);
    }
    run.state.remove_job(key);
    run.state.elements.get_mut(&ad_hoc).expect("live").job = None;
    let running: Vec<Key> = run
        .state
        .children_of(ad_hoc)
        .into_iter()
        .filter(|child| run.state.elements[child].role == ElementRole::AdHocInner)
        .collect();
    for (target, activation) in targets.into_iter().zip(result.activate_elements) {
        run.activate_in_ad_hoc(ad_hoc, target, activation.variables);
    }
    if result.cancel_remaining_instances {
        for child in running {
            run.terminate(child);
        }
    }
    if result.completion_condition_fulfilled {
        run.state.ad_hoc_fulfilled.insert(ad_hoc);
        if run.state.elements[&ad_hoc].tokens == 0 {
            run.finish_ad_hoc(ad_hoc);
        }
    }
    run.run();
    Ok(run.outcome(Response::JobCompleted { key }))
}
