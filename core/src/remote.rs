//! Across shards: the outbox, the inbox, and what shards tell each other about message
//! correlation and call activities.
//!
//! An instance lives on the shard its key names; a message lives on the shard its
//! correlation key routes to; a call activity's child may be placed on the shard of a
//! business key. When two of them live on different shards, the shards exchange [`Mail`].
//!
//! **The outbox.** A command that must tell another shard something appends the mail to the
//! state's outbox, numbered per destination (1, 2, 3, ...), and returns
//! [`Effect::Send`]. The mail is part of the state that the command's
//! journal record produces, so it is durable before the runtime sends it, and after a restart
//! the recovered outbox still holds it. The runtime sends outbox entries in order and sends
//! them again (after a reconnect, a restart) until they are acknowledged.
//!
//! **The inbox.** The receiver submits each mail as the journaled command
//! [`Command::Receive`](crate::Command::Receive). It takes mail from each sender strictly in
//! order: the next number is taken, a number already taken is refused with `ALREADY_EXISTS`
//! (a duplicate: the runtime acknowledges it again), a number further on is refused with
//! `INVALID_STATE` (an earlier one is missing: the sender sends it again). One number per
//! sender is all the deduplication state there is. Once the `Receive` record is durable the
//! runtime acknowledges the number to the sender, which journals
//! [`Command::Acknowledge`](crate::Command::Acknowledge) and drops the entries up to it.
//! A mail is never refused for what it says: whatever it asks for that cannot be done is
//! answered with mail (a rejected correlation, a child that could not start).
//!
//! **Message correlation.**
//!
//! ```text
//! instance shard I                                   message shard M (owns the correlation key)
//! ────────────────                                   ──────────────────────────────────────────
//! element entered: subscription S opened
//!   (name, correlation key) routes to M
//!   outbox ── Subscribe{S, name, key, process id} ──▶ Receive: remote subscription S kept;
//!                                                      a buffered message m not yet taken by
//!                                                      the process? mark m taken by it, S busy
//!            ◀── Correlate{S, m, variables} ────────── outbox
//! Receive: S still open?
//!   yes: the event fires with m's variables;
//!        (S closes unless its event repeats)
//!   outbox ── Correlated{S, m, accepted: yes} ───────▶ Receive: S no longer busy; if S is
//!                                                      still there (a repeating event), the
//!                                                      next buffered message may follow
//!   no (the element left meanwhile):
//!   outbox ── Correlated{S, m, accepted: no} ────────▶ Receive: S forgotten; m is no longer
//!                                                      taken by the process and is offered to
//!                                                      the other subscriptions again
//! S closes (element left, instance cancelled):
//!   outbox ── Unsubscribe{S} ────────────────────────▶ Receive: S forgotten
//! PublishMessage arrives at M: local subscriptions first, then remote ones that are not
//! busy, at most one per BPMN process id, each as Correlate mail.
//! ```
//!
//! **Signals.** A signal broadcast on one shard goes to every other shard as
//! [`Mail::Signal`], one mail per shard, never answered: each delivers it to its own signal
//! subscriptions (see [`crate::signals`]).
//!
//! **Call activities.** With the extension property `ringflow:businessKey`, the child is
//! placed on the shard of that business key. The parent's shard sends
//! `CreateChild{call, process id, version tag, business key, variables}`; the child's shard
//! starts it and answers `ChildCreated{call, child}`, or `ChildFailed{call, reason}` (no
//! such process, the shard is full), which raises an incident on the call activity (resolving
//! it sends `CreateChild` again). When the child completes, `ChildCompleted{call, child,
//! variables}` completes the call activity; when the call activity ends early (cancelled, an
//! interrupting event), `CancelChild{call}` cancels the child. Mail between two shards
//! arrives in the order it was sent, so `CancelChild` never overtakes `CreateChild`.
//!
//! With `bindingType="deployment"` the child's version is named by its resource
//! ([`ChildVersion::Resource`]): deployment keys are per shard, but a deployment goes to every
//! shard with the same files.
//!
//! **Incidents in a child.** An incident raised in an instance whose call activity is on
//! another shard (directly, or above parents on the same shard) is reported with
//! `ChildIncident{call, incident}`, and its end (resolved, or its element ended) with
//! `ChildIncidentResolved{call, incident}`. The parent's shard keeps them while the call
//! activity lives ([`State::remote_incidents`]) and passes them on if its own instance was
//! called from another shard, so [`State::incidents_in_tree`] shows them as on one shard.
//!
//! **Errors and escalations.**
//!
//! ```text
//! child shard C                                      parent shard P (the call activity)
//! ─────────────                                      ──────────────────────────────────
//! error end event / worker's ThrowError / escalation
//!   no catch up to the instance's root, and the root
//!   was called from P: the thrower waits (its job is
//!   no longer activatable); pending throw t kept
//!   outbox ── ChildThrew{call, t, code} ────────────▶ Receive: look for a catch from the call
//!                                                      activity outwards, as on one shard
//!                                                      caught, interrupting: the call activity
//!            ◀── CancelChild{call} ─────────────────── ends (its child is cancelled), then
//!            ◀── ThrowAnswered{t, interrupting} ─────
//!                                                      caught, not interrupting (escalation):
//!            ◀── ThrowAnswered{t, not interrupting} ──
//!                                                      not caught, and P's instance was called
//!                                                      from shard G: pending throw u = relay
//!                                                      to C for t; ChildThrew{call', u} ──▶ G
//!                                                      G's answer for u goes back as t's
//!            ◀── ThrowAnswered{t, no} ─────────────── not caught anywhere
//! Receive: t's thrower still there?
//!   error, not caught: an incident at the thrower
//!   escalation, not caught or not interrupting: the thrower goes on
//!   interrupting: nothing (CancelChild came first)
//! ```
//!
//! Every `ChildThrew` is answered, so no thrower waits forever: a call activity that ended
//! meanwhile answers "not caught", and its `CancelChild`, sent earlier, arrives first.

