//! The engine's state: everything a shard knows, changed only by [`crate::process`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ringflow_bpmn::{ElementIndex, ProcessDefinition};

use crate::engine::Variables;
use crate::instance::{ElementInstance, Incident, Job, ProcessInstance};
use crate::key::Key;

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
    pub(crate) instances: BTreeMap<Key, ProcessInstance>,
    /// Live element instances, the roots of process instances included.
    pub(crate) elements: BTreeMap<Key, ElementInstance>,
    /// (scope, child) pairs: the live children of each scope, in key order.
    pub(crate) children: BTreeSet<(Key, Key)>,
    /// One variable document per scope that has variables.
    pub(crate) variables: BTreeMap<Key, Variables>,
    /// Tokens waiting at parallel joins: (scope, gateway) to a count per incoming flow.
    pub(crate) joins: BTreeMap<(Key, ElementIndex), Vec<u32>>,
    /// Open jobs.
    pub(crate) jobs: BTreeMap<Key, Job>,
    /// Activatable jobs of each type, oldest first.
    pub(crate) ready_jobs: BTreeMap<String, BTreeSet<Key>>,
    /// Open incidents.
    pub(crate) incidents: BTreeMap<Key, Incident>,
    /// Buffered messages.
    pub(crate) messages: BTreeMap<Key, crate::messages::Message>,
    /// (name, correlation key, message id) of buffered messages with an id.
    pub(crate) message_ids: BTreeMap<(String, String, String), Key>,
}

impl State {
    /// The empty state of a shard.
    pub fn new(shard: u16) -> State {
        State {
            shard,
            last_key: Key::new(shard, 0),
            processes: BTreeMap::new(),
            versions: BTreeMap::new(),
            instances: BTreeMap::new(),
            elements: BTreeMap::new(),
            children: BTreeSet::new(),
            variables: BTreeMap::new(),
            joins: BTreeMap::new(),
            jobs: BTreeMap::new(),
            ready_jobs: BTreeMap::new(),
            incidents: BTreeMap::new(),
            messages: BTreeMap::new(),
            message_ids: BTreeMap::new(),
        }
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
        self.instances.values()
    }

    /// A live element instance.
    pub fn element_instance(&self, key: Key) -> Option<&ElementInstance> {
        self.elements.get(&key)
    }

    /// Live element instances, in key order.
    pub fn element_instances(&self) -> impl Iterator<Item = &ElementInstance> {
        self.elements.values()
    }

    /// An open job.
    pub fn job(&self, key: Key) -> Option<&Job> {
        self.jobs.get(&key)
    }

    /// Open jobs, in key order.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
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

    /// Puts a job in its type's ready queue, as activatable.
    pub(crate) fn make_ready(&mut self, key: Key) {
        let job = self.jobs.get_mut(&key).expect("the job is open");
        job.state = crate::instance::JobState::Activatable;
        self.ready_jobs
            .entry(job.job_type.clone())
            .or_default()
            .insert(key);
    }

    /// The live children of a scope.
    pub(crate) fn children_of(&self, scope: Key) -> Vec<Key> {
        let range = (scope, Key(0))..=(scope, Key(u64::MAX));
        self.children
            .range(range)
            .map(|(_, child)| *child)
            .collect()
    }
}
