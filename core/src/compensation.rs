//! Compensation: undoing activities that completed (Camunda 8's rules, with BPMN's for a
//! subprocess that has a handler of its own).
//!
//! An activity with a compensation boundary event is *compensable*; the boundary event is
//! associated with its *handler*, an activity marked `isForCompensation="true"` that has no
//! sequence flows and no boundary events. What the engine keeps and does:
//!
//! | when | what happens |
//! |---|---|
//! | a compensable activity completes | the state keeps a [`Compensation`]: the activity, its handler, its scope, and a copy of the activity's local variables. A multi-instance activity is kept once, when its body completes (its handler runs once) |
//! | a subprocess (or multi-instance inner instance, or event subprocess) completes | the compensations kept inside it move to the scope that holds it, through it (a throw's `activityRef` naming the subprocess reaches them), each taking a copy of the subprocess's local variables (the inner ones winning). A subprocess with a compensation handler of its own is kept as one compensation instead, and the ones inside it are dropped: its handler undoes it all (BPMN's rule) |
//! | a scope is terminated (an interrupting event, a cancel, a terminate end event), or the process instance completes | the compensations inside it are dropped: only what completed in a scope that completed, or in the scope that throws, is compensated; a call activity's child process is never compensated from its parent |
//! | a compensation intermediate throw or end event is entered | it takes every compensation of its scope (with `activityRef`, only those that came through that activity; in an event subprocess, also those of the scope that holds it), oldest first, and starts each handler at once, inside the throw event, with the kept variables as the handler's local variables. The throw event waits until every handler completed, then completes (an end event ends its token). With nothing to compensate it completes at once |
//! | compensation is thrown again | a compensation is taken once: a second throw does not run the same handler again |
//!
//! A command starts at most
//! [`COMPENSATION_HANDLERS_PER_COMMAND_MAX`]
//! handlers: the rest wait under the throw event (as its compensations, counted as its
//! tokens, kept in the snapshot), and the command returns
//! [`Effect::ContinueCompensation`], on which the shard
//! submits `ContinueCompensation` for the next ones, and after a restart too.
//!
//! The handlers run as children of the throw event's element instance: they see the
//! variables of the throw's scope (and their kept locals), an interrupting event or a
//! cancel that ends the throw event ends them too, and a handler's incident stops the
//! throw until it is resolved. A process instance keeps at most
//! [`COMPENSATIONS_PER_INSTANCE_MAX`]
//! compensations; a completion over it is an incident at the completing activity.
//! `waitForCompletion="false"` and compensation event subprocesses are refused by the model
//! crate.

use ringflow_bpmn::{ElementIndex, ElementKind, ProcessDefinition};

use crate::engine::{Ctx, Effect, Keys, Outcome, Rejection, RejectionCode, Response};
use crate::instance::{Compensation, ElementInstance, IncidentRetry};
use crate::key::Key;
use crate::limits::{COMPENSATION_HANDLERS_PER_COMMAND_MAX, COMPENSATIONS_PER_INSTANCE_MAX};
use crate::run::Run;
use crate::state::State;

