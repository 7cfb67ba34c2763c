//! The token machine: activates, completes and terminates element instances for one command.
//!
//! Work is a queue of steps, run in order until none is left or the instance waits (for a
//! job, or at an incident). Token accounting: a scope's `tokens` counts its live children
//! plus tokens waiting at parallel joins; a token on a sequence flow is counted from the
//! moment its source completes, so a scope never sees zero while work is still moving in it.

use std::collections::VecDeque;
use std::sync::Arc;

use ringflow_bpmn::{
    BusinessRuleTask, ElementIndex, ElementKind, EndResult, Expression, FlowIndex, JobDefinition,
    ProcessDefinition, ScriptTask, StartTrigger, ThrowResult,
};

use crate::engine::{Effect, Event, Keys, Variables};
use crate::instance::{ElementInstance, Incident, Job, JobState};
use crate::key::Key;
use crate::limits::{COMMAND_STEPS_MAX, ELEMENT_INSTANCES_PER_INSTANCE_MAX};
use crate::state::State;

enum Step {
    /// Enter `element` inside the scope element instance `scope`. `counted`: the token is
    /// already counted in the scope (it came along a sequence flow).
    Activate {
        element: ElementIndex,
        scope: Key,
        counted: bool,
    },
    /// Leave the element instance normally and follow its outgoing flows.
    Complete { key: Key },
    /// A token reaches the target of `flow` inside `scope`.
    Arrive { flow: FlowIndex, scope: Key },
}

pub(crate) struct Run<'s> {
    pub state: &'s mut State,
    pub keys: Keys,
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
    work: VecDeque<Step>,
    steps: u32,
}

impl<'s> Run<'s> {
    pub(crate) fn new(state: &'s mut State, keys: Keys) -> Self {
        Run {
            state,
            keys,
            events: Vec::new(),
            effects: Vec::new(),
            work: VecDeque::new(),
            steps: 0,
        }
    }

    /// A key for something this command creates. `process` checked up front that the shard
    /// has far more keys left than one command can use.
    pub(crate) fn key(&mut self) -> Key {
        self.keys
            .take()
            .expect("KEYS_RESERVE was checked before the command ran")
    }

    pub(crate) fn definition_of(&self, element_instance: Key) -> Arc<ProcessDefinition> {
        let element = &self.state.elements[&element_instance];
        let instance = &self.state.instances[&element.process_instance_key];
        Arc::clone(&self.state.processes[&instance.process_definition_key].definition)
    }

    /// Starts the none start event of the scope `scope` (a process or subprocess instance).
    pub(crate) fn start_scope(&mut self, definition: &ProcessDefinition, scope: Key) {
        let element = self.state.elements[&scope].element;
        let start = definition
            .start_events(element)
            .iter()
            .copied()
            .find(|start| {
                matches!(
                    definition.element(*start).kind,
                    ElementKind::StartEvent {
                        trigger: StartTrigger::None,
                        ..
                    }
                )
            });
        let start = start.expect("validated scopes have a none start event");
        self.work.push_back(Step::Activate {
            element: start,
            scope,
            counted: false,
        });
    }

    pub(crate) fn complete_later(&mut self, key: Key) {
        self.work.push_back(Step::Complete { key });
    }

    /// Runs queued steps until there are none.
    pub(crate) fn run(&mut self) {
        while let Some(step) = self.work.pop_front() {
            // A step inside a scope that was terminated meanwhile has nothing left to do.
            let live = match &step {
                Step::Activate { scope, .. } | Step::Arrive { scope, .. } => *scope,
                Step::Complete { key } => *key,
            };
            if !self.state.elements.contains_key(&live) {
                continue;
            }
            self.steps += 1;
            match step {
                Step::Activate {
                    element,
                    scope,
                    counted,
                } => self.activate(element, scope, counted),
                Step::Complete { key } => self.complete(key),
                Step::Arrive { flow, scope } => self.arrive(flow, scope),
            }
        }
    }

