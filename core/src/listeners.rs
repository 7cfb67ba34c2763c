//! Execution listeners (`zeebe:executionListeners`, Camunda 8.6): jobs that run, one after
//! the other, when an element starts and when it ends, and that the element waits for.
//!
//! | when | what |
//! |---|---|
//! | start listeners | after the input mappings, before the element opens the waits of its boundary events, evaluates its expressions or does its work (for the process: before its start event) |
//! | a start listener's variables | local variables of the element; the next listener sees them |
//! | end listeners | after the output mappings, once the element's boundary events and event subprocesses are closed, before it is recorded as completed and its token moves on |
//! | an end listener's variables | propagated from the element's scope, as output mappings are |
//! | a multi-instance activity | listeners run around each inner instance, not the body |
//! | a listener job that fails without retries left | an incident; resolving it retries that listener only |
//! | a listener's type or retries expression that fails | an incident; resolving it runs the input mappings (start) or output mappings (end) and every listener of that event again |
//! | an element entered because its event happened (a catch event after an event-based gateway, an event subprocess, a message or timer started process) | the event and its variables are held (`State::held_triggers`) until the start listeners are done |
//! | termination (a boundary event, an interrupting event subprocess, cancel) | the listener job goes with the element |
//! | a BPMN error thrown by a listener job | refused: fail the job instead |
//!
//! The model crate refuses start listeners on start and boundary events, end listeners on
//! gateways and error end events, and both on compensation boundary events (Camunda 8 does
//! not run them there either).

use std::sync::Arc;

use ringflow_bpmn::{ElementIndex, ElementKind, JobDefinition, ProcessDefinition};

use crate::instance::{ElementRole, Listener, ListenerEvent};
use crate::key::Key;
use crate::run::Run;

