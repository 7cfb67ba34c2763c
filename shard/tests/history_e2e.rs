//! End to end: the real server exports history to its cold store, `ringflow instances` and
//! `ringflow instance KEY` read it back, `--metrics` serves Prometheus text, and an exporter
//! that cannot write makes the shard refuse new work with BUSY, saying why.

mod common;
use common::{ServerLog, metric, scrape};

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ringflow_shard::cold::{Conn, Target};
use ringflow_wire::client::{Client, ClientConfig, ClientError};
use ringflow_wire::{ActivateJobs, CreateInstance, ErrorCode, Request, Resource};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ringflow");

/// One service task of type `e2e-work` (shared with serve_e2e.rs).
const ONE_TASK: &str = include_str!("fixtures/one-task.bpmn");

fn data_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("history-e2e")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the data directory");
    dir
}

/// A `ringflow serve` started by a test, its stderr in DATA/server.log.
struct Server {
    child: Child,
    /// Shard 0's address (the one it reported, for `127.0.0.1:0`).
    addr: String,
    log: ServerLog,
}

/// The log of the server on `data` (its stderr), for failure messages.
fn server_log(data: &Path) -> String {
    std::fs::read_to_string(data.join("server.log")).unwrap_or_default()
}

/// Waits up to 10 s for `line` in the server's log.
fn wait_for_log(data: &Path, line: &str) {
    let started = Instant::now();
    while !server_log(data).contains(line) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no `{line}` in the log:\n{}",
            server_log(data)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Shard `shard`'s file of the default cold store (a file per shard in DATA/cold/).
fn shard_store(data: &Path, shard: u16) -> Target {
    Target::Sqlite(data.join("cold").join(format!("shard-{shard}.db")))
}

/// Connects, or fails showing the server's log.
fn connect(addr: &str, data: &Path) -> Client {
    Client::connect(addr).unwrap_or_else(|error| {
        panic!("connect {addr}: {error}\nserver log:\n{}", server_log(data))
    })
}

impl Server {
    /// Starts a server on `data` listening on `addr` (`127.0.0.1:0`: free ports it picks and
    /// reports) and waits until every shard listens.
    fn start(data: &Path, addr: &str, extra: &[&str]) -> Server {
        let (log, file) = ServerLog::open(&data.join("server.log"));
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", addr])
            .args(if extra.contains(&"--shards") {
                &[][..]
            } else {
                &["--shards", "1"][..]
            })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start ringflow serve");
        let mut server = Server {
            child,
            addr: addr.to_string(),
            log,
        };
        if addr.ends_with(":0") {
            server.addr = server.log.listen_addr(&mut server.child);
        }
        let started = Instant::now();
        // Every shard's port (shard i on PORT+i): a shard listens once it has recovered.
        let shards: u16 = extra
            .iter()
            .position(|arg| *arg == "--shards")
            .and_then(|at| extra.get(at + 1))
            .map_or(1, |count| count.parse().expect("a shard count"));
        let (host, port) = server.addr.rsplit_once(':').expect("HOST:PORT");
        let port: u16 = port.parse().expect("a port");
        while (0..shards).any(|shard| TcpStream::connect((host, port + shard)).is_err()) {
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                panic!("ringflow serve exited with {status}: {}", server.log.text());
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no server");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The metrics address the server reported (for `--metrics 127.0.0.1:0`).
    fn metrics_addr(&mut self) -> String {
        self.log.metrics_addr(&mut self.child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn history(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run the ringflow CLI")
}

/// Runs a history command until it succeeds with output that `ready` accepts (the exporter
/// trails the engine), for at most 30 s.
fn history_json(args: &[&str], ready: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let output = history(args);
        if output.status.success()
            && let Ok(value) = serde_json::from_slice::<Value>(&output.stdout)
            && ready(&value)
        {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ringflow {args:?}: {} {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn deploy(client: &mut Client) {
    client
        .deploy(vec![Resource {
            name: "one-task.bpmn".into(),
            content: ONE_TASK.as_bytes().to_vec(),
        }])
        .expect("deploy");
}

fn create(client: &mut Client, variables: &str, business_key: &str) -> Result<u64, ClientError> {
    client
        .create_instance(CreateInstance {
            bpmn_process_id: "one-task".into(),
            variables: variables.into(),
            business_key: business_key.into(),
            ..CreateInstance::default()
        })
        .map(|created| created.process_instance_key)
}

fn activate(client: &mut Client) -> Vec<ringflow_wire::Job> {
    client
        .activate_jobs(ActivateJobs {
            job_type: "e2e-work".into(),
            worker: "w".into(),
            max_jobs: 10,
            lease_ms: 60_000,
            long_poll_ms: 0,
            fetch_variables: Vec::new(),
        })
        .expect("activate")
}

#[test]
fn history_is_exported_and_the_cli_reads_it_back_and_metrics_count_the_work() {
    let data = data_dir("history");
    let mut server = Server::start(&data, "127.0.0.1:0", &["--metrics", "127.0.0.1:0"]);
    let (addr, metrics_addr) = (server.addr.clone(), server.metrics_addr());
    let mut client = connect(&addr, &data);
    deploy(&mut client);
    let done = create(&mut client, r#"{"order": "A-1"}"#, "biz-1").expect("create");
    let waiting = create(&mut client, r#"{"order": "A-2"}"#, "").expect("create");
    let jobs = activate(&mut client);
    assert_eq!(jobs.len(), 2);
    let first = jobs
        .iter()
        .find(|job| job.process_instance_key == done)
        .expect("the job of the first instance");
    let other = jobs
        .iter()
        .find(|job| job.process_instance_key == waiting)
        .expect("the job of the second instance");
    client
        .done(&Request::FailJob {
            job_key: first.key,
            retries: 1,
            retry_backoff_ms: 0,
            message: "try again".into(),
        })
        .expect("fail");
    let again = activate(&mut client);
    assert_eq!(again.len(), 1);
    client
        .done(&Request::CompleteJob {
            job_key: first.key,
            variables: r#"{"paid": true}"#.into(),
        })
        .expect("complete");
    // The second instance fails for good: an incident.
    client
        .done(&Request::FailJob {
            job_key: other.key,
            retries: 0,
            retry_backoff_ms: 0,
            message: "out of stock".into(),
        })
        .expect("fail");
    let data_arg = data.to_str().expect("utf-8");

    let completed = history_json(
        &[
            "instances",
            "--data",
            data_arg,
            "--state",
            "completed",
            "--json",
        ],
        |value| value.as_array().is_some_and(|list| !list.is_empty()),
    );
    assert_eq!(completed.as_array().expect("list").len(), 1, "{completed}");
    assert_eq!(completed[0]["key"], done);
    assert_eq!(completed[0]["bpmnProcessId"], "one-task");
    assert_eq!(completed[0]["businessKey"], "biz-1");
    let incident = history_json(
        &[
            "instances",
            "--data",
            data_arg,
            "--state",
            "incident",
            "--json",
        ],
        |value| value.as_array().is_some_and(|list| !list.is_empty()),
    );
    assert_eq!(incident[0]["key"], waiting, "{incident}");
    assert_eq!(incident[0]["openIncidents"], 1);
    let all = history_json(
        &[
            "instances",
            "--data",
            data_arg,
            "--process",
            "one-task",
            "--json",
        ],
        |value| value.as_array().is_some_and(|list| list.len() == 2),
    );
    assert_eq!(all.as_array().expect("list").len(), 2);
    let none = history_json(
        &[
            "instances",
            "--data",
            data_arg,
            "--process",
            "other",
            "--json",
        ],
        |_| true,
    );
    assert_eq!(none, Value::Array(Vec::new()));

    let detail = history_json(
        &["instance", &done.to_string(), "--data", data_arg, "--json"],
        |value| value["instance"]["state"] == "completed",
    );
    let elements: Vec<(&str, &str)> = detail["elements"]
        .as_array()
        .expect("elements")
        .iter()
        .map(|e| {
            (
                e["elementId"].as_str().unwrap(),
                e["state"].as_str().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("one-task", "completed"),
        ("start", "completed"),
        ("task", "completed"),
        ("end", "completed"),
    ] {
        assert!(elements.contains(&expected), "{expected:?} in {elements:?}");
    }
    assert_eq!(detail["jobs"][0]["state"], "completed");
    assert_eq!(detail["jobs"][0]["retries"], 1);
    assert_eq!(detail["jobs"][0]["errorMessage"], "try again");
    let variables: Vec<(&str, &Value)> = detail["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), &v["value"]))
        .collect();
    assert!(
        variables.contains(&("order", &Value::from("A-1"))),
        "{variables:?}"
    );
    assert!(
        variables.contains(&("paid", &Value::from(true))),
        "{variables:?}"
    );

    let waiting_detail = history_json(
        &[
            "instance",
            &waiting.to_string(),
            "--data",
            data_arg,
            "--json",
        ],
        |value| !value["incidents"].as_array().is_none_or(Vec::is_empty),
    );
    assert_eq!(waiting_detail["instance"]["state"], "active");
    assert_eq!(waiting_detail["incidents"][0]["state"], "open");
    let message = waiting_detail["incidents"][0]["message"].as_str().unwrap();
    assert!(message.contains("out of stock"), "{message}");
    // The table form names where it waits.
    let text = history(&["instance", &waiting.to_string(), "--data", data_arg]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("waits at: task"), "{text}");
    // A limit of none is refused, naming the option.
    let none = history(&["instances", "--data", data_arg, "--limit", "0"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("--limit"));
    // An unknown key: exit 1 and a message.
    let unknown = history(&["instance", "12345", "--data", data_arg]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not in the cold store"));
    // A file that is not a database, in the layout of today and of data directories made
    // before the file per shard: exit 2, saying so and naming the file.
    for file in ["cold/shard-0.db", "cold.db"] {
        let garbage = data_dir("garbage-store");
        let path = garbage.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
        std::fs::write(&path, vec![0x5a; 8192]).expect("write garbage");
        let refused = history(&["instances", "--data", garbage.to_str().unwrap()]);
        assert_eq!(refused.status.code(), Some(2));
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            said.contains("not a database") && said.contains(file),
            "{said}"
        );
    }
    // An empty SQLite file (no schema yet): exit 2, saying there is no history.
    let empty_db = data_dir("empty-store");
    std::fs::create_dir_all(empty_db.join("cold")).expect("mkdir");
    std::fs::write(empty_db.join("cold/shard-0.db"), b"").expect("an empty file");
    let refused = history(&["instances", "--data", empty_db.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("no ringflow history yet"), "{said}");
    // No store at all: exit 2, naming the files it looked for.
    let empty = data_dir("no-store");
    let missing = history(&["instances", "--data", empty.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("cold/shard-N.db"), "{said}");

    // The exporter has caught up once the store shows the history above; its gauges are
    // read on their own schedule, so wait (at most 10 s) until they say so too.
    let started = Instant::now();
    let text = loop {
        let text = scrape(&metrics_addr);
        let lag = metric(&text, "ringflow_exporter_lag_records{shard=\"0\"}");
        let position = metric(&text, "ringflow_exporter_position{shard=\"0\"}");
        let durable = metric(&text, "ringflow_durable_lsn{shard=\"0\"}");
        if lag == 0.0 && position == durable {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the exporter did not catch up: lag {lag}, position {position}, durable {durable}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let shard = "{shard=\"0\"";
    assert_eq!(
        metric(
            &text,
            &format!("ringflow_commands_total{shard},command=\"create_instance\"}}")
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            &format!("ringflow_commands_total{shard},command=\"fail_job\"}}")
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            &format!("ringflow_commands_total{shard},command=\"complete_job\"}}")
        ),
        1.0
    );
    assert_eq!(metric(&text, "ringflow_live_instances{shard=\"0\"}"), 1.0);
    assert_eq!(metric(&text, "ringflow_open_jobs{shard=\"0\"}"), 1.0);
    assert!(metric(&text, "ringflow_journal_batch_records_count{shard=\"0\"}") >= 1.0);
    // Two creates (counted once durable), two failures and a completion at least; the
    // activations are long polls, left out.
    assert!(metric(&text, "ringflow_request_latency_seconds_count{shard=\"0\"}") >= 5.0);
    assert!(
        metric(
            &text,
            "ringflow_journal_fdatasync_seconds_count{shard=\"0\"}"
        ) >= 1.0
    );
    assert!(metric(&text, "ringflow_exporter_transactions_total{shard=\"0\"}") >= 1.0);
    assert_eq!(
        metric(&text, "ringflow_exporter_lag_records{shard=\"0\"}"),
        0.0
    );
    assert_eq!(
        metric(&text, "ringflow_exporter_position{shard=\"0\"}"),
        metric(&text, "ringflow_durable_lsn{shard=\"0\"}")
    );
    // A refused command is counted by its code.
    let refused = client.done(&Request::CompleteJob {
        job_key: first.key,
        variables: "{}".into(),
    });
    assert!(refused.is_err());
    let text = scrape(&metrics_addr);
    assert_eq!(
        metric(
            &text,
            &format!("ringflow_rejections_total{shard},code=\"JOB_NOT_FOUND\"}}")
        ),
        1.0
    );
}

/// `--history-level instances`: process instances, jobs and variables are exported, element
/// instances are not, and `ringflow instance` says so.
#[test]
fn history_level_instances_leaves_out_the_element_instances() {
    let data = data_dir("instances-level");
    let server = Server::start(&data, "127.0.0.1:0", &["--history-level", "instances"]);
    let addr = server.addr.clone();
    assert!(
        server_log(&data).contains("history level instances"),
        "{}",
        server_log(&data)
    );
    let mut client = connect(&addr, &data);
    deploy(&mut client);
    let key = create(&mut client, r#"{"order": "B-1"}"#, "").expect("create");
    let jobs = activate(&mut client);
    assert_eq!(jobs.len(), 1);
    client
        .done(&Request::CompleteJob {
            job_key: jobs[0].key,
            variables: r#"{"paid": true}"#.into(),
        })
        .expect("complete");
    let data_arg = data.to_str().expect("utf-8");
    let detail = history_json(
        &["instance", &key.to_string(), "--data", data_arg, "--json"],
        |value| value["instance"]["state"] == "completed",
    );
    assert_eq!(detail["elements"], Value::Array(Vec::new()), "{detail}");
    assert_eq!(detail["jobs"][0]["state"], "completed", "{detail}");
    let names: Vec<&str> = detail["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        names.contains(&"order") && names.contains(&"paid"),
        "{names:?}"
    );
    let text = history(&["instance", &key.to_string(), "--data", data_arg]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("no element instances in the store") && text.contains("e2e-work"),
        "{text}"
    );
    let mut conn = Conn::open(&shard_store(&data, 0)).expect("open the store");
    let rows = conn
        .query("SELECT COUNT(*) FROM element_instances", &[])
        .expect("count");
    assert_eq!(rows[0][0].int(), Some(0));
}

/// `--history-ttl 1s`: a completed instance leaves the store about its TTL plus
/// `HISTORY_CLEANUP_INTERVAL_MILLIS` (10 s) after it ended, with its rows, counted by
/// `ringflow_history_cleaned_instances_total`; an active instance stays.
#[test]
fn history_past_its_ttl_is_deleted_and_active_instances_stay() {
    let data = data_dir("history-ttl");
    let mut server = Server::start(
        &data,
        "127.0.0.1:0",
        &["--history-ttl", "1s", "--metrics", "127.0.0.1:0"],
    );
    let addr = server.addr.clone();
    let metrics = server.metrics_addr();
    assert!(
        server_log(&data).contains("ended instances deleted after 1s"),
        "{}",
        server_log(&data)
    );
    let mut client = connect(&addr, &data);
    deploy(&mut client);
    let done = create(&mut client, r#"{"order": "T-1"}"#, "").expect("create");
    let jobs = activate(&mut client);
    assert_eq!(jobs.len(), 1);
    client
        .done(&Request::CompleteJob {
            job_key: jobs[0].key,
            variables: "{}".into(),
        })
        .expect("complete");
    let waiting = create(&mut client, r#"{"order": "T-2"}"#, "").expect("create");
    let data_arg = data.to_str().expect("utf-8");
    history_json(
        &["instance", &done.to_string(), "--data", data_arg, "--json"],
        |value| value["instance"]["state"] == "completed",
    );
    let started = Instant::now();
    while instance_keys_in(&shard_store(&data, 0)).contains(&done) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "instance {done} still in the store:\n{}",
            server_log(&data)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(instance_keys_in(&shard_store(&data, 0)), vec![waiting]);
    let mut conn = Conn::open(&shard_store(&data, 0)).expect("open the store");
    for table in ["element_instances", "jobs", "variables"] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE process_instance_key = {done}");
        assert_eq!(
            conn.query(&sql, &[]).expect(&sql)[0][0].int(),
            Some(0),
            "{table}"
        );
    }
    let output = history(&["instance", &done.to_string(), "--data", data_arg]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("deleted after it ended by the node's --history-ttl"),
        "{output:?}"
    );
    let text = scrape(&metrics);
    assert_eq!(
        metric(
            &text,
            "ringflow_history_cleaned_instances_total{shard=\"0\"}"
        ),
        1.0,
        "{text}"
    );
}

/// The keys of the instances in a SQLite file of the cold store.
fn instance_keys_in(store: &Target) -> Vec<u64> {
    let mut conn = Conn::open(store).expect("open the store");
    let rows = conn
        .query("SELECT key FROM process_instances ORDER BY key", &[])
        .expect("keys");
    rows.iter()
        .map(|row| row[0].int().expect("a key") as u64)
        .collect()
}

/// Each shard's exporter writes a file of its own (DATA/cold/shard-N.db) holding only its
/// shard's instances, and the CLI reads them together: the list merges both files, newest
/// first, and one instance is found in its shard's file.
#[test]
fn two_shards_write_a_file_each_and_the_cli_reads_them_together() {
    let data = data_dir("two-shards");
    let server = Server::start(&data, "127.0.0.1:0", &["--shards", "2"]);
    let addr = server.addr.clone();
    let mut client = connect(&addr, &data);
    deploy(&mut client);
    let mut keys = Vec::new();
    for n in 0..8 {
        keys.push(create(&mut client, &format!(r#"{{"n": {n}}}"#), "").expect("create"));
        std::thread::sleep(Duration::from_millis(3));
    }
    let shard_of = |key: u64| ringflow_core::Key(key).shard();
    for shard in [0, 1] {
        assert!(keys.iter().any(|key| shard_of(*key) == shard), "{keys:?}");
    }
    let data_arg = data.to_str().expect("utf-8");
    let listed = history_json(&["instances", "--data", data_arg, "--json"], |value| {
        value
            .as_array()
            .is_some_and(|list| list.len() == keys.len())
    });
    let listed: Vec<u64> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|row| row["key"].as_u64().expect("a key"))
        .collect();
    // Newest first: created one after the other, each a few ms after the one before.
    let newest_first: Vec<u64> = keys.iter().rev().copied().collect();
    assert_eq!(listed, newest_first);
    // --limit applies to the merged list.
    let two = history_json(
        &["instances", "--data", data_arg, "--json", "--limit", "2"],
        |_| true,
    );
    assert_eq!(two.as_array().map(Vec::len), Some(2));
    assert_eq!(two[0]["key"].as_u64(), Some(newest_first[0]));
    for key in &keys {
        let detail = history_json(
            &["instance", &key.to_string(), "--data", data_arg, "--json"],
            |_| true,
        );
        assert_eq!(detail["instance"]["key"].as_u64(), Some(*key));
        assert_eq!(
            detail["instance"]["shard"].as_u64(),
            Some(u64::from(shard_of(*key)))
        );
    }
    for shard in [0, 1] {
        let mut expected: Vec<u64> = keys
            .iter()
            .copied()
            .filter(|key| shard_of(*key) == shard)
            .collect();
        expected.sort_unstable();
        assert_eq!(instance_keys_in(&shard_store(&data, shard)), expected);
    }
    assert!(!data.join("cold.db").exists());
}

/// A data directory made before the file per shard has its history in DATA/cold.db: a node
/// started on it without --cold-store keeps writing there, and the CLI reads it.
#[test]
fn a_data_directory_with_a_cold_db_from_before_keeps_it() {
    let data = data_dir("cold-db-before");
    let earlier = Target::Sqlite(data.join("cold.db"));
    let mut conn = Conn::open(&earlier).expect("make the store");
    ringflow_shard::cold::schema::migrate(&mut conn).expect("migrate");
    drop(conn);
    let server = Server::start(&data, "127.0.0.1:0", &[]);
    let addr = server.addr.clone();
    let mut client = connect(&addr, &data);
    deploy(&mut client);
    let key = create(&mut client, "{}", "").expect("create");
    let data_arg = data.to_str().expect("utf-8");
    let detail = history_json(
        &["instance", &key.to_string(), "--data", data_arg, "--json"],
        |_| true,
    );
    assert_eq!(detail["instance"]["key"].as_u64(), Some(key));
    assert_eq!(instance_keys_in(&earlier), vec![key]);
    assert!(
        !data.join("cold").exists(),
        "no file per shard beside cold.db"
    );
    let log = server_log(&data);
    assert!(
        log.contains(&format!(
            "cold store: SQLite {}",
            data.join("cold.db").display()
        )),
        "{log}"
    );
}

#[test]
fn an_unreachable_cold_store_stops_the_start_with_a_message() {
    let data = data_dir("unreachable");
    let output = Command::new(BIN)
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--shards", "1"])
        .args([
            "--cold-store",
            "postgres://nobody:nothing@127.0.0.1:1/nothing",
        ])
        .output()
        .expect("run ringflow serve");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cold store (PostgreSQL postgres://…@127.0.0.1:1/nothing)"),
        "{stderr}"
    );
    assert!(stderr.contains("--cold-store none"), "{stderr}");
    assert!(
        !stderr.contains("nothing@"),
        "the password is not printed: {stderr}"
    );
}

#[test]
fn a_cold_store_that_cannot_be_written_makes_the_shard_refuse_new_work_with_busy() {
    let data = data_dir("busy");
    let mut server = Server::start(
        &data,
        "127.0.0.1:0",
        &[
            "--export-lag-warn-records",
            "2",
            "--export-lag-max-records",
            "4",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let (addr, metrics_addr) = (server.addr.clone(), server.metrics_addr());
    let config = ClientConfig {
        busy_retries: 0,
        ..ClientConfig::default()
    };
    // Another writer holds the SQLite store's write lock: the exporter waits, then fails
    // and retries, while durable records pile up.
    let store = shard_store(&data, 0);
    let mut blocker = Conn::open(&store).expect("open the store");
    blocker
        .batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    let mut client = Client::connect_with(&addr, config).expect("connect");
    deploy(&mut client);
    let mut created = 0;
    let error = loop {
        match create(&mut client, "{}", "") {
            Ok(_) => created += 1,
            Err(error) => break error,
        }
        assert!(created < 10, "never refused");
    };
    // Deploy and four creations make five records not exported: over the limit of four.
    assert_eq!(created, 4);
    let ClientError::Server(error) = error else {
        panic!("not a server error: {error}");
    };
    assert_eq!(error.code, ErrorCode::Busy);
    assert!(error.message.contains("cold store"), "{}", error.message);
    assert!(
        error.message.contains("over the exporter lag limit of 4"),
        "{}",
        error.message
    );
    // The log says when the refusing began.
    wait_for_log(&data, "the exporter lag is over its limit");
    // Work already running goes on: its job can be completed.
    let jobs = activate(&mut client);
    assert_eq!(jobs.len(), 4);
    client
        .done(&Request::CompleteJob {
            job_key: jobs[0].key,
            variables: "{}".into(),
        })
        .expect("completing running work is not refused");
    let text = scrape(&metrics_addr);
    assert!(
        metric(
            &text,
            "ringflow_busy_rejections_total{shard=\"0\",cause=\"exporter_lag\"}"
        ) >= 1.0
    );
    assert_eq!(
        metric(&text, "ringflow_exporter_lag_alarm{shard=\"0\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "ringflow_exporter_position{shard=\"0\"}"),
        0.0
    );
    // The lock goes: the exporter catches up and new work is taken again.
    blocker.batch("ROLLBACK").expect("release the write lock");
    let started = Instant::now();
    while create(&mut client, "{}", "").is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "still refused");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_log(&data, "the exporter lag is under its limit again");
    let instances = history_json(
        &["instances", "--data", data.to_str().unwrap(), "--json"],
        |value| value.as_array().is_some_and(|list| list.len() == 5),
    );
    assert_eq!(instances.as_array().expect("list").len(), 5);
}

#[test]
fn after_kill_9_with_the_exporter_behind_every_snapshot_the_history_is_complete_and_single() {
    let data = data_dir("kill9");
    let flags = ["--snapshot-every-records", "15"];
    let mut server = Server::start(&data, "127.0.0.1:0", &flags);
    let addr = server.addr.clone();
    // The exporter stays stuck while snapshots pass it.
    let store = shard_store(&data, 0);
    let mut blocker = Conn::open(&store).expect("open the store");
    blocker
        .batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    let mut client = connect(&addr, &data);
    deploy(&mut client);
    let mut created = Vec::new();
    for n in 0..30 {
        created.push(create(&mut client, &format!(r#"{{"n": {n}}}"#), "").expect("create"));
    }
    let mut completed = Vec::new();
    for job in activate(&mut client) {
        client
            .done(&Request::CompleteJob {
                job_key: job.key,
                variables: r#"{"done": true}"#.into(),
            })
            .expect("complete");
        completed.push(job.process_instance_key);
    }
    assert_eq!(completed.len(), 10);
    let snapshots = std::fs::read_dir(data.join("shard-0").join("snapshots"))
        .expect("snapshots")
        .count();
    assert!(snapshots >= 2, "snapshots were taken ({snapshots})");
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    blocker.batch("ROLLBACK").expect("release");
    drop(blocker);

    let restarted: Vec<&str> = flags
        .iter()
        .copied()
        .chain(["--metrics", "127.0.0.1:0"])
        .collect();
    // On the same port: the killed server's sockets close a moment after it is gone, and
    // the new one waits for them.
    let mut server = Server::start(&data, &addr, &restarted);
    let metrics_addr = server.metrics_addr();
    // The gauges show the recovered state before any new command: from the first scrape
    // that has the shard (it registers once recovered).
    let shard = "{shard=\"0\"}";
    let started = Instant::now();
    let text = loop {
        if TcpStream::connect(&metrics_addr).is_ok() {
            let text = scrape(&metrics_addr);
            if text.contains(&format!("ringflow_durable_lsn{shard}")) {
                break text;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no metrics");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        metric(&text, &format!("ringflow_durable_lsn{shard}")) > 0.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("ringflow_live_instances{shard}")),
        20.0,
        "{text}"
    );
    let data_arg = data.to_str().expect("utf-8");
    let all = history_json(
        &["instances", "--data", data_arg, "--limit", "1000", "--json"],
        |value| value.as_array().is_some_and(|list| list.len() >= 30),
    );
    let keys: std::collections::BTreeSet<u64> = all
        .as_array()
        .expect("list")
        .iter()
        .map(|row| row["key"].as_u64().expect("key"))
        .collect();
    assert_eq!(
        keys,
        created.iter().copied().collect(),
        "every instance, once"
    );
    let done = history_json(
        &[
            "instances",
            "--data",
            data_arg,
            "--state",
            "completed",
            "--limit",
            "1000",
            "--json",
        ],
        |value| value.as_array().is_some_and(|list| list.len() >= 10),
    );
    assert_eq!(done.as_array().expect("list").len(), 10);
    for key in completed {
        let detail = history_json(
            &["instance", &key.to_string(), "--data", data_arg, "--json"],
            |_| true,
        );
        assert_eq!(detail["instance"]["state"], "completed");
        assert_eq!(detail["elements"].as_array().expect("elements").len(), 4);
        assert_eq!(detail["jobs"][0]["state"], "completed");
    }
}

/// Instances on shard 0 that wait for a message published on shard 1.
struct MessageFromAnotherShard;

impl ringflow_shard::load::Workload for MessageFromAnotherShard {
    fn process_id(&self) -> &str {
        "wait-for-go"
    }

    fn job_types(&self) -> Vec<String> {
        Vec::new()
    }

    fn instance(&self, n: u64) -> ringflow_shard::load::InstanceSpec {
        self.instance_in(n, &|_| 0)
    }

    fn instance_in(
        &self,
        n: u64,
        shard_of: &dyn Fn(&str) -> u16,
    ) -> ringflow_shard::load::InstanceSpec {
        let on = |prefix: &str, shard: u16| {
            (0..10_000)
                .map(|i| format!("{prefix}-{n}-{i}"))
                .find(|key| shard_of(key) == shard)
                .expect("a key of that shard")
        };
        let pay = on("pay", 1);
        ringflow_shard::load::InstanceSpec {
            variables: format!(r#"{{"pay": "{pay}"}}"#),
            business_key: on("home", 0),
            messages: vec![ringflow_wire::PublishMessage {
                name: "go".into(),
                correlation_key: pay,
                ttl_ms: 60_000,
                ..ringflow_wire::PublishMessage::default()
            }],
        }
    }

    fn job_result(&self, _job: &ringflow_wire::Job) -> String {
        String::new()
    }
}

/// The load generator (`ringflow demo`, `ringflow-bench run`) sends a publish refused with
/// BUSY again on its own: here the instances' shard takes every create while the shard of
/// their messages refuses publishes (its cold store file is locked, its exporter lag over
/// the limit), so an instance would wait for ever for a publish that was not sent again.
#[test]
fn a_publish_refused_with_busy_is_sent_again_and_every_instance_completes() {
    let data = data_dir("publish-busy");
    let server = Server::start(
        &data,
        "127.0.0.1:0",
        &[
            "--shards",
            "2",
            "--export-lag-warn-records",
            "10",
            "--export-lag-max-records",
            "20",
        ],
    );
    let addr = server.addr.clone();
    let mut client = connect(&addr, &data);
    client
        .deploy(vec![Resource {
            name: "wait-for-go.bpmn".into(),
            content: WAIT_FOR_GO.as_bytes().to_vec(),
        }])
        .expect("deploy");
    let mut blocker = Conn::open(&shard_store(&data, 1)).expect("open shard 1's store");
    blocker
        .batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1_500));
        blocker.batch("ROLLBACK").expect("release the write lock");
    });
    let config = ringflow_shard::load::Config {
        topology: client.topology().clone(),
        mode: ringflow_shard::load::Mode::Closed { inflight: 8 },
        warmup: Duration::ZERO,
        duration: Duration::from_secs(3),
        drain: Duration::from_secs(30),
        credits: 16,
        fetch_variables: Vec::new(),
        progress: false,
        send_tick: Duration::ZERO,
    };
    let outcome =
        ringflow_shard::load::run(&config, &MessageFromAnotherShard).expect("the load runs");
    release.join().expect("the release thread");
    let refused = outcome.errors.get("publish: BUSY").copied().unwrap_or(0);
    assert!(refused > 0, "no publish was refused: {:?}", outcome.errors);
    // Creates may meet shard 0's exporter a little behind too (the limit is tiny).
    assert!(
        outcome.errors.keys().all(|kind| kind.ends_with(": BUSY")),
        "only refusals: {:?}",
        outcome.errors
    );
    assert!(outcome.completed > 0);
    assert_eq!(
        outcome.unfinished, 0,
        "instances left waiting ({} completed, refusals {:?})",
        outcome.completed, outcome.errors
    );
}

const WAIT_FOR_GO: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="https://ringflow.dev/test">
<bpmn:process id="wait-for-go" isExecutable="true">
<bpmn:startEvent id="start"/>
<bpmn:intermediateCatchEvent id="wait"><bpmn:messageEventDefinition messageRef="go"/></bpmn:intermediateCatchEvent>
<bpmn:endEvent id="end"/>
<bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait"/>
<bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="end"/>
</bpmn:process>
<bpmn:message id="go" name="go"><bpmn:extensionElements><zeebe:subscription correlationKey="=pay"/></bpmn:extensionElements></bpmn:message>
</bpmn:definitions>
"#;

/// A cold store written from another data directory is further along than this one's
/// journal: exporting on would skip the new history and overwrite old rows, so the node does
/// not start, and says why.
#[test]
fn a_cold_store_ahead_of_the_journal_is_refused_at_start() {
    let root = data_dir("store-ahead");
    let store = format!("sqlite:{}", root.join("shared.db").display());
    let first = root.join("first");
    std::fs::create_dir_all(&first).expect("mkdir");
    {
        let server = Server::start(&first, "127.0.0.1:0", &["--cold-store", &store]);
        let mut client = connect(&server.addr, &first);
        deploy(&mut client);
        let key = create(&mut client, "{}", "").expect("create");
        history_json(
            &[
                "instance",
                &key.to_string(),
                "--cold-store",
                &store,
                "--json",
            ],
            |_| true,
        );
    }
    let second = root.join("second");
    std::fs::create_dir_all(&second).expect("mkdir");
    let (status, stderr) = common::serve_until_it_exits(&[
        "--data".as_ref(),
        second.as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--shards".as_ref(),
        "1".as_ref(),
        "--cold-store".as_ref(),
        store.as_ref(),
    ]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("past the end of its journal here (LSN 0)")
            && stderr.contains("another data directory"),
        "{stderr}"
    );
}