use std::collections::BTreeMap;

use crate::codec::{put_variables, read_variables};
use crate::engine::{Ctx, Effect, Keys, Outcome, Rejection, RejectionCode, Response, Variables};
use crate::instance::Incident;
use crate::key::Key;
use crate::limits::LIVE_INSTANCES_MAX;
use crate::run::Run;
use crate::snapshot::{Reader, SnapshotError, put_bytes, put_incident, put_key, read_incident};
use crate::state::State;

/// What one shard tells another. See the module documentation for the exchanges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mail {
    /// Instance shard to message shard: a subscription opened.
    Subscribe {
        /// The subscription key (on the instance's shard).
        subscription: Key,
        /// The message name.
        name: String,
        /// The correlation key.
        correlation_key: String,
        /// The BPMN process id of the waiting instance (a message goes to each once).
        process_id: String,
    },
    /// Instance shard to message shard: the subscription closed.
    Unsubscribe {
        /// The subscription key.
        subscription: Key,
    },
    /// Message shard to instance shard: this message is for that subscription.
    Correlate {
        /// The subscription key.
        subscription: Key,
        /// The message key (on the message's shard).
        message: Key,
        /// The process id the message was marked as taken by.
        process_id: String,
        /// The message's variables.
        variables: Variables,
    },
    /// Instance shard to message shard: the answer to `Correlate`.
    Correlated {
        /// The subscription key.
        subscription: Key,
        /// The message key.
        message: Key,
        /// The process id, as the `Correlate` named it.
        process_id: String,
        /// Whether the subscription took the message (false: it had closed).
        accepted: bool,
    },
    /// Parent shard to child shard: start the child of a call activity.
    CreateChild {
        /// The call activity's element instance (on the parent's shard).
        call: Key,
        /// The BPMN process id to start.
        process_id: String,
        /// Which version of it.
        version: ChildVersion,
        /// The child's business key.
        business_key: String,
        /// The child's variables.
        variables: Variables,
    },
    /// Child shard to parent shard: the child started.
    ChildCreated {
        /// The call activity.
        call: Key,
        /// The child process instance.
        child: Key,
    },
    /// Child shard to parent shard: the child could not start.
    ChildFailed {
        /// The call activity.
        call: Key,
        /// Why, for the incident.
        reason: String,
    },
    /// Child shard to parent shard: the child completed.
    ChildCompleted {
        /// The call activity.
        call: Key,
        /// The child process instance.
        child: Key,
        /// The child's variables at its end.
        variables: Variables,
    },
    /// Parent shard to child shard: the call activity ended early; cancel its child.
    CancelChild {
        /// The call activity.
        call: Key,
    },
    /// Child shard to parent shard: an incident was raised in the child (or in an instance
    /// it called on its own shard, or reported to it by a child further down).
    ChildIncident {
        /// The call activity.
        call: Key,
        /// The incident, as the shard that raised it holds it.
        incident: Incident,
    },
    /// Child shard to parent shard: an incident reported with `ChildIncident` is gone
    /// (resolved, or its element ended).
    ChildIncidentResolved {
        /// The call activity.
        call: Key,
        /// The incident key.
        incident: Key,
    },
    /// Child shard to parent shard: an error or escalation thrown in the child was not caught
    /// on the child's shard; look for a catch from the call activity outwards. Always
    /// answered with `ThrowAnswered`.
    ChildThrew {
        /// The call activity.
        call: Key,
        /// The throw's id, minted by the sender, which the answer names.
        throw: Key,
        /// An escalation (true) or an error (false).
        escalation: bool,
        /// The error or escalation code.
        code: String,
    },
    /// Parent shard to child shard: the answer to `ChildThrew`.
    ThrowAnswered {
        /// The throw's id.
        throw: Key,
        /// Whether and how it was caught.
        caught: Caught,
    },
    /// From the shard where a signal was broadcast to every other shard: every signal
    /// subscription of this name fires. Signal start events start instances only on the
    /// shard where it was broadcast, so that a broadcast starts each process once.
    Signal {
        /// The signal name.
        name: String,
        /// The signal's variables.
        variables: Variables,
    },
}

/// Which version of the called process a child on another shard starts. Deployment keys are
/// per shard, so `bindingType="deployment"` names the version by its resource instead: the
/// latest version whose resource bytes have the same digest as the caller's deployment's
/// version on the parent's shard (a deployment goes to every shard with the same files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildVersion {
    /// The latest version (`bindingType="latest"`).
    Latest,
    /// The latest version with this `zeebe:versionTag` (`bindingType="versionTag"`).
    Tag(String),
    /// The latest version whose resource has this [`resource_digest`]
    /// (`bindingType="deployment"`).
    Resource(u64),
}

/// How a throw from a child on another shard was caught by the parent (or further up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caught {
    /// Nothing caught it: an error is an incident at the element that threw it, an
    /// escalation goes on.
    No,
    /// An interrupting catch took it: the call activity ended and its `CancelChild` is on
    /// the way (mail from one shard to another arrives in order, so it comes first).
    Interrupting,
    /// A non-interrupting escalation catch took it: the thrower goes on.
    NotInterrupting,
}

/// An incident in a child on another shard, as the parent's shard keeps it for
/// [`State::incidents_in_tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteIncident {
    /// The call activity (on this shard) whose child has it.
    pub call: Key,
    /// The incident as the child's shard reported it.
    pub incident: Incident,
}

