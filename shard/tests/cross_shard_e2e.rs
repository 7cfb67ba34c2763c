//! End to end across shards, over TCP between two nodes (one shard each, on 127.0.0.1 and
//! 127.0.0.2, one cluster file) and over the channels within one node (two shards).
//! Instances wait for messages whose correlation keys live on the other shard, and parents
//! call children placed on the other shard by a business key. A node is killed with SIGKILL
//! in the middle and restarted. Every instance completes, and each node's cold store has
//! exactly its own instances.

mod common;
use common::stored_instances;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ringflow_wire::client::Client;
use ringflow_wire::{CreateInstance, ErrorCode, PublishMessage, Request, Resource};

const BIN: &str = env!("CARGO_BIN_EXE_ringflow");
const WAITER: &str = include_str!("fixtures/cross-waiter.bpmn");
const CALL: &str = include_str!("fixtures/cross-call.bpmn");
const WAITERS: usize = 20;
const PARENTS: usize = 10;

struct Node {
    index: usize,
    shards: usize,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self, port: u16) {
        let log = std::fs::File::create(self.dir.join(format!("node-{}.log", self.index)))
            .expect("log file");
        let child = Command::new(BIN)
            .args(["serve", "--cluster"])
            .arg(self.dir.join("cluster.toml"))
            .args(["--node", &self.index.to_string(), "--data"])
            .arg(self.data())
            .args(["--cpus", &self.cpus()])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("ringflow serve starts");
        self.child = Some(child);
        // Ready once every shard of the node listens (each has its own port).
        let deadline = Instant::now() + Duration::from_secs(60);
        for shard in 0..self.shards {
            let addr = format!("127.0.0.{}:{}", self.index + 1, port + shard as u16);
            while Client::connect(&addr).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "node {} did not start",
                    self.index
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The nodes share this machine's CPUs round-robin.
    fn cpus(&self) -> String {
        let count = std::thread::available_parallelism().map_or(1, usize::from);
        (0..self.shards)
            .map(|shard| ((self.index * self.shards + shard) % count).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn data(&self) -> PathBuf {
        self.dir.join(format!("node-{}", self.index))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let status = Command::new("kill").args(["-TERM", &pid]).status();
            assert!(status.is_ok_and(|status| status.success()));
            let status = child.wait().expect("the node exits");
            assert!(status.success(), "node {} exited with {status}", self.index);
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("node-{}.log", self.index)))
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// (instance key, state, BPMN process id) of every instance in a node's cold store.
fn history(data: &Path) -> Vec<(u64, String, String)> {
    stored_instances(data)
        .iter()
        .map(|row| {
            (
                row["key"].as_u64().expect("key"),
                row["state"].as_str().expect("state").to_string(),
                row["bpmnProcessId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn publish(client: &mut Client, name: &str, key: &str) {
    client
        .publish_message(PublishMessage {
            name: name.into(),
            correlation_key: key.into(),
            variables: r#"{"paid": true}"#.into(),
            ttl_ms: 600_000,
            message_id: String::new(),
        })
        .expect("publish on the key's node");
}

#[test]
fn messages_and_call_activities_cross_two_nodes_and_survive_a_kill() {
    across(2, 1, "nodes");
}

#[test]
fn messages_and_call_activities_cross_the_shards_of_one_node_and_survive_a_kill() {
    across(1, 2, "shards");
}

/// `node_count` nodes of `shards` shards each; the last node is killed in the middle.
fn across(node_count: usize, shards: usize, name: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cross-shard-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test folder");
    // Fixed ports (the cluster file names them): PORT.. on every node's address.
    let port = common::fixed_ports(&["127.0.0.1", "127.0.0.2"], shards as u16);
    let cluster = (0..node_count)
        .map(|node| {
            format!(
                "[[node]]\nhost = \"127.0.0.{}\"\nport = {port}\nshards = {shards}\n",
                node + 1
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("cluster.toml"), cluster).expect("cluster file");
    let mut nodes: Vec<Node> = (0..node_count)
        .map(|index| Node {
            index,
            shards,
            dir: dir.clone(),
            child: None,
        })
        .collect();
    for node in &mut nodes {
        node.start(port);
    }
    let mut client = Client::connect(&format!("127.0.0.1:{port}")).expect("connect");
    let topology = client.topology().clone();
    assert_eq!(topology.shard_count(), 2);
    client
        .deploy(vec![
            Resource {
                name: "cross-waiter.bpmn".into(),
                content: WAITER.as_bytes().to_vec(),
            },
            Resource {
                name: "cross-call.bpmn".into(),
                content: CALL.as_bytes().to_vec(),
            },
        ])
        .expect("deploy to both nodes");

    // Bad mail is refused with a reason and takes nothing: mail from the shard to itself,
    // and bytes that are no mail.
    for (from, what) in [(0, "not another shard"), (1, "does not decode")] {
        let error = client
            .request(&Request::ShardMail {
                from_shard: from,
                to_shard: 0,
                mails: vec![(1, vec![250, 1, 2])],
            })
            .expect_err("bad mail is refused");
        assert_eq!(error.code(), Some(ErrorCode::InvalidArgument), "{error}");
        assert!(error.to_string().contains(what), "{error}");
    }

    // Waiters: placed by business key w-N, waiting for `paid` with key o-N. Half of the
    // messages come first (buffered), half after the instance waits.
    let mut crossing = 0;
    for n in 0..WAITERS {
        let (business_key, order) = (format!("w-{n}"), format!("o-{n}"));
        if topology.shard_of_text(&business_key) != topology.shard_of_text(&order) {
            crossing += 1;
        }
        if n % 2 == 0 {
            publish(&mut client, "paid", &order);
        }
        client
            .create_instance(CreateInstance {
                bpmn_process_id: "cross-waiter".into(),
                business_key,
                variables: format!(r#"{{"orderId": "{order}"}}"#),
                ..CreateInstance::default()
            })
            .expect("create a waiter");
    }
    assert!(crossing >= 5, "only {crossing} waiters wait across nodes");
    // Parents on p-N, children on c-N, waiting for `ship` with key s-N.
    let mut crossing = 0;
    for n in 0..PARENTS {
        let (business_key, customer) = (format!("p-{n}"), format!("c-{n}"));
        if topology.shard_of_text(&business_key) != topology.shard_of_text(&customer) {
            crossing += 1;
        }
        client
            .create_instance(CreateInstance {
                bpmn_process_id: "cross-parent".into(),
                business_key,
                variables: format!(r#"{{"customer": "{customer}", "shipment": "s-{n}"}}"#),
                ..CreateInstance::default()
            })
            .expect("create a parent");
    }
    assert!(
        crossing >= 2,
        "only {crossing} children are placed across nodes"
    );

    // A crash of the last node in the middle of the exchanges; it comes back from its
    // journal.
    let last = node_count - 1;
    nodes[last].kill();
    nodes[last].start(port);
    let mut client = Client::connect(&format!("127.0.0.{}:{port}", last + 1)).expect("reconnect");
    for n in (1..WAITERS).step_by(2) {
        publish(&mut client, "paid", &format!("o-{n}"));
    }
    for n in 0..PARENTS {
        publish(&mut client, "ship", &format!("s-{n}"));
    }
    drop(client);

    // Everything completes: 20 waiters, 10 parents and their 10 children.
    let expected = WAITERS + 2 * PARENTS;
    let deadline = Instant::now() + Duration::from_secs(60);
    let completed = loop {
        let completed: usize = nodes
            .iter()
            .map(|node| {
                history(&node.data())
                    .iter()
                    .filter(|(_, state, _)| state == "completed")
                    .count()
            })
            .sum();
        if completed == expected || Instant::now() > deadline {
            break completed;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        completed,
        expected,
        "node 0 log:\n{}\nnode 1 log:\n{}",
        nodes[0].log(),
        nodes[1].log()
    );
    for node in &mut nodes {
        node.stop();
    }
    let mut by_process = std::collections::BTreeMap::<String, usize>::new();
    for node in &nodes {
        for (key, state, process) in history(&node.data()) {
            assert_eq!(
                (key >> 52) as usize / shards,
                node.index,
                "instance {key} in node {}",
                node.index
            );
            assert_eq!(state, "completed", "instance {key} ({process})");
            *by_process.entry(process).or_default() += 1;
        }
    }
    assert_eq!(
        by_process.get("cross-waiter"),
        Some(&WAITERS),
        "{by_process:?}"
    );
    assert_eq!(
        by_process.get("cross-parent"),
        Some(&PARENTS),
        "{by_process:?}"
    );
    assert_eq!(
        by_process.get("cross-child"),
        Some(&PARENTS),
        "{by_process:?}"
    );
    drop(nodes);
    std::fs::remove_dir_all(&dir).unwrap();
}
