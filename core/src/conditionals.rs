//! Conditional events (Camunda 8.9): an event that fires when a FEEL condition over the
//! variables holds.
//!
//! | event | owner of the subscription | when it fires |
//! |---|---|---|
//! | intermediate catch event | the event itself | it completes |
//! | boundary event | the activity (its multi-instance body) | interrupting: the activity ends and the token leaves by the event; non-interrupting: a new token leaves by it, and the subscription stays |
//! | event subprocess start | the enclosing scope | as any event subprocess start (interrupting or not) |
//! | catch event after an event-based gateway | the gateway | the gateway completes along that branch |
//!
//! A conditional start event of a process has no subscription: `EvaluateConditional`
//! ([`evaluate_starts`]) evaluates it against the variables it is given, and starts an
//! instance where it holds.
//!
//! The condition is evaluated with the variables the owner sees:
//!
//! - when the wait opens (with the waits of the same element: an activity's boundary events
//!   after its input mappings, an event subprocess's start when its scope starts). If it
//!   holds, the event fires once the element's activation is done: a service task's job is
//!   created, then cancelled by an interrupting boundary event, as in Camunda.
//! - after a command changes a variable the condition watches, in the owner's scope or a
//!   scope around it, unless a scope in between has a local variable of that name (the owner
//!   does not see the change). A condition watches the names given by
//!   `zeebe:conditionalFilter variableNames`, else every name it mentions; `variableEvents`
//!   narrows it to creations or updates. Storing a value equal to the one there is no change.
//!   The boundary events of a multi-instance activity are evaluated for each live inner
//!   instance that sees the change, with its variables (see `contexts`).
//!
//! Subscriptions are evaluated top-down (the outermost owner first, as Camunda does), each at
//! most once for the changes one step of the command made, and only for changes made after it
//! opened: a condition checked as its wait opened is not checked again for the same change.
//! An interrupting event that fires ends the scopes inside it, and their subscriptions with
//! them. A result other than `true` (false, null, any other value, a failed evaluation) does
//! not fire the event; when the wait opens, a result that is neither a boolean nor null is an
//! incident on the owner, as a model error.
//!
//! A subscription closes with its owner, like any wait (see `waits`). Variables an activity's
//! output mappings write are stored after it ended, so they never fire its own boundary events.

use std::collections::BTreeMap;

use ringflow_bpmn::{
    BoundaryTrigger, CatchTrigger, Condition, ElementIndex, ElementKind, ProcessDefinition,
    StartTrigger,
};

use crate::engine::Variables;
use crate::key::Key;
use crate::run::{Run, Step};

/// A variable a command created or changed.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    /// The scope whose document holds it.
    scope: Key,
    name: String,
    /// It did not exist in that scope before.
    created: bool,
    /// Its place among the command's changes (from 1).
    seq: u32,
}

/// What a run keeps about conditional events while it works (in
/// `State::conditionals_scratch`, emptied when the run ends).
#[derive(Clone, Debug, Default)]
pub(crate) struct Pending {
    /// Changes not yet evaluated, by process instance (each has a queued
    /// `Step::Conditionals`).
    changes: BTreeMap<Key, Vec<Change>>,
    /// Changes noted so far by this run.
    seq: u32,
    /// Subscriptions this run opened, with the number of changes noted before: they were
    /// evaluated as they opened, so only later changes concern them.
    opened: BTreeMap<Key, u32>,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.seq == 0 && self.changes.is_empty() && self.opened.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        *self = Pending::default();
    }
}

/// The condition of a conditional event, if it is one.
pub(crate) fn condition_of(
    definition: &ProcessDefinition,
    event: ElementIndex,
) -> Option<&Condition> {
    match &definition.element(event).kind {
        ElementKind::StartEvent {
            trigger: StartTrigger::Conditional(condition),
            ..
        }
        | ElementKind::IntermediateCatchEvent(CatchTrigger::Conditional(condition))
        | ElementKind::BoundaryEvent {
            trigger: BoundaryTrigger::Conditional(condition),
            ..
        } => Some(condition),
        _ => None,
    }
}