/// A throw that waits for a parent on another shard to say whether it was caught.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PendingThrow {
    /// The element instance on this shard that threw waits.
    Thrower {
        /// The element instance that threw (an error end event, an escalation throw event,
        /// or the element of the job a worker threw an error for).
        element: Key,
        /// An escalation (true) or an error (false).
        escalation: bool,
        /// The code.
        code: String,
        /// The worker's error message (empty otherwise).
        message: String,
        /// Whether a worker threw it for the element's job (resolving the incident then makes
        /// the job activatable again) or the element itself did (resolving enters it again).
        job: bool,
    },
    /// Passed on upwards for a child on shard `to`: its answer goes back there.
    Relay {
        /// The shard of the child that threw.
        to: u16,
        /// The child's throw id.
        throw: Key,
    },
}

/// The digest by which a child on another shard finds the version of its parent's
/// deployment: 64-bit FNV-1a of the resource bytes with MurmurHash3's finalizer.
pub fn resource_digest(resource: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in resource {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    finalize(hash)
}

fn finalize(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    hash
}

/// A subscription of an instance on another shard, kept by the shard that owns its
/// correlation key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSubscription {
    /// The subscription key (its top bits name the instance's shard).
    pub key: Key,
    /// The message name.
    pub name: String,
    /// The correlation key.
    pub correlation_key: String,
    /// The BPMN process id of the waiting instance.
    pub process_id: String,
    /// The message sent to it and not answered yet: no other is sent meanwhile.
    pub correlating: Option<Key>,
}

/// The routing slot of a text key: the same function as `ringflow_wire::routing::slot_of`
/// (64-bit FNV-1a, MurmurHash3's finalizer, the top 12 bits). The shard crate's tests check
/// that the two agree.
pub fn slot_of_text(text: &str) -> u16 {
    (resource_digest(text.as_bytes()) >> 52) as u16
}

/// The shard a text key routes to in a cluster of `shards` shards with the uniform slot
/// table (`ringflow_wire::routing::SlotTable::uniform`).
pub fn shard_of_text(text: &str, shards: u16) -> u16 {
    (usize::from(slot_of_text(text)) * usize::from(shards) / 4096) as u16
}

impl State {
    /// Sets how many shards the cluster has, so that the engine knows which correlation and
    /// business keys live elsewhere. 0 (the default of [`State::new`]): every key is local.
    /// The runtime sets it at start; a snapshot keeps it, and recovery refuses to run data
    /// with another count (resharding is not supported).
    pub fn set_cluster_shards(&mut self, shards: u16) {
        self.cluster_shards = shards;
    }

    /// The cluster's shard count as set (0: not set, every key is local).
    pub fn cluster_shards(&self) -> u16 {
        self.cluster_shards
    }

    /// The shard that owns a text key (a correlation key or business key).
    pub fn owner_of_text(&self, text: &str) -> u16 {
        if self.cluster_shards <= 1 {
            return self.shard();
        }
        shard_of_text(text, self.cluster_shards)
    }

    /// The mail not yet acknowledged, by (destination shard, number), in order: what the
    /// runtime sends after a restart.
    pub fn outbox(&self) -> impl Iterator<Item = (u16, u64, &Mail)> {
        self.outbox
            .iter()
            .map(|((to, seq), mail)| (*to, *seq, mail))
    }

    /// The last mail number taken from `from`.
    pub fn received_from(&self, from: u16) -> u64 {
        self.received.get(&from).copied().unwrap_or(0)
    }

    /// The subscriptions of instances on other shards that this shard keeps.
    pub fn remote_subscriptions(&self) -> impl Iterator<Item = &RemoteSubscription> {
        self.remote_subscriptions.values()
    }

    /// Incidents in children on other shards that call activities of this shard wait for.
    pub fn remote_incidents(&self) -> impl Iterator<Item = &RemoteIncident> {
        self.remote_incidents.values()
    }

    /// Throws waiting for an answer from a parent on another shard, by throw id.
    pub fn pending_throws(&self) -> impl Iterator<Item = (Key, &PendingThrow)> {
        self.throws.iter().map(|(key, pending)| (*key, pending))
    }

    /// The call activity on another shard above a process instance of this shard: walks up
    /// through parents on this shard; none when the top instance has no parent.
    pub(crate) fn remote_call_above(&self, instance: Key) -> Option<Key> {
        let mut instance = instance;
        loop {
            let parent = self.instances.get(&instance)?.parent?;
            if parent.shard() != self.shard() {
                return Some(parent);
            }
            instance = self.elements.get(&parent)?.process_instance_key;
        }
    }

    pub(crate) fn insert_remote_subscription(&mut self, subscription: RemoteSubscription) {
        self.index
            .remote_subscriptions
            .entry((
                subscription.name.clone(),
                subscription.correlation_key.clone(),
            ))
            .or_default()
            .insert(subscription.key);
        self.remote_subscriptions
            .insert(subscription.key, subscription);
    }

    pub(crate) fn remove_remote_subscription(&mut self, key: Key) -> Option<RemoteSubscription> {
        let subscription = self.remote_subscriptions.remove(&key)?;
        let name = (
            subscription.name.clone(),
            subscription.correlation_key.clone(),
        );
        if let Some(keys) = self.index.remote_subscriptions.get_mut(&name) {
            keys.remove(&key);
            if keys.is_empty() {
                self.index.remote_subscriptions.remove(&name);
            }
        }
        Some(subscription)
    }
}

