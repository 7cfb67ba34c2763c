//! Signals: a broadcast to every instance that waits for one, on every shard (Camunda 8's
//! rules).
//!
//! A signal is broadcast by the `BroadcastSignal` command, or by a signal intermediate throw
//! event or signal end event, with its variables (a throw event's are its local variables:
//! what its input mappings made). The shard where it was broadcast delivers it itself and
//! sends it as [`Mail::Signal`] to every other shard of the cluster, through the journaled
//! outbox, so every shard receives it exactly once (see [`crate::remote`]). On each shard it
//! goes to every signal subscription of its name that was open when it arrived:
//!
//! | element | on the signal |
//! |---|---|
//! | intermediate catch event (also after an event-based gateway) | it completes, taking the signal's variables as a message's |
//! | boundary event | interrupting: the activity ends and the token leaves by the event; non-interrupting: a new token leaves by it, and it keeps waiting |
//! | event subprocess start | interrupting: the scope's other work ends, then the event subprocess runs; non-interrupting: it runs beside, and keeps waiting |
//! | process start event | on the shard where the signal was broadcast only, so that one broadcast starts each process once: a new instance of the latest version of every process with a signal start event of that name |
//!
//! Signals are not buffered: a signal reaches the subscriptions of its name open when it was
//! broadcast on (or arrived at) the shard, and one opened later does not see it. Each
//! signal gets a key when it is broadcast or arrives; subscription keys grow with the
//! shard's key counter, so the subscriptions it reaches are those of its name with a key
//! below its own. Within a command, a signal is delivered once no token moves; each
//! subscription it fires (and each instance it starts) moves with a step budget of its own
//! ([`COMMAND_STEPS_MAX`](crate::limits::COMMAND_STEPS_MAX)). One command delivers it to at
//! most [`SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX`]
//! subscriptions: past that, the state keeps a [`PendingDelivery`] (where it stopped) and the
//! command returns [`Effect::ContinueSignal`], on which the
//! shard submits `ContinueSignal` for the next ones, and so on: a broadcast to a million
//! waiting instances does not hold the shard in one command. A subscription that closes
//! meanwhile is skipped. A command broadcasts at most
//! [`SIGNALS_PER_COMMAND_MAX`] signals: a throw over
//! that (a process started by a signal that throws it again) is an incident at the throw
//! event, which resolving retries.
//!
//! Signal names of catch and throw events may be FEEL expressions, evaluated when the event
//! is entered; a signal start event's name must be known without variables (it is needed
//! when the signal arrives, before there is an instance).

use crate::engine::{Ctx, Effect, Keys, Outcome, Rejection, RejectionCode, Response, Variables};
use crate::key::Key;
use crate::limits::{
    LIVE_INSTANCES_MAX, NAME_BYTES_MAX, SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX,
    SIGNALS_PER_COMMAND_MAX,
};
use crate::remote::Mail;
use crate::run::Run;
use crate::state::State;
use crate::variables::check_document_size;
use ringflow_bpmn::{ElementIndex, ElementKind, Expression, ProcessDefinition, StartTrigger};

/// A signal waiting to be delivered on this shard within the command.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The signal's key on this shard: it reaches subscriptions with lower keys.
    key: Key,
    name: String,
    variables: Variables,
    /// Whether signal start events start instances here (only where it was broadcast, and
    /// only in its first command).
    start_processes: bool,
    /// It goes on after this subscription key (`Key(0)`: from the first).
    after: Key,
}

/// A signal with subscriptions left to deliver to, kept in the state between its
/// `ContinueSignal` commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingDelivery {
    /// The signal name.
    pub name: String,
    /// The signal's variables.
    pub variables: Variables,
    /// The last subscription key it was delivered to: it goes on with the next.
    pub after: Key,
}

/// `BroadcastSignal`: delivers the signal here and sends it to every other shard.
pub(crate) fn broadcast(
    state: &mut State,
    name: String,
    variables: Variables,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    if let Err(problem) = check_name(&name) {
        return Err(Rejection::new(RejectionCode::InvalidArgument, problem));
    }
    check_document_size(&variables)?;
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    let key = run.broadcast(name, variables);
    run.run();
    Ok(run.outcome(Response::SignalBroadcast { key }))
}

/// `ContinueSignal`: delivers a signal to the next subscriptions it reaches.
pub(crate) fn continue_delivery(
    state: &mut State,
    key: Key,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let Some(pending) = state.signal_deliveries.remove(&key) else {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!("signal {key} has no subscriptions left to deliver to"),
        ));
    };
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    run.signals.push_back(Delivery {
        key,
        name: pending.name,
        variables: pending.variables,
        start_processes: false,
        after: pending.after,
    });
    run.run();
    Ok(run.outcome(Response::SignalContinued { key }))
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(format!(
            "a signal name must be 1 to NAME_BYTES_MAX ({NAME_BYTES_MAX}) bytes, not {}",
            name.len()
        ));
    }
    Ok(())
}

