//! The engine's state: everything a shard knows, changed only by [`crate::process`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ringflow_bpmn::{ElementIndex, ProcessDefinition};
use smallvec::SmallVec;

use crate::engine::{Event, Variables};
use crate::instance::{
    Compensation, ConditionalSubscription, ElementInstance, Incident, Job, MultiBody,
    ProcessInstance, SignalSubscription, Subscription, Timer,
};
use crate::key::{Key, KeyMap, sorted_values};

/// One deployed version of a process.
#[derive(Clone, Debug)]
pub struct ProcessVersion {
    /// The process definition key.
    pub key: Key,
    /// The BPMN process id.
    pub bpmn_process_id: String,
    /// 1 for the first deployment of this id, then counting up.
    pub version: u32,
    /// The deployment that brought it.
    pub deployment_key: Key,
    /// The name of the resource it came from.
    pub resource_name: String,
    /// The resource's bytes: the source of truth, from which a snapshot restores it.
    pub resource: Arc<[u8]>,
    /// The compiled definition.
    pub definition: Arc<ProcessDefinition>,
}

/// Everything one shard's engine holds. Only [`crate::process`] changes it.
#[derive(Clone, Debug)]
pub struct State {
    shard: u16,
    last_key: Key,
    /// Every process version, by process definition key.
    pub(crate) processes: BTreeMap<Key, ProcessVersion>,
    /// Process definition keys of each BPMN process id, by version (index 0 is version 1).
    pub(crate) versions: BTreeMap<String, Vec<Key>>,
    /// Running process instances.
    pub(crate) instances: KeyMap<ProcessInstance>,
    /// Live element instances, the roots of process instances included.
    pub(crate) elements: KeyMap<ElementInstance>,
    /// The live children of each scope.
    pub(crate) children: Children,
    /// One variable document per scope that has variables.
    pub(crate) variables: KeyMap<Variables>,
    /// The JSON length of documents in `variables` whose length is known: kept by
    /// `merge_variables`, dropped by every other change, measured when missing (see
    /// `document_len`). A cache, never encoded; `indexes_consistent` checks it.
    pub(crate) variable_lens: KeyMap<usize>,
    /// Tokens waiting at parallel joins: (scope, gateway) to a count per incoming flow.
    pub(crate) joins: BTreeMap<(Key, ElementIndex), Vec<u32>>,
    /// Open jobs.
    pub(crate) jobs: KeyMap<Job>,
    /// Activatable jobs of each type, oldest first.
    pub(crate) ready_jobs: BTreeMap<Arc<str>, BTreeSet<Key>>,
    /// Open incidents.
    pub(crate) incidents: BTreeMap<Key, Incident>,
    /// Buffered messages.
    pub(crate) messages: BTreeMap<Key, crate::messages::Message>,
    /// (name, correlation key, message id) of buffered messages with an id.
    pub(crate) message_ids: BTreeMap<(String, String, String), Key>,
    /// Armed timers.
    pub(crate) timers: BTreeMap<Key, Timer>,
    /// Open message subscriptions.
    pub(crate) subscriptions: BTreeMap<Key, Subscription>,
    /// Open signal subscriptions.
    pub(crate) signal_subscriptions: BTreeMap<Key, SignalSubscription>,
    /// Open conditional subscriptions.
    pub(crate) conditional_subscriptions: BTreeMap<Key, ConditionalSubscription>,
    /// Signals with subscriptions left to deliver to, by signal key.
    pub(crate) signal_deliveries: BTreeMap<Key, crate::signals::PendingDelivery>,
    /// Completed activities that compensation can still reach, by key.
    pub(crate) compensations: BTreeMap<Key, Compensation>,
    /// Multi-instance bodies, by element instance key.
    pub(crate) multi: BTreeMap<Key, MultiBody>,
    /// Ad-hoc subprocesses whose worker said they are done, waiting for their activations
    /// to end (see `adhoc`).
    pub(crate) ad_hoc_fulfilled: BTreeSet<Key>,
    /// Triggers held while an element's start listeners run, by element instance key: the
    /// event that entered it (a catch event after an event-based gateway, an event
    /// subprocess's start, a process's message or timer start) and its variables. They go
    /// on when the last start listener is done (see `listeners`).
    pub(crate) held_triggers: BTreeMap<Key, (ElementIndex, Variables)>,
    /// User tasks waiting for their task listeners, by element instance key (see
    /// `usertasks`).
    pub(crate) user_task_holds: BTreeMap<Key, crate::instance::UserTaskHold>,
    /// Every decision version, by decision definition key.
    pub(crate) decisions: BTreeMap<Key, crate::decisions::DecisionVersion>,
    /// Decision definition keys of each decision id, by version (index 0 is version 1).
    pub(crate) decision_versions: BTreeMap<String, Vec<Key>>,
    /// How many shards the cluster has (0: not set, every key is local).
    pub(crate) cluster_shards: u16,
    /// Mail not yet acknowledged, by (destination shard, number).
    pub(crate) outbox: BTreeMap<(u16, u64), crate::remote::Mail>,
    /// The last mail number given out per destination shard.
    pub(crate) sent: BTreeMap<u16, u64>,
    /// The last mail number taken per sending shard.
    pub(crate) received: BTreeMap<u16, u64>,
    /// Subscriptions of instances on other shards whose correlation key lives here.
    pub(crate) remote_subscriptions: BTreeMap<Key, crate::remote::RemoteSubscription>,
    /// Incidents in children on other shards, by incident key.
    pub(crate) remote_incidents: BTreeMap<Key, crate::remote::RemoteIncident>,
    /// Throws waiting for a parent on another shard, by throw id.
    pub(crate) throws: BTreeMap<Key, crate::remote::PendingThrow>,
    /// Derived indexes: rebuilt from the fields above on restore, never encoded.
    pub(crate) index: Indexes,
    /// Scopes whose variables the running command changed, in the order of their first
    /// change: each gets one `VariablesUpdated` event. Empty between commands.
    pub(crate) variables_dirty: DirtyScopes,
    /// The work queue of the last command's run, empty, kept for its room: a command would
    /// otherwise allocate one (see `Drop for Run`). Not state: never encoded or compared.
    pub(crate) work_scratch: std::collections::VecDeque<crate::run::Step>,
    /// What the running command noted for conditional events (see `conditionals`); empty
    /// between commands, never encoded or compared. Kept here rather than in each run, so
    /// that a command that never touches a conditional event pays nothing for it.
    pub(crate) conditionals_scratch: crate::conditionals::Pending,
    /// Where the running command's `uuid()` and `random number()` draw from (see `feel`);
    /// set at each command's start, never encoded or compared.
    pub(crate) draws: crate::feel::Draws,
}