impl Run<'_> {
    /// Puts mail for shard `to` into the outbox; the runtime sends it once this command is
    /// durable.
    pub(crate) fn send(&mut self, to: u16, mail: Mail) {
        debug_assert_ne!(to, self.state.shard(), "mail to oneself");
        let seq = self.state.sent.get(&to).copied().unwrap_or(0) + 1;
        self.state.sent.insert(to, seq);
        self.state.outbox.insert((to, seq), mail.clone());
        self.effects.push(Effect::Send { to, seq, mail });
    }

    /// Whether this subscription's correlation key lives on another shard.
    pub(crate) fn subscription_is_remote(&self, correlation_key: &str) -> bool {
        self.state.owner_of_text(correlation_key) != self.state.shard()
    }

    /// Closes a message or signal subscription; a message subscription registered with
    /// another shard is unsubscribed there.
    pub(crate) fn close_subscription(&mut self, key: Key) {
        if let Some(subscription) = self.state.remove_subscription(key) {
            let owner = self.state.owner_of_text(&subscription.correlation_key);
            if owner != self.state.shard() {
                self.send(owner, Mail::Unsubscribe { subscription: key });
            }
        } else if self.state.remove_signal_subscription(key).is_none() {
            self.state.remove_conditional_subscription(key);
        }
    }

    /// A subscription just opened whose correlation key lives on another shard: register it
    /// there.
    pub(crate) fn subscribe_remote(&mut self, subscription: Key) {
        let open = &self.state.subscriptions[&subscription];
        let to = self.state.owner_of_text(&open.correlation_key);
        let mail = Mail::Subscribe {
            subscription,
            name: open.name.clone(),
            correlation_key: open.correlation_key.clone(),
            process_id: self
                .state
                .process_id_of(open.process_definition_key)
                .to_string(),
        };
        self.send(to, mail);
    }

    /// Offers a message to the remote subscriptions of its name and correlation key that are
    /// not busy and whose process has not taken it, oldest key first.
    pub(crate) fn offer_remote(&mut self, message: &mut crate::messages::Message) {
        let pair = (message.name.clone(), message.correlation_key.clone());
        let Some(keys) = self.state.index.remote_subscriptions.get(&pair) else {
            return;
        };
        let keys: Vec<Key> = keys.iter().copied().collect();
        for key in keys {
            let subscription = &self.state.remote_subscriptions[&key];
            if subscription.correlating.is_some()
                || message.correlated.contains(&subscription.process_id)
            {
                continue;
            }
            let process_id = subscription.process_id.clone();
            message.correlated.insert(process_id.clone());
            self.state
                .remote_subscriptions
                .get_mut(&key)
                .expect("checked")
                .correlating = Some(message.key);
            let mail = Mail::Correlate {
                subscription: key,
                message: message.key,
                process_id,
                variables: message.variables.clone(),
            };
            self.send(key.shard(), mail);
        }
    }

    /// A remote subscription is free: the oldest buffered message for it that its process
    /// has not taken goes to it.
    fn offer_buffered_remote(&mut self, subscription: Key) {
        let Some(open) = self.state.remote_subscriptions.get(&subscription) else {
            return;
        };
        if open.correlating.is_some() {
            return;
        }
        let pair = (open.name.clone(), open.correlation_key.clone());
        let process_id = open.process_id.clone();
        let Some((message_key, variables)) = self.take_oldest_buffered(&pair, &process_id) else {
            return;
        };
        self.state
            .remote_subscriptions
            .get_mut(&subscription)
            .expect("checked")
            .correlating = Some(message_key);
        let mail = Mail::Correlate {
            subscription,
            message: message_key,
            process_id,
            variables,
        };
        self.send(subscription.shard(), mail);
    }

    /// A buffered message a remote subscription turned down: offered again to every
    /// subscription of its name and key, local ones first.
    fn offer_again(&mut self, message_key: Key) {
        let Some(mut message) = self.state.messages.get(&message_key).cloned() else {
            return;
        };
        if message.deadline_millis <= self.now_millis() {
            return;
        }
        self.offer(&mut message);
        self.state.messages.insert(message_key, message);
    }

    /// Starts the child of a call activity on another shard.
    pub(crate) fn call_remote(
        &mut self,
        call: Key,
        to: u16,
        process_id: String,
        version: ChildVersion,
        business_key: String,
        variables: Variables,
    ) {
        self.state.elements.get_mut(&call).expect("live").called = Some(Key::new(to, 0));
        let mail = Mail::CreateChild {
            call,
            process_id,
            version,
            business_key,
            variables,
        };
        self.send(to, mail);
    }

    fn receive_mail(&mut self, from: u16, mail: Mail) {
        match mail {
            Mail::Subscribe {
                subscription,
                name,
                correlation_key,
                process_id,
            } => {
                self.state.insert_remote_subscription(RemoteSubscription {
                    key: subscription,
                    name,
                    correlation_key,
                    process_id,
                    correlating: None,
                });
                self.offer_buffered_remote(subscription);
            }
            Mail::Unsubscribe { subscription } => {
                self.state.remove_remote_subscription(subscription);
            }
            Mail::Correlate {
                subscription,
                message,
                process_id,
                variables,
            } => {
                let accepted = self.state.subscriptions.contains_key(&subscription);
                if accepted {
                    self.correlate(subscription, Some(message), variables);
                }
                let answer = Mail::Correlated {
                    subscription,
                    message,
                    process_id,
                    accepted,
                };
                self.send(from, answer);
            }
            Mail::Correlated {
                subscription,
                message,
                process_id,
                accepted,
            } => {
                if let Some(open) = self.state.remote_subscriptions.get_mut(&subscription)
                    && open.correlating == Some(message)
                {
                    open.correlating = None;
                }
                if accepted {
                    self.offer_buffered_remote(subscription);
                } else {
                    self.state.remove_remote_subscription(subscription);
                    if let Some(buffered) = self.state.messages.get_mut(&message) {
                        buffered.correlated.remove(&process_id);
                    }
                    self.offer_again(message);
                }
            }
            Mail::CreateChild {
                call,
                process_id,
                version,
                business_key,
                variables,
            } => self.create_child(from, call, process_id, version, business_key, variables),
            Mail::ChildCreated { call, child } => {
                if let Some(element) = self.state.elements.get_mut(&call)
                    && element.called == Some(Key::new(from, 0))
                {
                    element.called = Some(child);
                }
            }
            Mail::ChildFailed { call, reason } => {
                if self.waits_for_remote_child(call, from, None) {
                    self.state.elements.get_mut(&call).expect("checked").called = None;
                    self.incident(call, reason);
                }
            }
            Mail::ChildCompleted {
                call,
                child,
                variables,
            } => {
                if self.waits_for_remote_child(call, from, Some(child)) {
                    self.state.elements.get_mut(&call).expect("checked").called = None;
                    if self.accept_child_result(call, variables) {
                        self.complete_later(call);
                    }
                }
            }
            Mail::CancelChild { call } => {
                if let Some(child) = self.state.index.remote_children.get(&call).copied() {
                    self.terminate(child);
                }
            }
            Mail::ChildIncident { call, incident } => {
                if self.waits_for_remote_child(call, from, None) {
                    let instance = self.state.elements[&call].process_instance_key;
                    let key = incident.key;
                    self.state
                        .remote_incidents
                        .insert(key, RemoteIncident { call, incident });
                    if let Some(upper) = self.state.remote_call_above(instance) {
                        let incident = self.state.remote_incidents[&key].incident.clone();
                        let mail = Mail::ChildIncident {
                            call: upper,
                            incident,
                        };
                        self.send(upper.shard(), mail);
                    }
                }
            }
            Mail::ChildIncidentResolved { call, incident } => {
                // Kept only while the call activity lives (see `forget_remote_incidents`).
                let instance = self
                    .state
                    .elements
                    .get(&call)
                    .map(|element| element.process_instance_key);
                if let Some(instance) = instance
                    && self
                        .state
                        .remote_incidents
                        .get(&incident)
                        .is_some_and(|remote| remote.call == call)
                {
                    self.state.remote_incidents.remove(&incident);
                    self.incident_gone(instance, incident);
                }
            }
            Mail::ChildThrew {
                call,
                throw,
                escalation,
                code,
            } => {
                // A call activity that no longer waits for this child ended: its CancelChild
                // went out before this answer, so the child is gone when the answer arrives.
                let caught = if self.waits_for_remote_child(call, from, None) {
                    self.catch_for_child(call, escalation, &code, from, throw)
                } else {
                    Some(Caught::No)
                };
                if let Some(caught) = caught {
                    self.send(from, Mail::ThrowAnswered { throw, caught });
                }
            }
            Mail::ThrowAnswered { throw, caught } => self.throw_answered(throw, caught),
            Mail::Signal { name, variables } => self.receive_signal(name, variables),
        }
    }

    /// An incident of `instance` on this shard (or one reported to a call activity in it)
    /// is gone: the call activity above on another shard, if any, is told.
    pub(crate) fn incident_gone(&mut self, instance: Key, incident: Key) {
        if let Some(upper) = self.state.remote_call_above(instance) {
            let mail = Mail::ChildIncidentResolved {
                call: upper,
                incident,
            };
            self.send(upper.shard(), mail);
        }
    }

    /// An incident was raised here: the call activity above on another shard, if any, is
    /// told.
    pub(crate) fn incident_raised(&mut self, incident: Key) {
        let instance = self.state.incidents[&incident].process_instance_key;
        if let Some(upper) = self.state.remote_call_above(instance) {
            let mail = Mail::ChildIncident {
                call: upper,
                incident: self.state.incidents[&incident].clone(),
            };
            self.send(upper.shard(), mail);
        }
    }

    /// The call activity `call` ended: incidents reported from its child are forgotten (and
    /// withdrawn from the shard above, if they were passed on).
    pub(crate) fn forget_remote_incidents(&mut self, call: Key, instance: Key) {
        if self.state.remote_incidents.is_empty() {
            return;
        }
        let gone: Vec<Key> = self
            .state
            .remote_incidents
            .iter()
            .filter(|(_, remote)| remote.call == call)
            .map(|(key, _)| *key)
            .collect();
        for incident in gone {
            self.state.remote_incidents.remove(&incident);
            self.incident_gone(instance, incident);
        }
    }

    /// A throw from `from` found no catch on this shard and the instance above is called
    /// from another shard: the parent there is asked; `waiter` waits for its answer.
    /// Returns whether a parent was asked.
    pub(crate) fn ask_parent(
        &mut self,
        from: Key,
        escalation: bool,
        code: &str,
        waiter: PendingThrow,
    ) -> bool {
        let instance = self.state.elements[&from].process_instance_key;
        let Some(upper) = self.state.remote_call_above(instance) else {
            return false;
        };
        let throw = self.key();
        self.state.throws.insert(throw, waiter);
        let mail = Mail::ChildThrew {
            call: upper,
            throw,
            escalation,
            code: code.to_string(),
        };
        self.send(upper.shard(), mail);
        true
    }

    /// A child on shard `from` threw past its root: looks for a catch from the call
    /// activity outwards. Returns the answer, or none when a shard further up was asked.
    fn catch_for_child(
        &mut self,
        call: Key,
        escalation: bool,
        code: &str,
        from: u16,
        throw: Key,
    ) -> Option<Caught> {
        if let Some(interrupting) = self.catch_thrown(call, code, escalation) {
            return Some(if interrupting {
                Caught::Interrupting
            } else {
                Caught::NotInterrupting
            });
        }
        let relay = PendingThrow::Relay { to: from, throw };
        if self.ask_parent(call, escalation, code, relay) {
            None
        } else {
            Some(Caught::No)
        }
    }

    /// The answer to a throw this shard passed on.
    fn throw_answered(&mut self, throw: Key, caught: Caught) {
        let Some(pending) = self.state.throws.remove(&throw) else {
            return;
        };
        match pending {
            PendingThrow::Relay { to, throw } => {
                self.send(to, Mail::ThrowAnswered { throw, caught });
            }
            PendingThrow::Thrower {
                element,
                escalation,
                code,
                message,
                job,
            } => {
                // The thrower may have ended meanwhile (an interrupting catch cancelled the
                // child, or an event in the child itself).
                if !self.state.elements.contains_key(&element) {
                    return;
                }
                match (escalation, caught) {
                    (false, Caught::No) => self.uncaught_error(element, &code, &message, job),
                    (true, Caught::No | Caught::NotInterrupting) => self.complete_later(element),
                    // The call activity above ended; the cancellation of this child follows.
                    (_, Caught::Interrupting | Caught::NotInterrupting) => {}
                }
            }
        }
    }

    /// Whether the call activity `call` still waits for a child on shard `from` (`child`
    /// when known).
    fn waits_for_remote_child(&self, call: Key, from: u16, child: Option<Key>) -> bool {
        let Some(element) = self.state.elements.get(&call) else {
            return false;
        };
        match element.called {
            Some(called) if called.shard() == from => {
                called.counter() == 0 || child.is_none_or(|child| child == called)
            }
            _ => false,
        }
    }

    fn create_child(
        &mut self,
        from: u16,
        call: Key,
        process_id: String,
        wanted: ChildVersion,
        business_key: String,
        variables: Variables,
    ) {
        let version = self.state.versions.get(&process_id).and_then(|versions| {
            let mut newest_first = versions.iter().rev().copied();
            match &wanted {
                ChildVersion::Latest => versions.last().copied(),
                ChildVersion::Tag(tag) => newest_first.find(|key| {
                    self.state.processes[key].definition.version_tag.as_deref()
                        == Some(tag.as_str())
                }),
                ChildVersion::Resource(digest) => newest_first
                    .find(|key| resource_digest(&self.state.processes[key].resource) == *digest),
            }
        });
        let failure = match version {
            None => Some(match &wanted {
                ChildVersion::Latest => format!(
                    "no process `{process_id}` is deployed on shard {}",
                    self.state.shard()
                ),
                ChildVersion::Tag(tag) => format!(
                    "no process `{process_id}` with version tag `{tag}` is deployed on shard {}",
                    self.state.shard()
                ),
                ChildVersion::Resource(_) => format!(
                    "no version of process `{process_id}` on shard {} has the resource of the \
                     caller's deployment (bindingType=\"deployment\"; deploy the same files \
                     to every shard)",
                    self.state.shard()
                ),
            }),
            Some(_) if self.state.instances.len() >= LIVE_INSTANCES_MAX => Some(format!(
                "shard {} runs LIVE_INSTANCES_MAX ({LIVE_INSTANCES_MAX}) instances; the child \
                 cannot start",
                self.state.shard()
            )),
            Some(_) => None,
        };
        if let Some(reason) = failure {
            self.send(from, Mail::ChildFailed { call, reason });
            return;
        }
        let version = version.expect("checked");
        let definition = std::sync::Arc::clone(&self.state.processes[&version].definition);
        let child = self.new_instance(version, variables, Some(business_key), false, Some(call));
        // Told first, so that what the child's start reports (an incident) finds the call
        // activity knowing its child.
        self.send(from, Mail::ChildCreated { call, child });
        self.enter_root(&definition, child, None);
    }
}

