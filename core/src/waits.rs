//! What element instances wait for (timers, message, signal and conditional
//! subscriptions), and what happens when it comes.
//!
//! A wait belongs to an *owner* element instance and names the *event* in the model that
//! fires. Removing the owner (it completes, or a cancellation, an interrupting event or a
//! terminate end event ends it) closes its waits, so nothing is left behind.
//!
//! | event | owner | on firing |
//! |---|---|---|
//! | intermediate catch event, receive task | the event or task itself | it completes, taking the message's (or signal's) variables |
//! | boundary event | the activity it is attached to (the multi-instance body) | interrupting: the activity ends and the token leaves by the boundary event; non-interrupting: a new token leaves by it |
//! | event subprocess start | the enclosing scope | interrupting: the scope's work ends, then the event subprocess runs; non-interrupting: it runs beside the scope's work |
//! | catch event after an event-based gateway | the gateway | the gateway completes along that branch; its other waits close |
//!
//! Conditional events wait the same way; `conditionals` says when their conditions are
//! evaluated.
//!
//! Opening a group of waits is all or nothing: every name, correlation key and due time is
//! worked out first, and a failure is an incident on the owner with nothing opened.

use std::sync::Arc;

use ringflow_bpmn::timer::TimerDefinition;
use ringflow_bpmn::{
    BoundaryTrigger, CatchTrigger, ElementIndex, ElementKind, MessageRef, ProcessDefinition,
    StartTrigger,
};

use crate::engine::{Event, Variables};
use crate::instance::{IncidentRetry, Subscription};
use crate::key::Key;
use crate::run::Run;
use crate::timers::Schedule;