/// The live children of each scope (a process, subprocess or multi-instance body instance).
///
/// A hash map from the scope to its children, up to three of them inline, rather than one
/// ordered set of (scope, child) pairs: every element a token enters or leaves adds or
/// removes a child, and here that is one lookup of the scope (which the command has just
/// touched) instead of a descent through a tree of every live element. A scope with more
/// than [`FEW_CHILDREN_MAX`] children (a parallel multi-instance body, a compensation throw
/// running its handlers) keeps them in an ordered set instead, so that removing one does
/// not scan them all: with the list, a throw that ran 9,000 handlers in one command spent
/// 3.7 µs on each, four times what 1,000 cost, as each removal searched the others. Only
/// cancellation, termination and joins ask for a scope's children; they get them sorted.
#[derive(Clone, Debug, Default)]
pub(crate) struct Children(KeyMap<Live>);

/// Children a scope keeps in a list; past this, in a set.
pub(crate) const FEW_CHILDREN_MAX: usize = 32;

/// The live children of one scope.
#[derive(Clone, Debug)]
pub(crate) enum Live {
    /// Up to [`FEW_CHILDREN_MAX`], unordered.
    Few(SmallVec<[Key; 3]>),
    /// More, ordered.
    Many(BTreeSet<Key>),
}

impl Live {
    fn is_empty(&self) -> bool {
        match self {
            Live::Few(children) => children.is_empty(),
            Live::Many(children) => children.is_empty(),
        }
    }
}

impl Children {
    /// `child` is live in `scope`.
    pub(crate) fn add(&mut self, scope: Key, child: Key) {
        let live = self
            .0
            .entry(scope)
            .or_insert_with(|| Live::Few(SmallVec::new()));
        match live {
            Live::Few(children) => {
                children.push(child);
                if children.len() > FEW_CHILDREN_MAX {
                    *live = Live::Many(children.iter().copied().collect());
                }
            }
            Live::Many(children) => {
                children.insert(child);
            }
        }
    }

    /// `child` left `scope`. The scope's entry stays (empty) until the scope itself ends, so
    /// that a scope whose children come and go one at a time does not remake it.
    pub(crate) fn remove(&mut self, scope: Key, child: Key) {
        match self.0.get_mut(&scope) {
            Some(Live::Few(children)) => {
                if let Some(index) = children.iter().position(|live| *live == child) {
                    children.swap_remove(index);
                }
            }
            Some(Live::Many(children)) => {
                children.remove(&child);
            }
            None => {}
        }
    }

    /// `scope` itself ended: forget its entry.
    pub(crate) fn end_scope(&mut self, scope: Key) {
        let children = self.0.remove(&scope);
        debug_assert!(
            children.is_none_or(|children| children.is_empty()),
            "scope {scope} ended with live children"
        );
    }

    /// The live children of `scope`, in key order.
    pub(crate) fn of(&self, scope: Key) -> Vec<Key> {
        match self.0.get(&scope) {
            None => Vec::new(),
            Some(Live::Few(children)) => {
                let mut children = children.to_vec();
                children.sort_unstable();
                children
            }
            Some(Live::Many(children)) => children.iter().copied().collect(),
        }
    }

    /// Whether this index holds exactly the (scope, child) pairs of `elements`, and no entry
    /// for a scope that ended.
    fn agrees_with(&self, elements: &KeyMap<ElementInstance>) -> bool {
        let mut expected = Children::default();
        for element in elements.values() {
            if let Some(scope) = element.scope {
                expected.add(scope, element.key);
            }
        }
        let live_entries = self.0.keys().all(|scope| elements.contains_key(scope));
        let same = |a: &Children, b: &Children| {
            a.0.iter()
                .filter(|(_, children)| !children.is_empty())
                .all(|(scope, _)| a.of(*scope) == b.of(*scope))
        };
        live_entries && same(self, &expected) && same(&expected, self)
    }
}

/// Scopes whose variables the running command changed, in the order of their first change,
/// and for scopes changed only through checked updates, the names they set.
///
/// A short list is searched; past [`DIRTY_SCAN_MAX`] scopes a hash set answers "is it
/// marked" instead, and a scope dropped meanwhile stays in the list, unmarked (its document
/// is gone, so it gets no event). Without the set, a command that changed the variables of
/// thousands of scopes (a multi-instance body's items, a compensation throw's handlers)
/// searched the list at every change and every removal. Names are kept for at most
/// [`DIRTY_SCAN_MAX`] scopes; past that a scope counts as changed as a whole.
#[derive(Clone, Debug, Default)]
pub(crate) struct DirtyScopes {
    order: Vec<Key>,
    set: Option<
        std::collections::HashSet<Key, std::hash::BuildHasherDefault<crate::key::KeyHasher>>,
    >,
    /// The scopes changed only by name, with the names; a marked scope not here changed as
    /// a whole.
    names: Vec<(Key, Vec<String>)>,
}

/// Dirty scopes searched in a list; past this, looked up in a set.
const DIRTY_SCAN_MAX: usize = 16;