/// `Receive`: takes the next mail from shard `from`.
pub(crate) fn receive(
    state: &mut State,
    from: u16,
    seq: u64,
    mail: Mail,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    if from == state.shard() {
        return Err(Rejection::new(
            RejectionCode::InvalidArgument,
            format!("shard {from} cannot send mail to itself"),
        ));
    }
    let last = state.received_from(from);
    if seq <= last {
        return Err(Rejection::new(
            RejectionCode::AlreadyExists,
            format!("mail {seq} from shard {from} was taken already (up to {last})"),
        ));
    }
    if seq != last + 1 {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!(
                "mail {seq} from shard {from} came before mail {}; it is sent again",
                last + 1
            ),
        ));
    }
    state.received.insert(from, seq);
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    run.receive_mail(from, mail);
    run.run();
    Ok(run.outcome(Response::MailTaken { from, seq }))
}

/// `Acknowledge`: shard `to` took every mail up to `seq`; they leave the outbox.
pub(crate) fn acknowledge(
    state: &mut State,
    to: u16,
    seq: u64,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    let sent = state.sent.get(&to).copied().unwrap_or(0);
    if seq > sent {
        return Err(Rejection::new(
            RejectionCode::InvalidArgument,
            format!("shard {to} acknowledged mail {seq}, but only {sent} were sent to it"),
        ));
    }
    let acknowledged: Vec<(u16, u64)> = state
        .outbox
        .range((to, 0)..=(to, seq))
        .map(|(entry, _)| *entry)
        .collect();
    if acknowledged.is_empty() {
        return Err(Rejection::new(
            RejectionCode::AlreadyExists,
            format!("the mail to shard {to} up to {seq} was acknowledged already"),
        ));
    }
    for entry in acknowledged {
        state.outbox.remove(&entry);
    }
    Ok(Outcome {
        response: Response::MailAcknowledged { to, seq },
        events: Vec::new(),
        effects: Vec::new(),
        next_key: ctx.next_key,
    })
}

