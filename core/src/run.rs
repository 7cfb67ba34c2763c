//! The token machine: activates, completes and terminates element instances for one command.
//!
//! Work is a queue of steps, run in order until none is left or the instance waits (for a
//! job, or at an incident). Token accounting: a scope's `tokens` counts its live children
//! plus tokens waiting at parallel joins; a token on a sequence flow is counted from the
//! moment its source completes, so a scope never sees zero while work is still moving in it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ringflow_bpmn::{
    BusinessRuleTask, CatchTrigger, ElementIndex, ElementKind, EndResult, Expression, FlowIndex,
    JobDefinition, ProcessDefinition, ScriptTask, StartTrigger, ThrowResult,
};

use crate::engine::{Effect, Event, Keys, Variables};
use crate::feel;
use crate::instance::{
    ElementInstance, ElementRole, Incident, IncidentRetry, Job, JobState, Listener, ListenerEvent,
};
use crate::key::Key;
use crate::limits::{COMMAND_STEPS_MAX, ELEMENT_INSTANCES_PER_INSTANCE_MAX};
use crate::state::State;
use crate::variables::plan_propagation;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Step {
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
    /// A subscription just opened: correlate the oldest buffered message for it, if any.
    Correlate { subscription: Key },
    /// A conditional subscription whose condition held as it opened: fire it.
    FireConditional { subscription: Key },
    /// Variables of a process instance changed: evaluate the conditional subscriptions
    /// that watch them (see `conditionals`).
    Conditionals { process_instance: Key },
}

/// Events a run makes room for before the first (see `Run::new`).
const EVENTS_CAPACITY: usize = 8;

pub(crate) struct Run<'s> {
    pub state: &'s mut State,
    pub keys: Keys,
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
    now_millis: i64,
    work: VecDeque<Step>,
    steps: u32,
    /// Flows a gateway chose, for its completion; without an entry, every outgoing flow.
    pub(crate) chosen: BTreeMap<Key, Vec<FlowIndex>>,
    /// Events that already happened, by (scope, event element), with their variables: when
    /// the event is entered there it completes at once instead of waiting.
    pub(crate) triggered: BTreeMap<(Key, ElementIndex), Variables>,
    /// The definition [`Run::definition_of`] found last, by process instance key: a command
    /// asks about 10 times for the one instance it moves (an instance's definition never
    /// changes, and its key is never reused).
    definition_memo: std::cell::Cell<Option<(Key, Arc<ProcessDefinition>)>>,
    /// Signals broadcast by this command, delivered on this shard once no token moves (see
    /// `signals`).
    pub(crate) signals: VecDeque<crate::signals::Delivery>,
    /// Signals this command broadcast so far (at most `SIGNALS_PER_COMMAND_MAX`).
    pub(crate) signals_broadcast: u32,
}

impl Drop for Run<'_> {
    /// Hands the work queue's room to the next run instead of freeing it.
    fn drop(&mut self) {
        self.work.clear();
        self.state.work_scratch = std::mem::take(&mut self.work);
        // What this command noted for conditional events ends with it.
        if !self.state.conditionals_scratch.is_empty() {
            self.state.conditionals_scratch.clear();
        }
    }
}

impl<'s> Run<'s> {
    pub(crate) fn new(state: &'s mut State, keys: Keys, now_millis: i64) -> Self {
        // Room for a command that moves a token through a few elements (in the one-task
        // benchmark a create records 6 events, a job completion 4), so that most runs
        // allocate once instead of growing from 4 to 8. Effects are rarer (1 for the
        // create, none for the completion) and grow from empty.
        let events = Vec::with_capacity(EVENTS_CAPACITY);
        Run::with_events(state, keys, now_millis, events)
    }

    fn with_events(state: &'s mut State, keys: Keys, now_millis: i64, events: Vec<Event>) -> Self {
        // The queue of the run before, empty: its room is kept (see `Drop for Run`).
        let work = std::mem::take(&mut state.work_scratch);
        Run {
            state,
            keys,
            events,
            effects: Vec::new(),
            now_millis,
            work,
            steps: 0,
            chosen: BTreeMap::new(),
            triggered: BTreeMap::new(),
            definition_memo: std::cell::Cell::new(None),
            signals: VecDeque::new(),
            signals_broadcast: 0,
        }
    }

    /// A run that only looks things up and records no events (job activation): it makes no
    /// room for them.
    pub(crate) fn reading(state: &'s mut State, keys: Keys, now_millis: i64) -> Self {
        Run::with_events(state, keys, now_millis, Vec::new())
    }

    /// The command's time.
    pub(crate) fn now_millis(&self) -> i64 {
        self.now_millis
    }

