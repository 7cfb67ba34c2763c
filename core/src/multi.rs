//! Multi-instance activities (`zeebe:loopCharacteristics`), parallel and sequential.
//!
//! Entering a multi-instance activity makes a *body* element instance. The body evaluates
//! the input collection (it must be a list), sets the output collection (if any) to a list
//! of `null`s as its local variable, opens the waits of the activity's boundary events, and
//! starts inner instances of the activity inside itself: all at once (parallel) or one after
//! the other (sequential). Each inner instance gets the local variables `loopCounter`
//! (from 1) and the input element (the item), and, when the output element is a variable or
//! a path in one (`= result`, `= result.text`) other than those two, that variable as `null`,
//! as Camunda does: a job of the inner instance that sets `result` sets the inner
//! instance's, not the process's. Then it runs the activity with its input and output
//! mappings. When an inner instance completes, the output element is evaluated in it and
//! written at its position in the output collection, and the completion condition is
//! evaluated with `numberOfInstances`, `numberOfActiveInstances`,
//! `numberOfCompletedInstances` and `numberOfTerminatedInstances` beside the variables: when
//! it holds, the remaining inner instances are terminated. When no inner instance is left,
//! the body completes: the output collection is propagated to the body's scope and the body
//! takes the activity's outgoing flows. An empty input collection completes at once.

use ringflow_bpmn::ElementIndex;

use crate::engine::Variables;
use crate::feel;
use crate::instance::{ElementInstance, IncidentRetry, MultiBody};
use crate::key::Key;
use crate::limits::MULTI_INSTANCE_ITEMS_MAX;
use crate::run::Run;

