//! The cluster's topology: which nodes exist, which shards each runs, and where to reach
//! every shard.
//!
//! Shard ids are cluster-wide: node `n` runs shards `first_shard .. first_shard +
//! shard_count`, and the ranges of the nodes follow on from 0 without gaps. Shard `s` of a
//! node listens on `host:(base_port + s - first_shard)`.

use crate::routing::{SHARD_ID_MAX, SlotTable, shard_of_entity_key};

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node's id (its index in the cluster file).
    pub id: u16,
    /// The host name or address clients connect to.
    pub host: String,
    /// Its shard `i` listens on `base_port + i`.
    pub base_port: u16,
    /// The cluster-wide id of its first shard.
    pub first_shard: u16,
    /// How many shards it runs.
    pub shard_count: u16,
}

/// Why a topology is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid topology: {0}")]
pub struct TopologyError(pub String);

/// The whole cluster as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Changes whenever the topology does.
    pub version: u64,
    /// The nodes, by id.
    pub nodes: Vec<Node>,
    /// Slots to shards.
    pub slots: SlotTable,
}

impl Topology {
    /// Checks that the nodes' shard ranges follow on from 0, their ports fit, and the slot
    /// table covers exactly their shards.
    pub fn new(
        version: u64,
        nodes: Vec<Node>,
        slots: SlotTable,
    ) -> Result<Topology, TopologyError> {
        let shards = check_nodes(&nodes)?;
        if slots.shards() != shards {
            return Err(TopologyError(format!(
                "the slot table covers {} shards, the nodes run {shards}",
                slots.shards()
            )));
        }
        Ok(Topology {
            version,
            nodes,
            slots,
        })
    }

    /// A cluster of the given nodes with a uniform slot table; the version is derived from
    /// the nodes, so the same cluster file gives the same version on every node.
    pub fn uniform(nodes: Vec<Node>) -> Result<Topology, TopologyError> {
        let shards = check_nodes(&nodes)?;
        let slots = SlotTable::uniform(shards).map_err(|e| TopologyError(e.to_string()))?;
        let mut description = String::new();
        for node in &nodes {
            description.push_str(&format!(
                "{}|{}|{}|{}|{};",
                node.id, node.host, node.base_port, node.first_shard, node.shard_count
            ));
        }
        let version = crate::routing::routing_hash(&description);
        Topology::new(version, nodes, slots)
    }

    /// How many shards the cluster runs.
    pub fn shard_count(&self) -> usize {
        self.slots.shards()
    }

    /// The node that runs `shard`.
    pub fn node_of(&self, shard: u16) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|node| shard >= node.first_shard && shard - node.first_shard < node.shard_count)
    }

    /// Where `shard` listens: (host, port).
    pub fn address_of(&self, shard: u16) -> Option<(&str, u16)> {
        let node = self.node_of(shard)?;
        Some((
            node.host.as_str(),
            node.base_port + (shard - node.first_shard),
        ))
    }

    /// The shard that owns a business key or correlation key.
    pub fn shard_of_text(&self, key: &str) -> u16 {
        self.slots.shard_of(key)
    }

    /// The shard that owns an entity key, if it exists in this cluster.
    pub fn shard_of_key(&self, key: u64) -> Option<u16> {
        let shard = shard_of_entity_key(key);
        (usize::from(shard) < self.shard_count()).then_some(shard)
    }
}

/// Checks the nodes' ids, shard ranges, ports and hosts; returns the cluster's shard count.
fn check_nodes(nodes: &[Node]) -> Result<usize, TopologyError> {
    let mut next_shard = 0usize;
    for (index, node) in nodes.iter().enumerate() {
        if usize::from(node.id) != index {
            return Err(TopologyError(format!(
                "node {index} has id {}; ids are the nodes' positions",
                node.id
            )));
        }
        if node.shard_count == 0 {
            return Err(TopologyError(format!("node {index} runs no shards")));
        }
        if usize::from(node.first_shard) != next_shard {
            return Err(TopologyError(format!(
                "node {index} starts at shard {}, not {next_shard}",
                node.first_shard
            )));
        }
        if usize::from(node.base_port) + usize::from(node.shard_count) - 1 > 65535 {
            return Err(TopologyError(format!(
                "node {index}: base port {} + {} shards is past port 65535",
                node.base_port, node.shard_count
            )));
        }
        if node.host.is_empty() {
            return Err(TopologyError(format!("node {index} has no host")));
        }
        next_shard += usize::from(node.shard_count);
    }
    if next_shard == 0 || next_shard > usize::from(SHARD_ID_MAX) + 1 {
        return Err(TopologyError(format!(
            "a cluster runs 1 to {} shards, not {next_shard}",
            usize::from(SHARD_ID_MAX) + 1
        )));
    }
    Ok(next_shard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u16, host: &str, base_port: u16, first_shard: u16, shard_count: u16) -> Node {
        Node {
            id,
            host: host.to_string(),
            base_port,
            first_shard,
            shard_count,
        }
    }

    #[test]
    fn two_nodes_cover_their_shards_and_addresses() {
        let topology = Topology::uniform(vec![
            node(0, "127.0.0.1", 26500, 0, 2),
            node(1, "127.0.0.2", 26600, 2, 3),
        ])
        .expect("valid");
        assert_eq!(topology.shard_count(), 5);
        assert_eq!(topology.address_of(0), Some(("127.0.0.1", 26500)));
        assert_eq!(topology.address_of(1), Some(("127.0.0.1", 26501)));
        assert_eq!(topology.address_of(2), Some(("127.0.0.2", 26600)));
        assert_eq!(topology.address_of(4), Some(("127.0.0.2", 26602)));
        assert_eq!(topology.address_of(5), None);
        assert_eq!(topology.shard_of_key(4u64 << 52 | 7), Some(4));
        assert_eq!(topology.shard_of_key(5u64 << 52 | 7), None);
        // The same nodes give the same version; a change gives another.
        let again = Topology::uniform(topology.nodes.clone()).expect("valid");
        assert_eq!(again.version, topology.version);
        let other = Topology::uniform(vec![node(0, "127.0.0.1", 26500, 0, 1)]).expect("valid");
        assert_ne!(other.version, topology.version);
    }

    #[test]
    fn gaps_overlaps_and_port_overflow_are_refused() {
        let gap = Topology::uniform(vec![node(0, "a", 1000, 0, 2), node(1, "b", 1000, 3, 1)]);
        assert!(gap.unwrap_err().0.contains("starts at shard 3, not 2"));
        let overflow = Topology::uniform(vec![node(0, "a", 65535, 0, 2)]);
        assert!(overflow.unwrap_err().0.contains("past port 65535"));
        let bad_id = Topology::uniform(vec![node(1, "a", 1000, 0, 1)]);
        assert!(
            bad_id
                .unwrap_err()
                .0
                .contains("ids are the nodes' positions")
        );
        let empty = Topology::uniform(vec![node(0, "a", 1000, 0, 0)]);
        assert!(empty.unwrap_err().0.contains("runs no shards"));
    }
}