impl Run<'_> {
    /// Replaces the variable document of `scope`, noting for the conditional events of its
    /// process instance every variable it creates or changes. Without an open conditional
    /// subscription in the instance, nothing is compared.
    pub(crate) fn store_variables(&mut self, scope: Key, document: Variables) {
        self.note_changes(scope, &document);
        self.state.store_variables(scope, document);
    }

    /// Applies a checked update (see `variables::Update`) in place, noting its changes for
    /// the conditional events like `store_variables`.
    pub(crate) fn merge_variables(&mut self, update: crate::variables::Update) {
        self.note_changes(update.scope, &update.entries);
        self.state.merge_variables(update);
    }

    /// Notes each variable of `document` that `scope` does not hold yet, or holds with
    /// another value, when the scope's instance has conditional subscriptions.
    fn note_changes(&mut self, scope: Key, document: &Variables) {
        if self.state.conditional_subscriptions.is_empty() {
            // The common case: no conditional event waits on this shard.
            return;
        }
        let process_instance_key = self.state.elements[&scope].process_instance_key;
        if !self.state.has_conditionals(process_instance_key) {
            return;
        }
        let mut changed = Vec::new();
        let old = self.state.variables.get(&scope);
        for (name, value) in document {
            match old.and_then(|old| old.get(name)) {
                None => changed.push((name.clone(), true)),
                Some(before) if before != value => changed.push((name.clone(), false)),
                Some(_) => {}
            }
        }
        for (name, created) in changed {
            self.note_change(process_instance_key, scope, name, created);
        }
    }

    /// Notes that `name` was created or changed in `scope` (call when the instance has
    /// conditional subscriptions).
    pub(crate) fn note_change(
        &mut self,
        process_instance_key: Key,
        scope: Key,
        name: String,
        created: bool,
    ) {
        let pending = &mut self.state.conditionals_scratch;
        pending.seq += 1;
        let seq = pending.seq;
        let changes = pending.changes.entry(process_instance_key).or_default();
        let first = changes.is_empty();
        changes.push(Change {
            scope,
            name,
            created,
            seq,
        });
        if first {
            self.queue(Step::Conditionals {
                process_instance: process_instance_key,
            });
        }
    }

    /// Whether a condition holds for what `owner` sees (null counts as false). An error
    /// when the result is neither a boolean nor null (the model is wrong), or the evaluation
    /// failed.
    pub(crate) fn condition_holds(
        &self,
        owner: Key,
        condition: &Condition,
    ) -> Result<bool, String> {
        let evaluated = crate::feel::evaluate_with(
            &condition.expression,
            |name| self.lookup(owner, name),
            self.feel_inputs(),
        )?;
        match evaluated.value {
            serde_json::Value::Bool(holds) => Ok(holds),
            serde_json::Value::Null => Ok(false),
            other => Err(format!(
                "the condition `{}` gave {other}, not a boolean",
                condition.expression.source()
            )),
        }
    }

    /// A conditional subscription just opened (evaluated, and queued to fire when it held).
    pub(crate) fn conditional_opened(&mut self, subscription: Key) {
        let pending = &mut self.state.conditionals_scratch;
        pending.opened.insert(subscription, pending.seq);
    }

    /// Fires a conditional subscription, if it is still open: closes it unless its event
    /// repeats, then the event happens (with no variables).
    pub(crate) fn fire_conditional(&mut self, subscription: Key) {
        let Some(open) = self
            .state
            .conditional_subscriptions
            .get(&subscription)
            .cloned()
        else {
            return;
        };
        if !self.state.elements.contains_key(&open.owner) {
            return;
        }
        if !self.event_repeats(open.process_definition_key, open.element) {
            self.state.remove_conditional_subscription(subscription);
        }
        self.fire(open.owner, open.element, Variables::new());
    }

    /// Evaluates the conditional subscriptions of a process instance that the changes noted
    /// since the last evaluation concern, outermost owner first, and fires those that hold.
    pub(crate) fn evaluate_conditionals(&mut self, process_instance_key: Key) {
        let Some(changes) = self
            .state
            .conditionals_scratch
            .changes
            .remove(&process_instance_key)
        else {
            return;
        };
        let mut order: Vec<(u32, Key)> = self
            .state
            .conditionals_of(process_instance_key)
            .into_iter()
            .map(|key| {
                let owner = self.state.conditional_subscriptions[&key].owner;
                (self.depth(owner), key)
            })
            .collect();
        order.sort_unstable();
        for (_, key) in order {
            // An interrupting event before may have closed it, or ended its owner.
            let Some(open) = self.state.conditional_subscriptions.get(&key).cloned() else {
                continue;
            };
            // An owner about to complete takes no more events: the variables its completion
            // brings (a job's, a message's) never fire its own boundary events.
            if !self.state.elements.contains_key(&open.owner) || self.completing(open.owner) {
                continue;
            }
            let opened_after = self
                .state
                .conditionals_scratch
                .opened
                .get(&key)
                .copied()
                .unwrap_or(0);
            let definition = self.definition_of(open.owner);
            let Some(condition) = condition_of(&definition, open.element) else {
                continue;
            };
            let watched: Vec<&Change> = changes
                .iter()
                .filter(|change| {
                    change.seq > opened_after && condition.watches(&change.name, change.created)
                })
                .collect();
            if watched.is_empty() {
                continue;
            }
            for context in self.contexts(open.owner, &watched) {
                // An interrupting firing closed it; a non-interrupting one keeps it.
                if !self.state.conditional_subscriptions.contains_key(&key)
                    || !self.state.elements.contains_key(&open.owner)
                {
                    break;
                }
                if self.condition_holds(context, condition) == Ok(true) {
                    self.fire_conditional(key);
                }
            }
        }
    }

    /// Where a subscription of `owner` is evaluated for `changes`: the owner, when it sees
    /// one of them. The boundary events of a multi-instance activity are evaluated as
    /// Camunda does, for each live inner instance that sees a change (its own local ones
    /// included), with its variables; so a non-interrupting one fires once per inner
    /// instance whose condition holds.
    fn contexts(&self, owner: Key, changes: &[&Change]) -> Vec<Key> {
        let body = self
            .state
            .elements
            .get(&owner)
            .is_some_and(|element| element.role == crate::instance::ElementRole::Body);
        if body {
            let inner: Vec<Key> = self
                .state
                .children_of(owner)
                .into_iter()
                .filter(|child| {
                    changes
                        .iter()
                        .any(|change| self.sees(*child, change.scope, &change.name))
                })
                .collect();
            if !inner.is_empty() {
                return inner;
            }
        }
        let seen = changes
            .iter()
            .any(|change| self.sees(owner, change.scope, &change.name));
        if seen { vec![owner] } else { Vec::new() }
    }

    /// How many scopes are around an element instance (0 for a process instance).
    fn depth(&self, mut key: Key) -> u32 {
        let mut depth = 0;
        while let Some(scope) = self.state.elements.get(&key).and_then(|e| e.scope) {
            depth += 1;
            key = scope;
        }
        depth
    }

    /// Whether `owner` sees the variable `name` of `scope`: `scope` is the owner or a scope
    /// around it, and no scope from the owner out to it has a local variable of that name.
    fn sees(&self, owner: Key, scope: Key, name: &str) -> bool {
        let mut at = owner;
        loop {
            if at == scope {
                return true;
            }
            if self
                .state
                .variables
                .get(&at)
                .is_some_and(|local| local.contains_key(name))
            {
                return false;
            }
            match self.state.elements.get(&at).and_then(|e| e.scope) {
                Some(outer) => at = outer,
                None => return false,
            }
        }
    }
}

