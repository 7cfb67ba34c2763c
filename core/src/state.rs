//! The engine's state: everything a shard knows, changed only by [`crate::process`].

use std::collections::BTreeMap;
use std::sync::Arc;

use ringflow_bpmn::ProcessDefinition;

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
}

impl State {
    /// The empty state of a shard.
    pub fn new(shard: u16) -> State {
        State {
            shard,
            last_key: Key::new(shard, 0),
            processes: BTreeMap::new(),
            versions: BTreeMap::new(),
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
}
