//! Call activities: start an instance of another process and wait for it.
//!
//! The Camunda 8 rules, as implemented here:
//!
//! | what | rule |
//! |---|---|
//! | which process | `zeebe:calledElement processId` (static or FEEL) |
//! | which version | `bindingType="latest"` (default): the latest; `"deployment"`: the version deployed together with the caller; `"versionTag"`: the latest version with that `zeebe:versionTag` |
//! | variables in | `propagateAllParentVariables="true"` (default): every variable the call activity sees (its input mappings included); `false`: only its input mappings' variables |
//! | variables out | with output mappings: the child's variables are local to the call activity and the mappings decide what leaves; without them and `propagateAllChildVariables="true"` (default): the child's variables propagate like a completed job's; `false`: nothing |
//! | cancellation | ending the call activity (cancel, interrupting event, terminate) cancels the child, recursively; a child cannot be cancelled on its own |
//! | incidents | an incident in the child stops the child; the parent sees it with [`State::incidents_in_tree`](crate::State::incidents_in_tree) |
//! | errors and escalations | one not caught in the child is looked for at the call activity, outwards in the parent |
//!
//! | placement | on the parent's shard; with the extension property `ringflow:businessKey` (static or FEEL, giving a text or a number), the child gets that business key and runs on the shard it routes to, which may be another shard ([`crate::remote`]) |
//!
//! A child on another shard: its start, completion, cancellation, incidents and uncaught
//! errors and escalations travel as mail ([`crate::remote`]), with the same rules as above.
//! `bindingType="deployment"` there starts the latest version whose resource bytes are those
//! of the caller's deployment's version on the parent's shard (deployment keys are per
//! shard; `ringflow deploy` sends the same files to every shard).

use std::sync::Arc;

use ringflow_bpmn::{Binding, CalledElement, ElementKind};

use crate::engine::Variables;
use crate::key::Key;
use crate::limits::LIVE_INSTANCES_MAX;
use crate::remote::{ChildVersion, resource_digest};
use crate::run::Run;

impl Run<'_> {
    /// A call activity was entered: start the child.
    pub(crate) fn call(&mut self, key: Key, called: &CalledElement) {
        let process_id = match self.value_at(key, &called.process_id) {
            Ok(serde_json::Value::String(id)) if !id.is_empty() => id,
            Ok(other) => {
                let message = format!("the called process id gave {other}, not a non-empty text");
                return self.incident(key, message);
            }
            Err(error) => return self.incident(key, format!("called process id: {error}")),
        };
        let business_key = match &called.business_key {
            None => None,
            Some(expression) => match self.value_at(key, expression) {
                Ok(serde_json::Value::String(text)) => Some(text),
                Ok(serde_json::Value::Number(number)) => Some(number.to_string()),
                Ok(other) => {
                    let message = format!(
                        "the child business key (ringflow:businessKey) gave {other}, not a text \
                         or a number"
                    );
                    return self.incident(key, message);
                }
                Err(error) => {
                    return self.incident(key, format!("child business key: {error}"));
                }
            },
        };
        if let Some(business_key) = &business_key {
            if business_key.len() > crate::limits::NAME_BYTES_MAX {
                let message = format!(
                    "the child business key is {} bytes, over NAME_BYTES_MAX ({})",
                    business_key.len(),
                    crate::limits::NAME_BYTES_MAX
                );
                return self.incident(key, message);
            }
            let owner = self.state.owner_of_text(business_key);
            if owner != self.state.shard() {
                let version = match &called.binding {
                    Binding::Latest => ChildVersion::Latest,
                    Binding::VersionTag(tag) => ChildVersion::Tag(tag.clone()),
                    Binding::Deployment => {
                        let Some(own) = self.called_version(key, &process_id, &called.binding)
                        else {
                            let message = format!(
                                "no process `{process_id}` is deployed in the caller's deployment"
                            );
                            return self.incident(key, message);
                        };
                        ChildVersion::Resource(resource_digest(
                            &self.state.processes[&own].resource,
                        ))
                    }
                };
                let variables = self.child_variables(key, called);
                let business_key = business_key.clone();
                return self.call_remote(key, owner, process_id, version, business_key, variables);
            }
        }
        let Some(version) = self.called_version(key, &process_id, &called.binding) else {
            let how = match &called.binding {
                Binding::Latest => String::new(),
                Binding::Deployment => " in the caller's deployment".to_string(),
                Binding::VersionTag(tag) => format!(" with version tag `{tag}`"),
            };
            return self.incident(key, format!("no process `{process_id}` is deployed{how}"));
        };
        if self.state.instances.len() >= LIVE_INSTANCES_MAX {
            let message = format!(
                "the shard runs LIVE_INSTANCES_MAX ({LIVE_INSTANCES_MAX}) instances; the child \
                 cannot start"
            );
            return self.incident(key, message);
        }
        let variables = self.child_variables(key, called);
        let definition = Arc::clone(&self.state.processes[&version].definition);
        let child = self.new_instance(version, variables, business_key, false, Some(key));
        self.state.elements.get_mut(&key).expect("live").called = Some(child);
        self.enter_root(&definition, child, None);
    }

    /// The variables the child starts with.
    fn child_variables(&self, call: Key, called: &CalledElement) -> Variables {
        if called.propagate_all_parent_variables {
            self.visible_variables(call)
        } else {
            self.state.variables.get(&call).cloned().unwrap_or_default()
        }
    }

    fn called_version(&self, caller: Key, process_id: &str, binding: &Binding) -> Option<Key> {
        let versions = self.state.versions.get(process_id)?;
        match binding {
            Binding::Latest => versions.last().copied(),
            Binding::Deployment => {
                let own = self.process_definition_of(caller);
                let deployment = self.state.processes[&own].deployment_key;
                versions
                    .iter()
                    .copied()
                    .find(|key| self.state.processes[key].deployment_key == deployment)
            }
            Binding::VersionTag(tag) => versions.iter().rev().copied().find(|key| {
                self.state.processes[key].definition.version_tag.as_deref() == Some(tag.as_str())
            }),
        }
    }

    /// The child completed with these variables: what goes back to the call activity.
    pub(crate) fn accept_child_result(&mut self, call: Key, variables: Variables) -> bool {
        let definition = self.definition_of(call);
        let element = self.state.elements[&call].element;
        let ElementKind::CallActivity(called) = &definition.element(element).kind else {
            unreachable!("only call activities have children");
        };
        let has_outputs = !definition.element(element).io_mapping.outputs.is_empty();
        if !has_outputs && !called.propagate_all_child_variables {
            return true;
        }
        self.accept_result(call, element, variables)
    }
}