impl DirtyScopes {
    fn is_marked(&self, scope: Key) -> bool {
        match &self.set {
            None => self.order.contains(&scope),
            Some(set) => set.contains(&scope),
        }
    }

    /// `scope`'s variables changed (as a whole).
    pub(crate) fn mark(&mut self, scope: Key) {
        if !self.names.is_empty() {
            self.names.retain(|(key, _)| *key != scope);
        }
        self.mark_scope(scope);
    }

    /// `scope`'s variables `names` were set (nothing else changed).
    pub(crate) fn mark_names<'n>(&mut self, scope: Key, names: impl Iterator<Item = &'n String>) {
        if let Some((_, known)) = self.names.iter_mut().find(|(key, _)| *key == scope) {
            known.extend(names.cloned());
        } else if !self.is_marked(scope) {
            if self.names.len() < DIRTY_SCAN_MAX {
                self.names.push((scope, names.cloned().collect()));
            }
            self.mark_scope(scope);
        }
        // Marked without names: changed as a whole already.
    }

    fn mark_scope(&mut self, scope: Key) {
        match &mut self.set {
            None => {
                if !self.order.contains(&scope) {
                    self.order.push(scope);
                    if self.order.len() > DIRTY_SCAN_MAX {
                        self.set = Some(self.order.iter().copied().collect());
                    }
                }
            }
            Some(set) => {
                if set.insert(scope) {
                    self.order.push(scope);
                }
            }
        }
    }

    /// `scope` ended: `None` when it was not marked, else `Some` of the names it changed
    /// (`None` inside: changed as a whole).
    pub(crate) fn unmark(&mut self, scope: Key) -> Option<Option<Vec<String>>> {
        let names = match self.names.iter().position(|(key, _)| *key == scope) {
            Some(position) => Some(self.names.swap_remove(position).1),
            None => None,
        };
        let marked = match &mut self.set {
            None => match self.order.iter().position(|key| *key == scope) {
                Some(position) => {
                    self.order.remove(position);
                    true
                }
                None => false,
            },
            Some(set) => set.remove(&scope),
        };
        marked.then_some(names)
    }

    /// The marked scopes in order (and, past the list's size, scopes dropped since), with
    /// the names of those changed only by name, now forgotten.
    pub(crate) fn take(&mut self) -> (Vec<Key>, Vec<(Key, Vec<String>)>) {
        self.set = None;
        (
            std::mem::take(&mut self.order),
            std::mem::take(&mut self.names),
        )
    }

    /// Forgets every mark.
    #[inline]
    pub(crate) fn clear(&mut self) {
        if self.order.is_empty() {
            // Between commands it is empty already (`take` emptied it).
            return;
        }
        self.set = None;
        self.order.clear();
        self.names.clear();
    }
}

/// The variables of `document` that `names` names (each once).
fn picked(document: &Variables, names: &[String]) -> Variables {
    names
        .iter()
        .filter_map(|name| Some((name.clone(), document.get(name)?.clone())))
        .collect()
}

/// Lookups derived from the state, kept up to date by the `insert_*`/`remove_*` methods and
/// rebuilt by [`State::rebuild_indexes`] after a restore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Indexes {
    /// (owner element instance, timer or subscription key).
    pub waits: BTreeSet<(Key, Key)>,
    /// (process definition key, timer key) of process start timers.
    pub start_timers: BTreeSet<(Key, Key)>,
    /// Open subscriptions by (message name, correlation key), oldest first.
    pub subscriptions: BTreeMap<(String, String), BTreeSet<Key>>,
    /// Open signal subscriptions by signal name, oldest first.
    pub signal_subscriptions: BTreeMap<String, BTreeSet<Key>>,
    /// (process instance, conditional subscription key) of every conditional subscription.
    pub conditionals: BTreeSet<(Key, Key)>,
    /// Buffered messages by (name, correlation key), oldest first.
    pub messages: BTreeMap<(String, String), BTreeSet<Key>>,
    /// Message name to the BPMN process ids whose latest version it starts.
    pub message_starts: BTreeMap<String, BTreeSet<String>>,
    /// (BPMN process id, correlation key) of running instances a message started.
    pub message_started: BTreeMap<(String, String), Key>,
    /// Remote subscriptions by (message name, correlation key), by key.
    pub remote_subscriptions: BTreeMap<(String, String), BTreeSet<Key>>,
    /// Children started here for a call activity on another shard: call activity to child.
    pub remote_children: BTreeMap<Key, Key>,
    /// (scope element instance, compensation key) of every compensation.
    pub compensation_scopes: BTreeSet<(Key, Key)>,
    /// Compensations held per process instance (only instances that hold some).
    pub compensations_per_instance: BTreeMap<Key, u32>,
    /// The open jobs of ad-hoc subprocesses' workers: completing one is the worker's
    /// decision, not the subprocess's completion (see `adhoc`).
    pub ad_hoc_jobs: BTreeSet<Key>,
    /// Whether any deployed process version has an execution listener: without one, an
    /// activation looks no further (one load instead of a definition lookup, on the hot
    /// path).
    pub listening: bool,
}