/// Appends the binary form of a mail (used in journal records, snapshots and on the wire
/// between shards).
pub fn encode_mail(mail: &Mail, out: &mut Vec<u8>) {
    match mail {
        Mail::Subscribe {
            subscription,
            name,
            correlation_key,
            process_id,
        } => {
            out.push(1);
            put_key(out, *subscription);
            put_bytes(out, name.as_bytes());
            put_bytes(out, correlation_key.as_bytes());
            put_bytes(out, process_id.as_bytes());
        }
        Mail::Unsubscribe { subscription } => {
            out.push(2);
            put_key(out, *subscription);
        }
        Mail::Correlate {
            subscription,
            message,
            process_id,
            variables,
        } => {
            out.push(3);
            put_key(out, *subscription);
            put_key(out, *message);
            put_bytes(out, process_id.as_bytes());
            put_variables(out, variables);
        }
        Mail::Correlated {
            subscription,
            message,
            process_id,
            accepted,
        } => {
            out.push(4);
            put_key(out, *subscription);
            put_key(out, *message);
            put_bytes(out, process_id.as_bytes());
            out.push(u8::from(*accepted));
        }
        Mail::CreateChild {
            call,
            process_id,
            version,
            business_key,
            variables,
        } => {
            out.push(10);
            put_key(out, *call);
            put_bytes(out, process_id.as_bytes());
            match version {
                ChildVersion::Latest => out.push(0),
                ChildVersion::Tag(tag) => {
                    out.push(1);
                    put_bytes(out, tag.as_bytes());
                }
                ChildVersion::Resource(digest) => {
                    out.push(2);
                    out.extend_from_slice(&digest.to_le_bytes());
                }
            }
            put_bytes(out, business_key.as_bytes());
            put_variables(out, variables);
        }
        Mail::ChildCreated { call, child } => {
            out.push(6);
            put_key(out, *call);
            put_key(out, *child);
        }
        Mail::ChildFailed { call, reason } => {
            out.push(7);
            put_key(out, *call);
            put_bytes(out, reason.as_bytes());
        }
        Mail::ChildCompleted {
            call,
            child,
            variables,
        } => {
            out.push(8);
            put_key(out, *call);
            put_key(out, *child);
            put_variables(out, variables);
        }
        Mail::CancelChild { call } => {
            out.push(9);
            put_key(out, *call);
        }
        Mail::ChildIncident { call, incident } => {
            out.push(11);
            put_key(out, *call);
            put_incident(out, incident);
        }
        Mail::ChildIncidentResolved { call, incident } => {
            out.push(12);
            put_key(out, *call);
            put_key(out, *incident);
        }
        Mail::ChildThrew {
            call,
            throw,
            escalation,
            code,
        } => {
            out.push(13);
            put_key(out, *call);
            put_key(out, *throw);
            out.push(u8::from(*escalation));
            put_bytes(out, code.as_bytes());
        }
        Mail::ThrowAnswered { throw, caught } => {
            out.push(14);
            put_key(out, *throw);
            out.push(match caught {
                Caught::No => 0,
                Caught::Interrupting => 1,
                Caught::NotInterrupting => 2,
            });
        }
        Mail::Signal { name, variables } => {
            out.push(15);
            put_bytes(out, name.as_bytes());
            put_variables(out, variables);
        }
    }
}