    /// What an evaluation takes from this command: its time, and its draws.
    pub(crate) fn feel_inputs(&self) -> crate::feel::Inputs<'_> {
        crate::feel::Inputs {
            now_millis: self.now_millis,
            draws: Some(&self.state.draws),
        }
    }

    /// The process definition version an element instance runs.
    pub(crate) fn process_definition_of(&self, element_instance: Key) -> Key {
        let element = &self.state.elements[&element_instance];
        self.state.instances[&element.process_instance_key].process_definition_key
    }

    pub(crate) fn queue_correlation(&mut self, subscription: Key) {
        self.work.push_back(Step::Correlate { subscription });
    }

    /// Whether a step to complete `key` is queued.
    pub(crate) fn completing(&self, key: Key) -> bool {
        self.work
            .iter()
            .any(|step| matches!(step, Step::Complete { key: completing } if *completing == key))
    }

    /// Queues a step behind the work already queued.
    pub(crate) fn queue(&mut self, step: Step) {
        self.work.push_back(step);
    }

    /// Makes a new process instance with its root element instance (nothing started in it
    /// yet). The caller checked `LIVE_INSTANCES_MAX`.
    pub(crate) fn new_instance(
        &mut self,
        process_definition_key: Key,
        variables: Variables,
        business_key: Option<String>,
        await_result: bool,
        parent: Option<Key>,
    ) -> Key {
        let key = self.key();
        if let Some(call) = parent
            && call.shard() != self.state.shard()
        {
            self.state.index.remote_children.insert(call, key);
        }
        self.state.instances.insert(
            key,
            crate::instance::ProcessInstance {
                key,
                process_definition_key,
                business_key,
                await_result,
                live_elements: 1,
                parent,
                message_start_key: None,
            },
        );
        self.state.elements.insert(
            key,
            ElementInstance {
                key,
                process_instance_key: key,
                element: ProcessDefinition::ROOT,
                scope: None,
                tokens: 0,
                job: None,
                incident: None,
                role: ElementRole::Plain,
                called: None,
            },
        );
        self.events.push(Event::InstanceCreated {
            key,
            process_definition_key,
            business_key: self.state.instances[&key].business_key.clone(),
            parent,
        });
        if !variables.is_empty() {
            self.state.store_variables(key, variables);
        }
        self.element_event(key, |key, process_instance_key, element_id| {
            Event::ElementActivated {
                key,
                process_instance_key,
                element_id,
            }
        });
        key
    }

    /// A key for something this command creates. `process` checked up front that the shard
    /// has far more keys left than one command can use.
    pub(crate) fn key(&mut self) -> Key {
        self.keys
            .take()
            .expect("KEYS_RESERVE was checked before the command ran")
    }

    pub(crate) fn definition_of(&self, element_instance: Key) -> Arc<ProcessDefinition> {
        let instance_key = self.state.elements[&element_instance].process_instance_key;
        let definition = match self.definition_memo.take() {
            Some((key, definition)) if key == instance_key => definition,
            _ => {
                let instance = &self.state.instances[&instance_key];
                Arc::clone(&self.state.processes[&instance.process_definition_key].definition)
            }
        };
        self.definition_memo
            .set(Some((instance_key, Arc::clone(&definition))));
        definition
    }

    /// Starts the none start event of the scope `scope` (a process or subprocess instance).
    pub(crate) fn start_scope(&mut self, definition: &ProcessDefinition, scope: Key) {
        self.start_scope_at(definition, scope, None);
    }

    /// Enters a scope: opens the waits of its event subprocesses' timer and message starts,
    /// then starts `start` (or its none start event). A scope with no such start (a process
    /// started only by messages or timers, retried after an incident) completes.
    pub(crate) fn start_scope_at(
        &mut self,
        definition: &ProcessDefinition,
        scope: Key,
        start: Option<ElementIndex>,
    ) {
        let element = self.state.elements[&scope].element;
        let esp_starts: Vec<ElementIndex> = definition
            .event_subprocesses(element)
            .iter()
            .flat_map(|esp| definition.start_events(*esp).iter().copied())
            .collect();
        if !esp_starts.is_empty() && !self.open_waits(scope, &esp_starts) {
            return;
        }
        let start = start.or_else(|| {
            definition
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
                })
        });
        match start {
            Some(start) => self.work.push_back(Step::Activate {
                element: start,
                scope,
                counted: false,
            }),
            None => self.complete_later(scope),
        }
    }

    #[inline]
    pub(crate) fn complete_later(&mut self, key: Key) {
        self.work.push_back(Step::Complete { key });
    }

    /// Runs queued steps until there are none, then delivers the signals the command
    /// broadcast, one at a time, each after the work the one before caused.
    /// The command's outcome once the run is done: `response` with the events and effects
    /// it gathered and the next free key.
    pub(crate) fn outcome(&mut self, response: crate::engine::Response) -> crate::engine::Outcome {
        crate::engine::Outcome {
            response,
            events: std::mem::take(&mut self.events),
            effects: std::mem::take(&mut self.effects),
            next_key: self.keys.next(),
        }
    }

    pub(crate) fn run(&mut self) {
        loop {
            self.settle();
            match self.signals.pop_front() {
                Some(delivery) => self.deliver_signal(delivery),
                None => return,
            }
        }
    }

    /// Runs queued steps until no token moves.
    pub(crate) fn settle(&mut self) {
        loop {
            self.drain();
            // Once no token moves, an inclusive join can tell which tokens can still arrive.
            if !self.fire_inclusive_joins() {
                return;
            }
        }
    }

    /// Gives the next work a budget of `COMMAND_STEPS_MAX` steps of its own: a signal
    /// delivered to many waiting instances moves each of them.
    pub(crate) fn reset_steps(&mut self) {
        self.steps = 0;
    }

    #[inline(always)]
    fn drain(&mut self) {
        while let Some(step) = self.work.pop_front() {
            // A step inside a scope that was terminated meanwhile has nothing left to do.
            let live = match &step {
                Step::Activate { scope, .. } | Step::Arrive { scope, .. } => *scope,
                Step::Complete { key } => *key,
                Step::Correlate { .. }
                | Step::FireConditional { .. }
                | Step::Conditionals { .. } => {
                    self.event_step(step);
                    continue;
                }
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
                Step::Correlate { .. }
                | Step::FireConditional { .. }
                | Step::Conditionals { .. } => unreachable!("handled above"),
            }
        }
    }

    /// A step about an event rather than a token: a buffered message for a subscription, a
    /// conditional subscription to fire or the conditions to evaluate. Out of line, so that
    /// the loop that moves tokens stays small.
    #[cold]
    #[inline(never)]
    fn event_step(&mut self, step: Step) {
        match step {
            Step::Correlate { subscription } => self.correlate_now(subscription),
            Step::FireConditional { subscription } => {
                self.steps += 1;
                self.fire_conditional(subscription);
            }
            Step::Conditionals { process_instance } => {
                self.steps += 1;
                self.evaluate_conditionals(process_instance);
            }
            Step::Activate { .. } | Step::Complete { .. } | Step::Arrive { .. } => {
                unreachable!("token steps are drained in place")
            }
        }
    }

    pub(crate) fn element_event(&mut self, key: Key, kind: fn(Key, Key, Arc<str>) -> Event) {
        let element = &self.state.elements[&key];
        let definition = self.definition_of(key);
        let id = if element.scope.is_none() {
            Arc::clone(&definition.bpmn_process_id)
        } else if element.role == ElementRole::AdHocInner {
            crate::adhoc::inner_instance_id(&definition, element.element)
        } else {
            Arc::clone(&definition.element(element.element).id)
        };
        self.events
            .push(kind(key, element.process_instance_key, id));
    }

    fn activate(&mut self, element: ElementIndex, scope: Key, counted: bool) {
        let (key, ok) = self.instantiate(element, scope, counted);
        if !ok {
            return;
        }
        // The maps this command rarely fills are checked for emptiness first: a lookup in an
        // empty map is a call when the optimizer does not inline it (6 a one_task instance).
        let triggered = if self.triggered.is_empty() {
            None
        } else {
            self.triggered.remove(&(scope, element))
        };
        if let Some(mut variables) = triggered {
            let definition = self.definition_of(scope);
            if matches!(
                definition.element(element).kind,
                ElementKind::EventSubProcess
            ) {
                // The event subprocess's start event is what happened.
                let start = definition.start_events(element)[0];
                self.triggered
                    .insert((key, start), std::mem::take(&mut variables));
            } else {
                if !self.apply_inputs(key, element) {
                    // Resolving the incident enters the element again: the event that
                    // already happened waits with it instead of being lost.
                    self.state.held_triggers.insert(key, (element, variables));
                    return;
                }
                if self.has_start_listeners(key, element) {
                    // The event waits with the element until its start listeners are done.
                    self.state.held_triggers.insert(key, (element, variables));
                    self.listen(key, element, ListenerEvent::Start, 0);
                } else if self.accept_result(key, element, variables) {
                    self.complete_later(key);
                }
                return;
            }
        }
        self.enter(key, element);
    }

    /// Makes a new instance of `element` inside `scope` (counting its token unless
    /// `counted`) and records its activation; not entered yet. Returns its key and false
    /// when it stopped at an incident (a limit). Inlined: it is most of every activation.
    #[inline]
    pub(crate) fn instantiate(
        &mut self,
        element: ElementIndex,
        scope: Key,
        counted: bool,
    ) -> (Key, bool) {
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
        // One definition lookup for the whole activation.
        let definition = self.definition_of(scope);
        let role = self.role_for(&definition, element, scope);
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
                role,
                called: None,
            },
        );
        self.state.children.add(scope, key);
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
            self.incident(key, message);
            return (key, false);
        }
        if self.steps > COMMAND_STEPS_MAX {
            let message = format!(
                "one command ran more than COMMAND_STEPS_MAX ({COMMAND_STEPS_MAX}) steps: the \
                 model loops without a wait state"
            );
            self.incident(key, message);
            return (key, false);
        }
        (key, true)
    }

    /// The role of a new instance of `element` inside `scope`: the body of a multi-instance
    /// activity, one of its inner instances, or plain.
    fn role_for(
        &mut self,
        definition: &ProcessDefinition,
        element: ElementIndex,
        scope: Key,
    ) -> ElementRole {
        if definition.element(element).multi_instance.is_none() {
            return ElementRole::Plain;
        }
        let parent = &self.state.elements[&scope];
        if parent.element == element && parent.role == ElementRole::Body {
            let body = self
                .state
                .multi
                .get_mut(&scope)
                .expect("a body has its state");
            body.started += 1;
            ElementRole::Inner {
                loop_counter: body.started,
            }
        } else {
            ElementRole::Body
        }
    }

    /// Runs an element's activation: input mappings, the waits of its boundary events, then
    /// its behaviour. Also what resolving an activation incident runs again.
    pub(crate) fn enter(&mut self, key: Key, element: ElementIndex) {
        match self.state.elements[&key].role {
            ElementRole::Body => {
                if self.open_boundary_waits(key, element) {
                    self.start_multi(key, element);
                }
            }
            ElementRole::Inner { loop_counter } => {
                self.set_loop_variables(key, element, loop_counter);
                if !self.apply_inputs(key, element) || !self.no_start_listeners(key, element) {
                    return;
                }
                if !self.state.held_triggers.is_empty() {
                    return self.after_start_listeners(key);
                }
                self.behave(key, element);
            }
            ElementRole::AdHocInner => unreachable!("an ad-hoc inner instance is not entered"),
            ElementRole::Plain => {
                if !self.apply_inputs(key, element) {
                    // An event subprocess's start event waits with it (see above).
                    return self.hold_trigger(key);
                }
                if !self.no_start_listeners(key, element) {
                    return;
                }
                if !self.state.held_triggers.is_empty() {
                    // Entered again after an incident, with the event that entered it.
                    return self.after_start_listeners(key);
                }
                if self.open_boundary_waits(key, element) {
                    self.behave(key, element);
                }
            }
        }
    }

    /// Opens the timer and message waits of an activity's boundary events.
    pub(crate) fn open_boundary_waits(&mut self, key: Key, element: ElementIndex) -> bool {
        let definition = self.definition_of(key);
        let boundaries = definition.boundary_events(element);
        boundaries.is_empty() || self.open_waits(key, boundaries)
    }

    /// Evaluates a mapping source or other value: static text, or FEEL against what the
    /// element instance `key` sees.
    pub(crate) fn value_at(
        &self,
        key: Key,
        expression: &Expression,
    ) -> Result<serde_json::Value, String> {
        match expression {
            Expression::Static(text) => Ok(serde_json::Value::String(text.to_string())),
            Expression::Feel(feel) => {
                feel::evaluate_with(feel, |name| self.lookup(key, name), self.feel_inputs())
                    .map(|evaluated| evaluated.value)
            }
        }
    }

    /// Input mappings create local variables of the element instance, in order, each seeing
    /// the ones before it. Returns false when one failed (an incident was raised).
    pub(crate) fn apply_inputs(&mut self, key: Key, element: ElementIndex) -> bool {
        let definition = self.definition_of(key);
        for mapping in &definition.element(element).io_mapping.inputs {
            match self.value_at(key, &mapping.source) {
                Ok(value) => {
                    set_path(self.state.variables_mut(key), &mapping.target, value);
                }
                Err(error) => {
                    self.incident(
                        key,
                        format!("input mapping to `{}`: {error}", mapping.target),
                    );
                    return false;
                }
            }
        }
        true
    }

    /// Output mappings: evaluated when the element completes, propagated from its scope.
    /// Returns false when one failed (an incident was raised and the element stays).
    fn apply_outputs(&mut self, key: Key, element: ElementIndex, scope: Key) -> bool {
        let definition = self.definition_of(key);
        let outputs = &definition.element(element).io_mapping.outputs;
        if outputs.is_empty() {
            return true;
        }
        let mut results = Variables::new();
        for mapping in outputs {
            match self.value_at(key, &mapping.source) {
                Ok(value) => set_path(&mut results, &mapping.target, value),
                Err(error) => {
                    let message = format!("output mapping to `{}`: {error}", mapping.target);
                    self.incident_with(key, message, IncidentRetry::Completion);
                    return false;
                }
            }
        }
        self.propagate(key, scope, results, IncidentRetry::Completion)
    }

    /// Stores variables from `from` outwards, Camunda 8 style; an incident on `element` when
    /// a document would grow past its limit.
    pub(crate) fn propagate(
        &mut self,
        element: Key,
        from: Key,
        variables: Variables,
        retry: IncidentRetry,
    ) -> bool {
        match plan_propagation(self.state, from, variables) {
            Ok(updates) => {
                for update in updates {
                    self.merge_variables(update);
                }
                true
            }
            Err(rejection) => {
                self.incident_with(element, rejection.message, retry);
                false
            }
        }
    }

    /// What an element does once entered.
    pub(crate) fn behave(&mut self, key: Key, element: ElementIndex) {
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
            ElementKind::ExclusiveGateway { default } => {
                self.choose(key, &definition, element, *default, true);
            }
            ElementKind::InclusiveGateway { default } => {
                self.choose(key, &definition, element, *default, false);
            }
            ElementKind::ScriptTask(ScriptTask::Expression {
                expression,
                result_variable,
            }) => {
                self.run_script(key, element, expression, result_variable);
            }
            ElementKind::Process | ElementKind::SubProcess => self.start_scope(&definition, key),
            ElementKind::AdHocSubProcess(_) => self.start_ad_hoc(key, element),
            ElementKind::EventSubProcess => {
                // Entered because its start event's trigger happened: that start runs now.
                let start = definition.start_events(element)[0];
                self.start_scope_at(&definition, key, Some(start));
            }
            ElementKind::IntermediateCatchEvent(
                CatchTrigger::Message(_)
                | CatchTrigger::Timer(_)
                | CatchTrigger::Signal(_)
                | CatchTrigger::Conditional(_),
            )
            | ElementKind::ReceiveTask(_) => {
                self.open_waits(key, &[element]);
            }
            ElementKind::IntermediateCatchEvent(CatchTrigger::Link(_))
            | ElementKind::IntermediateThrowEvent(ThrowResult::Link { .. }) => {
                self.complete_later(key);
            }
            ElementKind::EventBasedGateway => {
                let targets: Vec<ElementIndex> = definition
                    .outgoing(element)
                    .iter()
                    .map(|flow| definition.flow(*flow).target)
                    .collect();
                self.open_waits(key, &targets);
            }
            ElementKind::IntermediateThrowEvent(ThrowResult::Escalation(code))
            | ElementKind::EndEvent(EndResult::Escalation(code)) => {
                let code = match self.value_at(key, code) {
                    Ok(serde_json::Value::String(code)) => code,
                    Ok(other) => {
                        let message = format!("the escalation code gave {other}, not a string");
                        return self.incident(key, message);
                    }
                    Err(error) => return self.incident(key, format!("escalation code: {error}")),
                };
                // Unless an interrupting catch ended it, the throw event goes on (once the
                // parent's shard answered, when it was asked).
                if self.throw_escalation(key, &code) && self.state.elements.contains_key(&key) {
                    self.complete_later(key);
                }
            }
            ElementKind::IntermediateThrowEvent(ThrowResult::Compensation(target))
            | ElementKind::EndEvent(EndResult::Compensation(target)) => {
                self.throw_compensation(key, *target);
            }
            ElementKind::IntermediateThrowEvent(ThrowResult::Signal(name))
            | ElementKind::EndEvent(EndResult::Signal(name)) => {
                if self.throw_signal(key, name) {
                    self.complete_later(key);
                }
            }
            ElementKind::CallActivity(called) => self.call(key, called),
            ElementKind::BusinessRuleTask(BusinessRuleTask::Decision {
                decision_id,
                result_variable,
            }) => self.run_decision(key, element, decision_id, result_variable),
            ElementKind::StartEvent { .. } => self.complete_later(key),
            ElementKind::BoundaryEvent { .. } => self.complete_later(key),
            ElementKind::EndEvent(EndResult::Error(code)) => {
                let code = match self.value_at(key, code) {
                    Ok(serde_json::Value::String(code)) => code,
                    Ok(other) => {
                        return self
                            .incident(key, format!("the error code gave {other}, not a string"));
                    }
                    Err(error) => return self.incident(key, format!("error code: {error}")),
                };
                self.throw_error(key, &code, "", false);
            }
            ElementKind::ServiceTask(job)
            | ElementKind::SendTask(job)
            | ElementKind::ScriptTask(ScriptTask::Job(job))
            | ElementKind::BusinessRuleTask(BusinessRuleTask::Job(job))
            | ElementKind::EndEvent(EndResult::Message(job))
            | ElementKind::IntermediateThrowEvent(ThrowResult::Message(job)) => {
                self.create_job(key, job);
            }
            ElementKind::UserTask(user_task) => self.create_user_task(key, user_task),
        }
    }

    /// A script task: evaluates its FEEL expression into its result variable.
    fn run_script(
        &mut self,
        key: Key,
        element: ElementIndex,
        expression: &ringflow_bpmn::FeelExpression,
        result_variable: &str,
    ) {
        let evaluated = match feel::evaluate_with(
            expression,
            |name| self.lookup(key, name),
            self.feel_inputs(),
        ) {
            Ok(evaluated) => evaluated,
            Err(error) => return self.incident(key, format!("script: {error}")),
        };
        let mut result = Variables::new();
        result.insert(result_variable.to_string(), evaluated.value);
        // With output mappings the result stays local, for them to map.
        if self.accept_result(key, element, result) {
            self.complete_later(key);
        }
    }

    /// A business rule task with `zeebe:calledDecision`: evaluates the latest version of the
    /// decision into its result variable.
    fn run_decision(
        &mut self,
        key: Key,
        element: ElementIndex,
        decision_id: &Expression,
        result_variable: &str,
    ) {
        let decision_id = match self.value_at(key, decision_id) {
            Ok(serde_json::Value::String(id)) if !id.is_empty() => id,
            Ok(other) => {
                let message = format!("the decision id gave {other}, not a non-empty text");
                return self.incident(key, message);
            }
            Err(error) => return self.incident(key, format!("decision id: {error}")),
        };
        let Some(decision) = self.state.latest_decision(&decision_id) else {
            return self.incident(key, format!("no decision `{decision_id}` is deployed"));
        };
        let (model, name) = (decision.model.clone(), decision.name.clone());
        let variables = self.visible_variables(key);
        let value = match model.evaluate(&name, &variables, self.feel_inputs()) {
            Ok(value) => value,
            Err(error) => {
                let message = format!("evaluating decision `{decision_id}` failed: {error}");
                return self.incident(key, message);
            }
        };
        let mut result = Variables::new();
        result.insert(result_variable.to_string(), value);
        if self.accept_result(key, element, result) {
            self.complete_later(key);
        }
    }

    /// A gateway picks its outgoing flows: the first (exclusive) or every (inclusive) flow
    /// whose condition holds, else the default flow, else an incident. A gateway without
    /// outgoing flows ends its path, as any flow node without them (the last element of an
    /// activation in an ad-hoc subprocess, say).
    fn choose(
        &mut self,
        key: Key,
        definition: &ProcessDefinition,
        element: ElementIndex,
        default: Option<FlowIndex>,
        first_only: bool,
    ) {
        if definition.outgoing(element).is_empty() {
            return self.complete_later(key);
        }
        let mut chosen = Vec::new();
        for flow in definition.outgoing(element) {
            if Some(*flow) == default {
                continue;
            }
            let holds = match &definition.flow(*flow).condition {
                None => Ok(true),
                Some(condition) => feel::condition_with(
                    condition,
                    |name| self.lookup(key, name),
                    self.feel_inputs(),
                ),
            };
            match holds {
                Ok(true) => {
                    chosen.push(*flow);
                    if first_only {
                        break;
                    }
                }
                Ok(false) => {}
                Err(error) => return self.incident(key, error),
            }
        }
        if chosen.is_empty() {
            let Some(default) = default else {
                let id = &definition.element(element).id;
                let message = format!(
                    "no condition of the flows leaving `{id}` holds, and it has no default flow"
                );
                return self.incident(key, message);
            };
            chosen.push(default);
        }
        self.chosen.insert(key, chosen);
        self.complete_later(key);
    }

    fn create_job(&mut self, element_instance_key: Key, definition: &JobDefinition) {
        self.create_job_for(element_instance_key, definition, None);
    }

    /// Creates the job of an element, or of one of its execution listeners. A job type or
    /// retries expression that fails is an incident at the element's activation (its
    /// completion, for an end listener). Inlined into both: the element's job is on the hot
    /// path.
    #[inline(always)]
    pub(crate) fn create_job_for(
        &mut self,
        element_instance_key: Key,
        definition: &JobDefinition,
        listener: Option<Listener>,
    ) -> Option<Key> {
        let retry = match listener {
            Some(Listener {
                event: ListenerEvent::End,
                ..
            }) => IncidentRetry::Completion,
            Some(Listener {
                event: ListenerEvent::Completing,
                ..
            }) => IncidentRetry::Completing,
            Some(Listener {
                event: ListenerEvent::Assigning,
                ..
            }) => IncidentRetry::Assigning,
            Some(Listener {
                event: ListenerEvent::Updating,
                ..
            }) => IncidentRetry::Updating,
            _ => IncidentRetry::Activation,
        };
        // A static type is the model's own name, shared; a FEEL one is made per job.
        let job_type: Arc<str> = match &definition.job_type {
            Expression::Static(job_type) if !job_type.is_empty() => Arc::clone(job_type),
            feel => match self.value_at(element_instance_key, feel) {
                Ok(serde_json::Value::String(job_type)) if !job_type.is_empty() => job_type.into(),
                Ok(other) => {
                    let message = format!(
                        "the job type `{}` gave {other}, not a non-empty string",
                        definition.job_type
                    );
                    self.incident_with(element_instance_key, message, retry);
                    return None;
                }
                Err(error) => {
                    let message = format!("job type: {error}");
                    self.incident_with(element_instance_key, message, retry);
                    return None;
                }
            },
        };
        let retries = match &definition.retries {
            Expression::Static(text) => text.trim().parse::<u32>().ok(),
            feel => match self.value_at(element_instance_key, feel) {
                Ok(value) => value.as_u64().and_then(|n| u32::try_from(n).ok()),
                Err(error) => {
                    let message = format!("job retries: {error}");
                    self.incident_with(element_instance_key, message, retry);
                    return None;
                }
            },
        };
        let Some(retries) = retries else {
            let message = format!(
                "the job retries `{}` are not a whole number",
                definition.retries
            );
            self.incident_with(element_instance_key, message, retry);
            return None;
        };
        let job_type = &job_type;
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
                listener,
                user_task: None,
            },
        );
        // The type's set usually exists: look it up by `&str` so that only a new type
        // makes an entry.
        match self.state.ready_jobs.get_mut(&**job_type) {
            Some(ready) => {
                ready.insert(key);
            }
            None => {
                self.state
                    .ready_jobs
                    .insert(job_type.clone(), std::collections::BTreeSet::from([key]));
            }
        }
        self.state
            .elements
            .get_mut(&element_instance_key)
            .expect("live")
            .job = Some(key);
        self.events.push(Event::JobCreated {
            key,
            job_type: job_type.clone(),
            process_instance_key,
            element_instance_key,
            retries,
        });
        let available = Effect::JobsAvailable {
            job_type: job_type.clone(),
        };
        if !self.effects.contains(&available) {
            self.effects.push(available);
        }
        Some(key)
    }

    /// Stops an element at its activation until the incident is resolved.
    pub(crate) fn incident(&mut self, element_instance_key: Key, message: String) {
        self.incident_with(element_instance_key, message, IncidentRetry::Activation);
    }

    pub(crate) fn incident_with(
        &mut self,
        element_instance_key: Key,
        message: String,
        retry: IncidentRetry,
    ) {
        let key = self.key();
        let process_instance_key = self.state.elements[&element_instance_key].process_instance_key;
        let incident = Incident {
            key,
            process_instance_key,
            element_instance_key,
            message: message.clone(),
            retry,
        };
        self.state.incidents.insert(key, incident);
        self.state
            .elements
            .get_mut(&element_instance_key)
            .expect("live")
            .incident = Some(key);
        self.incident_raised(key);
        self.events.push(Event::IncidentCreated {
            key,
            process_instance_key,
            element_instance_key,
            message,
        });
    }

    fn complete(&mut self, key: Key) {
        let definition = self.definition_of(key);
        let element = self.state.elements[&key].clone();
        let stored = match (element.role, element.scope) {
            (ElementRole::Body, Some(scope)) => self.propagate_output_collection(key, scope),
            (ElementRole::AdHocInner, _) => return self.complete_ad_hoc_inner(key),
            (_, Some(scope)) => self.apply_outputs(key, element.element, scope),
            (_, None) => true,
        };
        if !stored {
            return;
        }
        if definition.has_execution_listeners()
            && element.role != ElementRole::Body
            && !definition.element(element.element).listeners.end.is_empty()
        {
            return self.begin_end_listeners(key, element.element);
        }
        self.leave(key, element, &definition);
    }

    /// Leaves an element instance whose end listeners are done (see `listeners`).
    #[inline(never)]
    pub(crate) fn after_end_listeners(&mut self, key: Key) {
        let definition = self.definition_of(key);
        let element = self.state.elements[&key].clone();
        self.leave(key, element, &definition);
    }

    /// The rest of a completion, once output mappings and end listeners are done: keeps it
    /// for compensation, records it and moves its token on. Inlined: it is most of every
    /// completion.
    #[inline(always)]
    fn leave(&mut self, key: Key, element: ElementInstance, definition: &ProcessDefinition) {
        if let ElementRole::Inner { loop_counter } = element.role {
            return self.complete_inner(key, &element, loop_counter);
        }
        if definition.has_compensable_activities()
            && !self.keep_compensation(key, &element, definition)
        {
            return;
        }
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
        // A gateway's chosen flows, or (without copying them) every outgoing flow.
        let chosen = if self.chosen.is_empty() {
            None
        } else {
            self.chosen.remove(&key)
        };
        let outgoing = chosen
            .as_deref()
            .unwrap_or_else(|| definition.outgoing(element.element));
        let scope_instance = self.state.elements.get_mut(&scope).expect("scope is live");
        scope_instance.tokens += outgoing.len() as u32;
        for &flow in outgoing {
            self.work.push_back(Step::Arrive { flow, scope });
        }
        if let ElementKind::IntermediateThrowEvent(ThrowResult::Link { target, .. }) =
            definition.element(element.element).kind
        {
            // The token jumps to the link's catch event in the same scope.
            self.activate_counted(target, scope);
        }
        if !self.state.compensations.is_empty() {
            self.lift_compensations(key, scope, element.element, definition);
        }
        self.remove_element(key);
        let scope_instance = self.state.elements.get_mut(&scope).expect("scope is live");
        scope_instance.tokens -= 1;
        if scope_instance.tokens == 0 {
            // An ad-hoc subprocess decides for itself when it is done (its inner instances
            // share its element, and complete as any scope).
            if let ElementKind::AdHocSubProcess(_) = definition.element(scope_instance.element).kind
                && scope_instance.role != ElementRole::AdHocInner
            {
                return self.ad_hoc_path_ended(scope, element.element);
            }
            self.complete_later(scope);
        }
    }

    fn arrive(&mut self, flow: FlowIndex, scope: Key) {
        let definition = self.definition_of(scope);
        let target = definition.flow(flow).target;
        let incoming = definition.incoming(target);
        let inclusive = matches!(
            definition.element(target).kind,
            ElementKind::InclusiveGateway { .. }
        );
        let is_join = (inclusive
            || matches!(
                definition.element(target).kind,
                ElementKind::ParallelGateway
            ))
            && incoming.len() > 1;
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
        if inclusive {
            // An inclusive join decides when nothing else moves: see `fire_inclusive_joins`.
            return;
        }
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

    /// Fires every waiting inclusive join that no other token can still reach through an
    /// incoming flow that has no token yet (BPMN's rule). Returns whether one fired.
    fn fire_inclusive_joins(&mut self) -> bool {
        let waiting: Vec<(Key, ElementIndex)> = self.state.joins.keys().copied().collect();
        let mut fired = false;
        for (scope, gateway) in waiting {
            if !self.state.elements.contains_key(&scope) {
                continue;
            }
            let definition = self.definition_of(scope);
            if !matches!(
                definition.element(gateway).kind,
                ElementKind::InclusiveGateway { .. }
            ) {
                continue;
            }
            if self.inclusive_can_fire(&definition, scope, gateway) {
                let counts = self
                    .state
                    .joins
                    .get_mut(&(scope, gateway))
                    .expect("waiting");
                let mut consumed = 0;
                for count in counts.iter_mut().filter(|count| **count > 0) {
                    *count -= 1;
                    consumed += 1;
                }
                if counts.iter().all(|count| *count == 0) {
                    self.state.joins.remove(&(scope, gateway));
                }
                self.state
                    .elements
                    .get_mut(&scope)
                    .expect("scope is live")
                    .tokens -= consumed - 1;
                self.work.push_back(Step::Activate {
                    element: gateway,
                    scope,
                    counted: true,
                });
                fired = true;
            }
        }
        fired
    }

    fn inclusive_can_fire(
        &self,
        definition: &ProcessDefinition,
        scope: Key,
        gateway: ElementIndex,
    ) -> bool {
        let counts = &self.state.joins[&(scope, gateway)];
        let empty_sources: Vec<ElementIndex> = definition
            .incoming(gateway)
            .iter()
            .zip(counts)
            .filter(|(_, count)| **count == 0)
            .map(|(flow, _)| definition.flow(*flow).source)
            .collect();
        if empty_sources.is_empty() {
            return true;
        }
        let mut positions: Vec<ElementIndex> = self
            .state
            .children_of(scope)
            .iter()
            .map(|child| self.state.elements[child].element)
            .collect();
        let range = (scope, ElementIndex(0))..=(scope, ElementIndex(u32::MAX));
        for ((_, other), counts) in self.state.joins.range(range) {
            if *other != gateway && counts.iter().any(|count| *count > 0) {
                positions.push(*other);
            }
        }
        !positions
            .into_iter()
            .any(|from| reaches(definition, from, &empty_sources, gateway))
    }

    /// Ends one element instance (and everything inside it) early; ending a process
    /// instance's root ends the instance.
    pub(crate) fn terminate(&mut self, key: Key) {
        self.terminate_children(key, None);
        self.element_event(key, |key, process_instance_key, element_id| {
            Event::ElementTerminated {
                key,
                process_instance_key,
                element_id,
            }
        });
        let scope = self.state.elements[&key].scope;
        self.remove_element(key);
        match scope {
            Some(scope) => {
                self.state
                    .elements
                    .get_mut(&scope)
                    .expect("scope is live")
                    .tokens -= 1;
            }
            None => self.end_instance(key),
        }
    }

    /// Enters `element` in `scope` with a token the scope already counts.
    pub(crate) fn activate_counted(&mut self, element: ElementIndex, scope: Key) {
        self.state
            .elements
            .get_mut(&scope)
            .expect("scope is live")
            .tokens += 1;
        self.work.push_back(Step::Activate {
            element,
            scope,
            counted: true,
        });
    }

    /// Enters `element` in `scope` with a new token.
    pub(crate) fn activate_uncounted(&mut self, element: ElementIndex, scope: Key) {
        self.work.push_back(Step::Activate {
            element,
            scope,
            counted: false,
        });
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
            // (A conditionals step must stay: its changes wait for it.)
            Step::Complete { .. }
            | Step::Correlate { .. }
            | Step::FireConditional { .. }
            | Step::Conditionals { .. } => true,
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

    /// Removes an element instance whose token ends here, uncounting it in its scope.
    pub(crate) fn remove_element_counted(&mut self, key: Key) {
        let scope = self.state.elements[&key]
            .scope
            .expect("a flow node has a scope");
        self.remove_element(key);
        self.state
            .elements
            .get_mut(&scope)
            .expect("scope is live")
            .tokens -= 1;
    }

    /// Forgets an element instance with its job, incident, waits and local variables.
    pub(crate) fn remove_element(&mut self, key: Key) {
        let element = self.state.elements.remove(&key).expect("live");
        if let Some(job_key) = element.job {
            self.state.remove_job(job_key);
        }
        if let Some(incident) = element.incident {
            self.state.incidents.remove(&incident);
            self.incident_gone(element.process_instance_key, incident);
        }
        self.close_waits(key);
        if !self.state.compensations.is_empty() {
            self.drop_compensations(key);
        }
        if !self.state.multi.is_empty() {
            self.state.multi.remove(&key);
        }
        if !self.state.ad_hoc_fulfilled.is_empty() {
            self.state.ad_hoc_fulfilled.remove(&key);
        }
        if !self.state.held_triggers.is_empty() {
            self.state.held_triggers.remove(&key);
        }
        if !self.state.user_task_holds.is_empty()
            && let Some(hold) = self.state.user_task_holds.remove(&key)
            && (hold.completion.is_some() || hold.job.is_some())
        {
            // A completion, assignment or update was waiting for listeners: its caller is
            // told.
            self.transition_ended(key, crate::engine::TransitionEnd::Terminated);
        }
        self.forget_remote_incidents(key, element.process_instance_key);
        if let Some(child) = element.called {
            if child.shard() != self.state.shard() {
                // The child runs on another shard (or is being started there).
                self.send(
                    child.shard(),
                    crate::remote::Mail::CancelChild { call: key },
                );
            } else if self.state.instances.contains_key(&child) {
                // Cancelling a call activity cancels the instance it called.
                self.terminate(child);
            }
        }
        self.state
            .drop_variables(key, element.process_instance_key, &mut self.events);
        if let Some(scope) = element.scope {
            self.state.children.remove(scope, key);
        }
        self.state.children.end_scope(key);
        let instance = self
            .state
            .instances
            .get_mut(&element.process_instance_key)
            .expect("live");
        instance.live_elements -= 1;
    }

    /// The process completed: answer a waiting caller and forget the instance.
    #[inline]
    fn finish_instance(&mut self, root: Key) {
        let instance = self.state.instances[&root].clone();
        // The root's document ends with it: moved to the parent or the answer, not copied
        // (but for the rare instance with both).
        let child_variables = match instance.parent {
            Some(_) => self.state.take_variables(root, root, &mut self.events),
            None => Variables::new(),
        };
        if instance.await_result {
            let variables = match instance.parent {
                Some(_) => child_variables.clone(),
                None => self.state.take_variables(root, root, &mut self.events),
            };
            self.effects.push(Effect::InstanceResult {
                process_instance_key: root,
                variables,
            });
        }
        self.remove_element(root);
        self.end_instance(root);
        if let Some(parent) = instance.parent
            && parent.shard() != self.state.shard()
        {
            let mail = crate::remote::Mail::ChildCompleted {
                call: parent,
                child: root,
                variables: child_variables,
            };
            self.send(parent.shard(), mail);
        } else if let Some(parent) = instance.parent
            && self.state.elements.contains_key(&parent)
        {
            self.state
                .elements
                .get_mut(&parent)
                .expect("checked")
                .called = None;
            if self.accept_child_result(parent, child_variables) {
                self.complete_later(parent);
            }
        }
    }

    /// Forgets an ended process instance. When a message had started it, a buffered message
    /// with the same correlation key may now start the next instance.
    fn end_instance(&mut self, root: Key) {
        let instance = self.state.instances.remove(&root).expect("live");
        if let Some(call) = instance.parent
            && call.shard() != self.state.shard()
        {
            self.state.index.remote_children.remove(&call);
        }
        assert_eq!(
            instance.live_elements, 0,
            "an ended instance has no live elements"
        );
        if let Some(correlation_key) = instance.message_start_key {
            let process_id = self
                .state
                .process_id_of(instance.process_definition_key)
                .to_string();
            self.state
                .index
                .message_started
                .remove(&(process_id.clone(), correlation_key.clone()));
            self.start_from_buffer(&process_id, &correlation_key);
        }
    }

    /// The variables visible from `scope` up to the root, the innermost winning.
    /// The value of `name` that the element instance `scope` sees: its own, else that of the
    /// nearest scope around it that has one.
    pub(crate) fn lookup(&self, scope: Key, name: &str) -> Option<&serde_json::Value> {
        let mut next = Some(scope);
        while let Some(key) = next {
            if let Some(value) = self.state.variables.get(&key).and_then(|doc| doc.get(name)) {
                return Some(value);
            }
            next = self.state.elements[&key].scope;
        }
        None
    }

    /// The variables visible at `scope` (innermost scope winning) as JSON text, written
    /// from the documents where they are: none is copied. The text is sized from the
    /// documents' kept lengths.
    #[inline]
    pub(crate) fn visible_variables_json(&self, scope: Key) -> String {
        let mut documents: Vec<&Variables> = Vec::new();
        let mut capacity = 2;
        let mut next = Some(scope);
        while let Some(key) = next {
            if let Some(document) = self.state.variables.get(&key) {
                documents.push(document);
                capacity += self.state.variable_lens.get(&key).copied().unwrap_or(64);
            }
            next = self.state.elements[&key].scope;
        }
        crate::variables::merged_json(&documents, capacity)
    }

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

/// Writes `value` at a dotted path (`order.total`), creating objects on the way.
pub(crate) fn set_path(document: &mut Variables, path: &str, value: serde_json::Value) {
    match path.split_once('.') {
        None => {
            document.insert(path.to_string(), value);
        }
        Some((first, rest)) => {
            let entry = document
                .entry(first.to_string())
                .or_insert_with(|| serde_json::json!({}));
            if !entry.is_object() {
                *entry = serde_json::json!({});
            }
            let inner = entry.as_object_mut().expect("made an object above");
            set_path(inner, rest, value);
        }
    }
}

/// Whether a token at `from` can reach one of `targets` along sequence flows (and boundary
/// events), without passing through `avoid`.
fn reaches(
    definition: &ProcessDefinition,
    from: ElementIndex,
    targets: &[ElementIndex],
    avoid: ElementIndex,
) -> bool {
    let mut seen = vec![false; definition.elements().len()];
    let mut stack = vec![from];
    while let Some(element) = stack.pop() {
        if targets.contains(&element) {
            return true;
        }
        if element == avoid || std::mem::replace(&mut seen[element.0 as usize], true) {
            continue;
        }
        stack.extend(
            definition
                .outgoing(element)
                .iter()
                .map(|flow| definition.flow(*flow).target),
        );
        stack.extend_from_slice(definition.boundary_events(element));
    }
    false
}