impl Run<'_> {
    /// Whether `element` has start listeners (one flag check while no deployed process has
    /// any).
    #[inline]
    pub(crate) fn has_start_listeners(&self, key: Key, element: ElementIndex) -> bool {
        self.state.index.listening && {
            let definition = self.definition_of(key);
            definition.has_execution_listeners()
                && !definition.element(element).listeners.start.is_empty()
        }
    }

    /// True when `element` has no start listeners and its activation goes on. Otherwise
    /// starts the first one and returns false: the element waits. A trigger waiting to
    /// enter the element (an event subprocess's start event, a process's message start) is
    /// held until the listeners are done.
    #[inline(always)]
    pub(crate) fn no_start_listeners(&mut self, key: Key, element: ElementIndex) -> bool {
        // One load on the hot path; the rest out of line.
        !self.state.index.listening || self.start_listeners_first(key, element)
    }

    #[inline(never)]
    fn start_listeners_first(&mut self, key: Key, element: ElementIndex) -> bool {
        if !self.has_start_listeners(key, element) {
            return true;
        }
        self.hold_trigger(key);
        self.listen(key, element, ListenerEvent::Start, 0);
        false
    }

    /// Moves the trigger waiting to enter the scope `key` (an event subprocess's or a
    /// process's start event and its variables), if any, from this command's memory into
    /// `State::held_triggers`, where it outlives the command.
    pub(crate) fn hold_trigger(&mut self, key: Key) {
        if self.triggered.is_empty() {
            return;
        }
        let range = (key, ElementIndex(0))..=(key, ElementIndex(u32::MAX));
        if let Some(&(_, at)) = self.triggered.range(range).next().map(|(k, _)| k) {
            let variables = self.triggered.remove(&(key, at)).expect("just seen");
            self.state.held_triggers.insert(key, (at, variables));
        }
    }

    /// Enters the root of a new process instance of `definition`: its start listeners,
    /// then its start event (`start`, or the none start event).
    pub(crate) fn enter_root(
        &mut self,
        definition: &ProcessDefinition,
        key: Key,
        start: Option<ElementIndex>,
    ) {
        if self.no_start_listeners(key, ProcessDefinition::ROOT) {
            self.start_scope_at(definition, key, start);
        }
    }

    /// An element done (its output mappings applied) starts its end listeners: from here
    /// no boundary event or event subprocess of it may trigger.
    #[cold]
    #[inline(never)]
    pub(crate) fn begin_end_listeners(&mut self, key: Key, element: ElementIndex) {
        self.close_waits(key);
        self.listen(key, element, ListenerEvent::End, 0);
    }

    /// Creates the job of the `index`th `event` listener of the element instance `key`.
    pub(crate) fn listen(
        &mut self,
        key: Key,
        element: ElementIndex,
        event: ListenerEvent,
        index: u32,
    ) {
        let definition: Arc<ProcessDefinition> = self.definition_of(key);
        let job = &listeners_of(&definition, element, event)[index as usize];
        self.create_job_for(key, job, Some(Listener { event, index }));
    }

    /// A listener job of the element instance `key` was completed (its variables stored):
    /// the next listener of the same event, or the element goes on.
    pub(crate) fn listener_done(&mut self, key: Key, listener: Listener) {
        let element = self.state.elements[&key].element;
        let definition = self.definition_of(key);
        let count = listeners_of(&definition, element, listener.event).len();
        let next = listener.index + 1;
        if (next as usize) < count {
            return self.listen(key, element, listener.event, next);
        }
        match listener.event {
            ListenerEvent::Start => self.after_start_listeners(key),
            ListenerEvent::End => self.after_end_listeners(key),
            ListenerEvent::Creating => self.after_creating_listeners(key),
            ListenerEvent::Completing => self.after_completing_listeners(key),
            ListenerEvent::Assigning | ListenerEvent::Updating => {
                self.after_change_listeners(key, listener.event)
            }
        }
    }

    /// The rest of an activation once the start listeners are done (or an incident at it
    /// resolved): the held trigger, if any, then the waits of the boundary events and the
    /// element's behaviour.
    pub(crate) fn after_start_listeners(&mut self, key: Key) {
        let instance = &self.state.elements[&key];
        let (element, role, root) = (instance.element, instance.role, instance.scope.is_none());
        match self.state.held_triggers.remove(&key) {
            // A catch or boundary event whose event already happened: it completes.
            Some((at, variables)) if at == element => {
                if self.accept_result(key, element, variables) {
                    self.complete_later(key);
                }
            }
            Some((at, variables)) => {
                // The start event of an event subprocess or of the process.
                self.triggered.insert((key, at), variables);
                if root {
                    let definition = self.definition_of(key);
                    self.start_scope_at(&definition, key, Some(at));
                } else {
                    self.go_on_entering(key, element, role);
                }
            }
            None => self.go_on_entering(key, element, role),
        }
    }

    fn go_on_entering(&mut self, key: Key, element: ElementIndex, role: ElementRole) {
        match role {
            ElementRole::Plain => {
                if self.open_boundary_waits(key, element) {
                    self.behave(key, element);
                }
            }
            ElementRole::Inner { .. } => self.behave(key, element),
            ElementRole::Body => unreachable!("a multi-instance body runs no listeners"),
            ElementRole::AdHocInner => unreachable!("an ad-hoc inner instance runs no listeners"),
        }
    }
}

/// The `event` listeners of `element`, in document order: its execution listeners, or a user
/// task's task listeners (none on any other element).
pub(crate) fn listeners_of(
    definition: &ProcessDefinition,
    element: ElementIndex,
    event: ListenerEvent,
) -> &[JobDefinition] {
    let model = definition.element(element);
    match (event, &model.kind) {
        (ListenerEvent::Start, _) => &model.listeners.start,
        (ListenerEvent::End, _) => &model.listeners.end,
        (ListenerEvent::Creating, ElementKind::UserTask(task)) => &task.listeners.creating,
        (ListenerEvent::Completing, ElementKind::UserTask(task)) => &task.listeners.completing,
        (ListenerEvent::Assigning, ElementKind::UserTask(task)) => &task.listeners.assigning,
        (ListenerEvent::Updating, ElementKind::UserTask(task)) => &task.listeners.updating,
        _ => &[],
    }
}