impl Run<'_> {
    /// A compensable activity completed (its outputs are stored): keeps it for
    /// compensation. Returns false when the instance holds too many (an incident was
    /// raised and the activity stays).
    pub(crate) fn keep_compensation(
        &mut self,
        key: Key,
        element: &ElementInstance,
        definition: &ProcessDefinition,
    ) -> bool {
        let Some(scope) = element.scope else {
            return true;
        };
        let Some(handler) = definition.compensation_handler(element.element) else {
            return true;
        };
        if self.state.compensation_count(element.process_instance_key)
            >= COMPENSATIONS_PER_INSTANCE_MAX
        {
            let message = format!(
                "the instance keeps COMPENSATIONS_PER_INSTANCE_MAX \
                 ({COMPENSATIONS_PER_INSTANCE_MAX}) completed activities for compensation"
            );
            self.incident_with(key, message, IncidentRetry::Completion);
            return false;
        }
        let compensation = Compensation {
            key: self.key(),
            process_instance_key: element.process_instance_key,
            scope,
            via: element.element,
            activity: element.element,
            handler,
            variables: self.state.variables.get(&key).cloned().unwrap_or_default(),
        };
        self.state.insert_compensation(compensation);
        true
    }

    /// The scope `key` completed inside `outer`: its compensations move out to `outer`,
    /// through `key`'s element, unless `key` is kept as a compensation of its own (a
    /// subprocess with a handler) or is itself a compensation handler; then they are
    /// dropped.
    pub(crate) fn lift_compensations(
        &mut self,
        key: Key,
        outer: Key,
        element: ElementIndex,
        definition: &ProcessDefinition,
    ) {
        let inside = self.state.compensations_in(key);
        if inside.is_empty() {
            return;
        }
        let drop = definition.compensation_handler(element).is_some()
            || definition.element(element).for_compensation;
        let locals = self.state.variables.get(&key).cloned().unwrap_or_default();
        for compensation_key in inside {
            let mut compensation = self
                .state
                .remove_compensation(compensation_key)
                .expect("indexed");
            if drop {
                continue;
            }
            compensation.scope = outer;
            compensation.via = element;
            for (name, value) in &locals {
                if !compensation.variables.contains_key(name) {
                    compensation.variables.insert(name.clone(), value.clone());
                }
            }
            self.state.insert_compensation(compensation);
        }
    }

    /// The scope `key` ended without completing: its compensations are dropped.
    pub(crate) fn drop_compensations(&mut self, key: Key) {
        for compensation_key in self.state.compensations_in(key) {
            self.state.remove_compensation(compensation_key);
        }
    }

    /// A compensation throw or end event `key` was entered: starts the handlers of what it
    /// compensates inside it, or completes it when there is nothing to compensate.
    pub(crate) fn throw_compensation(&mut self, key: Key, target: Option<ElementIndex>) {
        let definition = self.definition_of(key);
        let scope = self.state.elements[&key]
            .scope
            .expect("a throw event has a scope");
        let scope_instance = &self.state.elements[&scope];
        let mut scopes = vec![scope];
        if matches!(
            definition.element(scope_instance.element).kind,
            ElementKind::EventSubProcess
        ) && let Some(outer) = scope_instance.scope
        {
            scopes.push(outer);
        }
        let mut taken: Vec<Key> = scopes
            .iter()
            .flat_map(|scope| self.state.compensations_in(*scope))
            .filter(|compensation| {
                target.is_none_or(|target| self.state.compensations[compensation].via == target)
            })
            .collect();
        taken.sort_unstable();
        if taken.is_empty() {
            return self.complete_later(key);
        }
        // Every handler is a token of the throw from now on, started or not, so the throw
        // completes only after the last; the ones not started yet wait under the throw.
        self.state
            .elements
            .get_mut(&key)
            .expect("the throw is live")
            .tokens += taken.len() as u32;
        for compensation_key in taken {
            self.state.move_compensation(compensation_key, key);
        }
        self.start_handlers(key);
    }

    /// Starts up to [`COMPENSATION_HANDLERS_PER_COMMAND_MAX`] handlers waiting under the
    /// throw `key`, oldest first; with more left, asks the shard for a
    /// `ContinueCompensation`.
    fn start_handlers(&mut self, key: Key) {
        let batch = self
            .state
            .first_compensations_in(key, COMPENSATION_HANDLERS_PER_COMMAND_MAX + 1);
        let more = batch.len() > COMPENSATION_HANDLERS_PER_COMMAND_MAX;
        for compensation_key in batch
            .into_iter()
            .take(COMPENSATION_HANDLERS_PER_COMMAND_MAX)
        {
            let compensation = self
                .state
                .remove_compensation(compensation_key)
                .expect("indexed");
            let (handler, ok) = self.instantiate(compensation.handler, key, true);
            if !compensation.variables.is_empty() {
                self.state.store_variables(handler, compensation.variables);
            }
            if ok {
                self.enter(handler, compensation.handler);
            }
        }
        if more {
            self.effects.push(Effect::ContinueCompensation {
                key,
                due_millis: self.now_millis(),
            });
        }
    }
}

