//! End to end: deploy/local-cluster.sh starts three nodes on 127.0.0.1, .2 and .3 with one
//! cluster file; a client that knows one address works with all three, a graceful stop keeps
//! everything, and a restart of the cluster recovers it.

mod common;
use common::{activate_all, stored_instances, text};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ringflow_wire::client::Client;
use ringflow_wire::{CreateInstance, Request, Resource};

const BIN: &str = env!("CARGO_BIN_EXE_ringflow");
const ONE_TASK: &str = include_str!("fixtures/one-task.bpmn");
const NODES: usize = 3;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local-cluster.sh")
}

fn run(args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .output()
        .expect("local-cluster.sh runs")
}

/// Stops the cluster when the test ends, passed or not.
struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn command(&self, command: &str, extra: &[&str]) -> Output {
        let mut args = vec![command, "--dir", self.dir.to_str().unwrap(), "--bin", BIN];
        args.extend_from_slice(extra);
        run(&args)
    }

    fn stop(&self) {
        let output = self.command("stop", &[]);
        let out = text(&output);
        assert!(output.status.success(), "{out}");
        for node in 0..NODES {
            assert!(out.contains(&format!("node {node}: stopped")), "{out}");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.command("stop", &[]);
    }
}

fn complete(client: &mut Client, jobs: &[ringflow_wire::Job]) {
    for job in jobs {
        client
            .done(&Request::CompleteJob {
                job_key: job.key,
                variables: String::new(),
            })
            .expect("complete on the job's node");
    }
}

/// The instances in node `node`'s cold store, by state.
fn history(dir: &Path, node: usize) -> Vec<(u64, String)> {
    stored_instances(&dir.join(format!("node-{node}")))
        .iter()
        .map(|row| {
            (
                row["key"].as_u64().expect("key"),
                row["state"].as_str().expect("state").to_string(),
            )
        })
        .collect()
}

#[test]
fn three_nodes_on_loopback_addresses_serve_one_cluster_and_restart() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("local-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Fixed ports (the cluster file names them): one shard per node, and the metrics.
    let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    let (port, metrics_port) = (
        common::fixed_ports(&hosts, 1),
        common::fixed_ports(&hosts, 1),
    );
    assert_ne!(port, metrics_port, "two draws gave one port; run again");
    let cluster = Cluster { dir: dir.clone() };
    let output = cluster.command(
        "start",
        &[
            "--port",
            &port.to_string(),
            "--metrics-port",
            &metrics_port.to_string(),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("3 shards on 3 nodes"),
        "{}",
        text(&output)
    );
    let status = cluster.command("status", &[]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        !cluster.command("start", &[]).status.success(),
        "a second start while the nodes run must fail"
    );

    // One address is enough: the client learns all three nodes from node 1.
    let mut client = Client::connect(&format!("127.0.0.2:{port}")).expect("connect");
    let topology = client.topology().clone();
    assert_eq!(topology.nodes.len(), NODES);
    for node in 0..NODES {
        assert_eq!(
            topology.address_of(node as u16),
            Some((format!("127.0.0.{}", node + 1).as_str(), port))
        );
    }
    client
        .deploy(vec![Resource {
            name: "one-task.bpmn".into(),
            content: ONE_TASK.as_bytes().to_vec(),
        }])
        .expect("deploy to every node");

    let create = |client: &mut Client, key: String| {
        client
            .create_instance(CreateInstance {
                bpmn_process_id: "one-task".into(),
                business_key: key,
                ..CreateInstance::default()
            })
            .expect("create")
            .process_instance_key
    };
    let mut per_node = [0usize; NODES];
    for n in 0..60 {
        let key = create(&mut client, format!("order-{n}"));
        per_node[(key >> 52) as usize] += 1;
    }
    assert!(per_node.iter().all(|&count| count > 0), "{per_node:?}");
    let jobs = activate_all(&mut client, "local-cluster");
    assert_eq!(jobs.len(), 60);
    complete(&mut client, &jobs);
    // Nine more that wait in their task across the restart.
    let mut waiting = Vec::new();
    for n in 0..9 {
        waiting.push(create(&mut client, format!("late-{n}")));
    }
    drop(client);
    cluster.stop();

    // The cold store of each node has its own instances, none lost: a graceful stop drains
    // the exporter.
    let mut completed = 0;
    let mut active = Vec::new();
    for node in 0..NODES {
        for (key, state) in history(&dir, node) {
            assert_eq!(
                (key >> 52) as usize,
                node,
                "instance {key} in node {node}'s store"
            );
            match state.as_str() {
                "completed" => completed += 1,
                "active" => active.push(key),
                other => panic!("instance {key} is {other}"),
            }
        }
    }
    assert_eq!(completed, 60);
    active.sort_unstable();
    waiting.sort_unstable();
    assert_eq!(active, waiting);

    // A restart with the same folder recovers every node; the waiting jobs are still there.
    let output = cluster.command("start", &[]);
    assert!(output.status.success(), "{}", text(&output));
    let mut client = Client::connect(&format!("127.0.0.3:{port}")).expect("connect");
    assert_eq!(client.topology(), &topology);
    let jobs = activate_all(&mut client, "local-cluster");
    let mut of_jobs: Vec<u64> = jobs.iter().map(|job| job.process_instance_key).collect();
    of_jobs.sort_unstable();
    assert_eq!(of_jobs, waiting);
    complete(&mut client, &jobs);
    drop(client);
    cluster.stop();
    let completed: usize = (0..NODES)
        .map(|node| {
            history(&dir, node)
                .iter()
                .filter(|(_, state)| state == "completed")
                .count()
        })
        .sum();
    assert_eq!(completed, 69);
    drop(cluster);
    std::fs::remove_dir_all(&dir).unwrap();
}