/// The signal start events at the root of `definition`, with their names (static names only;
/// deploy refuses the others).
pub(crate) fn signal_starts(definition: &ProcessDefinition) -> Vec<(ElementIndex, String)> {
    definition
        .start_events(ProcessDefinition::ROOT)
        .iter()
        .filter_map(|start| match &definition.element(*start).kind {
            ElementKind::StartEvent {
                trigger: StartTrigger::Signal(name),
                ..
            } => crate::timers::static_text(name).map(|name| (*start, name)),
            _ => None,
        })
        .collect()
}

impl Run<'_> {
    /// Broadcasts a signal: sent to every other shard now (as mail, once this command is
    /// durable), delivered on this shard once no token moves. Returns its key.
    pub(crate) fn broadcast(&mut self, name: String, variables: Variables) -> Key {
        self.signals_broadcast += 1;
        let key = self.key();
        let me = self.state.shard();
        for shard in 0..self.state.cluster_shards() {
            if shard != me {
                let mail = Mail::Signal {
                    name: name.clone(),
                    variables: variables.clone(),
                };
                self.send(shard, mail);
            }
        }
        self.signals.push_back(Delivery {
            key,
            name,
            variables,
            start_processes: true,
            after: Key(0),
        });
        key
    }

    /// A signal broadcast on another shard arrived: delivered to this shard's subscriptions.
    pub(crate) fn receive_signal(&mut self, name: String, variables: Variables) {
        let key = self.key();
        self.signals.push_back(Delivery {
            key,
            name,
            variables,
            start_processes: false,
            after: Key(0),
        });
    }

    /// Delivers a signal on this shard: the subscriptions of its name that it reaches fire
    /// (up to `SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX`; the rest in `ContinueSignal`
    /// commands), and where it was broadcast, every process with a signal start event of that
    /// name starts.
    pub(crate) fn deliver_signal(&mut self, delivery: Delivery) {
        let Delivery {
            key: signal,
            name,
            variables,
            start_processes,
            after,
        } = delivery;
        let range = (
            std::ops::Bound::Excluded(after),
            std::ops::Bound::Excluded(signal),
        );
        let mut waiting: Vec<Key> = self
            .state
            .index
            .signal_subscriptions
            .get(&name)
            .map(|keys| {
                keys.range(range)
                    .copied()
                    .take(SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX + 1)
                    .collect()
            })
            .unwrap_or_default();
        let more = waiting.len() > SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX;
        waiting.truncate(SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX);
        if more {
            let last = *waiting.last().expect("more than the limit");
            self.state.signal_deliveries.insert(
                signal,
                PendingDelivery {
                    name: name.clone(),
                    variables: variables.clone(),
                    after: last,
                },
            );
            self.effects.push(Effect::ContinueSignal {
                key: signal,
                due_millis: self.now_millis(),
            });
        }
        if start_processes {
            for (process_definition_key, start) in self.started_by_signal(&name) {
                if self.state.instances.len() >= LIVE_INSTANCES_MAX {
                    break;
                }
                self.reset_steps();
                self.start_instance_at(process_definition_key, start, variables.clone(), None);
                self.settle();
            }
        }
        for key in waiting {
            // An earlier firing may have ended this subscription's owner.
            let Some(subscription) = self.state.signal_subscriptions.get(&key).cloned() else {
                continue;
            };
            if !self.event_repeats(subscription.process_definition_key, subscription.element) {
                self.close_subscription(key);
            }
            self.reset_steps();
            self.fire(subscription.owner, subscription.element, variables.clone());
            self.settle();
        }
    }

    /// The latest version of every process with a signal start event of this name, with
    /// that start event, by BPMN process id.
    fn started_by_signal(&self, name: &str) -> Vec<(Key, ElementIndex)> {
        let mut starts = Vec::new();
        for keys in self.state.versions.values() {
            let latest = &self.state.processes[keys.last().expect("a process id has versions")];
            if let Some((start, _)) = signal_starts(&latest.definition)
                .into_iter()
                .find(|(_, start_name)| start_name == name)
            {
                starts.push((latest.key, start));
            }
        }
        starts
    }

    /// A signal throw or end event: works out the name and broadcasts the signal with the
    /// element's local variables. False when an incident stopped it.
    pub(crate) fn throw_signal(&mut self, key: Key, name: &Expression) -> bool {
        let name = match self.signal_name_at(key, name) {
            Ok(name) => name,
            Err(error) => {
                self.incident(key, format!("signal: {error}"));
                return false;
            }
        };
        if self.signals_broadcast >= SIGNALS_PER_COMMAND_MAX {
            let message = format!(
                "signal `{name}`: one command broadcast SIGNALS_PER_COMMAND_MAX \
                 ({SIGNALS_PER_COMMAND_MAX}) signals already; a signal that starts a process \
                 which throws it again never ends"
            );
            self.incident(key, message);
            return false;
        }
        let variables = self.state.variables.get(&key).cloned().unwrap_or_default();
        self.broadcast(name, variables);
        true
    }

    /// The signal name `name` gives at element instance `owner`.
    pub(crate) fn signal_name_at(&self, owner: Key, name: &Expression) -> Result<String, String> {
        match self.value_at(owner, name)? {
            serde_json::Value::String(name) => check_name(&name).map(|()| name),
            other => Err(format!("the signal name gave {other}, not a text")),
        }
    }
}