/// `ContinueCompensation`: starts the next handlers of a compensation throw.
pub(crate) fn continue_throw(state: &mut State, key: Key, ctx: &Ctx) -> Result<Outcome, Rejection> {
    if !state.compensation_throw_pending(key) {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!("{key} is no compensation throw with handlers left to start"),
        ));
    }
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    run.start_handlers(key);
    run.run();
    Ok(run.outcome(Response::CompensationContinued { key }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::engine::{Command, Ctx, Outcome, ProcessRef, Resource, Response};
    use crate::key::Key;
    use crate::limits::COMPENSATIONS_PER_INSTANCE_MAX;
    use crate::state::State;

    const MODEL: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
        xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
      <bpmn:process id="p" isExecutable="true">
        <bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="a"/>
        <bpmn:serviceTask id="a"><bpmn:extensionElements><zeebe:taskDefinition type="a"/>
        </bpmn:extensionElements></bpmn:serviceTask>
        <bpmn:boundaryEvent id="b" attachedToRef="a"><bpmn:compensateEventDefinition/>
        </bpmn:boundaryEvent>
        <bpmn:task id="undo" isForCompensation="true"/>
        <bpmn:association id="as" sourceRef="b" targetRef="undo"/>
        <bpmn:sequenceFlow id="f2" sourceRef="a" targetRef="e"/>
        <bpmn:endEvent id="e"><bpmn:compensateEventDefinition/></bpmn:endEvent>
      </bpmn:process></bpmn:definitions>"#;

    struct Shard {
        state: State,
        next_key: Key,
    }

    impl Shard {
        fn run(&mut self, command: Command) -> Outcome {
            let ctx = Ctx {
                now_millis: 1_000,
                next_key: self.next_key,
            };
            let outcome = crate::process(&mut self.state, command, &ctx).expect("accepted");
            self.next_key = outcome.next_key;
            outcome
        }
    }

    #[test]
    fn a_completion_over_the_compensation_limit_is_an_incident_until_there_is_room() {
        let mut shard = Shard {
            state: State::new(1),
            next_key: Key::first(1),
        };
        shard.run(Command::Deploy {
            resources: vec![Resource {
                name: "p.bpmn".into(),
                content: Arc::from(MODEL.as_bytes()),
            }],
        });
        let created = shard.run(Command::CreateInstance {
            process: ProcessRef::Latest("p".into()),
            variables: Default::default(),
            business_key: None,
            await_result: false,
        });
        let Response::InstanceCreated {
            process_instance_key: instance,
            ..
        } = created.response
        else {
            panic!("{:?}", created.response);
        };
        let job = shard.state.jobs().next().expect("the task's job").key;
        // As if the instance already kept the most it may.
        shard
            .state
            .index
            .compensations_per_instance
            .insert(instance, COMPENSATIONS_PER_INSTANCE_MAX);
        shard.run(Command::CompleteJob {
            key: job,
            variables: Default::default(),
        });
        let incident = shard.state.incidents().next().expect("an incident");
        assert!(
            incident
                .message
                .contains("COMPENSATIONS_PER_INSTANCE_MAX (100000)"),
            "{}",
            incident.message
        );
        let incident = incident.key;
        assert_eq!(shard.state.compensations().count(), 0);
        assert!(shard.state.instance(instance).is_some(), "the task stays");
        // With room again, resolving the incident completes the task, and the end event
        // compensates it.
        shard.state.index.compensations_per_instance.clear();
        let resolved = shard.run(Command::ResolveIncident { key: incident });
        let handler_ran = resolved.events.iter().any(|event| {
            matches!(event, crate::Event::ElementCompleted { element_id, .. }
                if &**element_id == "undo")
        });
        assert!(handler_ran, "{:?}", resolved.events);
        assert!(shard.state.instance(instance).is_none());
        assert!(shard.state.indexes_consistent());
    }
}