/// What an event waits for.
pub(crate) enum Trigger<'d> {
    Timer(&'d TimerDefinition),
    Message(&'d MessageRef),
    /// The signal's name.
    Signal(&'d ringflow_bpmn::Expression),
    /// A condition on the variables.
    Conditional(&'d ringflow_bpmn::Condition),
}

/// The timer, message or signal an event element waits for, if any.
pub(crate) fn trigger_of(
    definition: &ProcessDefinition,
    event: ElementIndex,
) -> Option<Trigger<'_>> {
    match &definition.element(event).kind {
        ElementKind::StartEvent {
            trigger: StartTrigger::Timer(timer),
            ..
        }
        | ElementKind::IntermediateCatchEvent(CatchTrigger::Timer(timer))
        | ElementKind::BoundaryEvent {
            trigger: BoundaryTrigger::Timer(timer),
            ..
        } => Some(Trigger::Timer(timer)),
        ElementKind::StartEvent {
            trigger: StartTrigger::Message(message),
            ..
        }
        | ElementKind::IntermediateCatchEvent(CatchTrigger::Message(message))
        | ElementKind::BoundaryEvent {
            trigger: BoundaryTrigger::Message(message),
            ..
        }
        | ElementKind::ReceiveTask(message) => Some(Trigger::Message(message)),
        ElementKind::StartEvent {
            trigger: StartTrigger::Signal(name),
            ..
        }
        | ElementKind::IntermediateCatchEvent(CatchTrigger::Signal(name))
        | ElementKind::BoundaryEvent {
            trigger: BoundaryTrigger::Signal(name),
            ..
        } => Some(Trigger::Signal(name)),
        _ => crate::conditionals::condition_of(definition, event).map(Trigger::Conditional),
    }
}

/// A wait worked out and ready to open.
enum Planned {
    Timer(ElementIndex, Schedule),
    Message(ElementIndex, String, String),
    Signal(ElementIndex, String),
    /// A conditional event, and whether its condition holds now.
    Conditional(ElementIndex, bool),
}

impl Run<'_> {
    /// Opens the waits of `owner` for `events` (those without a timer or message are skipped).
    /// Waits `owner` already has for these events are closed first, so retrying an activation
    /// does not double them. Returns false when one could not be worked out: then an
    /// incident stops the owner and nothing is opened.
    pub(crate) fn open_waits(&mut self, owner: Key, events: &[ElementIndex]) -> bool {
        let definition = self.definition_of(owner);
        let mut planned = Vec::new();
        for event in events {
            let plan = match trigger_of(&definition, *event) {
                None => continue,
                Some(Trigger::Timer(timer)) => {
                    let now = self.now_millis();
                    crate::timers::schedule(timer, now, |feel| {
                        self.value_at(owner, &ringflow_bpmn::Expression::Feel(feel.clone()))
                    })
                    .map(|schedule| Planned::Timer(*event, schedule))
                    .map_err(|error| format!("timer: {error}"))
                }
                Some(Trigger::Message(message)) => self
                    .message_of(owner, message)
                    .map(|(name, key)| Planned::Message(*event, name, key)),
                Some(Trigger::Signal(name)) => self
                    .signal_name_at(owner, name)
                    .map(|name| Planned::Signal(*event, name)),
                Some(Trigger::Conditional(condition)) => self
                    .condition_holds(owner, condition)
                    .map(|holds| Planned::Conditional(*event, holds)),
            };
            match plan {
                Ok(plan) => planned.push(plan),
                Err(error) => {
                    let id = &definition.element(*event).id;
                    self.incident_with(
                        owner,
                        format!("`{id}`: {error}"),
                        IncidentRetry::Activation,
                    );
                    return false;
                }
            }
        }
        self.close_waits_for(owner, events);
        let process_definition_key = self.process_definition_of(owner);
        let process_instance_key = self.state.elements[&owner].process_instance_key;
        for plan in planned {
            match plan {
                Planned::Timer(event, schedule) => {
                    self.arm_timer(process_definition_key, event, Some(owner), schedule);
                }
                Planned::Message(event, name, correlation_key) => {
                    let key = self.key();
                    let remote = self.subscription_is_remote(&correlation_key);
                    self.state.insert_subscription(Subscription {
                        key,
                        name,
                        correlation_key,
                        process_definition_key,
                        element: event,
                        owner,
                        process_instance_key,
                    });
                    if remote {
                        // The messages live on the correlation key's shard: register there.
                        self.subscribe_remote(key);
                    } else {
                        self.correlate_buffered(key);
                    }
                }
                Planned::Signal(event, name) => {
                    // Signals are not buffered: only one broadcast after this reaches it.
                    let key = self.key();
                    self.state
                        .insert_signal_subscription(crate::instance::SignalSubscription {
                            key,
                            name,
                            process_definition_key,
                            element: event,
                            owner,
                            process_instance_key,
                        });
                }
                Planned::Conditional(event, holds) => {
                    let key = self.key();
                    self.state.insert_conditional_subscription(
                        crate::instance::ConditionalSubscription {
                            key,
                            process_definition_key,
                            element: event,
                            owner,
                            process_instance_key,
                        },
                    );
                    self.conditional_opened(key);
                    if holds {
                        // It fires once the owner's activation is done.
                        self.queue(crate::run::Step::FireConditional { subscription: key });
                    }
                }
            }
        }
        true
    }

    /// The message name and correlation key a subscription of `owner` waits for.
    fn message_of(&self, owner: Key, message: &MessageRef) -> Result<(String, String), String> {
        let name = match self.value_at(owner, &message.name)? {
            serde_json::Value::String(name) if !name.is_empty() => name,
            other => {
                return Err(format!(
                    "the message name gave {other}, not a non-empty text"
                ));
            }
        };
        let Some(correlation_key) = &message.correlation_key else {
            return Err(format!("the message `{name}` has no correlation key"));
        };
        let correlation_key = match self.value_at(owner, correlation_key) {
            Ok(serde_json::Value::String(text)) => text,
            Ok(serde_json::Value::Number(number)) => number.to_string(),
            Ok(other) => {
                return Err(format!(
                    "the correlation key of message `{name}` gave {other}; it must be a text or \
                     a number"
                ));
            }
            Err(error) => {
                return Err(format!(
                    "the correlation key of message `{name}` could not be evaluated: {error}"
                ));
            }
        };
        Ok((name, correlation_key))
    }

    /// Closes every wait of `owner` (it is removed, or it stops waiting).
    pub(crate) fn close_waits(&mut self, owner: Key) {
        for wait in self.state.waits_of(owner) {
            if self.state.remove_timer(wait).is_none() {
                self.close_subscription(wait);
            }
        }
    }

    /// Closes the waits of `owner` for the given events only.
    pub(crate) fn close_waits_for(&mut self, owner: Key, events: &[ElementIndex]) {
        for wait in self.state.waits_of(owner) {
            let event = match self.state.timers.get(&wait) {
                Some(timer) => timer.element,
                None => match self.state.subscriptions.get(&wait) {
                    Some(subscription) => subscription.element,
                    None => match self.state.signal_subscriptions.get(&wait) {
                        Some(subscription) => subscription.element,
                        None => self.state.conditional_subscriptions[&wait].element,
                    },
                },
            };
            if events.contains(&event) && self.state.remove_timer(wait).is_none() {
                self.close_subscription(wait);
            }
        }
    }

    /// Whether `event` keeps waiting after it fired: a non-interrupting boundary event or
    /// event subprocess start, or a process start event.
    pub(crate) fn event_repeats(&self, process_definition_key: Key, event: ElementIndex) -> bool {
        let definition = &self.state.processes[&process_definition_key].definition;
        match &definition.element(event).kind {
            ElementKind::BoundaryEvent { interrupting, .. } => !interrupting,
            ElementKind::StartEvent { interrupting, .. } => {
                definition.element(event).scope == Some(ProcessDefinition::ROOT) || !interrupting
            }
            _ => false,
        }
    }

    pub(crate) fn repeats(&self, timer: &crate::instance::Timer) -> bool {
        self.event_repeats(timer.process_definition_key, timer.element)
    }

    /// The event `event` that `owner` waited for happened, with these variables.
    pub(crate) fn fire(&mut self, owner: Key, event: ElementIndex, variables: Variables) {
        let definition = self.definition_of(owner);
        let owner_element = self.state.elements[&owner].element;
        if owner_element == event {
            // A catch event or receive task: it completes.
            self.close_waits_for(owner, &[event]);
            if self.accept_result(owner, event, variables) {
                self.complete_later(owner);
            }
            return;
        }
        match &definition.element(event).kind {
            ElementKind::BoundaryEvent { interrupting, .. } => {
                let scope = self.state.elements[&owner]
                    .scope
                    .expect("an activity has a scope");
                self.triggered.insert((scope, event), variables);
                if *interrupting {
                    self.terminate(owner);
                    self.activate_counted(event, scope);
                } else {
                    self.activate_uncounted(event, scope);
                }
            }
            ElementKind::StartEvent { interrupting, .. } => {
                let subprocess = definition
                    .element(event)
                    .scope
                    .expect("an event subprocess start has a scope");
                if *interrupting {
                    self.terminate_children(owner, None);
                    let subprocesses = definition.event_subprocesses(owner_element).to_vec();
                    let starts: Vec<ElementIndex> = subprocesses
                        .iter()
                        .flat_map(|esp| definition.start_events(*esp).to_vec())
                        .collect();
                    self.close_waits_for(owner, &starts);
                }
                self.triggered.insert((owner, subprocess), variables);
                self.activate_uncounted(subprocess, owner);
            }
            _ => {
                // A branch of an event-based gateway.
                let flow = definition
                    .outgoing(owner_element)
                    .iter()
                    .copied()
                    .find(|flow| definition.flow(*flow).target == event)
                    .expect("the event follows the gateway");
                let scope = self.state.elements[&owner]
                    .scope
                    .expect("a gateway has a scope");
                self.close_waits(owner);
                self.triggered.insert((scope, event), variables);
                self.chosen.insert(owner, vec![flow]);
                self.complete_later(owner);
            }
        }
    }

    /// Stores what an element produced (a message's or a child's variables) the way a
    /// completed job's variables are stored: local when the element has output mappings
    /// (they decide what leaves it), else propagated outwards. False: an incident (a
    /// document would grow past its limit); the variables are then held with the element
    /// (`State::held_triggers`), and resolving the incident stores them again and completes
    /// it, instead of waiting for another message or starting another child.
    pub(crate) fn accept_result(
        &mut self,
        key: Key,
        element: ElementIndex,
        variables: Variables,
    ) -> bool {
        if variables.is_empty() {
            return true;
        }
        let definition = self.definition_of(key);
        if definition.element(element).io_mapping.outputs.is_empty() {
            let kept = variables.clone();
            let stored = self.propagate(key, key, variables, IncidentRetry::Activation);
            if !stored {
                self.state.held_triggers.insert(key, (element, kept));
            }
            stored
        } else {
            // Local, for the output mappings: the element's document must stay within
            // VARIABLE_DOCUMENT_BYTES_MAX too.
            match crate::variables::plan_local(self.state, key, variables.clone()) {
                Ok(update) => {
                    self.merge_variables(update);
                    true
                }
                Err(rejection) => {
                    self.incident_with(key, rejection.message, IncidentRetry::Activation);
                    self.state.held_triggers.insert(key, (element, variables));
                    false
                }
            }
        }
    }

    /// Starts a new instance of a process version at the start event `start` (a timer or
    /// message start), with the trigger's variables. Returns its key.
    pub(crate) fn start_instance_at(
        &mut self,
        process_definition_key: Key,
        start: ElementIndex,
        variables: Variables,
        message_start_key: Option<String>,
    ) -> Key {
        let key = self.new_instance(process_definition_key, Variables::new(), None, false, None);
        if let Some(correlation_key) = message_start_key {
            let id = self.state.process_id_of(process_definition_key).to_string();
            self.state
                .index
                .message_started
                .insert((id, correlation_key.clone()), key);
            self.state
                .instances
                .get_mut(&key)
                .expect("just created")
                .message_start_key = Some(correlation_key);
        }
        self.triggered.insert((key, start), variables);
        let definition = Arc::clone(&self.state.processes[&process_definition_key].definition);
        self.enter_root(&definition, key, Some(start));
        key
    }

    /// Correlates a message to a subscription: marks the message as taken by the process,
    /// fires the event, and closes the subscription unless its event repeats.
    pub(crate) fn correlate(
        &mut self,
        subscription: Key,
        message: Option<Key>,
        variables: Variables,
    ) {
        let subscription = self.state.subscriptions[&subscription].clone();
        if !self.event_repeats(subscription.process_definition_key, subscription.element) {
            self.close_subscription(subscription.key);
        }
        self.events.push(Event::MessageCorrelated {
            message_key: message,
            subscription_key: subscription.key,
            process_instance_key: subscription.process_instance_key,
            element_instance_key: subscription.owner,
        });
        self.fire(subscription.owner, subscription.element, variables);
    }
}