impl State {
    /// The empty state of a shard.
    pub fn new(shard: u16) -> State {
        State {
            shard,
            last_key: Key::new(shard, 0),
            processes: BTreeMap::new(),
            versions: BTreeMap::new(),
            instances: KeyMap::default(),
            elements: KeyMap::default(),
            children: Children::default(),
            variables: KeyMap::default(),
            joins: BTreeMap::new(),
            jobs: KeyMap::default(),
            ready_jobs: BTreeMap::new(),
            incidents: BTreeMap::new(),
            messages: BTreeMap::new(),
            message_ids: BTreeMap::new(),
            timers: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            signal_subscriptions: BTreeMap::new(),
            conditional_subscriptions: BTreeMap::new(),
            signal_deliveries: BTreeMap::new(),
            compensations: BTreeMap::new(),
            multi: BTreeMap::new(),
            ad_hoc_fulfilled: BTreeSet::new(),
            held_triggers: BTreeMap::new(),
            user_task_holds: BTreeMap::new(),
            decisions: BTreeMap::new(),
            decision_versions: BTreeMap::new(),
            cluster_shards: 0,
            outbox: BTreeMap::new(),
            sent: BTreeMap::new(),
            received: BTreeMap::new(),
            remote_subscriptions: BTreeMap::new(),
            remote_incidents: BTreeMap::new(),
            throws: BTreeMap::new(),
            index: Indexes::default(),
            variables_dirty: DirtyScopes::default(),
            variable_lens: KeyMap::default(),
            work_scratch: std::collections::VecDeque::new(),
            conditionals_scratch: crate::conditionals::Pending::default(),
            draws: crate::feel::Draws::default(),
        }
    }

    fn mark_variables(&mut self, scope: Key) {
        self.variables_dirty.mark(scope);
    }

    /// The variable document of `scope` to change (made when missing).
    pub(crate) fn variables_mut(&mut self, scope: Key) -> &mut Variables {
        self.mark_variables(scope);
        self.forget_len(scope);
        self.variables.entry(scope).or_default()
    }

    /// The variable document of `scope` to change, if it has one.
    pub(crate) fn existing_variables_mut(&mut self, scope: Key) -> Option<&mut Variables> {
        if self.variables.contains_key(&scope) {
            self.mark_variables(scope);
            self.forget_len(scope);
        }
        self.variables.get_mut(&scope)
    }

    /// Replaces the variable document of `scope`.
    pub(crate) fn store_variables(&mut self, scope: Key, document: Variables) {
        self.mark_variables(scope);
        self.forget_len(scope);
        self.variables.insert(scope, document);
    }

    /// Sets a checked update's variables in its scope's document, in place, and keeps the
    /// document's new length.
    pub(crate) fn merge_variables(&mut self, update: crate::variables::Update) {
        self.variables_dirty
            .mark_names(update.scope, update.entries.keys());
        let document = self.variables.entry(update.scope).or_default();
        for (name, value) in update.entries {
            document.insert(name, value);
        }
        self.variable_lens.insert(update.scope, update.len);
    }

    /// The JSON length of `scope`'s document (2, `{}`, without one): kept, or measured.
    pub(crate) fn document_len(&self, scope: Key) -> usize {
        match self.variable_lens.get(&scope) {
            Some(len) => *len,
            None => self
                .variables
                .get(&scope)
                .map_or(2, crate::variables::json_len),
        }
    }

    /// `scope`'s document, just stored, is `len` bytes as JSON (measured by the caller).
    pub(crate) fn remember_len(&mut self, scope: Key, len: usize) {
        if let Some(document) = self.variables.get(&scope) {
            debug_assert_eq!(crate::variables::json_len(document), len);
            self.variable_lens.insert(scope, len);
        }
    }

    fn forget_len(&mut self, scope: Key) {
        if !self.variable_lens.is_empty() {
            self.variable_lens.remove(&scope);
        }
    }

    /// Forgets the variables of an ended scope; if the command changed them, they leave as
    /// an event first, so history sees the scope's last values.
    pub(crate) fn drop_variables(
        &mut self,
        scope: Key,
        process_instance_key: Key,
        events: &mut Vec<Event>,
    ) {
        self.end_variables(scope, process_instance_key, events, false);
    }

    /// Takes the variables of a scope about to end (a finished instance's, for its waiting
    /// caller), as `drop_variables` would drop them: the event for what the command changed
    /// goes out first. Copies only what the event carries.
    pub(crate) fn take_variables(
        &mut self,
        scope: Key,
        process_instance_key: Key,
        events: &mut Vec<Event>,
    ) -> Variables {
        self.end_variables(scope, process_instance_key, events, true)
            .unwrap_or_default()
    }

    /// Removes `scope`'s document, with the event for what the command changed in it; returns
    /// the document when `keep`. A document changed as a whole and not kept moves into the
    /// event; one changed by name gives the event only those variables.
    fn end_variables(
        &mut self,
        scope: Key,
        process_instance_key: Key,
        events: &mut Vec<Event>,
        keep: bool,
    ) -> Option<Variables> {
        let changed = self.variables_dirty.unmark(scope);
        let document = self.variables.remove(&scope)?;
        self.forget_len(scope);
        let (variables, kept) = match changed {
            None => return keep.then_some(document),
            Some(Some(names)) => (picked(&document, &names), Some(document)),
            Some(None) if keep => (document.clone(), Some(document)),
            Some(None) => (document, None),
        };
        events.push(Event::VariablesUpdated {
            scope_key: scope,
            process_instance_key,
            variables,
        });
        kept.filter(|_| keep)
    }

    /// One `VariablesUpdated` per scope the command changed that is still live.
    pub(crate) fn flush_variable_events(&mut self, events: &mut Vec<Event>) {
        // A scope dropped since its change has no document left: it is skipped.
        let (scopes, names) = self.variables_dirty.take();
        for scope in scopes {
            let (Some(document), Some(element)) =
                (self.variables.get(&scope), self.elements.get(&scope))
            else {
                continue;
            };
            let variables = match names.iter().find(|(key, _)| *key == scope) {
                // Only what changed: not a copy of a document that may hold megabytes.
                Some((_, names)) => picked(document, names),
                None => document.clone(),
            };
            events.push(Event::VariablesUpdated {
                scope_key: scope,
                process_instance_key: element.process_instance_key,
                variables,
            });
        }
    }