impl Run<'_> {
    /// The body was entered: evaluate the collection and start the inner instances.
    pub(crate) fn start_multi(&mut self, body: Key, element: ElementIndex) {
        let definition = self.definition_of(body);
        let multi = definition
            .element(element)
            .multi_instance
            .as_ref()
            .expect("a body belongs to a multi-instance activity");
        let source = multi.input_collection.source();
        let lookup = |name: &str| self.lookup(body, name);
        let items = match feel::evaluate_with(&multi.input_collection, lookup, self.feel_inputs()) {
            Ok(evaluated) => match evaluated.value {
                serde_json::Value::Array(items) => items,
                other => {
                    let message =
                        format!("the input collection `{source}` gave {other}, not a list");
                    return self.incident(body, message);
                }
            },
            Err(error) => return self.incident(body, format!("input collection: {error}")),
        };
        if items.len() > MULTI_INSTANCE_ITEMS_MAX {
            let message = format!(
                "the input collection `{source}` has {} items, over MULTI_INSTANCE_ITEMS_MAX \
                 ({MULTI_INSTANCE_ITEMS_MAX})",
                items.len()
            );
            return self.incident(body, message);
        }
        let count = items.len();
        if let Some(output) = &multi.output_collection {
            let nulls = serde_json::Value::Array(vec![serde_json::Value::Null; count]);
            crate::run::set_path(self.state.variables_mut(body), output, nulls);
        }
        self.state.multi.insert(
            body,
            MultiBody {
                items,
                started: 0,
                completed: 0,
                terminated: 0,
            },
        );
        if count == 0 {
            return self.complete_later(body);
        }
        let first = if multi.sequential { 1 } else { count };
        for _ in 0..first {
            self.activate_uncounted(element, body);
        }
    }

    /// Sets an inner instance's `loopCounter` and input element.
    pub(crate) fn set_loop_variables(&mut self, key: Key, element: ElementIndex, counter: u32) {
        let definition = self.definition_of(key);
        let multi = definition
            .element(element)
            .multi_instance
            .as_ref()
            .expect("an inner instance belongs to a multi-instance activity");
        let body = self.state.elements[&key]
            .scope
            .expect("an inner instance has its body");
        let item = self.state.multi[&body].items[(counter - 1) as usize].clone();
        let local = self.state.variables_mut(key);
        if let Some(input_element) = &multi.input_element {
            crate::run::set_path(local, input_element, item);
        }
        let output = multi
            .output_element
            .as_ref()
            .and_then(|output| crate::feel::plain_reference(output.source()))
            .filter(|name| *name != "loopCounter" && multi.input_element.as_deref() != Some(*name));
        if let Some(name) = output {
            local.insert(name.to_string(), serde_json::Value::Null);
        }
        local.insert("loopCounter".to_string(), serde_json::Value::from(counter));
    }

    /// An inner instance completed (its output mappings are applied): collect its output,
    /// check the completion condition, start the next one or complete the body.
    pub(crate) fn complete_inner(&mut self, key: Key, inner: &ElementInstance, counter: u32) {
        let body = inner.scope.expect("an inner instance has its body");
        let definition = self.definition_of(key);
        let multi = definition
            .element(inner.element)
            .multi_instance
            .clone()
            .expect("an inner instance belongs to a multi-instance activity");
        if let (Some(collection), Some(output)) = (&multi.output_collection, &multi.output_element)
        {
            let value = match feel::evaluate_with(
                output,
                |name| self.lookup(key, name),
                self.feel_inputs(),
            ) {
                Ok(evaluated) => evaluated.value,
                Err(error) => {
                    let message = format!("output element: {error}");
                    return self.incident_with(key, message, IncidentRetry::Completion);
                }
            };
            if !self.store_output(body, collection, counter, value) {
                let message = format!(
                    "the output collection `{collection}` is no longer a list of the body's size"
                );
                return self.incident_with(key, message, IncidentRetry::Completion);
            }
        }
        let done = match &multi.completion_condition {
            None => false,
            Some(condition) => {
                let mut variables = Variables::new();
                let state = &self.state.multi[&body];
                let active = self.state.elements[&body].tokens;
                let numbers = [
                    ("numberOfInstances", state.items.len() as u32),
                    ("numberOfActiveInstances", active.saturating_sub(1)),
                    ("numberOfCompletedInstances", state.completed + 1),
                    ("numberOfTerminatedInstances", state.terminated),
                ];
                for (name, value) in numbers {
                    variables.insert(name.to_string(), serde_json::Value::from(value));
                }
                let lookup = |name: &str| variables.get(name).or_else(|| self.lookup(key, name));
                match feel::condition_with(condition, lookup, self.feel_inputs()) {
                    Ok(holds) => holds,
                    Err(error) => {
                        let message = format!("completion condition: {error}");
                        return self.incident_with(key, message, IncidentRetry::Completion);
                    }
                }
            }
        };
        self.element_event(key, |key, process_instance_key, element_id| {
            crate::engine::Event::ElementCompleted {
                key,
                process_instance_key,
                element_id,
            }
        });
        if !self.state.compensations.is_empty() {
            self.lift_compensations(key, body, inner.element, &definition);
        }
        self.remove_element_counted(key);
        let state = self.state.multi.get_mut(&body).expect("the body is live");
        state.completed += 1;
        let more = (state.started as usize) < state.items.len();
        if done {
            for child in self.state.children_of(body) {
                self.terminate(child);
                self.state
                    .multi
                    .get_mut(&body)
                    .expect("the body is live")
                    .terminated += 1;
            }
        } else if multi.sequential && more {
            return self.activate_uncounted(inner.element, body);
        }
        if self.state.elements[&body].tokens == 0 {
            self.complete_later(body);
        }
    }

    /// Writes an inner instance's output at its position; false if the list is gone.
    fn store_output(
        &mut self,
        body: Key,
        collection: &str,
        counter: u32,
        value: serde_json::Value,
    ) -> bool {
        let Some(local) = self.state.existing_variables_mut(body) else {
            return false;
        };
        match slot_at(local, collection) {
            Some(serde_json::Value::Array(list)) if list.len() >= counter as usize => {
                let slot = &mut list[(counter - 1) as usize];
                let changed = *slot != value;
                *slot = value;
                let instance = self.state.elements[&body].process_instance_key;
                if changed && self.state.has_conditionals(instance) {
                    // The output collection changed, for the conditional events watching it.
                    let root = collection.split('.').next().unwrap_or(collection);
                    self.note_change(instance, body, root.to_string(), false);
                }
                true
            }
            _ => false,
        }
    }

    /// The body completes: its output collection goes to the body's scope.
    pub(crate) fn propagate_output_collection(&mut self, body: Key, scope: Key) -> bool {
        let definition = self.definition_of(body);
        let element = self.state.elements[&body].element;
        let Some(multi) = &definition.element(element).multi_instance else {
            return true;
        };
        let Some(collection) = &multi.output_collection else {
            return true;
        };
        let root_name = collection.split('.').next().unwrap_or(collection);
        let Some(value) = self
            .state
            .variables
            .get(&body)
            .and_then(|local| local.get(root_name))
            .cloned()
        else {
            return true;
        };
        let mut variables = Variables::new();
        variables.insert(root_name.to_string(), value);
        self.propagate(body, scope, variables, IncidentRetry::Completion)
    }
}

/// The value at a dotted path (`a.b`) in a variable document.
fn slot_at<'a>(document: &'a mut Variables, path: &str) -> Option<&'a mut serde_json::Value> {
    match path.split_once('.') {
        None => document.get_mut(path),
        Some((first, rest)) => match document.get_mut(first)? {
            serde_json::Value::Object(inner) => slot_at(inner, rest),
            _ => None,
        },
    }
}