/// The conditional start events at the root of `definition`, with their conditions.
pub(crate) fn conditional_starts(
    definition: &ProcessDefinition,
) -> impl Iterator<Item = (ElementIndex, &Condition)> {
    definition
        .start_events(ProcessDefinition::ROOT)
        .iter()
        .filter_map(|start| match &definition.element(*start).kind {
            ElementKind::StartEvent {
                trigger: StartTrigger::Conditional(condition),
                ..
            } => Some((*start, condition)),
            _ => None,
        })
}

/// `EvaluateConditional`: evaluates the conditional start events of the latest version of
/// each process (or of one) against `variables`, and starts an instance at each that holds,
/// in process id and document order, each with its own budget of steps. A condition that
/// gives anything but `true` starts nothing. Refused, with nothing started, when no process
/// (or not the one named) has a conditional start event, the variables are over
/// `VARIABLE_DOCUMENT_BYTES_MAX`, or the starts would pass `LIVE_INSTANCES_MAX`.
pub(crate) fn evaluate_starts(
    state: &mut crate::state::State,
    bpmn_process_id: Option<String>,
    variables: Variables,
    ctx: &crate::engine::Ctx,
) -> Result<crate::engine::Outcome, crate::engine::Rejection> {
    use crate::engine::{Keys, Rejection, RejectionCode, Response, StartedInstance};
    crate::variables::check_document_size(&variables)?;
    let latest: Vec<Key> = match &bpmn_process_id {
        Some(id) => {
            let version = state.latest_process(id).ok_or_else(|| {
                Rejection::new(
                    RejectionCode::ProcessNotFound,
                    format!("no process with id `{id}` is deployed"),
                )
            })?;
            if conditional_starts(&version.definition).next().is_none() {
                return Err(Rejection::new(
                    RejectionCode::InvalidArgument,
                    format!("the process `{id}` has no conditional start event"),
                ));
            }
            vec![version.key]
        }
        None => {
            let keys: Vec<Key> = state
                .versions
                .values()
                .filter_map(|keys| keys.last().copied())
                .filter(|key| {
                    conditional_starts(&state.processes[key].definition)
                        .next()
                        .is_some()
                })
                .collect();
            if keys.is_empty() {
                return Err(Rejection::new(
                    RejectionCode::ProcessNotFound,
                    "no deployed process has a conditional start event".to_string(),
                ));
            }
            keys
        }
    };
    // Every condition first (they read only the variables given), so that a start over the
    // limit refuses the command before anything changes.
    let mut to_start: Vec<(Key, ElementIndex)> = Vec::new();
    for process_definition_key in latest {
        let definition = &state.processes[&process_definition_key].definition;
        for (start, condition) in conditional_starts(definition) {
            let holds = crate::feel::evaluate(
                &condition.expression,
                &variables,
                crate::feel::Inputs {
                    now_millis: ctx.now_millis,
                    draws: Some(&state.draws),
                },
            )
            .is_ok_and(|evaluated| evaluated.value == serde_json::Value::Bool(true));
            if holds {
                to_start.push((process_definition_key, start));
            }
        }
    }
    if state.instances.len() + to_start.len() > crate::limits::LIVE_INSTANCES_MAX {
        return Err(Rejection::new(
            RejectionCode::LimitExceeded,
            format!(
                "{} conditions hold, and the shard runs {} instances: starting them would pass \
                 LIVE_INSTANCES_MAX ({})",
                to_start.len(),
                state.instances.len(),
                crate::limits::LIVE_INSTANCES_MAX
            ),
        ));
    }
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    let mut started = Vec::new();
    for (process_definition_key, start) in to_start {
        let version = &run.state.processes[&process_definition_key];
        let definition = std::sync::Arc::clone(&version.definition);
        let number = version.version;
        run.reset_steps();
        let key = run.start_instance_at(process_definition_key, start, variables.clone(), None);
        run.settle();
        started.push(StartedInstance {
            process_instance_key: key,
            process_definition_key,
            bpmn_process_id: std::sync::Arc::clone(&definition.bpmn_process_id),
            version: number,
            start_event_id: std::sync::Arc::clone(&definition.element(start).id),
        });
    }
    run.run();
    Ok(run.outcome(Response::ConditionalEvaluated(started)))
}