pub(crate) fn read_mail(reader: &mut Reader<'_>) -> Result<Mail, SnapshotError> {
    let [tag] = reader.array::<1>()?;
    Ok(match tag {
        1 => Mail::Subscribe {
            subscription: reader.key()?,
            name: reader.string()?,
            correlation_key: reader.string()?,
            process_id: reader.string()?,
        },
        2 => Mail::Unsubscribe {
            subscription: reader.key()?,
        },
        3 => Mail::Correlate {
            subscription: reader.key()?,
            message: reader.key()?,
            process_id: reader.string()?,
            variables: read_variables(reader)?,
        },
        4 => Mail::Correlated {
            subscription: reader.key()?,
            message: reader.key()?,
            process_id: reader.string()?,
            accepted: reader.flag()?,
        },
        // Format 4's form: a version tag or none (the latest).
        5 => Mail::CreateChild {
            call: reader.key()?,
            process_id: reader.string()?,
            version: match reader.optional_text()? {
                None => ChildVersion::Latest,
                Some(tag) => ChildVersion::Tag(tag),
            },
            business_key: reader.string()?,
            variables: read_variables(reader)?,
        },
        10 => Mail::CreateChild {
            call: reader.key()?,
            process_id: reader.string()?,
            version: match reader.array::<1>()?[0] {
                0 => ChildVersion::Latest,
                1 => ChildVersion::Tag(reader.string()?),
                2 => ChildVersion::Resource(u64::from_le_bytes(reader.array()?)),
                other => {
                    return Err(SnapshotError::Corrupt(format!(
                        "unknown child version tag {other}"
                    )));
                }
            },
            business_key: reader.string()?,
            variables: read_variables(reader)?,
        },
        6 => Mail::ChildCreated {
            call: reader.key()?,
            child: reader.key()?,
        },
        7 => Mail::ChildFailed {
            call: reader.key()?,
            reason: reader.string()?,
        },
        8 => Mail::ChildCompleted {
            call: reader.key()?,
            child: reader.key()?,
            variables: read_variables(reader)?,
        },
        9 => Mail::CancelChild {
            call: reader.key()?,
        },
        11 => Mail::ChildIncident {
            call: reader.key()?,
            incident: read_incident(reader)?,
        },
        12 => Mail::ChildIncidentResolved {
            call: reader.key()?,
            incident: reader.key()?,
        },
        13 => Mail::ChildThrew {
            call: reader.key()?,
            throw: reader.key()?,
            escalation: reader.flag()?,
            code: reader.string()?,
        },
        14 => Mail::ThrowAnswered {
            throw: reader.key()?,
            caught: match reader.array::<1>()?[0] {
                0 => Caught::No,
                1 => Caught::Interrupting,
                2 => Caught::NotInterrupting,
                other => {
                    return Err(SnapshotError::Corrupt(format!(
                        "unknown catch answer {other}"
                    )));
                }
            },
        },
        15 => Mail::Signal {
            name: reader.string()?,
            variables: read_variables(reader)?,
        },
        other => return Err(SnapshotError::Corrupt(format!("unknown mail tag {other}"))),
    })
}

/// Reads a mail written by [`encode_mail`], checking that nothing follows it.
pub fn decode_mail(bytes: &[u8]) -> Result<Mail, SnapshotError> {
    let mut reader = Reader::new(bytes);
    let mail = read_mail(&mut reader)?;
    if reader.remaining() != 0 {
        return Err(SnapshotError::Corrupt(format!(
            "{} bytes after the mail",
            reader.remaining()
        )));
    }
    Ok(mail)
}