    pub(crate) fn element_event(&mut self, key: Key, kind: fn(Key, Key, String) -> Event) {
        let element = &self.state.elements[&key];
        let definition = self.definition_of(key);
        let id = definition.element(element.element).id.clone();
        let id = if element.scope.is_none() {
            definition.bpmn_process_id.clone()
        } else {
            id
        };
        self.events
            .push(kind(key, element.process_instance_key, id));
    }

    fn activate(&mut self, element: ElementIndex, scope: Key, counted: bool) {
        let process_instance_key = self.state.elements[&scope].process_instance_key;
        let key = self.key();
        let live = &mut self
            .state
            .instances
            .get_mut(&process_instance_key)
            .expect("live")
            .live_elements;
        *live += 1;
        let over_limit = *live > ELEMENT_INSTANCES_PER_INSTANCE_MAX;
        self.state.elements.insert(
            key,
            ElementInstance {
                key,
                process_instance_key,
                element,
                scope: Some(scope),
                tokens: 0,
                job: None,
                incident: None,
            },
        );
        self.state.children.insert((scope, key));
        if !counted {
            self.state
                .elements
                .get_mut(&scope)
                .expect("scope is live")
                .tokens += 1;
        }
        self.element_event(key, |key, process_instance_key, element_id| {
            Event::ElementActivated {
                key,
                process_instance_key,
                element_id,
            }
        });
        if over_limit {
            let message = format!(
                "the instance has more than ELEMENT_INSTANCES_PER_INSTANCE_MAX \
                 ({ELEMENT_INSTANCES_PER_INSTANCE_MAX}) live elements"
            );
            return self.incident(key, message);
        }
        if self.steps > COMMAND_STEPS_MAX {
            let message = format!(
                "one command ran more than COMMAND_STEPS_MAX ({COMMAND_STEPS_MAX}) steps: the \
                 model loops without a wait state"
            );
            return self.incident(key, message);
        }
        self.behave(key, element);
    }

    /// What an element does once entered.
    fn behave(&mut self, key: Key, element: ElementIndex) {
        let definition = self.definition_of(key);
        let kind = &definition.element(element).kind;
        match kind {
            ElementKind::StartEvent {
                trigger: StartTrigger::None,
                ..
            }
            | ElementKind::ManualTask
            | ElementKind::UndefinedTask
            | ElementKind::IntermediateThrowEvent(ThrowResult::None)
            | ElementKind::ParallelGateway
            | ElementKind::EndEvent(EndResult::None) => self.complete_later(key),
            ElementKind::EndEvent(EndResult::Terminate) => {
                let scope = self.state.elements[&key]
                    .scope
                    .expect("end events have a scope");
                self.terminate_children(scope, Some(key));
                self.complete_later(key);
            }
            ElementKind::ExclusiveGateway { .. } | ElementKind::InclusiveGateway { .. } => {
                let outgoing = definition.outgoing(element);
                let unconditional =
                    outgoing.len() == 1 && definition.flow(outgoing[0]).condition.is_none();
                if unconditional {
                    self.complete_later(key);
                } else {
                    self.incident(
                        key,
                        "gateway conditions are FEEL, which this engine version does not evaluate yet"
                            .to_string(),
                    );
                }
            }
            ElementKind::SubProcess => self.start_scope(&definition, key),
            ElementKind::ServiceTask(job)
            | ElementKind::SendTask(job)
            | ElementKind::ScriptTask(ScriptTask::Job(job))
            | ElementKind::BusinessRuleTask(BusinessRuleTask::Job(job))
            | ElementKind::EndEvent(EndResult::Message(job))
            | ElementKind::IntermediateThrowEvent(ThrowResult::Message(job)) => {
                self.create_job(key, job);
            }
            ElementKind::UserTask(user_task) => self.create_job(key, &user_task.job),
            other => {
                let message = format!(
                    "a {} of this kind is not executed by this engine version yet",
                    other.bpmn_name()
                );
                self.incident(key, message);
            }
        }
    }