    /// How many process instances run.
    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }

    /// How many jobs are open.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// The shard this state belongs to.
    pub fn shard(&self) -> u16 {
        self.shard
    }

    /// The last key handed out (counter 0 before the first).
    pub fn last_key(&self) -> Key {
        self.last_key
    }

    pub(crate) fn set_last_key(&mut self, key: Key) {
        assert!(key >= self.last_key, "keys go backwards");
        self.last_key = key;
    }

    /// The process version with this definition key.
    pub fn process(&self, key: Key) -> Option<&ProcessVersion> {
        self.processes.get(&key)
    }

    /// The latest version of a BPMN process id.
    pub fn latest_process(&self, bpmn_process_id: &str) -> Option<&ProcessVersion> {
        let key = self.versions.get(bpmn_process_id)?.last()?;
        self.processes.get(key)
    }

    /// A given version of a BPMN process id.
    pub fn process_version(&self, bpmn_process_id: &str, version: u32) -> Option<&ProcessVersion> {
        let index = usize::try_from(version.checked_sub(1)?).ok()?;
        let key = self.versions.get(bpmn_process_id)?.get(index)?;
        self.processes.get(key)
    }

    /// Every process version, in key order.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessVersion> {
        self.processes.values()
    }

    /// A running process instance.
    pub fn instance(&self, key: Key) -> Option<&ProcessInstance> {
        self.instances.get(&key)
    }

    /// Running process instances, in key order.
    pub fn instances(&self) -> impl Iterator<Item = &ProcessInstance> {
        sorted_values(&self.instances).into_iter()
    }

    /// A live element instance.
    pub fn element_instance(&self, key: Key) -> Option<&ElementInstance> {
        self.elements.get(&key)
    }

    /// Live element instances, in key order.
    pub fn element_instances(&self) -> impl Iterator<Item = &ElementInstance> {
        sorted_values(&self.elements).into_iter()
    }

    /// An open job.
    pub fn job(&self, key: Key) -> Option<&Job> {
        self.jobs.get(&key)
    }

    /// Open jobs, in key order.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        sorted_values(&self.jobs).into_iter()
    }

    /// Open incidents, in key order.
    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values()
    }

    /// The variables of one scope (an element instance key).
    pub fn variables(&self, scope: Key) -> Option<&Variables> {
        self.variables.get(&scope)
    }

    /// Tokens waiting at parallel joins inside the scope `scope`.
    pub fn waiting_join_tokens(&self, scope: Key) -> u32 {
        let range = (scope, ElementIndex(0))..=(scope, ElementIndex(u32::MAX));
        self.joins
            .range(range)
            .map(|(_, counts)| counts.iter().sum::<u32>())
            .sum()
    }

    /// A buffered message.
    pub fn message(&self, key: Key) -> Option<&crate::messages::Message> {
        self.messages.get(&key)
    }

    /// An armed timer event.
    pub fn timer(&self, key: Key) -> Option<&Timer> {
        self.timers.get(&key)
    }

    /// An upper bound of the timers the shard must keep for this state: open jobs (a lease or
    /// a backoff each, at most), buffered messages and armed timer events. O(1).
    pub fn timer_bound(&self) -> usize {
        self.jobs.len() + self.messages.len() + self.timers.len()
    }

    /// Buffered messages, in key order.
    pub fn messages(&self) -> impl Iterator<Item = &crate::messages::Message> {
        self.messages.values()
    }

    /// How many jobs of a type are ready to be handed out.
    pub fn ready_job_count(&self, job_type: &str) -> usize {
        self.ready_jobs.get(job_type).map_or(0, BTreeSet::len)
    }

    /// Whether the job is in its type's ready queue.
    pub fn is_ready(&self, key: Key) -> bool {
        self.jobs.get(&key).is_some_and(|job| {
            self.ready_jobs
                .get(&job.job_type)
                .is_some_and(|r| r.contains(&key))
        })
    }

    /// Removes an open job from the jobs, its type's ready queue and the index of ad-hoc
    /// workers' jobs (its element's `job` is the caller's to clear).
    #[inline]
    pub(crate) fn remove_job(&mut self, key: Key) -> Job {
        let job = self.jobs.remove(&key).expect("the job is open");
        if let Some(ready) = self.ready_jobs.get_mut(&job.job_type) {
            ready.remove(&key);
            if ready.is_empty() {
                self.ready_jobs.remove(&job.job_type);
            }
        }
        if !self.index.ad_hoc_jobs.is_empty() {
            self.index.ad_hoc_jobs.remove(&key);
        }
        job
    }

    /// Puts a job in its type's ready queue, as activatable.
    pub(crate) fn make_ready(&mut self, key: Key) {
        let job = self.jobs.get_mut(&key).expect("the job is open");
        job.state = crate::instance::JobState::Activatable;
        self.ready_jobs
            .entry(job.job_type.clone())
            .or_default()
            .insert(key);
    }

    /// The live children of a scope, in key order.
    pub(crate) fn children_of(&self, scope: Key) -> Vec<Key> {
        self.children.of(scope)
    }

    /// The latest version of a decision id.
    pub fn latest_decision(&self, decision_id: &str) -> Option<&crate::decisions::DecisionVersion> {
        let key = self.decision_versions.get(decision_id)?.last()?;
        self.decisions.get(key)
    }

    /// Every decision version, in key order.
    pub fn decisions(&self) -> impl Iterator<Item = &crate::decisions::DecisionVersion> {
        self.decisions.values()
    }

    /// Armed timers, in key order.
    pub fn timers(&self) -> impl Iterator<Item = &Timer> {
        self.timers.values()
    }

    /// Open message subscriptions, in key order.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.subscriptions.values()
    }

    /// Open signal subscriptions, in key order.
    pub fn signal_subscriptions(&self) -> impl Iterator<Item = &SignalSubscription> {
        self.signal_subscriptions.values()
    }

    /// Open conditional subscriptions, by key.
    pub fn conditional_subscriptions(&self) -> impl Iterator<Item = &ConditionalSubscription> {
        self.conditional_subscriptions.values()
    }

    /// User tasks waiting for their task listeners: element instance key and what is held.
    pub fn user_task_holds(&self) -> impl Iterator<Item = (&Key, &crate::instance::UserTaskHold)> {
        self.user_task_holds.iter()
    }

    /// The delivery left of signal `key`, if it has subscriptions left to deliver to.
    pub fn signal_delivery(&self, key: Key) -> Option<&crate::signals::PendingDelivery> {
        self.signal_deliveries.get(&key)
    }

    /// Signals with subscriptions left to deliver to, by signal key (each has a
    /// `ContinueSignal` coming).
    pub fn signal_deliveries(
        &self,
    ) -> impl Iterator<Item = (Key, &crate::signals::PendingDelivery)> {
        self.signal_deliveries
            .iter()
            .map(|(key, delivery)| (*key, delivery))
    }

    /// The multi-instance body state of an element instance.
    pub fn multi_body(&self, key: Key) -> Option<&MultiBody> {
        self.multi.get(&key)
    }

    /// Open incidents of a process instance and of every instance its call activities
    /// started, recursively: what the parent shows of its children's trouble. Children on
    /// other shards report theirs (and their own children's) as mail; those come last.
    pub fn incidents_in_tree(&self, process_instance_key: Key) -> Vec<&Incident> {
        let mut tree = vec![process_instance_key];
        let mut next = 0;
        while next < tree.len() {
            let instance = tree[next];
            next += 1;
            for element in self.elements.values() {
                if element.process_instance_key == instance
                    && let Some(child) = element.called
                {
                    tree.push(child);
                }
            }
        }
        let remote = self.remote_incidents.values().filter(|remote| {
            self.elements
                .get(&remote.call)
                .is_some_and(|call| tree.contains(&call.process_instance_key))
        });
        self.incidents
            .values()
            .filter(|incident| tree.contains(&incident.process_instance_key))
            .chain(remote.map(|remote| &remote.incident))
            .collect()
    }

    pub(crate) fn insert_timer(&mut self, timer: Timer) {
        match timer.owner {
            Some(owner) => self.index.waits.insert((owner, timer.key)),
            None => self
                .index
                .start_timers
                .insert((timer.process_definition_key, timer.key)),
        };
        self.timers.insert(timer.key, timer);
    }

    pub(crate) fn remove_timer(&mut self, key: Key) -> Option<Timer> {
        let timer = self.timers.remove(&key)?;
        match timer.owner {
            Some(owner) => self.index.waits.remove(&(owner, key)),
            None => self
                .index
                .start_timers
                .remove(&(timer.process_definition_key, key)),
        };
        Some(timer)
    }

    pub(crate) fn insert_subscription(&mut self, subscription: Subscription) {
        let key = subscription.key;
        self.index.waits.insert((subscription.owner, key));
        self.index
            .subscriptions
            .entry((
                subscription.name.clone(),
                subscription.correlation_key.clone(),
            ))
            .or_default()
            .insert(key);
        self.subscriptions.insert(key, subscription);
    }

    pub(crate) fn remove_subscription(&mut self, key: Key) -> Option<Subscription> {
        let subscription = self.subscriptions.remove(&key)?;
        self.index.waits.remove(&(subscription.owner, key));
        let name = (
            subscription.name.clone(),
            subscription.correlation_key.clone(),
        );
        if let Some(keys) = self.index.subscriptions.get_mut(&name) {
            keys.remove(&key);
            if keys.is_empty() {
                self.index.subscriptions.remove(&name);
            }
        }
        Some(subscription)
    }

    pub(crate) fn insert_signal_subscription(&mut self, subscription: SignalSubscription) {
        let key = subscription.key;
        self.index.waits.insert((subscription.owner, key));
        self.index
            .signal_subscriptions
            .entry(subscription.name.clone())
            .or_default()
            .insert(key);
        self.signal_subscriptions.insert(key, subscription);
    }

    pub(crate) fn remove_signal_subscription(&mut self, key: Key) -> Option<SignalSubscription> {
        let subscription = self.signal_subscriptions.remove(&key)?;
        self.index.waits.remove(&(subscription.owner, key));
        if let Some(keys) = self.index.signal_subscriptions.get_mut(&subscription.name) {
            keys.remove(&key);
            if keys.is_empty() {
                self.index.signal_subscriptions.remove(&subscription.name);
            }
        }
        Some(subscription)
    }

    pub(crate) fn insert_conditional_subscription(
        &mut self,
        subscription: ConditionalSubscription,
    ) {
        let key = subscription.key;
        self.index.waits.insert((subscription.owner, key));
        self.index
            .conditionals
            .insert((subscription.process_instance_key, key));
        self.conditional_subscriptions.insert(key, subscription);
    }

    pub(crate) fn remove_conditional_subscription(
        &mut self,
        key: Key,
    ) -> Option<ConditionalSubscription> {
        let subscription = self.conditional_subscriptions.remove(&key)?;
        self.index.waits.remove(&(subscription.owner, key));
        self.index
            .conditionals
            .remove(&(subscription.process_instance_key, key));
        Some(subscription)
    }

    /// The conditional subscriptions of a process instance, by key.
    pub(crate) fn conditionals_of(&self, process_instance_key: Key) -> Vec<Key> {
        let range = (process_instance_key, Key(0))..=(process_instance_key, Key(u64::MAX));
        self.index
            .conditionals
            .range(range)
            .map(|(_, key)| *key)
            .collect()
    }

    /// Whether a process instance has a conditional subscription.
    pub(crate) fn has_conditionals(&self, process_instance_key: Key) -> bool {
        let range = (process_instance_key, Key(0))..=(process_instance_key, Key(u64::MAX));
        !self.conditional_subscriptions.is_empty()
            && self.index.conditionals.range(range).next().is_some()
    }

    pub(crate) fn insert_message(&mut self, message: crate::messages::Message) {
        if let Some(id_key) = message.id_key() {
            self.message_ids.insert(id_key, message.key);
        }
        self.index
            .messages
            .entry((message.name.clone(), message.correlation_key.clone()))
            .or_default()
            .insert(message.key);
        self.messages.insert(message.key, message);
    }

    pub(crate) fn remove_message(&mut self, key: Key) -> Option<crate::messages::Message> {
        let message = self.messages.remove(&key)?;
        if let Some(id_key) = message.id_key() {
            self.message_ids.remove(&id_key);
        }
        let name = (message.name.clone(), message.correlation_key.clone());
        if let Some(keys) = self.index.messages.get_mut(&name) {
            keys.remove(&key);
            if keys.is_empty() {
                self.index.messages.remove(&name);
            }
        }
        Some(message)
    }

    /// The timer, message subscription and signal subscription keys an element instance owns.
    pub(crate) fn waits_of(&self, owner: Key) -> Vec<Key> {
        let range = (owner, Key(0))..=(owner, Key(u64::MAX));
        self.index
            .waits
            .range(range)
            .map(|(_, wait)| *wait)
            .collect()
    }

    /// The BPMN process id of a process definition.
    pub(crate) fn process_id_of(&self, process_definition_key: Key) -> &str {
        &self.processes[&process_definition_key].bpmn_process_id
    }

    /// Rebuilds the message start index from the latest version of every process.
    pub(crate) fn rebuild_message_starts(&mut self) {
        let mut starts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for keys in self.versions.values() {
            let latest = &self.processes[keys.last().expect("a process id has versions")];
            for name in crate::timers::message_start_names(&latest.definition) {
                starts
                    .entry(name)
                    .or_default()
                    .insert(latest.bpmn_process_id.clone());
            }
        }
        self.index.message_starts = starts;
    }

    /// Keeps a compensation, indexed by its scope and counted for its instance.
    pub(crate) fn insert_compensation(&mut self, compensation: Compensation) {
        self.index
            .compensation_scopes
            .insert((compensation.scope, compensation.key));
        *self
            .index
            .compensations_per_instance
            .entry(compensation.process_instance_key)
            .or_default() += 1;
        self.compensations.insert(compensation.key, compensation);
    }

    /// Forgets a compensation (compensated, or its scope ended).
    pub(crate) fn remove_compensation(&mut self, key: Key) -> Option<Compensation> {
        let compensation = self.compensations.remove(&key)?;
        self.index
            .compensation_scopes
            .remove(&(compensation.scope, key));
        let instance = compensation.process_instance_key;
        if let Some(count) = self.index.compensations_per_instance.get_mut(&instance) {
            *count -= 1;
            if *count == 0 {
                self.index.compensations_per_instance.remove(&instance);
            }
        }
        Some(compensation)
    }

    /// Moves a compensation to the scope `to` (in place: only the scope index changes).
    pub(crate) fn move_compensation(&mut self, key: Key, to: Key) {
        let compensation = self
            .compensations
            .get_mut(&key)
            .expect("a kept compensation");
        let from = std::mem::replace(&mut compensation.scope, to);
        self.index.compensation_scopes.remove(&(from, key));
        self.index.compensation_scopes.insert((to, key));
    }

    /// The keys of the compensations that belong to `scope`, oldest first.
    pub(crate) fn compensations_in(&self, scope: Key) -> Vec<Key> {
        self.first_compensations_in(scope, usize::MAX)
    }

    /// The keys of the first `count` compensations of `scope`, oldest first.
    pub(crate) fn first_compensations_in(&self, scope: Key, count: usize) -> Vec<Key> {
        if self.compensations.is_empty() {
            return Vec::new();
        }
        self.index
            .compensation_scopes
            .range((scope, Key(0))..=(scope, Key(u64::MAX)))
            .take(count)
            .map(|(_, key)| *key)
            .collect()
    }

    /// The compensation throws with handlers left to start (each has a
    /// `ContinueCompensation` coming): the element instances that hold compensations and
    /// are not scopes (a throw event holds them only while it starts its handlers).
    pub fn compensation_throws(&self) -> Vec<Key> {
        let mut throws: Vec<Key> = self
            .index
            .compensation_scopes
            .iter()
            .map(|(scope, _)| *scope)
            .filter(|scope| self.is_compensation_throw(*scope))
            .collect();
        throws.dedup();
        throws
    }

    /// Whether `key` is a compensation throw with handlers left to start.
    pub fn compensation_throw_pending(&self, key: Key) -> bool {
        self.is_compensation_throw(key) && !self.first_compensations_in(key, 1).is_empty()
    }

    fn is_compensation_throw(&self, key: Key) -> bool {
        let Some(element) = self.elements.get(&key) else {
            return false;
        };
        let instance = &self.instances[&element.process_instance_key];
        let definition = &self.processes[&instance.process_definition_key].definition;
        matches!(
            definition.element(element.element).kind,
            ringflow_bpmn::ElementKind::IntermediateThrowEvent(
                ringflow_bpmn::ThrowResult::Compensation(_)
            ) | ringflow_bpmn::ElementKind::EndEvent(ringflow_bpmn::EndResult::Compensation(_))
        )
    }

    /// How many compensations a process instance holds.
    pub(crate) fn compensation_count(&self, process_instance_key: Key) -> u32 {
        self.index
            .compensations_per_instance
            .get(&process_instance_key)
            .copied()
            .unwrap_or(0)
    }

    /// Completed activities that compensation can still reach, in key order.
    pub fn compensations(&self) -> impl Iterator<Item = &Compensation> {
        self.compensations.values()
    }

    /// Rebuilds every derived index from the state (after a restore).
    pub(crate) fn rebuild_indexes(&mut self) {
        self.index = Indexes::default();
        self.index.listening = self
            .processes
            .values()
            .any(|process| process.definition.has_execution_listeners());
        let compensations: Vec<Compensation> = self.compensations.values().cloned().collect();
        for compensation in compensations {
            self.insert_compensation(compensation);
        }
        for job in self.jobs.values() {
            let element = &self.elements[&job.element_instance_key];
            let instance = &self.instances[&element.process_instance_key];
            let definition = &self.processes[&instance.process_definition_key].definition;
            if job.listener.is_none()
                && element.role != crate::instance::ElementRole::AdHocInner
                && matches!(
                    definition.element(element.element).kind,
                    ringflow_bpmn::ElementKind::AdHocSubProcess(_)
                )
            {
                self.index.ad_hoc_jobs.insert(job.key);
            }
        }
        let timers: Vec<Timer> = self.timers.values().cloned().collect();
        for timer in timers {
            self.insert_timer(timer);
        }
        let subscriptions: Vec<Subscription> = self.subscriptions.values().cloned().collect();
        for subscription in subscriptions {
            self.insert_subscription(subscription);
        }
        let signals: Vec<SignalSubscription> =
            self.signal_subscriptions.values().cloned().collect();
        for subscription in signals {
            self.insert_signal_subscription(subscription);
        }
        let conditionals: Vec<ConditionalSubscription> =
            self.conditional_subscriptions.values().cloned().collect();
        for subscription in conditionals {
            self.insert_conditional_subscription(subscription);
        }
        for message in self.messages.values() {
            self.index
                .messages
                .entry((message.name.clone(), message.correlation_key.clone()))
                .or_default()
                .insert(message.key);
        }
        let remote: Vec<_> = self.remote_subscriptions.values().cloned().collect();
        for subscription in remote {
            self.insert_remote_subscription(subscription);
        }
        for instance in self.instances.values() {
            if let Some(call) = instance.parent
                && call.shard() != self.shard
            {
                self.index.remote_children.insert(call, instance.key);
            }
            if let Some(correlation_key) = &instance.message_start_key {
                let id = self.processes[&instance.process_definition_key]
                    .bpmn_process_id
                    .clone();
                self.index
                    .message_started
                    .insert((id, correlation_key.clone()), instance.key);
            }
        }
        self.rebuild_message_starts();
    }

    /// Whether the derived indexes agree with a fresh rebuild: for tests.
    pub fn indexes_consistent(&self) -> bool {
        let mut rebuilt = self.clone();
        rebuilt.rebuild_indexes();
        rebuilt.index == self.index
            && self.children.agrees_with(&self.elements)
            && self.variable_lens.iter().all(|(scope, len)| {
                self.variables.get(scope).map(crate::variables::json_len) == Some(*len)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::ElementRole;

    fn element(key: u64, scope: Option<u64>) -> ElementInstance {
        ElementInstance {
            key: Key(key),
            process_instance_key: Key(1),
            element: ElementIndex(0),
            scope: scope.map(Key),
            tokens: 0,
            job: None,
            incident: None,
            role: ElementRole::Plain,
            called: None,
        }
    }

    #[test]
    fn children_come_back_in_key_order_and_leave() {
        let mut children = Children::default();
        for child in [14, 11, 13, 12] {
            children.add(Key(10), Key(child));
        }
        children.add(Key(20), Key(21));
        assert_eq!(children.of(Key(10)), [11, 12, 13, 14].map(Key));
        children.remove(Key(10), Key(12));
        children.remove(Key(10), Key(99));
        assert_eq!(children.of(Key(10)), [11, 13, 14].map(Key));
        assert_eq!(children.of(Key(20)), [Key(21)]);
        assert!(children.of(Key(30)).is_empty());
        for child in [11, 13, 14] {
            children.remove(Key(10), Key(child));
        }
        assert!(children.of(Key(10)).is_empty());
        children.end_scope(Key(10));
        assert!(!children.0.contains_key(&Key(10)));
    }

    #[test]
    fn a_scope_with_many_children_keeps_them_in_a_set() {
        let mut children = Children::default();
        let count = FEW_CHILDREN_MAX as u64 * 3;
        // Added in a shuffled order (a stride coprime to the count).
        for n in 0..count {
            children.add(Key(1), Key(1_000 + (n * 7) % count));
        }
        assert!(matches!(children.0[&Key(1)], Live::Many(_)));
        let all: Vec<Key> = (0..count).map(|n| Key(1_000 + n)).collect();
        assert_eq!(children.of(Key(1)), all);
        for n in (0..count).filter(|n| n % 2 == 0) {
            children.remove(Key(1), Key(1_000 + n));
        }
        children.remove(Key(1), Key(5));
        let odd: Vec<Key> = all.iter().copied().filter(|k| k.0 % 2 == 1).collect();
        assert_eq!(children.of(Key(1)), odd);
        for key in odd {
            children.remove(Key(1), key);
        }
        assert!(children.of(Key(1)).is_empty());
        children.end_scope(Key(1));
        assert!(children.0.is_empty());
    }

    #[test]
    fn the_children_index_is_checked_against_the_elements() {
        let mut elements = KeyMap::default();
        for (key, scope) in [(1, None), (2, Some(1)), (3, Some(1)), (4, Some(3))] {
            elements.insert(Key(key), element(key, scope));
        }
        let mut children = Children::default();
        children.add(Key(1), Key(3));
        children.add(Key(1), Key(2));
        children.add(Key(3), Key(4));
        assert!(children.agrees_with(&elements));
        // A child missing from the index.
        children.remove(Key(3), Key(4));
        assert!(!children.agrees_with(&elements));
        children.add(Key(3), Key(4));
        // A child the elements no longer have.
        children.add(Key(1), Key(9));
        assert!(!children.agrees_with(&elements));
        children.remove(Key(1), Key(9));
        assert!(children.agrees_with(&elements));
        // An entry kept for a scope that ended.
        children.add(Key(8), Key(7));
        children.remove(Key(8), Key(7));
        assert!(!children.agrees_with(&elements));
        children.end_scope(Key(8));
        assert!(children.agrees_with(&elements));
    }
}