/// The outbox, the mail numbers and the remote subscriptions, for snapshots.
pub(crate) fn encode_remote(state: &State, out: &mut Vec<u8>) {
    out.extend_from_slice(&state.cluster_shards.to_le_bytes());
    put_numbers(out, &state.sent);
    put_numbers(out, &state.received);
    crate::snapshot::put_count(out, state.outbox.len());
    for ((to, seq), mail) in &state.outbox {
        out.extend_from_slice(&to.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        encode_mail(mail, out);
    }
    crate::snapshot::put_count(out, state.remote_subscriptions.len());
    for subscription in state.remote_subscriptions.values() {
        put_key(out, subscription.key);
        put_bytes(out, subscription.name.as_bytes());
        put_bytes(out, subscription.correlation_key.as_bytes());
        put_bytes(out, subscription.process_id.as_bytes());
        crate::snapshot::put_optional_key(out, subscription.correlating);
    }
    crate::snapshot::put_count(out, state.remote_incidents.len());
    for remote in state.remote_incidents.values() {
        put_key(out, remote.call);
        put_incident(out, &remote.incident);
    }
    crate::snapshot::put_count(out, state.throws.len());
    for (throw, pending) in &state.throws {
        put_key(out, *throw);
        match pending {
            PendingThrow::Thrower {
                element,
                escalation,
                code,
                message,
                job,
            } => {
                out.push(0);
                put_key(out, *element);
                out.push(u8::from(*escalation));
                put_bytes(out, code.as_bytes());
                put_bytes(out, message.as_bytes());
                out.push(u8::from(*job));
            }
            PendingThrow::Relay { to, throw } => {
                out.push(1);
                out.extend_from_slice(&to.to_le_bytes());
                put_key(out, *throw);
            }
        }
    }
}

fn put_numbers(out: &mut Vec<u8>, numbers: &BTreeMap<u16, u64>) {
    crate::snapshot::put_count(out, numbers.len());
    for (shard, seq) in numbers {
        out.extend_from_slice(&shard.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
    }
}

fn read_numbers(reader: &mut Reader<'_>) -> Result<BTreeMap<u16, u64>, SnapshotError> {
    let mut numbers = BTreeMap::new();
    for _ in 0..reader.count()? {
        let shard = u16::from_le_bytes(reader.array()?);
        numbers.insert(shard, u64::from_le_bytes(reader.array()?));
    }
    Ok(numbers)
}

/// Reads the cross-shard section; `format` 4 has no remote incidents and pending throws.
pub(crate) fn decode_remote(
    reader: &mut Reader<'_>,
    state: &mut State,
    format: u8,
) -> Result<(), SnapshotError> {
    state.cluster_shards = u16::from_le_bytes(reader.array()?);
    state.sent = read_numbers(reader)?;
    state.received = read_numbers(reader)?;
    for _ in 0..reader.count()? {
        let to = u16::from_le_bytes(reader.array()?);
        let seq = u64::from_le_bytes(reader.array()?);
        let mail = read_mail(reader)?;
        state.outbox.insert((to, seq), mail);
    }
    for _ in 0..reader.count()? {
        let subscription = RemoteSubscription {
            key: reader.key()?,
            name: reader.string()?,
            correlation_key: reader.string()?,
            process_id: reader.string()?,
            correlating: reader.optional_key()?,
        };
        state
            .remote_subscriptions
            .insert(subscription.key, subscription);
    }
    if format < 5 {
        return Ok(());
    }
    for _ in 0..reader.count()? {
        let call = reader.key()?;
        let incident = read_incident(reader)?;
        state
            .remote_incidents
            .insert(incident.key, RemoteIncident { call, incident });
    }
    for _ in 0..reader.count()? {
        let throw = reader.key()?;
        let pending = match reader.array::<1>()?[0] {
            0 => PendingThrow::Thrower {
                element: reader.key()?,
                escalation: reader.flag()?,
                code: reader.string()?,
                message: reader.string()?,
                job: reader.flag()?,
            },
            1 => PendingThrow::Relay {
                to: u16::from_le_bytes(reader.array()?),
                throw: reader.key()?,
            },
            other => {
                return Err(SnapshotError::Corrupt(format!(
                    "unknown pending throw tag {other}"
                )));
            }
        };
        state.throws.insert(throw, pending);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_4_create_child_mail_is_still_read() {
        // Tag 5: call, process id, optional version tag, business key, variables.
        for (tag, version) in [
            (None, ChildVersion::Latest),
            (Some("v2"), ChildVersion::Tag("v2".to_string())),
        ] {
            let mut bytes = vec![5];
            put_key(&mut bytes, Key::new(1, 9));
            put_bytes(&mut bytes, b"child");
            crate::snapshot::put_optional_text(&mut bytes, tag);
            put_bytes(&mut bytes, b"customer-7");
            put_variables(&mut bytes, &Variables::new());
            let mail = decode_mail(&bytes).expect("format 4 mail reads");
            assert_eq!(
                mail,
                Mail::CreateChild {
                    call: Key::new(1, 9),
                    process_id: "child".to_string(),
                    version,
                    business_key: "customer-7".to_string(),
                    variables: Variables::new(),
                }
            );
        }
        assert!(decode_mail(&[10, 0]).is_err());
        assert!(decode_mail(&[99]).is_err());
    }

    #[test]
    fn the_resource_digest_tells_resources_apart_and_routes_like_before() {
        assert_ne!(resource_digest(b"<a/>"), resource_digest(b"<b/>"));
        assert_eq!(resource_digest(b"<a/>"), resource_digest(b"<a/>"));
        // The slot is the digest's top 12 bits (the shard crate checks it against the wire's
        // routing function).
        assert_eq!(
            u64::from(slot_of_text("order-1")),
            resource_digest(b"order-1") >> 52
        );
    }
}