    fn create_job(&mut self, element_instance_key: Key, definition: &JobDefinition) {
        let (Expression::Static(job_type), Expression::Static(retries)) =
            (&definition.job_type, &definition.retries)
        else {
            let message = "FEEL job types and retries are not evaluated by this engine version yet";
            return self.incident(element_instance_key, message.to_string());
        };
        let retries: u32 = retries
            .trim()
            .parse()
            .expect("static retries were validated as u32");
        let key = self.key();
        let process_instance_key = self.state.elements[&element_instance_key].process_instance_key;
        self.state.jobs.insert(
            key,
            Job {
                key,
                job_type: job_type.clone(),
                element_instance_key,
                process_instance_key,
                retries,
                state: JobState::Activatable,
            },
        );
        self.state
            .ready_jobs
            .entry(job_type.clone())
            .or_default()
            .insert(key);
        self.state
            .elements
            .get_mut(&element_instance_key)
            .expect("live")
            .job = Some(key);
        self.events.push(Event::JobCreated {
            key,
            job_type: job_type.clone(),
            element_instance_key,
        });
        let available = Effect::JobsAvailable {
            job_type: job_type.clone(),
        };
        if !self.effects.contains(&available) {
            self.effects.push(available);
        }
    }

    pub(crate) fn incident(&mut self, element_instance_key: Key, message: String) {
        let key = self.key();
        let process_instance_key = self.state.elements[&element_instance_key].process_instance_key;
        self.state.incidents.insert(
            key,
            Incident {
                key,
                process_instance_key,
                element_instance_key,
                message: message.clone(),
            },
        );
        self.state
            .elements
            .get_mut(&element_instance_key)
            .expect("live")
            .incident = Some(key);
        self.events.push(Event::IncidentCreated {
            key,
            element_instance_key,
            message,
        });
    }

    fn complete(&mut self, key: Key) {
        let definition = self.definition_of(key);
        let element = self.state.elements[&key].clone();
        self.element_event(key, |key, process_instance_key, element_id| {
            Event::ElementCompleted {
                key,
                process_instance_key,
                element_id,
            }
        });
        let Some(scope) = element.scope else {
            return self.finish_instance(key);
        };
        let outgoing = definition.outgoing(element.element);
        let scope_instance = self.state.elements.get_mut(&scope).expect("scope is live");
        scope_instance.tokens += outgoing.len() as u32;
        for flow in outgoing {
            self.work.push_back(Step::Arrive { flow: *flow, scope });
        }
        self.remove_element(key);
        let scope_instance = self.state.elements.get_mut(&scope).expect("scope is live");
        scope_instance.tokens -= 1;
        if scope_instance.tokens == 0 {
            self.complete_later(scope);
        }
    }

    fn arrive(&mut self, flow: FlowIndex, scope: Key) {
        let definition = self.definition_of(scope);
        let target = definition.flow(flow).target;
        let incoming = definition.incoming(target);
        let is_join = matches!(
            definition.element(target).kind,
            ElementKind::ParallelGateway
        ) && incoming.len() > 1;
        if !is_join {
            return self.work.push_back(Step::Activate {
                element: target,
                scope,
                counted: true,
            });
        }
        let slot = incoming
            .iter()
            .position(|f| *f == flow)
            .expect("the flow enters its target");
        let counts = self
            .state
            .joins
            .entry((scope, target))
            .or_insert_with(|| vec![0; incoming.len()]);
        counts[slot] += 1;
        if counts.iter().all(|count| *count > 0) {
            counts.iter_mut().for_each(|count| *count -= 1);
            if counts.iter().all(|count| *count == 0) {
                self.state.joins.remove(&(scope, target));
            }
            // The merged tokens become one: the gateway's.
            let merged = incoming.len() as u32 - 1;
            self.state
                .elements
                .get_mut(&scope)
                .expect("scope is live")
                .tokens -= merged;
            self.work.push_back(Step::Activate {
                element: target,
                scope,
                counted: true,
            });
        }
    }

    /// Ends every live child of `scope` (and their descendants), except `keep`.
    pub(crate) fn terminate_children(&mut self, scope: Key, keep: Option<Key>) {
        for child in self.state.children_of(scope) {
            if Some(child) == keep {
                continue;
            }
            self.terminate_children(child, None);
            self.element_event(child, |key, process_instance_key, element_id| {
                Event::ElementTerminated {
                    key,
                    process_instance_key,
                    element_id,
                }
            });
            self.remove_element(child);
        }
        // Tokens still travelling inside the scope end with it.
        self.work.retain(|step| match step {
            Step::Activate { scope: inside, .. } | Step::Arrive { scope: inside, .. } => {
                *inside != scope
            }
            Step::Complete { .. } => true,
        });
        let joins: Vec<(Key, ElementIndex)> = self
            .state
            .joins
            .range((scope, ElementIndex(0))..=(scope, ElementIndex(u32::MAX)))
            .map(|(k, _)| *k)
            .collect();
        for join in joins {
            self.state.joins.remove(&join);
        }
        let scope_instance = self.state.elements.get_mut(&scope).expect("scope is live");
        scope_instance.tokens = u32::from(keep.is_some());
    }

    /// Forgets an element instance with its job, incident and local variables.
    fn remove_element(&mut self, key: Key) {
        let element = self.state.elements.remove(&key).expect("live");
        if let Some(job_key) = element.job {
            let job = self
                .state
                .jobs
                .remove(&job_key)
                .expect("the element's job is open");
            if let Some(ready) = self.state.ready_jobs.get_mut(&job.job_type) {
                ready.remove(&job_key);
                if ready.is_empty() {
                    self.state.ready_jobs.remove(&job.job_type);
                }
            }
        }
        if let Some(incident) = element.incident {
            self.state.incidents.remove(&incident);
        }
        self.state.variables.remove(&key);
        if let Some(scope) = element.scope {
            self.state.children.remove(&(scope, key));
        }
        let instance = self
            .state
            .instances
            .get_mut(&element.process_instance_key)
            .expect("live");
        instance.live_elements -= 1;
    }

    /// The process completed: answer a waiting caller and forget the instance.
    fn finish_instance(&mut self, root: Key) {
        let instance = self.state.instances[&root].clone();
        if instance.await_result {
            let variables = self.state.variables.get(&root).cloned().unwrap_or_default();
            self.effects.push(Effect::InstanceResult {
                process_instance_key: root,
                variables,
            });
        }
        self.remove_element(root);
        let instance = self.state.instances.remove(&root).expect("live");
        assert_eq!(
            instance.live_elements, 0,
            "a finished instance has no live elements"
        );
    }

    /// The instance was cancelled: its root is gone, and nobody gets a result.
    pub(crate) fn finish_canceled(&mut self, root: Key) {
        self.remove_element(root);
        let instance = self.state.instances.remove(&root).expect("live");
        assert_eq!(
            instance.live_elements, 0,
            "a cancelled instance has no live elements"
        );
    }

    /// The variables visible from `scope` up to the root, the innermost winning.
    pub(crate) fn visible_variables(&self, scope: Key) -> Variables {
        let mut chain = Vec::new();
        let mut next = Some(scope);
        while let Some(key) = next {
            chain.push(key);
            next = self.state.elements[&key].scope;
        }
        let mut merged = Variables::new();
        for key in chain.iter().rev() {
            if let Some(document) = self.state.variables.get(key) {
                for (name, value) in document {
                    merged.insert(name.clone(), value.clone());
                }
            }
        }
        merged
    }
}
