//! End to end: the real `ringflow serve` binary on a data directory on a real filesystem,
//! driven through the wire client and the `ringflow` CLI.

mod common;
use common::{ServerLog, activate_all, metric, scrape};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ringflow_wire::client::{Client, ClientConfig, ClientError, Connection, JobOutcome, JobWorker};
use ringflow_wire::frame::FrameReader;
use ringflow_wire::message::{request_frame, response_frame};
use ringflow_wire::{
    ActivateJobs, CreateInstance, ErrorCode, Message, PublishMessage, Request, Resource, Response,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ringflow");

/// One service task of type `e2e-work` (shared with history_e2e.rs).
const ONE_TASK: &str = include_str!("fixtures/one-task.bpmn");

fn data_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("serve-e2e")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the data directory");
    dir
}

/// A port nothing listens on (for a client that must find no server): bound, not listening,
/// for as long as the returned value lives.
fn port_without_server() -> ringflow_shard::server::ports::BoundPorts {
    ringflow_shard::server::ports::bind_ports("127.0.0.1", 0, 1).expect("a port")
}

/// A `ringflow serve` started by a test; its stderr goes to DATA/server.log.
struct Server {
    child: Child,
    addr: String,
    log: ServerLog,
}

impl Server {
    /// Starts a server on `data`; `addr` `127.0.0.1:0` lets it pick free ports (then
    /// [`Server::addr`] is the one it reported).
    fn start(data: &Path, addr: &str, extra: &[&str]) -> Server {
        Server::start_with_env(data, addr, extra, &[])
    }

    /// [`Server::start`] with variables set in the server's environment.
    fn start_with_env(data: &Path, addr: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let (log, file) = ServerLog::open(&data.join("server.log"));
        let mut command = Command::new(BIN);
        command.envs(env.iter().copied());
        command.arg("serve").arg("--data").arg(data);
        if !extra.contains(&"--cluster") {
            command.args(["--listen", addr]);
        }
        let child = command
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
        server.wait_ready();
        server
    }

    /// The metrics address the server reported (for `--metrics 127.0.0.1:0`).
    fn metrics_addr(&mut self) -> String {
        self.log.metrics_addr(&mut self.child)
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(client) = Client::connect(&self.addr) {
                // Every shard of this node answers before the test goes on.
                let host = self.addr.rsplit_once(':').expect("host:port").0;
                let shards = client.topology().shard_count() as u16;
                let ready = (0..shards).all(|shard| {
                    let (shard_host, port) = client.topology().address_of(shard).expect("address");
                    shard_host != host || TcpStream::connect((shard_host, port)).is_ok()
                });
                if ready {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("ringflow serve exited with {status}: {}", self.log.text());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "ringflow serve did not start listening on {}: {}",
                self.addr,
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.addr).expect("connect")
    }

    /// SIGTERM, then the exit status and what it printed.
    fn terminate(self) -> (std::process::ExitStatus, String) {
        self.stop_with(libc::SIGTERM)
    }

    /// `signal`, then the exit status and what it printed.
    fn stop_with(mut self, signal: i32) -> (std::process::ExitStatus, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
        let status = self.child.wait().expect("wait");
        (status, self.log.text())
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pids of the processes whose command line (arguments joined by spaces) starts with
/// `prefix`, from /proc.
fn processes_running(prefix: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|bytes| {
                let line: Vec<String> = bytes
                    .split(|byte| *byte == 0)
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect();
                line.join(" ").starts_with(prefix)
            })
        })
        .collect()
}

fn cli(addr: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--addr", addr])
        .output()
        .expect("run the ringflow CLI")
}

fn cli_json(addr: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = cli(addr, &all);
    assert!(
        output.status.success(),
        "ringflow {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "ringflow {args:?} printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A server of `shards` shards on free ports of 127.0.0.1 with a fresh data directory
/// named `name`; returns it with its data directory and address.
fn start_server(name: &str, shards: u16) -> (Server, PathBuf, String) {
    start_server_with(name, shards, &[])
}

/// [`start_server`] with more options for `ringflow serve`.
fn start_server_with(name: &str, shards: u16, extra: &[&str]) -> (Server, PathBuf, String) {
    let data = data_dir(name);
    let shards = shards.to_string();
    let mut args = vec!["--shards", shards.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start(&data, "127.0.0.1:0", &args);
    let addr = server.addr.clone();
    (server, data, addr)
}

/// A create of `one-task` that awaits its result for `timeout_ms`.
fn awaited_one_task(timeout_ms: u32) -> CreateInstance {
    CreateInstance {
        await_result: true,
        await_timeout_ms: timeout_ms,
        ..create("one-task", "", "")
    }
}

/// Deploys one BPMN file to every shard.
fn deploy(client: &mut Client, name: &str, xml: &str) {
    client
        .deploy(vec![Resource {
            name: name.into(),
            content: xml.as_bytes().to_vec(),
        }])
        .expect("deploy");
}

/// One ActivateJobs of up to 1,000 jobs of `job_type`, long-polling the last shard it asks.
fn activate(client: &mut Client, job_type: &str, long_poll_ms: u32) -> Vec<ringflow_wire::Job> {
    client
        .activate_jobs(ActivateJobs {
            job_type: job_type.into(),
            worker: "e2e".into(),
            max_jobs: 1_000,
            lease_ms: 60_000,
            long_poll_ms,
            fetch_variables: Vec::new(),
        })
        .expect("activate")
}

fn deploy_one_task(client: &mut Client) {
    let deployed = client
        .deploy(vec![Resource {
            name: "one-task.bpmn".into(),
            content: ONE_TASK.as_bytes().to_vec(),
        }])
        .expect("deploy");
    assert_eq!(deployed.processes[0].bpmn_process_id, "one-task");
}

fn create(process: &str, variables: &str, key: &str) -> CreateInstance {
    CreateInstance {
        bpmn_process_id: process.into(),
        variables: variables.into(),
        business_key: key.into(),
        ..CreateInstance::default()
    }
}

#[test]
fn a_bind_host_that_is_no_host_or_does_not_resolve_is_an_error_not_a_panic() {
    let data = data_dir("bad-bind");
    for (bind, status, says) in [
        ("127.0.0.1:26900", 2, "without a port"),
        (
            "nosuchhost.invalid",
            2,
            "cannot listen on nosuchhost.invalid",
        ),
    ] {
        let output = Command::new(BIN)
            .args([
                "serve",
                "--shards",
                "1",
                "--cold-store",
                "none",
                "--bind",
                bind,
            ])
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(&data)
            .output()
            .expect("run ringflow serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(status), "{bind}: {stderr}");
        assert!(stderr.contains(says), "{bind}: {stderr}");
        assert!(!stderr.contains("panicked"), "{bind}: {stderr}");
    }
}

#[test]
fn a_frame_of_more_commands_than_a_batch_holds_gets_every_answer() {
    // 6,000 publishes in one frame: the reader submits them one after the other without
    // yielding, so the open batch fills up (BATCH_RECORDS_MAX_DEFAULT, 4,096) and the rest
    // wait for room in tasks of their own; every one is answered, each with its own key.
    let (server, _, addr) = start_server("full-batch", 1);
    let mut connection = Connection::open(&addr, &ClientConfig::default()).expect("connect");
    let requests: Vec<Request> = (0..6_000)
        .map(|n| {
            Request::PublishMessage(PublishMessage {
                name: "tick".into(),
                correlation_key: format!("key-{n}"),
                ttl_ms: 60_000,
                ..PublishMessage::default()
            })
        })
        .collect();
    let ids = connection.send_batch(&requests).expect("send");
    let mut keys = std::collections::BTreeSet::new();
    for id in ids {
        match connection
            .wait_for(id, Duration::from_secs(30))
            .expect("an answer")
        {
            Response::Done { key, .. } => assert!(keys.insert(key), "key {key} twice"),
            other => panic!("expected DONE, got {other:?}"),
        }
    }
    assert_eq!(keys.len(), 6_000);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// A process that ends in its create's own command: start, end.
const ENDS_AT_ONCE: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="e2e-at-once">
  <bpmn:process id="ends-at-once" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

#[test]
fn awaited_creates_get_one_answer_each_whether_they_end_at_once_wait_for_room_or_time_out() {
    // One frame of awaited creates, more than a batch holds (BATCH_RECORDS_MAX_DEFAULT,
    // 4,096), so the last ones wait for room in tasks of their own. Most are of a process
    // that ends in the create's own command, so its result is handed over in the same
    // release as the create's own answer; the last few wait for a job nobody does and time
    // out. Every create gets exactly one answer, the right one for its request id.
    let (server, _, addr) = start_server("await-at-once", 1);
    let mut client = server.client();
    deploy_one_task(&mut client);
    deploy(&mut client, "ends-at-once.bpmn", ENDS_AT_ONCE);
    const AT_ONCE: usize = 5_000;
    const TIMING_OUT: usize = 3;
    let mut requests: Vec<Request> = (0..AT_ONCE)
        .map(|n| {
            Request::CreateInstance(CreateInstance {
                await_result: true,
                ..create("ends-at-once", &format!(r#"{{"n": {n}}}"#), "")
            })
        })
        .collect();
    requests.extend((0..TIMING_OUT).map(|_| Request::CreateInstance(awaited_one_task(300))));
    let mut connection = Connection::open(&addr, &ClientConfig::default()).expect("connect");
    let ids = connection.send_batch(&requests).expect("send");
    let mut answers: std::collections::BTreeMap<u64, Vec<Response>> =
        std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while answers.len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} answered",
            answers.len(),
            ids.len()
        );
        if let Some((id, response)) = connection
            .recv_timeout(Duration::from_secs(1))
            .expect("receive")
        {
            answers.entry(id).or_default().push(response);
        }
    }
    // Nothing more comes: no create is answered twice.
    assert_eq!(
        connection
            .recv_timeout(Duration::from_millis(500))
            .expect("receive"),
        None
    );
    let mut instances = std::collections::BTreeSet::new();
    for (n, id) in ids.iter().enumerate() {
        let answered = &answers[id];
        assert_eq!(answered.len(), 1, "request {id}: {answered:?}");
        match (&answered[0], n < AT_ONCE) {
            (Response::InstanceResult(result), true) => {
                let variables: Value = serde_json::from_str(&result.variables).expect("JSON");
                assert_eq!(
                    variables["n"], n,
                    "request {id} got another create's result"
                );
                assert_eq!(result.created.bpmn_process_id.as_ref(), "ends-at-once");
                assert!(instances.insert(result.created.process_instance_key));
            }
            (Response::Error(error), false) => {
                assert_eq!(error.code, ErrorCode::Timeout, "{}", error.message);
                assert!(
                    error.message.contains("within 300 ms")
                        && error.message.contains("goes on running"),
                    "{}",
                    error.message
                );
            }
            (other, _) => panic!("request {id} (create {n}): {other:?}"),
        }
    }
    // The instances that timed out go on running: their jobs are there.
    assert_eq!(activate_all(&mut client, "peek").len(), TIMING_OUT);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn an_awaited_result_is_answered_unavailable_when_the_server_shuts_down() {
    let (server, _, addr) = start_server("await-shutdown", 1);
    let mut client = server.client();
    deploy_one_task(&mut client);
    // Waits a minute for a result that cannot come (no worker completes the job).
    let mut connection = Connection::open(&addr, &ClientConfig::default()).expect("connect");
    let awaited = awaited_one_task(60_000);
    let ids = connection
        .send_batch(&[Request::CreateInstance(awaited)])
        .expect("send");
    // The instance exists once its job can be activated.
    let asked = Instant::now();
    while activate_all(&mut client, "peek").is_empty() {
        assert!(asked.elapsed() < Duration::from_secs(10), "no job appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(client);
    let stopping = Instant::now();
    let (status, stderr) = server.terminate();
    assert!(status.success(), "SIGTERM: {status}: {stderr}");
    // Answered when the shutdown began, not after the minute.
    assert!(
        stopping.elapsed() < Duration::from_secs(30),
        "the shutdown took {:?}",
        stopping.elapsed()
    );
    match connection
        .wait_for(ids[0], Duration::from_secs(10))
        .expect("an answer")
    {
        Response::Error(error) => {
            assert_eq!(error.code, ErrorCode::Unavailable, "{}", error.message);
            assert!(
                error.message.contains("shutting down")
                    && error.message.contains("goes on running"),
                "{}",
                error.message
            );
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
}

#[test]
fn deploy_create_work_and_await_the_result() {
    let (server, data, addr) = start_server("happy", 2);

    // The CLI: topology, deploy, create.
    let topology = cli_json(&addr, &["topology"]);
    assert_eq!(topology["shards"], 2);
    let model = data.join("one-task.bpmn");
    std::fs::write(&model, ONE_TASK).expect("write the model");
    let deployed = cli_json(&addr, &["deploy", model.to_str().expect("utf-8")]);
    assert_eq!(deployed["processes"][0]["bpmnProcessId"], "one-task");
    assert_eq!(deployed["processes"][0]["version"], 1);
    let created = cli_json(
        &addr,
        &[
            "create",
            "one-task",
            "--vars",
            r#"{"n": 1}"#,
            "--key",
            "order-4711",
        ],
    );
    let instance = created["processInstanceKey"].as_u64().expect("a key");
    // The business key decides the shard: the instance key carries it in its top bits.
    let mut client = server.client();
    let owner = client.topology().shard_of_text("order-4711");
    assert_eq!(instance >> 52, u64::from(owner));

    // Messages from the CLI: buffered with a TTL; the same message id again is refused.
    let publish = [
        "publish",
        "paid",
        "--correlation-key",
        "order-4711",
        "--ttl",
        "1m",
        "--message-id",
        "p-1",
    ];
    let published = cli_json(&addr, &publish);
    let message_key = published["key"].as_u64().expect("a message key");
    assert_eq!(message_key >> 52, u64::from(owner));
    let output = cli(&addr, &publish);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("ringflow: ALREADY_EXISTS: "), "{stderr}");

    // A worker from the CLI runs a command per job; its stdout completes the job.
    let worker = cli_json(
        &addr,
        &[
            "worker",
            "e2e-work",
            "--count",
            "1",
            "--exec",
            r#"read vars; echo "{\"seen\": $vars}""#,
        ],
    );
    assert_eq!(worker["outcome"], "completed");
    assert_eq!(worker["job"]["processInstanceKey"], instance);
    assert_eq!(worker["job"]["variables"]["n"], 1);

    // A command that runs past the worker's lease is killed with its process group, and
    // the job failed saying so, instead of holding the worker for good.
    let stuck = client
        .create_instance(create("one-task", r#"{"n": 2}"#, ""))
        .expect("create")
        .process_instance_key;
    let started = Instant::now();
    let worker = cli_json(
        &addr,
        &[
            "worker",
            "e2e-work",
            "--count",
            "1",
            "--lease",
            "1s",
            "--exec",
            "sleep 31.25; echo '{}'",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{worker}");
    assert_eq!(worker["outcome"], "failed", "{worker}");
    assert_eq!(worker["job"]["processInstanceKey"], stuck);
    let message = worker["message"].as_str().expect("a message");
    assert!(
        message.contains("was killed: it ran out of the job's lease (900 ms given"),
        "{message}"
    );
    let sleeping = processes_running("sleep 31.25");
    assert!(
        sleeping.is_empty(),
        "the command's group lives on: {sleeping:?}"
    );
    // Ready again with one retry fewer (the exiting worker's subscription may take it for
    // its 1 s lease first; an expired lease keeps the retries).
    let retried = loop {
        let retried = cli_json(&addr, &["jobs", "activate", "e2e-work", "--max", "5"]);
        if retried["jobs"][0].is_object() || started.elapsed() > Duration::from_secs(20) {
            break retried;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let job = &retried["jobs"][0];
    assert_eq!(job["processInstanceKey"], stuck, "{retried}");
    assert_eq!(job["retries"], 2, "one retry fewer: {retried}");
    cli_json(
        &addr,
        &[
            "jobs",
            "complete",
            &job["key"].as_u64().expect("key").to_string(),
        ],
    );

    // A worker stopped by a signal ends the command it runs (its own process group does
    // not get the terminal's signals) and fails the job, instead of waiting for it.
    let stopped = client
        .create_instance(create("one-task", r#"{"n": 3}"#, ""))
        .expect("create")
        .process_instance_key;
    let worker = Command::new(BIN)
        .args(["worker", "e2e-work", "--json", "--addr", &addr])
        .args(["--exec", "sleep 31.75; echo '{}'"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the worker");
    let running = Instant::now();
    while processes_running("sleep 31.75").is_empty() {
        assert!(
            running.elapsed() < Duration::from_secs(20),
            "the command never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(worker.id() as i32, libc::SIGTERM);
    }
    let output = worker.wait_with_output().expect("the worker ends");
    assert!(output.status.success(), "{:?}", output.status);
    assert!(running.elapsed() < Duration::from_secs(20));
    let line: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(line["outcome"], "failed", "{line}");
    assert_eq!(line["job"]["processInstanceKey"], stopped);
    assert!(
        line["message"]
            .as_str()
            .is_some_and(|message| message.contains("the worker was stopped while it ran")),
        "{line}"
    );

    // Create with result on both shards, while a JobWorker completes the jobs.
    let stop = Arc::new(AtomicBool::new(false));
    let topology = client.topology().clone();
    let worker_stop = stop.clone();
    let worker = std::thread::spawn(move || {
        let mut worker = JobWorker::new("e2e-work");
        worker.stop = worker_stop;
        worker.run(&topology, &ClientConfig::default(), |job| {
            JobOutcome::Complete {
                variables: format!(r#"{{"worked": {}}}"#, job.key),
            }
        })
    });
    for key in ["a", "b", "c", "d"] {
        let result = client
            .create_instance_with_result(create("one-task", r#"{"in": 7}"#, key))
            .expect("an awaited result");
        let variables: Value = serde_json::from_str(&result.variables).expect("JSON");
        assert_eq!(variables["in"], 7);
        assert!(variables["worked"].as_u64().is_some(), "{variables}");
        assert_eq!(
            result.created.process_instance_key >> 52,
            u64::from(client.topology().shard_of_text(key))
        );
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker thread").expect("worker");

    // An awaited result that does not come in time is a TIMEOUT, and the instance lives on.
    // It is never given up before its time (the server's sweeper rounds deadlines up).
    let mut slow = create("one-task", "", "");
    slow.await_timeout_ms = 200;
    let asked = Instant::now();
    let error = client
        .create_instance_with_result(slow)
        .expect_err("no worker runs");
    assert_eq!(error.code(), Some(ErrorCode::Timeout), "{error}");
    assert!(
        asked.elapsed() >= Duration::from_millis(200),
        "TIMEOUT after {:?}",
        asked.elapsed()
    );

    let (status, stderr) = server.terminate();
    assert!(status.success(), "SIGTERM: {status}: {stderr}");
    assert!(
        stderr.contains("shard 0 stopped; snapshot at LSN"),
        "{stderr}"
    );
    assert!(
        stderr.contains("shard 1 stopped; snapshot at LSN"),
        "{stderr}"
    );
}

#[test]
fn a_failing_job_becomes_an_incident_which_is_resolved() {
    let (server, _, addr) = start_server("incident", 1);
    let mut client = server.client();
    deploy_one_task(&mut client);
    let created = client
        .create_instance(create("one-task", r#"{"x": 1}"#, ""))
        .expect("create");

    let activated = cli_json(&addr, &["jobs", "activate", "e2e-work", "--max", "5"]);
    let job = activated["jobs"][0]["key"].as_u64().expect("a job");
    assert_eq!(activated["jobs"][0]["retries"], 3);
    // One failure with retries left: the job is ready again at once.
    let failed = cli_json(
        &addr,
        &[
            "jobs",
            "fail",
            &job.to_string(),
            "--retries",
            "1",
            "--message",
            "try again",
        ],
    );
    assert!(failed.get("incidentKey").is_none(), "{failed}");
    let again = cli_json(&addr, &["jobs", "activate", "e2e-work"]);
    assert_eq!(again["jobs"][0]["key"], job);
    assert_eq!(again["jobs"][0]["retries"], 1);
    // No retries left: an incident.
    let failed = cli_json(
        &addr,
        &[
            "jobs",
            "fail",
            &job.to_string(),
            "--retries",
            "0",
            "--message",
            "out of stock",
        ],
    );
    let incident = failed["incidentKey"].as_u64().expect("an incident");
    let none = cli_json(&addr, &["jobs", "activate", "e2e-work"]);
    assert_eq!(none["jobs"].as_array().expect("a list").len(), 0);
    // Give the job retries, resolve the incident: it is handed out again and completes.
    cli_json(
        &addr,
        &["jobs", "update-retries", &job.to_string(), "--retries", "2"],
    );
    let resolved = cli_json(&addr, &["incidents", "resolve", &incident.to_string()]);
    assert_eq!(resolved["key"], incident);
    let back = cli_json(&addr, &["jobs", "activate", "e2e-work"]);
    assert_eq!(back["jobs"][0]["key"], job);
    assert_eq!(back["jobs"][0]["retries"], 2);
    cli_json(
        &addr,
        &[
            "jobs",
            "complete",
            &job.to_string(),
            "--vars",
            r#"{"ok": true}"#,
        ],
    );
    // The instance is gone: cancelling it names that.
    let output = cli(
        &addr,
        &["cancel", &created.process_instance_key.to_string()],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("ringflow: INSTANCE_NOT_FOUND: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // Errors of the CLI are one line and a nonzero status.
    let output = cli(&addr, &["create", "no-such-process"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("ringflow: PROCESS_NOT_FOUND: "),
        "{stderr}"
    );
    let output = cli(&addr, &["create", "one-task", "--vars", "[1]"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--vars must be a JSON object"), "{stderr}");
    // --vars @FILE reads the variables from a file; a file over the variables' limit is
    // refused by its size, unread.
    let vars_file = data_dir("vars-file").join("vars.json");
    std::fs::write(&vars_file, r#"{"from": "a file", "n": 7}"#).expect("write");
    let from_file = format!("@{}", vars_file.display());
    let created = cli_json(&addr, &["create", "one-task", "--vars", &from_file]);
    let instance = created["processInstanceKey"].as_u64().expect("an instance");
    let jobs = cli_json(&addr, &["jobs", "activate", "e2e-work", "--max", "5"]);
    let job = &jobs["jobs"][0];
    assert_eq!(job["processInstanceKey"], instance, "{jobs}");
    assert_eq!(job["variables"]["from"], "a file", "{jobs}");
    let big_file = vars_file.with_file_name("big.json");
    std::fs::File::create(&big_file)
        .and_then(|file| file.set_len(5 << 20))
        .expect("a sparse file");
    let output = cli(
        &addr,
        &[
            "create",
            "one-task",
            "--vars",
            &format!("@{}", big_file.display()),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("big.json: 5242880 bytes, over VARIABLE_DOCUMENT_BYTES_MAX (4194304 bytes)"),
        "{stderr}"
    );
    let output = cli("127.0.0.1:1", &["topology"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.starts_with("ringflow: cannot reach ringflow at 127.0.0.1:1"),
        "{stderr}"
    );
    drop(server);
}

/// Reads frames from a raw socket until one arrives or the server closes the connection.
fn read_answer(stream: &mut TcpStream) -> Option<Vec<ringflow_wire::Envelope>> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = FrameReader::new(64 * 1024 * 1024);
    let mut buffer = [0u8; 65536];
    loop {
        if let Some(frame) = reader.next_frame().expect("the server sends valid frames") {
            return Some(frame);
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return None,
            Ok(count) => reader.push(&buffer[..count]),
        }
    }
}

fn error_of(envelopes: &[ringflow_wire::Envelope]) -> (ErrorCode, String) {
    match &envelopes[0].message {
        Message::Response(Response::Error(error)) => (error.code, error.message.clone()),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Whether the server closed the connection (after any answer).
fn closed(stream: &mut TcpStream) -> bool {
    read_answer(stream).is_none()
}

#[test]
fn bad_frames_get_an_error_or_a_closed_connection_and_the_server_goes_on() {
    let (server, _, addr) = start_server_with("bad-frames", 1, &["--frame-bytes-max", "65536"]);
    let connect = || TcpStream::connect(&addr).expect("connect");

    // Garbage of a plausible length.
    let mut stream = connect();
    let mut garbage = 64u32.to_le_bytes().to_vec();
    garbage.extend([0xA5u8; 64]);
    stream.write_all(&garbage).expect("write");
    let (code, message) = error_of(&read_answer(&mut stream).expect("an answer"));
    assert_eq!(code, ErrorCode::Malformed, "{message}");
    assert!(closed(&mut stream));

    // A length over frame_bytes_max is refused before the body is sent.
    let mut stream = connect();
    stream
        .write_all(&(10u32 * 1024 * 1024).to_le_bytes())
        .expect("write");
    let (code, message) = error_of(&read_answer(&mut stream).expect("an answer"));
    assert_eq!(code, ErrorCode::FrameTooLarge);
    assert!(message.contains("frame_bytes_max (65536)"), "{message}");
    assert!(closed(&mut stream));

    // A client that writes its whole frame before it reads, as most clients do: the server
    // drains what it sends after the refusal (BAD_FRAME_LINGER_BYTES, 64 MiB, within
    // BAD_FRAME_LINGER_MS), so its write ends, then it reads the refusal and the end of the
    // stream. Closed at once with the bytes unread, the socket was reset and the write failed
    // with a broken pipe or a reset.
    let mut stream = connect();
    let mut whole = (10u32 * 1024 * 1024).to_le_bytes().to_vec();
    whole.resize(4 + 10 * 1024 * 1024, b'x');
    stream
        .write_all(&whole)
        .expect("the whole refused frame is written");
    let (code, message) = error_of(&read_answer(&mut stream).expect("an answer"));
    assert_eq!(code, ErrorCode::FrameTooLarge, "{message}");
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .expect("the end of the stream, not a reset");
    assert!(rest.is_empty(), "{} more bytes", rest.len());

    // The same through the client, sending a whole frame many times the limit: the client
    // reports the server's reason, not "Broken pipe" (it also reads the refusal after EPIPE
    // or ECONNRESET, for a frame larger than the server drains).
    let mut client = Client::connect(&addr).expect("connect");
    let error = client
        .deploy(vec![Resource {
            name: "huge.bpmn".into(),
            content: vec![b'x'; 40 << 20],
        }])
        .expect_err("over frame_bytes_max");
    assert_eq!(error.code(), Some(ErrorCode::FrameTooLarge), "{error}");
    assert!(
        error.to_string().contains("over frame_bytes_max (65536)"),
        "{error}"
    );
    drop(client);

    // A frame cut short, then the connection closed: nothing to answer, nothing breaks.
    let frame = request_frame(&[(1, Request::Topology)]);
    let mut stream = connect();
    stream.write_all(&frame[..frame.len() / 2]).expect("write");
    drop(stream);

    // A bit flipped in the frame's offsets: refused as malformed.
    let mut flipped = frame.clone();
    flipped[4] ^= 0x40;
    let mut stream = connect();
    stream.write_all(&flipped).expect("write");
    let (code, _) = error_of(&read_answer(&mut stream).expect("an answer"));
    assert_eq!(code, ErrorCode::Malformed);

    // A length prefix of zero.
    let mut stream = connect();
    stream.write_all(&0u32.to_le_bytes()).expect("write");
    let (code, _) = error_of(&read_answer(&mut stream).expect("an answer"));
    assert_eq!(code, ErrorCode::Malformed);

    // A response sent as a request: answered MALFORMED, the connection stays usable.
    let mut stream = connect();
    let mut two = response_frame(5, &Response::Jobs(Vec::new()));
    two.extend(request_frame(&[(6, Request::Topology)]));
    stream.write_all(&two).expect("write");
    let first = read_answer(&mut stream).expect("an answer");
    assert_eq!(first[0].request_id, 5);
    assert_eq!(error_of(&first).0, ErrorCode::Malformed);

    // Variables that are not an object are named.
    let mut connection = Connection::open(&addr, &ClientConfig::default()).expect("connect");
    let answer = connection
        .call(&Request::CreateInstance(create("one-task", "[1, 2]", "")))
        .expect("an answer");
    match answer {
        Response::Error(error) => {
            assert_eq!(error.code, ErrorCode::InvalidArgument);
            assert_eq!(
                error.message,
                "variables must be a JSON object, not an array"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }

    // After all that, the server still serves.
    let mut client = server.client();
    deploy_one_task(&mut client);
    client
        .create_instance(create("one-task", "", ""))
        .expect("create after bad frames");
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_server_whose_log_reader_went_away_goes_on_serving_and_stops_cleanly_on_sighup() {
    // stderr is a pipe that the test closes once the server has said where it listens, as
    // when `ringflow serve 2>&1 | head` ends or a log shipper restarts. Every line after
    // that fails with EPIPE: the shards' "listening" lines, a debug line per bad frame
    // (RINGFLOW_LOG=debug), the shutdown's. eprintln! (and tracing's report of its own
    // failed write) panicked on the shard's thread there: the node exited 101.
    let data = data_dir("closed-log");
    let mut child = Command::new(BIN)
        .env("RINGFLOW_LOG", "debug")
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--shards", "2"])
        .args(["--metrics", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringflow serve");
    let (addr, metrics) = {
        let mut reader = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let read = std::io::BufRead::read_line(&mut reader, &mut line).expect("read stderr");
            assert!(read > 0, "the server exited before it listened:\n{seen}");
            seen.push_str(&line);
            // The metrics line comes before the node's.
            if let Some(addr) = ringflow_shard::load::listen_addr_in(&seen) {
                let metrics = ringflow_shard::load::metrics_addr_in(&seen).expect("metrics");
                break (addr, metrics);
            }
        }
        // The reader (the pipe's only read end) is dropped here.
    };
    let mut server = Server {
        child,
        addr,
        log: ServerLog::open(&data.join("unused.log")).0,
    };
    server.wait_ready();
    // A bad frame on each shard: each logs a debug line into the closed pipe.
    let mut client = server.client();
    for shard in 0..2u16 {
        let (host, port) = client.topology().address_of(shard).expect("address");
        let mut stream = TcpStream::connect((host, port)).expect("connect");
        let mut garbage = 64u32.to_le_bytes().to_vec();
        garbage.extend([0xA5u8; 64]);
        stream.write_all(&garbage).expect("write");
        let (code, _) = error_of(&read_answer(&mut stream).expect("an answer"));
        assert_eq!(code, ErrorCode::Malformed);
    }
    deploy_one_task(&mut client);
    for key in ["a", "b", "c", "d"] {
        client
            .create_instance(create("one-task", "", key))
            .expect("create after the log went away");
    }
    let mut done = 0;
    while done < 4 {
        let jobs = activate(&mut client, "e2e-work", 1_000);
        for job in jobs {
            client
                .done(&Request::CompleteJob {
                    job_key: job.key,
                    variables: String::new(),
                })
                .expect("complete after the log went away");
            done += 1;
        }
    }
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "the server is still running"
    );
    // The lines that went nowhere are counted: two bad frames' debug lines at least.
    let dropped = metric(&scrape(&metrics), "ringflow_log_lines_dropped_total");
    assert!(dropped >= 2.0, "{dropped} lines dropped");
    // The terminal the server ran in closes, as with `ringflow serve 2>&1 | tee log`: the
    // pipe is gone and SIGHUP comes. A graceful stop (exit 0 only after every shard's final
    // snapshot), not the default action's instant death.
    let (status, _) = server.stop_with(libc::SIGHUP);
    assert!(status.success(), "stopped with {status}");
}

/// Clients that stall in the middle of a frame hold the bytes it announced in the shard's
/// frame budget; before frame_read_timeout_ms two such connections held a 1 MiB budget
/// for good, and every other connection's next frame waited behind them (a new client
/// could not even learn the topology). Now each is refused after the timeout, closed, and
/// its bytes go back.
#[test]
fn clients_stalled_in_the_middle_of_a_frame_do_not_hold_the_frame_budget() {
    let (server, _, addr) = start_server_with(
        "stalled-frames",
        1,
        &[
            "--frame-budget-mib",
            "1",
            "--frame-bytes-max",
            "524288",
            "--frame-read-timeout-ms",
            "1000",
        ],
    );
    // Two frames announced whose bytes (with their length prefixes) are the whole 1 MiB
    // budget, a few bytes of each sent. (Run with --frame-read-timeout-ms 600000, a client's
    // Topology request then went unanswered.)
    let stalled: Vec<TcpStream> = [524_288u32, 524_280]
        .into_iter()
        .map(|length| {
            let mut stream = TcpStream::connect(&addr).expect("connect");
            let mut start = length.to_le_bytes().to_vec();
            start.extend([0u8; 16]);
            stream.write_all(&start).expect("write");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    let mut client = Client::connect(&addr).expect("the budget comes back");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    deploy_one_task(&mut client);
    for (mut stream, length) in stalled.into_iter().zip([524_288, 524_280]) {
        let (code, message) = error_of(&read_answer(&mut stream).expect("an answer"));
        assert_eq!(code, ErrorCode::Timeout, "{message}");
        assert_eq!(
            message,
            format!(
                "the frame of {length} bytes did not arrive within frame_read_timeout_ms \
                 (1000); the connection is closed"
            )
        );
        assert!(closed(&mut stream));
    }
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// The resident memory of process `pid`, in bytes (VmRSS).
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// A client that sends and never reads: the server stops reading its requests once its
/// unread answers pass unsent_bytes_per_connection_max, instead of queueing them without
/// bound (before, such a client of Topology requests took the server from 14 MB to 6.4 GB
/// resident in 12 s). Other connections are served meanwhile, and the client gets its
/// answers, in order, when it reads.
#[test]
fn a_client_that_does_not_read_its_answers_cannot_fill_the_servers_memory() {
    let (server, _, _) = start_server_with(
        "unread-answers",
        1,
        &["--unsent-mib-per-connection-max", "1"],
    );
    let before = resident_bytes(server.child.id());
    let requests: Vec<(u64, Request)> = (1..=1000).map(|id| (id, Request::Topology)).collect();
    let frame = request_frame(&requests);
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    // Up to 1,000 frames (a million answers of about 10 KB); the writes stall long before
    // (here after about 150, the rest in the sockets' buffers).
    let mut frames_sent = 0u64;
    for _ in 0..1000 {
        if stream.write_all(&frame).is_err() {
            break;
        }
        frames_sent += 1;
    }
    assert!(
        frames_sent < 1000,
        "the server read every request unanswered"
    );
    let grown = resident_bytes(server.child.id()).saturating_sub(before);
    assert!(grown < 256 << 20, "the server grew by {grown} bytes");
    // Another client is served meanwhile.
    let mut other = server.client();
    deploy_one_task(&mut other);
    // The answers come when the client reads: the first two frames' worth, in order.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut reader = FrameReader::new(64 * 1024 * 1024);
    let mut buffer = vec![0u8; 1 << 20];
    let mut next_id = 1u64;
    while next_id <= 2000 {
        while let Some(envelopes) = reader.next_frame().expect("valid frames") {
            for envelope in envelopes {
                assert!(
                    matches!(envelope.message, Message::Response(Response::Topology(_))),
                    "{:?}",
                    envelope.message
                );
                assert_eq!(envelope.request_id, (next_id - 1) % 1000 + 1);
                next_id += 1;
            }
        }
        let count = stream.read(&mut buffer).expect("answers");
        assert!(count > 0, "the server closed the connection");
        reader.push(&buffer[..count]);
    }
    drop(stream);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// A subscriber that grants credits and never reads its pushes is pushed no more jobs once
/// its unread answers pass unsent_bytes_per_connection_max: the rest stay ready for other
/// workers. (Its credits alone bounded it before: every ready job went to it, leased, and
/// piled up in the server's memory.)
#[test]
fn a_subscriber_that_does_not_read_its_pushes_leaves_the_rest_to_other_workers() {
    let (server, _, _) = start_server_with(
        "unread-pushes",
        1,
        &["--unsent-mib-per-connection-max", "1"],
    );
    let mut client = server.client();
    deploy_one_task(&mut client);
    let mut stalled = Connection::open(&server.addr, &ClientConfig::default()).expect("connect");
    stalled
        .send(&Request::SubscribeJobs(ringflow_wire::SubscribeJobs {
            job_type: "e2e-work".into(),
            worker: "never-reads".into(),
            credits: 1_000_000,
            lease_ms: 600_000,
            fetch_variables: Vec::new(),
        }))
        .expect("subscribe");
    // 3,000 jobs of about 10 KB each: 30 MB of pushes, more than the sockets' buffers hold.
    let padding = "x".repeat(10_000);
    let creator = client.connection(0).expect("connect");
    for _ in 0..30 {
        let creates: Vec<Request> = (0..100)
            .map(|_| {
                Request::CreateInstance(create(
                    "one-task",
                    &format!(r#"{{"padding": "{padding}"}}"#),
                    "",
                ))
            })
            .collect();
        for id in creator.send_batch(&creates).expect("send") {
            match creator
                .wait_for(id, Duration::from_secs(30))
                .expect("answer")
            {
                Response::InstanceCreated(_) => {}
                other => panic!("expected a creation, got {other:?}"),
            }
        }
    }
    // Another worker finds jobs the stalled subscriber was not given.
    let jobs = activate(&mut client, "e2e-work", 2_000);
    assert!(
        !jobs.is_empty(),
        "every job went to the subscriber that does not read"
    );
    drop(stalled);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// A connection over `connections_per_shard_max` is answered BUSY (request id 0) and closed,
/// and the client says so (it waited on for its own request id and reported "the server
/// closed the connection"); once one closes, a new client connects.
#[test]
fn a_connection_over_the_limit_is_told_busy() {
    let (server, _, addr) =
        start_server_with("connection-limit", 1, &["--connections-per-shard-max", "2"]);
    // Two connections, each answered (so the server counts it before the next); tried again
    // while the server still counts the connections of the test's readiness check.
    let held: Vec<Connection> = (0..2)
        .map(|_| {
            (0..100)
                .find_map(|_| {
                    let mut connection =
                        Connection::open(&addr, &ClientConfig::default()).expect("connect");
                    match connection.call(&Request::Topology) {
                        Ok(Response::Topology(_)) => Some(connection),
                        _ => {
                            std::thread::sleep(Duration::from_millis(50));
                            None
                        }
                    }
                })
                .expect("a connection within the limit")
        })
        .collect();
    let error = Client::connect(&addr).err().expect("a third connection");
    assert_eq!(error.code(), Some(ErrorCode::Busy), "{error}");
    assert!(
        error
            .to_string()
            .contains("shard 0 has connections_per_shard_max (2) connections open"),
        "{error}"
    );
    drop(held);
    let mut client = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            Client::connect(&addr).ok()
        })
        .expect("a connection once the others closed");
    deploy_one_task(&mut client);
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// Jobs whose variables together are more than a client reads in one frame come in
/// several answers (ACTIVATION_ANSWER_BYTES_MAX each), none lost: before, the answer was
/// one 50 MB frame, the client refused it (FRAME_TOO_LARGE), and the jobs stayed leased to
/// nobody until their leases ran out.
#[test]
fn jobs_larger_together_than_a_frame_come_in_several_answers() {
    let (server, _, _) = start_server("large-answers", 1);
    let mut client = server.client();
    deploy_one_task(&mut client);
    let blob = "x".repeat(ringflow_core::limits::VARIABLE_DOCUMENT_BYTES_MAX - 1024);
    let mut created = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let instance = client
            .create_instance(create("one-task", &format!(r#"{{"blob":"{blob}"}}"#), ""))
            .expect("create");
        created.insert(instance.process_instance_key);
    }
    let mut answers = Vec::new();
    let mut activated = std::collections::BTreeSet::new();
    while activated.len() < created.len() && answers.len() < 10 {
        let jobs = activate(&mut client, "e2e-work", 0);
        assert!(
            jobs.iter().all(|job| job.variables.len() > blob.len()),
            "every job with its variables"
        );
        answers.push(jobs.len());
        activated.extend(jobs.iter().map(|job| job.process_instance_key));
    }
    assert_eq!(activated, created, "answers of {answers:?} jobs");
    assert!(
        answers.iter().all(|jobs| (1..=4).contains(jobs)),
        "{answers:?}"
    );
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// `ringflow worker` rides out a server restart: it subscribes again, saying so, and works
/// the jobs of the restarted server. (It exited with "the server closed the connection".)
#[test]
fn a_cli_worker_subscribes_again_after_its_server_restarts() {
    let (server, data, addr) = start_server("worker-reconnect", 1);
    let mut client = server.client();
    deploy_one_task(&mut client);
    drop(client);
    let worker_log = data.join("worker.log");
    let mut worker = Command::new(BIN)
        .args(["worker", "e2e-work", "--addr", &addr])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&worker_log).expect("worker log"))
        .spawn()
        .expect("start the worker");
    let log = || std::fs::read_to_string(&worker_log).unwrap_or_default();
    let started = Instant::now();
    while !log().contains("working on e2e-work jobs") {
        assert!(started.elapsed() < Duration::from_secs(30), "{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    let server = Server::start(&data, &addr, &["--shards", "1"]);
    let mut client = server.client();
    let result = client
        .create_instance_with_result(create("one-task", r#"{"after": "restart"}"#, ""))
        .expect("the worker completes it");
    let variables: Value = serde_json::from_str(&result.variables).expect("JSON");
    assert_eq!(variables["after"], "restart");
    assert!(
        worker.try_wait().expect("try_wait").is_none(),
        "the worker ended: {}",
        log()
    );
    let text = log();
    assert!(
        text.contains(&format!("ringflow: lost {addr} (")) && text.contains("connecting again"),
        "{text}"
    );
    assert!(
        text.contains(&format!("ringflow: {addr} back after ")),
        "{text}"
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(worker.id() as i32, libc::SIGTERM);
    }
    assert!(worker.wait().expect("wait").success());
}

#[test]
fn busy_and_wrong_shard_answers() {
    let (server, _, addr) = start_server_with("busy", 2, &["--inflight-per-connection-max", "2"]);
    let mut client = server.client();
    deploy_one_task(&mut client);

    // Two awaited creations fill the connection's in-flight limit; the third is BUSY.
    let mut connection = Connection::open(&addr, &ClientConfig::default()).expect("connect");
    let awaited = awaited_one_task(3_000);
    let ids = connection
        .send_batch(&[
            Request::CreateInstance(awaited.clone()),
            Request::CreateInstance(awaited.clone()),
            Request::CreateInstance(awaited),
        ])
        .expect("send");
    let busy = connection
        .wait_for(ids[2], Duration::from_secs(10))
        .expect("an answer");
    match busy {
        Response::Error(error) => {
            assert_eq!(error.code, ErrorCode::Busy);
            assert!(error.retry_after_ms > 0);
            assert!(
                error.message.contains("inflight_per_connection_max"),
                "{}",
                error.message
            );
        }
        other => panic!("expected BUSY, got {other:?}"),
    }
    // The two in flight time out (no worker), they are not lost.
    for id in &ids[..2] {
        match connection
            .wait_for(*id, Duration::from_secs(10))
            .expect("an answer")
        {
            Response::Error(error) => assert_eq!(error.code, ErrorCode::Timeout),
            other => panic!("expected TIMEOUT, got {other:?}"),
        }
    }

    // A key of shard 1 sent to shard 0: WRONG_SHARD with the topology.
    let mut shard0 = Connection::open(&addr, &ClientConfig::default()).expect("connect");
    let answer = shard0
        .call(&Request::CompleteJob {
            job_key: (1u64 << 52) | 5,
            variables: String::new(),
        })
        .expect("an answer");
    match answer {
        Response::Error(error) => {
            assert_eq!(error.code, ErrorCode::WrongShard);
            let topology = error.topology.expect("the topology comes with WRONG_SHARD");
            assert_eq!(topology, *client.topology());
        }
        other => panic!("expected WRONG_SHARD, got {other:?}"),
    }
    // A business key of shard 1 sent to shard 0 likewise; the client routes it right.
    let key_of_shard1 = (0..)
        .map(|n| format!("key-{n}"))
        .find(|key| client.topology().shard_of_text(key) == 1)
        .expect("some key hashes to shard 1");
    let answer = shard0
        .call(&Request::CreateInstance(create(
            "one-task",
            "",
            &key_of_shard1,
        )))
        .expect("an answer");
    assert!(matches!(answer, Response::Error(ref e) if e.code == ErrorCode::WrongShard));
    let created = client
        .create_instance(create("one-task", "", &key_of_shard1))
        .expect("routed to shard 1");
    assert_eq!(created.process_instance_key >> 52, 1);
    drop(server);
}

#[test]
fn a_restart_keeps_every_acknowledged_instance() {
    let (server, data, addr) = start_server("restart", 2);
    let mut client = server.client();
    deploy_one_task(&mut client);
    let mut acknowledged = std::collections::BTreeSet::new();
    // Pipelined creations on both shards; each answer is an acknowledgement.
    for shard in 0..2u16 {
        let connection = client.connection(shard).expect("connect");
        let requests: Vec<Request> = (0..200)
            .map(|n| Request::CreateInstance(create("one-task", &format!(r#"{{"n": {n}}}"#), "")))
            .collect();
        let ids = connection.send_batch(&requests).expect("send");
        for id in ids {
            match connection
                .wait_for(id, Duration::from_secs(30))
                .expect("answer")
            {
                Response::InstanceCreated(created) => {
                    acknowledged.insert(created.process_instance_key);
                }
                other => panic!("expected a creation, got {other:?}"),
            }
        }
    }
    assert_eq!(acknowledged.len(), 400);
    let message = PublishMessage {
        name: "paid".into(),
        correlation_key: "order-9".into(),
        variables: r#"{"amount": 3}"#.into(),
        ttl_ms: 600_000,
        message_id: "pay-9".into(),
    };
    client.publish_message(message.clone()).expect("published");
    server.kill9();

    let server = Server::start(&data, &addr, &["--shards", "2"]);
    let mut client = server.client();
    let found: std::collections::BTreeSet<u64> = activate_all(&mut client, "check")
        .iter()
        .map(|job| job.process_instance_key)
        .collect();
    let lost: Vec<_> = acknowledged.difference(&found).collect();
    assert!(lost.is_empty(), "acknowledged instances lost: {lost:?}");
    // The buffered message survived too: its id still deduplicates.
    let again = client.publish_message(message).expect_err("still buffered");
    assert_eq!(again.code(), Some(ErrorCode::AlreadyExists), "{again}");
    drop(server);
}

/// The slices of the io_uring workers of process `pid`, in nanoseconds, by worker name.
fn io_worker_slices(pid: u32) -> Vec<(String, u64)> {
    let mut slices = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return slices;
    };
    for entry in tasks.flatten() {
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            continue;
        };
        if comm.starts_with("iou-wrk-")
            && let Ok(slice) = ringflow_shard::sched::thread_slice_nanos(tid)
        {
            slices.push((comm.trim_end().to_string(), slice));
        }
    }
    slices
}

/// `--io-worker-slice-us`: each shard gives its io_uring workers (which run its fdatasyncs)
/// the slice, the gauge counts them, and without the option they keep the kernel's.
#[test]
fn io_worker_slices_reach_every_shards_workers() {
    let data = data_dir("worker-slice");
    if !ringflow_shard::sched::kernel_takes_slices().unwrap_or(false) {
        // A kernel before 6.12: the server must say the option does nothing.
        let server = Server::start(&data, "127.0.0.1:0", &["--io-worker-slice-us", "100"]);
        let (status, stderr) = server.terminate();
        assert!(status.success(), "{stderr}");
        assert!(
            stderr.contains("io-worker-slice-us has no effect"),
            "{stderr}"
        );
        return;
    }
    for sliced in [false, true] {
        let mut args = vec![
            "--shards",
            "2",
            "--metrics",
            "127.0.0.1:0",
            "--cold-store",
            "none",
        ];
        if sliced {
            args.extend(["--io-worker-slice-us", "100"]);
        }
        let mut server = Server::start(&data, "127.0.0.1:0", &args);
        let metrics = server.metrics_addr();
        let mut client = server.client();
        if !sliced {
            deploy_one_task(&mut client);
        }
        let started = Instant::now();
        let gauges = loop {
            // Commits on both shards keep their workers busy (an idle one ends after seconds).
            for shard in 0..2u16 {
                let connection = client.connection(shard).expect("connect");
                let requests: Vec<Request> = (0..20)
                    .map(|_| Request::CreateInstance(create("one-task", "", "")))
                    .collect();
                for id in connection.send_batch(&requests).expect("send") {
                    connection
                        .wait_for(id, Duration::from_secs(30))
                        .expect("answer");
                }
            }
            let text = scrape(&metrics);
            // Its log goes to a file that takes every line.
            assert_eq!(metric(&text, "ringflow_log_lines_dropped_total"), 0.0);
            let gauges: Vec<f64> = (0..2)
                .map(|shard| {
                    metric(
                        &text,
                        &format!("ringflow_io_workers_sliced{{shard=\"{shard}\"}}"),
                    )
                })
                .collect();
            if !sliced || gauges.iter().all(|gauge| *gauge >= 1.0) {
                break gauges;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "shards without sliced workers after 30 s: {gauges:?}, workers {:?}",
                io_worker_slices(server.child.id())
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let workers = io_worker_slices(server.child.id());
        assert!(
            !workers.is_empty(),
            "fdatasyncs ran without io_uring workers"
        );
        if sliced {
            assert!(
                workers.iter().any(|(_, slice)| *slice == 100_000),
                "the gauges say {gauges:?} but no worker has the slice: {workers:?}"
            );
        } else {
            assert_eq!(gauges, [0.0, 0.0]);
            assert!(
                workers.iter().all(|(_, slice)| *slice != 100_000),
                "a worker has the slice without the option: {workers:?}"
            );
        }
        let (status, stderr) = server.terminate();
        assert!(status.success(), "{stderr}");
    }
}

#[test]
fn two_nodes_serve_one_cluster_and_the_client_routes_to_both() {
    // A cluster file names fixed ports: one free on both hosts, below the ephemeral range
    // (a port taken meanwhile would fail the start with the port named).
    let port = common::fixed_ports(&["127.0.0.1", "127.0.0.2"], 1);
    let cluster = data_dir("cluster").join("cluster.toml");
    std::fs::write(
        &cluster,
        format!(
            "[[node]]\nhost = \"127.0.0.1\"\nport = {port}\nshards = 1\n\n\
             [[node]]\nhost = \"127.0.0.2\"\nport = {port}\nshards = 1\n"
        ),
    )
    .expect("write the cluster file");
    let cluster = cluster.to_str().expect("utf-8");
    let cpus = ringflow_shard::runtime::usable_cpus();
    let cpu1 = cpus.get(1).unwrap_or(&cpus[0]).to_string();
    let cpu0 = cpus[0].to_string();
    let node0 = Server::start(
        &data_dir("node0"),
        &format!("127.0.0.1:{port}"),
        &["--cluster", cluster, "--node", "0", "--cpus", &cpu0],
    );
    let node1 = Server::start(
        &data_dir("node1"),
        &format!("127.0.0.2:{port}"),
        &["--cluster", cluster, "--node", "1", "--cpus", &cpu1],
    );
    // A client that reaches either node learns the whole cluster.
    let mut client = node0.client();
    let from_node1 = node1.client();
    assert_eq!(client.topology(), from_node1.topology());
    assert_eq!(client.topology().shard_count(), 2);
    assert_eq!(client.topology().address_of(1), Some(("127.0.0.2", port)));
    deploy_one_task(&mut client);

    // Business keys spread instances over both nodes, each on its key's shard.
    let mut per_shard = [0usize; 2];
    for n in 0..40 {
        let key = format!("customer-{n}");
        let created = client
            .create_instance(create("one-task", "", &key))
            .expect("create");
        let shard = created.process_instance_key >> 52;
        assert_eq!(shard, u64::from(client.topology().shard_of_text(&key)));
        per_shard[shard as usize] += 1;
    }
    assert!(per_shard[0] > 0 && per_shard[1] > 0, "{per_shard:?}");
    // Messages go to their correlation key's shard, on either node: the message key carries
    // the shard that buffered it.
    let mut messages_per_shard = [0usize; 2];
    for n in 0..40 {
        let correlation_key = format!("customer-{n}");
        let key = client
            .publish_message(PublishMessage {
                name: "paid".into(),
                correlation_key: correlation_key.clone(),
                ttl_ms: 60_000,
                message_id: format!("payment-{n}"),
                ..PublishMessage::default()
            })
            .expect("published");
        let shard = key >> 52;
        assert_eq!(
            shard,
            u64::from(client.topology().shard_of_text(&correlation_key))
        );
        messages_per_shard[shard as usize] += 1;
    }
    assert!(
        messages_per_shard[0] > 0 && messages_per_shard[1] > 0,
        "{messages_per_shard:?}"
    );
    // The message id deduplicates on whichever node owns the key.
    let duplicate = client
        .publish_message(PublishMessage {
            name: "paid".into(),
            correlation_key: "customer-3".into(),
            ttl_ms: 60_000,
            message_id: "payment-3".into(),
            ..PublishMessage::default()
        })
        .expect_err("a duplicate");
    assert_eq!(
        duplicate.code(),
        Some(ErrorCode::AlreadyExists),
        "{duplicate}"
    );
    // Jobs of both nodes are handed out through the one client.
    let mut jobs_per_shard = [0usize; 2];
    for job in activate_all(&mut client, "check") {
        jobs_per_shard[(job.key >> 52) as usize] += 1;
        client
            .done(&Request::CompleteJob {
                job_key: job.key,
                variables: String::new(),
            })
            .expect("complete on the job's node");
    }
    assert_eq!(jobs_per_shard, per_shard);
    let (status0, stderr0) = node0.terminate();
    let (status1, stderr1) = node1.terminate();
    assert!(status0.success(), "{stderr0}");
    assert!(status1.success(), "{stderr1}");
}

#[test]
fn the_client_reports_a_server_that_is_not_there() {
    let bound = port_without_server();
    let port = bound.base_port;
    match Client::connect(&format!("127.0.0.1:{port}")) {
        Err(ClientError::Io { addr, .. }) => assert_eq!(addr, format!("127.0.0.1:{port}")),
        Err(other) => panic!("expected an I/O error, got {other}"),
        Ok(_) => panic!("nothing listens there"),
    }

    // Something that is not a ringflow shard: an HTTP server (what the metrics port is)...
    let http = TcpListener::bind("127.0.0.1:0").expect("bind");
    let http_addr = http.local_addr().expect("address").to_string();
    let answering = std::thread::spawn(move || {
        let (mut stream, _) = http.accept().expect("accept");
        let mut request = [0u8; 64];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
    });
    let error = Client::connect(&http_addr).err().expect("not ringflow");
    answering.join().expect("the HTTP side");
    assert!(
        error
            .to_string()
            .contains(r#"its first bytes are the text "HTTP": not a ringflow shard's port?"#),
        "{error}"
    );
    // ... and one that accepts connections and never answers: said within
    // TOPOLOGY_ANSWER_TIMEOUT, not the 30 s request timeout.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("address").to_string();
    let asked = Instant::now();
    let error = Client::connect(&silent_addr).err().expect("no answer");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}: {error}",
        asked.elapsed()
    );
    assert!(
        error
            .to_string()
            .contains("no answer to a Topology request within 5s: is 127.0.0.1:"),
        "{error}"
    );
    drop(silent);
}

#[test]
fn subscriptions_push_no_more_jobs_than_their_credits_and_long_polls_wait_for_jobs() {
    let (server, _, addr) = start_server("credits", 1);
    let mut client = server.client();
    deploy_one_task(&mut client);
    for n in 0..5 {
        client
            .create_instance(create("one-task", &format!(r#"{{"n": {n}}}"#), ""))
            .expect("create");
    }
    let config = ClientConfig::default();
    let mut connection = Connection::open(&addr, &config).expect("connect");
    let subscription = connection
        .send(&Request::SubscribeJobs(ringflow_wire::SubscribeJobs {
            job_type: "e2e-work".into(),
            worker: "credits".into(),
            credits: 2,
            lease_ms: 60_000,
            fetch_variables: Vec::new(),
        }))
        .expect("subscribe");
    let mut pushed = Vec::new();
    // Exactly two jobs arrive, then nothing while no credit is granted.
    while pushed.len() < 2 {
        let (id, response) = connection.recv().expect("a push");
        assert_eq!(id, subscription);
        match response {
            Response::Jobs(jobs) => pushed.extend(jobs),
            other => panic!("expected jobs, got {other:?}"),
        }
    }
    assert_eq!(pushed.len(), 2);
    assert!(
        connection
            .recv_timeout(Duration::from_millis(300))
            .expect("no error")
            .is_none(),
        "a job was pushed without credit"
    );
    // Three more credits: the other three jobs.
    let grant = connection
        .send(&Request::JobCredits {
            subscription_request_id: subscription,
            credits: 3,
        })
        .expect("grant");
    let mut done = false;
    while pushed.len() < 5 || !done {
        let (id, response) = connection.recv().expect("an answer");
        match response {
            Response::Jobs(jobs) if id == subscription => pushed.extend(jobs),
            Response::Done { key, .. } if id == grant => {
                assert_eq!(key, subscription);
                done = true;
            }
            other => panic!("unexpected answer {id}: {other:?}"),
        }
    }
    let keys: std::collections::BTreeSet<u64> = pushed.iter().map(|job| job.key).collect();
    assert_eq!(keys.len(), 5, "every job pushed once");
    // Credits for an unknown subscription are refused.
    match connection
        .call(&Request::JobCredits {
            subscription_request_id: 999,
            credits: 1,
        })
        .expect("an answer")
    {
        Response::Error(error) => assert_eq!(error.code, ErrorCode::InvalidArgument),
        other => panic!("expected an error, got {other:?}"),
    }

    // A long poll on a type with no ready job waits until one is created.
    let poller_addr = addr.clone();
    let poller = std::thread::spawn(move || {
        let mut connection =
            Connection::open(&poller_addr, &ClientConfig::default()).expect("connect");
        connection
            .call(&Request::ActivateJobs(ActivateJobs {
                job_type: "e2e-work".into(),
                worker: "poller".into(),
                max_jobs: 1,
                lease_ms: 60_000,
                long_poll_ms: 30_000,
                fetch_variables: Vec::new(),
            }))
            .expect("an answer")
    });
    std::thread::sleep(Duration::from_millis(300));
    // The subscription above still holds credits 0, so the new job goes to the poller.
    let created = client
        .create_instance(create("one-task", "", ""))
        .expect("create");
    // A job in the answer means the poll ended because of the new job: at its timeout it
    // would have been empty.
    match poller.join().expect("poller") {
        Response::Jobs(jobs) => {
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].process_instance_key, created.process_instance_key);
        }
        other => panic!("expected a job, got {other:?}"),
    }
    // A long poll with nothing to find ends empty at its timeout.
    let mut connection = Connection::open(&addr, &config).expect("connect");
    let answer = connection
        .call(&Request::ActivateJobs(ActivateJobs {
            job_type: "nobody-makes-these".into(),
            worker: String::new(),
            max_jobs: 1,
            lease_ms: 0,
            long_poll_ms: 100,
            fetch_variables: Vec::new(),
        }))
        .expect("an answer");
    assert_eq!(answer, Response::Jobs(Vec::new()));
    drop(server);
}

/// start -> wait for message `approved` (correlation key `=orderId`) -> timer 300 ms -> end.
const APPROVAL: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="approval" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait"/>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:messageEventDefinition messageRef="m"/>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="pause"/>
    <bpmn:intermediateCatchEvent id="pause"><bpmn:timerEventDefinition>
      <bpmn:timeDuration>PT0.3S</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="pause" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
  <bpmn:message id="m" name="approved"><bpmn:extensionElements>
    <zeebe:subscription correlationKey="=orderId"/></bpmn:extensionElements></bpmn:message>
</bpmn:definitions>"#;

#[test]
fn a_published_message_and_a_timer_complete_an_awaited_instance() {
    let (server, _, addr) = start_server("events", 2);
    let mut client = server.client();
    deploy(&mut client, "approval.bpmn", APPROVAL);
    // The instance lives on the shard of its business key, the message goes to the shard of
    // its correlation key: the same text, so the same shard.
    let waiting = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut client = Client::connect(&addr).expect("connect");
            let mut request = create("approval", r#"{"orderId": "order-77"}"#, "order-77");
            request.await_timeout_ms = 30_000;
            client.create_instance_with_result(request)
        })
    };
    // Buffered for a minute: it correlates whether the instance subscribes before or after.
    let published = cli_json(
        &addr,
        &[
            "publish",
            "approved",
            "--correlation-key",
            "order-77",
            "--vars",
            r#"{"approvedBy": "ann"}"#,
            "--ttl",
            "1m",
        ],
    );
    assert!(published["key"].as_u64().is_some());
    let result = waiting
        .join()
        .expect("the waiting thread")
        .expect("a result");
    let variables: Value = serde_json::from_str(&result.variables).expect("JSON");
    assert_eq!(variables["approvedBy"], "ann", "{variables}");
    assert_eq!(variables["orderId"], "order-77");
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn the_cli_deploys_a_dmn_decision_that_a_business_rule_task_evaluates() {
    let (server, data, addr) = start_server("dmn", 1);
    let dmn = data.join("discount.dmn");
    std::fs::write(&dmn, include_str!("../../core/tests/fixtures/discount.dmn")).expect("write");
    let bpmn = data.join("pricing.bpmn");
    std::fs::write(
        &bpmn,
        r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
             xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
           <bpmn:process id="pricing" isExecutable="true"><bpmn:startEvent id="s"/>
             <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="decide"/>
             <bpmn:businessRuleTask id="decide"><bpmn:extensionElements>
               <zeebe:calledDecision decisionId="discount" resultVariable="discount"/>
             </bpmn:extensionElements></bpmn:businessRuleTask>
             <bpmn:sequenceFlow id="f2" sourceRef="decide" targetRef="e"/><bpmn:endEvent id="e"/>
           </bpmn:process></bpmn:definitions>"#,
    )
    .expect("write");
    let deployed = cli_json(
        &addr,
        &[
            "deploy",
            dmn.to_str().expect("utf-8"),
            bpmn.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        deployed["decisions"][0]["decisionId"], "discount",
        "{deployed}"
    );
    assert_eq!(deployed["processes"][0]["bpmnProcessId"], "pricing");
    let result = cli_json(
        &addr,
        &[
            "create",
            "pricing",
            "--vars",
            r#"{"customer": "gold", "total": 120}"#,
            "--with-result",
        ],
    );
    assert_eq!(result["variables"]["discount"], 0.2, "{result}");
    drop(server);
}

/// Runs `ringflow serve` on `data` with `shards` shards until it exits by itself (see
/// [`common::serve_until_it_exits`]).
fn serve_until_it_exits(
    data: &Path,
    addr: &str,
    shards: u16,
) -> (std::process::ExitStatus, String) {
    let shards = shards.to_string();
    common::serve_until_it_exits(&[
        "--data".as_ref(),
        data.as_ref(),
        "--listen".as_ref(),
        addr.as_ref(),
        "--shards".as_ref(),
        shards.as_ref(),
    ])
}

/// A node whose shard cannot start (here: its data was written with another shard count)
/// stops with that shard's error, instead of serving with the shard missing.
#[test]
fn a_node_whose_shard_cannot_start_stops_instead_of_serving_without_it() {
    let (server, data, _) = start_server("shard-count", 1);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    let (status, stderr) = serve_until_it_exits(&data, "127.0.0.1:0", 2);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot change its shard count") && stderr.contains("shard 1 not started"),
        "{stderr}"
    );
}

/// Data that cannot be used stops the node at once, naming what and how to fix it: a data
/// path that is a file, and a cold store file that is not a SQLite database.
#[test]
fn a_data_path_that_is_a_file_or_a_cold_store_that_is_no_database_is_named() {
    let dir = data_dir("unusable");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a directory").expect("write");
    let (status, stderr) = serve_until_it_exits(&file, "127.0.0.1:0", 1);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("a-file: it exists and is not a directory (name another with --data)"),
        "{stderr}"
    );
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("cold")).expect("cold");
    std::fs::write(
        data.join("cold/shard-0.db"),
        "garbage, not SQLite ".repeat(100),
    )
    .expect("write");
    let (status, stderr) = serve_until_it_exits(&data, "127.0.0.1:0", 1);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("shard-0.db): file is not a database"),
        "{stderr}"
    );
    assert!(
        stderr.contains("move a file that is not a SQLite database (or a damaged one) away"),
        "{stderr}"
    );
}

/// A second `ringflow serve` on a data directory in use is refused, naming the process that
/// holds it, and the first goes on serving.
#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let (server, data, _) = start_server("locked", 1);
    let (status, stderr) = serve_until_it_exits(&data, "127.0.0.1:0", 1);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("is in use by another ringflow process")
            && stderr.contains(&format!("(pid {})", server.child.id())),
        "{stderr}"
    );
    let mut client = server.client();
    deploy_one_task(&mut client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// A second `ringflow serve` on a port that a running server listens on is refused before
/// it recovers, naming the port, and the first goes on serving alone. (glommio's own bind
/// sets SO_REUSEPORT, with which both bound the port and the kernel spread new connections
/// between the two processes.)
#[test]
fn a_second_server_on_a_port_in_use_is_refused_and_the_first_serves_alone() {
    let (server, _, addr) = start_server("port-owner", 2);
    let base: u16 = addr
        .rsplit_once(':')
        .expect("HOST:PORT")
        .1
        .parse()
        .expect("a port");
    // Its shard 1's port as another node's shard 0, and its shard 0's as another's shard 1.
    for (listen, shards, taken) in [(base + 1, 1, base + 1), (base - 1, 2, base)] {
        let data = data_dir(&format!("port-taken-{shards}"));
        let (status, stderr) = serve_until_it_exits(&data, &format!("127.0.0.1:{listen}"), shards);
        assert_eq!(status.code(), Some(2), "{stderr}");
        let named = |port: u16| format!("cannot listen on 127.0.0.1:{port}: the port is in use");
        // base - 1 may be another process's: then that port is the one named.
        assert!(
            stderr.contains(&named(taken)) || (listen < base && stderr.contains(&named(listen))),
            "{stderr}"
        );
        assert!(
            stderr.contains("is in use; waiting up to 5000 ms for it"),
            "it waited for the port first: {stderr}"
        );
        assert!(
            !stderr.contains("recovered"),
            "refused before recovery: {stderr}"
        );
        assert!(!data.join("shard-0").exists(), "no journal was opened");
    }
    // Every connection still reaches the first server: both shards, many times.
    let mut client = server.client();
    deploy_one_task(&mut client);
    for _ in 0..20 {
        let connection = Client::connect(&format!("127.0.0.1:{}", base + 1)).expect("connect");
        assert_eq!(connection.topology(), client.topology());
    }
    for n in 0..10 {
        client
            .create_instance(create("one-task", &format!(r#"{{"n": {n}}}"#), ""))
            .expect("create on the first server");
    }
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// `--listen HOST:0` picks a block of free ports (shard i on base + i) and reports them.
#[test]
fn port_zero_picks_consecutive_free_ports_and_reports_them() {
    let (server, _, addr) = start_server("port-zero", 2);
    let base: u16 = addr
        .rsplit_once(':')
        .expect("HOST:PORT")
        .1
        .parse()
        .expect("a port");
    assert_ne!(base, 0);
    let mut client = server.client();
    assert_eq!(client.topology().address_of(0), Some(("127.0.0.1", base)));
    assert_eq!(
        client.topology().address_of(1),
        Some(("127.0.0.1", base + 1))
    );
    deploy_one_task(&mut client);
    let log = server.log.text();
    for shard in 0..2 {
        assert!(
            log.contains(&format!(
                "ringflow: shard {shard} listening on 127.0.0.1:{}",
                base + shard
            )),
            "{log}"
        );
    }
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// Waits at a signal catch event for `release`, then a task of type `released`; and a
/// process that the same signal starts, with a task of type `kickoff`.
const SIGNALED: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="held" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait"/>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:signalEventDefinition signalRef="s"/>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="task"/>
    <bpmn:serviceTask id="task"><bpmn:extensionElements>
      <zeebe:taskDefinition type="released"/></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f3" sourceRef="task" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
  <bpmn:process id="kicked" isExecutable="true">
    <bpmn:startEvent id="kick"><bpmn:signalEventDefinition signalRef="s"/></bpmn:startEvent>
    <bpmn:sequenceFlow id="k1" sourceRef="kick" targetRef="kick-task"/>
    <bpmn:serviceTask id="kick-task"><bpmn:extensionElements>
      <zeebe:taskDefinition type="kickoff"/></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="k2" sourceRef="kick-task" targetRef="kick-end"/>
    <bpmn:endEvent id="kick-end"/>
  </bpmn:process>
  <bpmn:signal id="s" name="release"/>
</bpmn:definitions>"#;

#[test]
fn a_signal_from_the_cli_reaches_waiting_instances_on_every_shard_and_starts_a_process_once() {
    let (server, _, addr) = start_server("signal", 2);
    let mut client = server.client();
    deploy(&mut client, "signaled.bpmn", SIGNALED);
    // Two waiting instances on each shard, placed by their business keys.
    let topology = client.topology().clone();
    let mut placed = [0; 2];
    for n in 0..100 {
        let key = format!("batch-{n}");
        let shard = usize::from(topology.shard_of_text(&key));
        if placed[shard] < 2 {
            placed[shard] += 1;
            client
                .create_instance(create("held", "{}", &key))
                .expect("create");
        }
    }
    assert_eq!(placed, [2, 2]);
    // Signals are not buffered; a create is answered once its instance waits at the event.
    let broadcast = cli_json(&addr, &["signal", "release", "--vars", r#"{"wave": 3}"#]);
    assert!(broadcast["key"].as_u64().is_some(), "{broadcast}");

    let mut released = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while released.len() < 4 && Instant::now() < deadline {
        released.extend(activate(&mut client, "released", 500));
    }
    assert_eq!(
        released.len(),
        4,
        "every waiting instance on both shards moved on"
    );
    let mut shards: Vec<u16> = released
        .iter()
        .map(|job| ringflow_core::Key(job.key).shard())
        .collect();
    shards.sort_unstable();
    assert_eq!(shards, [0, 0, 1, 1]);
    for job in &released {
        let variables: Value = serde_json::from_str(&job.variables).expect("JSON");
        assert_eq!(variables["wave"], 3, "{variables}");
    }
    let mut kickoffs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        kickoffs.extend(activate(&mut client, "kickoff", 500));
    }
    assert_eq!(
        kickoffs.len(),
        1,
        "the signal start event started one instance in the cluster, not one per shard"
    );

    // A bad name is refused with the limit it breaks.
    let refused = cli(&addr, &["signal", ""]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("NAME_BYTES_MAX"), "{stderr}");
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_signal_to_more_waiting_instances_than_one_command_takes_reaches_them_all() {
    // SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX is 1,000: the shard delivers the rest in
    // ContinueSignal commands of its own, on the effect the broadcast returned.
    let waiting = 2_500;
    let (server, _, addr) = start_server("signal-fanout", 1);
    let mut client = server.client();
    deploy(&mut client, "signaled.bpmn", SIGNALED);
    let mut connection = Connection::open(&addr, &ClientConfig::default()).expect("connect");
    let requests: Vec<Request> = (0..waiting)
        .map(|_| Request::CreateInstance(create("held", "{}", "")))
        .collect();
    for id in connection.send_batch(&requests).expect("send") {
        match connection
            .wait_for(id, Duration::from_secs(30))
            .expect("an answer")
        {
            Response::InstanceCreated(_) => {}
            other => panic!("expected InstanceCreated, got {other:?}"),
        }
    }
    client.broadcast_signal("release", "").expect("broadcast");
    let mut released = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while released.len() < waiting && Instant::now() < deadline {
        let jobs = activate(&mut client, "released", 500);
        released.extend(jobs.into_iter().map(|job| job.process_instance_key));
    }
    assert_eq!(released.len(), waiting, "every waiting instance moved on");
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// book (compensable, with a local `booking`) -> decide -> compensation throw -> after.
const SAGA: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="saga" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="book"/>
    <bpmn:serviceTask id="book"><bpmn:extensionElements>
      <zeebe:taskDefinition type="book"/>
      <zeebe:ioMapping><zeebe:input source="=order + &quot;-room&quot;" target="booking"/>
      </zeebe:ioMapping></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:boundaryEvent id="book-undo" attachedToRef="book">
      <bpmn:compensateEventDefinition/></bpmn:boundaryEvent>
    <bpmn:serviceTask id="cancel-booking" isForCompensation="true"><bpmn:extensionElements>
      <zeebe:taskDefinition type="cancel-booking"/></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:association id="a1" sourceRef="book-undo" targetRef="cancel-booking"/>
    <bpmn:sequenceFlow id="f2" sourceRef="book" targetRef="decide"/>
    <bpmn:serviceTask id="decide"><bpmn:extensionElements>
      <zeebe:taskDefinition type="decide"/></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f3" sourceRef="decide" targetRef="undo"/>
    <bpmn:intermediateThrowEvent id="undo"><bpmn:compensateEventDefinition/>
    </bpmn:intermediateThrowEvent>
    <bpmn:sequenceFlow id="f4" sourceRef="undo" targetRef="after"/>
    <bpmn:serviceTask id="after"><bpmn:extensionElements>
      <zeebe:taskDefinition type="after"/></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f5" sourceRef="after" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

/// Activates the one job of `job_type` (waiting up to 5 s for it) and completes it.
fn complete_one(client: &mut Client, job_type: &str) -> ringflow_wire::Job {
    let mut jobs = activate(client, job_type, 5_000);
    assert_eq!(jobs.len(), 1, "one `{job_type}` job");
    let job = jobs.remove(0);
    client
        .done(&Request::CompleteJob {
            job_key: job.key,
            variables: String::new(),
        })
        .expect("complete");
    job
}

#[test]
fn compensation_survives_a_snapshot_restart_and_a_crash() {
    let (server, data, addr) = start_server("compensation", 1);
    let mut client = server.client();
    deploy(&mut client, "saga.bpmn", SAGA);
    let created = client
        .create_instance(create("saga", r#"{"order": "o-7"}"#, ""))
        .expect("create");
    complete_one(&mut client, "book");
    // Stopped with a snapshot that holds the kept compensation.
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("snapshot at LSN"), "{stderr}");

    let server = Server::start(&data, &addr, &["--shards", "1"]);
    let mut client = server.client();
    complete_one(&mut client, "decide");
    // The throw started the handler; a crash now leaves it to the journal.
    server.kill9();

    let server = Server::start(&data, &addr, &["--shards", "1"]);
    let mut client = server.client();
    assert!(
        activate(&mut client, "after", 0).is_empty(),
        "the throw waits for its handler"
    );
    let handler = complete_one(&mut client, "cancel-booking");
    assert_eq!(handler.process_instance_key, created.process_instance_key);
    let variables: Value = serde_json::from_str(&handler.variables).expect("JSON");
    assert_eq!(
        variables["booking"], "o-7-room",
        "the handler sees the booking as it was: {variables}"
    );
    let after = complete_one(&mut client, "after");
    assert_eq!(after.process_instance_key, created.process_instance_key);
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// A message-started process with a start listener on the process and an end listener on
/// its one task.
const LISTENED: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="listened" isExecutable="true">
    <bpmn:extensionElements><zeebe:executionListeners>
      <zeebe:executionListener eventType="start" type="process-start"/>
    </zeebe:executionListeners></bpmn:extensionElements>
    <bpmn:startEvent id="start"><bpmn:messageEventDefinition messageRef="m"/>
    </bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work"/>
    <bpmn:serviceTask id="work"><bpmn:extensionElements>
      <zeebe:taskDefinition type="work"/>
      <zeebe:executionListeners>
        <zeebe:executionListener eventType="end" type="work-end"/>
      </zeebe:executionListeners></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
  <bpmn:message id="m" name="order-placed"/>
</bpmn:definitions>"#;

#[test]
fn execution_listeners_and_a_held_message_survive_a_snapshot_restart_and_a_crash() {
    let (server, data, addr) = start_server("listeners", 1);
    let mut client = server.client();
    deploy(&mut client, "listened.bpmn", LISTENED);
    client
        .publish_message(PublishMessage {
            name: "order-placed".into(),
            variables: r#"{"order": "o-9"}"#.into(),
            ..PublishMessage::default()
        })
        .expect("published");
    // Stopped with a snapshot that holds the message while the start listener waits.
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("snapshot at LSN"), "{stderr}");

    let server = Server::start(&data, &addr, &["--shards", "1"]);
    let mut client = server.client();
    let started = complete_one(&mut client, "process-start");
    assert_eq!(started.listener, Some(ringflow_wire::JobListener::Start));
    let work = complete_one(&mut client, "work");
    assert_eq!(work.listener, None, "the task's own job");
    assert_eq!(work.process_instance_key, started.process_instance_key);
    let variables: Value = serde_json::from_str(&work.variables).expect("JSON");
    assert_eq!(
        variables["order"], "o-9",
        "the held message went on: {variables}"
    );
    // The end listener's job is journaled; a crash leaves it to replay.
    server.kill9();

    let server = Server::start(&data, &addr, &["--shards", "1"]);
    let mut client = server.client();
    let end = complete_one(&mut client, "work-end");
    assert_eq!(end.listener, Some(ringflow_wire::JobListener::End));
    assert_eq!(end.process_instance_key, started.process_instance_key);
    // The instance ended with its end listener.
    let gone = client
        .done(&Request::CancelInstance {
            process_instance_key: started.process_instance_key,
        })
        .expect_err("ended");
    assert_eq!(gone.code(), Some(ErrorCode::InstanceNotFound), "{gone}");
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_compensation_throw_with_more_handlers_than_one_command_starts_runs_them_all() {
    // 2,500 handlers: the throw starts 1,000, the shard the rest in ContinueCompensation
    // commands of its own, on the effect; only then does `after` get its job.
    let xml = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
        xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
      <bpmn:process id="many" isExecutable="true"><bpmn:startEvent id="s"/>
      <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="each"/>
      <bpmn:subProcess id="each"><bpmn:multiInstanceLoopCharacteristics>
        <bpmn:extensionElements><zeebe:loopCharacteristics
          inputCollection="=for i in 1..2500 return i"/></bpmn:extensionElements>
        </bpmn:multiInstanceLoopCharacteristics>
        <bpmn:startEvent id="es"/><bpmn:sequenceFlow id="e1" sourceRef="es" targetRef="t"/>
        <bpmn:task id="t"/><bpmn:boundaryEvent id="b" attachedToRef="t">
        <bpmn:compensateEventDefinition/></bpmn:boundaryEvent>
        <bpmn:task id="u" isForCompensation="true"/>
        <bpmn:association id="a" sourceRef="b" targetRef="u"/>
        <bpmn:sequenceFlow id="e2" sourceRef="t" targetRef="ee"/><bpmn:endEvent id="ee"/>
      </bpmn:subProcess>
      <bpmn:sequenceFlow id="f2" sourceRef="each" targetRef="c"/>
      <bpmn:intermediateThrowEvent id="c"><bpmn:compensateEventDefinition/>
      </bpmn:intermediateThrowEvent>
      <bpmn:sequenceFlow id="f3" sourceRef="c" targetRef="after"/>
      <bpmn:serviceTask id="after"><bpmn:extensionElements>
        <zeebe:taskDefinition type="after"/></bpmn:extensionElements></bpmn:serviceTask>
      <bpmn:sequenceFlow id="f4" sourceRef="after" targetRef="e"/><bpmn:endEvent id="e"/>
      </bpmn:process></bpmn:definitions>"#;
    let (server, _, _) = start_server("compensation-fanout", 1);
    let mut client = server.client();
    deploy(&mut client, "many.bpmn", xml);
    let created = client
        .create_instance(create("many", "{}", ""))
        .expect("create");
    let after = complete_one(&mut client, "after");
    assert_eq!(after.process_instance_key, created.process_instance_key);
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// Started by a condition on `amount`; its task `review` is interrupted when `cancelled`
/// becomes true, and then `undo` runs.
const CONDITIONED: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="conditioned" isExecutable="true">
    <bpmn:startEvent id="large"><bpmn:conditionalEventDefinition>
      <bpmn:condition>= amount &gt; 100</bpmn:condition></bpmn:conditionalEventDefinition>
    </bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="large" targetRef="review"/>
    <bpmn:serviceTask id="review"><bpmn:extensionElements>
      <zeebe:taskDefinition type="review"/></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:boundaryEvent id="on-cancel" attachedToRef="review">
      <bpmn:conditionalEventDefinition><bpmn:extensionElements>
        <zeebe:conditionalFilter variableNames="cancelled"/></bpmn:extensionElements>
        <bpmn:condition>= cancelled = true</bpmn:condition></bpmn:conditionalEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="end"/>
    <bpmn:sequenceFlow id="f3" sourceRef="on-cancel" targetRef="undo"/>
    <bpmn:serviceTask id="undo"><bpmn:extensionElements>
      <zeebe:taskDefinition type="undo"/></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f4" sourceRef="undo" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

#[test]
fn conditional_events_start_and_interrupt_from_the_cli_across_a_restart_and_a_crash() {
    let (server, data, addr) = start_server("conditionals", 1);
    let mut client = server.client();
    deploy(&mut client, "conditioned.bpmn", CONDITIONED);
    let none = cli_json(
        &addr,
        &["evaluate-conditional", "--vars", r#"{"amount": 5}"#],
    );
    assert_eq!(none["started"], serde_json::json!([]), "{none}");
    let started = cli_json(
        &addr,
        &[
            "evaluate-conditional",
            "--vars",
            r#"{"amount": 150}"#,
            "--process",
            "conditioned",
        ],
    );
    let list = started["started"].as_array().expect("a list");
    assert_eq!(list.len(), 1, "{started}");
    assert_eq!(list[0]["start_event_id"], "large");
    let instance = list[0]["process_instance_key"].as_u64().expect("a key");
    // Stopped with a snapshot holding the boundary event's conditional subscription.
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("snapshot at LSN"), "{stderr}");

    let server = Server::start(&data, &addr, &["--shards", "1"]);
    // A change the filter does not watch leaves the task alone.
    let key = instance.to_string();
    cli_json(
        &addr,
        &["set-variables", &key, "--vars", r#"{"note": "x"}"#],
    );
    let set = cli_json(
        &addr,
        &["set-variables", &key, "--vars", r#"{"cancelled": true}"#],
    );
    assert!(set["key"].as_u64().is_some(), "{set}");
    server.kill9();

    // The interruption is journaled: replay gives the `undo` job, and no `review` job.
    let server = Server::start(&data, &addr, &["--shards", "1"]);
    let mut client = server.client();
    let undo = complete_one(&mut client, "undo");
    assert_eq!(undo.process_instance_key, instance);
    assert!(
        activate(&mut client, "review", 0).is_empty(),
        "review was interrupted"
    );
    let unknown = cli(&addr, &["evaluate-conditional", "--process", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

const AD_HOC: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="adhoc-order" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="adhoc"/>
    <bpmn:adHocSubProcess id="adhoc">
      <bpmn:extensionElements>
        <zeebe:adHoc activeElementsCollection="= [&quot;a&quot;]" outputCollection="results" outputElement="= result"/>
      </bpmn:extensionElements>
      <bpmn:serviceTask id="a"><bpmn:extensionElements>
        <zeebe:taskDefinition type="adhoc-a"/></bpmn:extensionElements></bpmn:serviceTask>
      <bpmn:serviceTask id="b"><bpmn:extensionElements>
        <zeebe:taskDefinition type="adhoc-b"/></bpmn:extensionElements></bpmn:serviceTask>
    </bpmn:adHocSubProcess>
    <bpmn:sequenceFlow id="f2" sourceRef="adhoc" targetRef="after"/>
    <bpmn:serviceTask id="after"><bpmn:extensionElements>
      <zeebe:taskDefinition type="adhoc-after"/></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f3" sourceRef="after" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

/// Completes the one `job_type` job with `variables`; returns it.
fn complete_with(client: &mut Client, job_type: &str, variables: &str) -> ringflow_wire::Job {
    let mut jobs = activate(client, job_type, 5_000);
    assert_eq!(jobs.len(), 1, "one `{job_type}` job");
    let job = jobs.remove(0);
    client
        .done(&Request::CompleteJob {
            job_key: job.key,
            variables: variables.into(),
        })
        .expect("complete");
    job
}

#[test]
fn ad_hoc_elements_are_activated_from_the_cli_across_a_restart() {
    let (server, data, addr) = start_server("adhoc", 1);
    let mut client = server.client();
    deploy(&mut client, "adhoc.bpmn", AD_HOC);
    let created = client
        .create_instance(create("adhoc-order", r#"{"order": "A-1"}"#, ""))
        .expect("create");
    let instance = created.process_instance_key.to_string();
    // The subprocess's key, from the cold store's history.
    let data_arg = data.to_str().expect("utf-8 path");
    let started = Instant::now();
    let ad_hoc_key = loop {
        let output = Command::new(BIN)
            .args(["instance", &instance, "--data", data_arg, "--json"])
            .output()
            .expect("run ringflow instance");
        let found = serde_json::from_slice::<Value>(&output.stdout)
            .ok()
            .and_then(|detail| {
                detail["elements"].as_array().and_then(|elements| {
                    elements
                        .iter()
                        .find(|e| e["elementId"] == "adhoc" && e["state"] == "active")
                        .and_then(|e| e["key"].as_u64())
                })
            });
        if let Some(key) = found {
            break key.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no active adhoc"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let activated = cli_json(
        &addr,
        &[
            "activate-ad-hoc",
            &ad_hoc_key,
            "--element",
            r#"b={"reviewer": "kim"}"#,
        ],
    );
    assert_eq!(activated["key"].as_u64().unwrap().to_string(), ad_hoc_key);
    let b = complete_with(&mut client, "adhoc-b", r#"{"result": "B"}"#);
    assert!(
        b.variables.contains(r#""reviewer":"kim""#),
        "{}",
        b.variables
    );
    // Bad requests name what is wrong; nothing changes.
    for (args, expected) in [
        (vec!["--element", "after"], "no activatable element `after`"),
        (vec!["--element", "b", "--element", "b"], "named twice"),
        (vec!["--element", "b=[1]"], "must be a JSON object"),
    ] {
        let mut all = vec!["activate-ad-hoc", ad_hoc_key.as_str()];
        all.extend(args);
        let output = cli(&addr, &all);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");

    // After a restart, `a` (activated on entry) still waits; completing it completes the
    // subprocess with both outputs.
    let server = Server::start(&data, &addr, &["--shards", "1"]);
    let mut client = server.client();
    complete_with(&mut client, "adhoc-a", r#"{"result": "A"}"#);
    let after = complete_with(&mut client, "adhoc-after", "");
    let variables: Value = serde_json::from_str(&after.variables).expect("JSON");
    assert_eq!(variables["results"], serde_json::json!(["B", "A"]));
    assert!(variables.get("reviewer").is_none(), "{variables}");
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn an_ad_hoc_worker_decides_from_the_cli() {
    let (server, _data, addr) = start_server("adhoc-worker", 1);
    let mut client = server.client();
    let xml = AD_HOC.replace("adhoc-order", "adhoc-agent").replace(
        r#"<zeebe:adHoc activeElementsCollection="= [&quot;a&quot;]" "#,
        r#"<zeebe:taskDefinition type="adhoc-agent"/><zeebe:adHoc "#,
    );
    deploy(&mut client, "agent.bpmn", &xml);
    client
        .create_instance(create("adhoc-agent", "", ""))
        .expect("create");
    let agent = activate(&mut client, "adhoc-agent", 5_000);
    assert_eq!(agent.len(), 1);
    assert!(
        agent[0].variables.contains("adHocSubProcessElements"),
        "{}",
        agent[0].variables
    );
    let key = agent[0].key.to_string();
    cli_json(
        &addr,
        &[
            "jobs",
            "complete",
            &key,
            "--vars",
            r#"{"turns": 1}"#,
            "--activate",
            r#"a={"q": 1}"#,
            "--activate",
            r#"a={"q": 2}"#,
        ],
    );
    let tools = activate(&mut client, "adhoc-a", 5_000);
    assert_eq!(tools.len(), 2, "a, twice");
    for (n, tool) in tools.iter().enumerate() {
        client
            .done(&Request::CompleteJob {
                job_key: tool.key,
                variables: format!(r#"{{"result": {n}}}"#),
            })
            .expect("complete");
    }
    // Asked again after each; the last question is open.
    let agent = activate(&mut client, "adhoc-agent", 5_000);
    assert_eq!(agent.len(), 1);
    let variables: Value = serde_json::from_str(&agent[0].variables).expect("JSON");
    assert_eq!(variables["results"], serde_json::json!([0, 1]));
    assert_eq!(variables["turns"], 1);
    // Done and activating at once is refused by the CLI; done alone completes it.
    let both = cli(
        &addr,
        &[
            "jobs",
            "complete",
            &agent[0].key.to_string(),
            "--done",
            "--activate",
            "a",
        ],
    );
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    cli_json(
        &addr,
        &["jobs", "complete", &agent[0].key.to_string(), "--done"],
    );
    let after = complete_with(&mut client, "adhoc-after", "");
    let variables: Value = serde_json::from_str(&after.variables).expect("JSON");
    assert_eq!(variables["results"], serde_json::json!([0, 1]));
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn jobs_carry_only_the_variables_a_worker_fetches() {
    let (server, _data, addr) = start_server("fetch", 1);
    let mut client = server.client();
    deploy_one_task(&mut client);
    let variables = r#"{"a": 1, "b": {"big": "x"}, "c": "text"}"#;
    client
        .create_instance(create("one-task", variables, ""))
        .expect("create");
    // Pulled, with a name that no variable has: the others are left out.
    let pull = ActivateJobs {
        job_type: "e2e-work".into(),
        worker: "fetcher".into(),
        max_jobs: 10,
        lease_ms: 60_000,
        long_poll_ms: 5_000,
        fetch_variables: vec!["a".into(), "c".into(), "missing".into()],
    };
    let jobs = client.activate_jobs(pull.clone()).expect("activate");
    assert_eq!(jobs.len(), 1);
    let fetched: Value = serde_json::from_str(&jobs[0].variables).expect("JSON");
    assert_eq!(fetched, serde_json::json!({"a": 1, "c": "text"}));
    // A bad fetch list is refused before any wait, naming the limit.
    let refused = client
        .activate_jobs(ActivateJobs {
            fetch_variables: vec!["a".into(), String::new()],
            ..pull
        })
        .expect_err("an empty name");
    assert_eq!(
        refused.code(),
        Some(ErrorCode::InvalidArgument),
        "{refused}"
    );
    assert!(refused.to_string().contains("NAME_BYTES_MAX"), "{refused}");
    client
        .done(&Request::CompleteJob {
            job_key: jobs[0].key,
            variables: String::new(),
        })
        .expect("complete");
    // Pushed to a worker that fetches `b` only.
    client
        .create_instance(create("one-task", variables, ""))
        .expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let topology = client.topology().clone();
    let worker_stop = stop.clone();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let worker_seen = seen.clone();
    let worker = std::thread::spawn(move || {
        let mut worker = JobWorker::new("e2e-work");
        worker.stop = worker_stop;
        worker.fetch_variables = vec!["b".into()];
        worker.run(&topology, &ClientConfig::default(), |job| {
            worker_seen.lock().unwrap().push(job.variables.clone());
            JobOutcome::Complete {
                variables: String::new(),
            }
        })
    });
    let started = Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "no job pushed");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker thread").expect("worker");
    let pushed: Value = serde_json::from_str(&seen.lock().unwrap()[0]).expect("JSON");
    assert_eq!(pushed, serde_json::json!({"b": {"big": "x"}}));
    // The CLI's --fetch does the same.
    client
        .create_instance(create("one-task", variables, ""))
        .expect("create");
    let listed = cli_json(
        &addr,
        &[
            "jobs", "activate", "e2e-work", "--wait", "5s", "--fetch", "c",
        ],
    );
    assert_eq!(
        listed["jobs"][0]["variables"],
        serde_json::json!({"c": "text"}),
        "{listed}"
    );
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// A script that compares a date-time without a zone with the same clock time in UTC.
const ZONELESS: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="e2e-zoneless">
  <bpmn:process id="zoneless" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="script"/>
    <bpmn:scriptTask id="script"><bpmn:extensionElements>
      <zeebe:script expression="=date and time(&quot;2020-07-31T10:00:00&quot;) = @&quot;2020-07-31T10:00:00Z&quot;" resultVariable="same"/>
    </bpmn:extensionElements></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="script" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

/// FEEL's zone-less date-times are UTC in the server, whatever zone the machine is set to:
/// the evaluator would read the machine's zone, and replay elsewhere would differ.
#[test]
fn a_date_time_without_a_zone_is_utc_whatever_the_machines_zone() {
    let data = data_dir("zoneless");
    let server = Server::start_with_env(
        &data,
        "127.0.0.1:0",
        &["--shards", "1"],
        &[("TZ", "Asia/Kathmandu")],
    );
    let mut client = server.client();
    deploy(&mut client, "zoneless.bpmn", ZONELESS);
    let result = client
        .create_instance_with_result(create("zoneless", "", ""))
        .expect("an awaited result");
    let variables: Value = serde_json::from_str(&result.variables).expect("JSON");
    assert_eq!(variables["same"], true, "{variables}");
}

/// A Camunda user task with an assignment, a creating listener and a completing listener.
const REVIEWED: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="reviewed" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review"/>
    <bpmn:userTask id="review"><bpmn:extensionElements>
      <zeebe:userTask/>
      <zeebe:assignmentDefinition assignee="=owner" candidateGroups="sales, ops"/>
      <zeebe:formDefinition formKey="camunda-forms:bpmn:review-form"/>
      <zeebe:taskListeners>
        <zeebe:taskListener eventType="creating" type="route"/>
        <zeebe:taskListener eventType="assigning" type="notify"/>
        <zeebe:taskListener eventType="completing" type="check"/>
      </zeebe:taskListeners>
    </bpmn:extensionElements></bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

fn job_header<'j>(job: &'j ringflow_wire::Job, name: &str) -> Option<&'j str> {
    job.custom_headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[test]
fn user_task_properties_and_task_listeners_over_the_wire_across_a_restart_and_a_crash() {
    let (server, data, addr) = start_server("user-tasks", 1);
    let mut client = server.client();
    deploy(&mut client, "reviewed.bpmn", REVIEWED);
    let created = client
        .create_instance(create("reviewed", r#"{"owner": "ana"}"#, ""))
        .expect("create");
    let mut routes = activate(&mut client, "route", 5_000);
    assert_eq!(routes.len(), 1);
    let route = routes.remove(0);
    assert_eq!(route.listener, Some(ringflow_wire::JobListener::Creating));
    assert_eq!(job_header(&route, "io.camunda.zeebe:assignee"), Some("ana"));
    client
        .complete_task_listener_job(
            route.key,
            ringflow_wire::TaskListenerDecision {
                assignee: Some("bo".into()),
                priority: Some(80),
                ..Default::default()
            },
        )
        .expect("corrected");
    // Made with an assignee: made unassigned, then assigned through `notify`.
    let notify = complete_one(&mut client, "notify");
    assert_eq!(notify.listener, Some(ringflow_wire::JobListener::Assigning));
    assert_eq!(job_header(&notify, "io.camunda.zeebe:assignee"), Some("bo"));
    let mut tasks = activate(&mut client, "io.camunda.zeebe:userTask", 5_000);
    let task = tasks.remove(0);
    assert_eq!(task.listener, None);
    assert_eq!(job_header(&task, "io.camunda.zeebe:assignee"), Some("bo"));
    assert_eq!(
        job_header(&task, "io.camunda.zeebe:candidateGroups"),
        Some(r#"["sales","ops"]"#)
    );
    assert_eq!(job_header(&task, "io.camunda.zeebe:priority"), Some("80"));
    assert_eq!(
        job_header(&task, "io.camunda.zeebe:formKey"),
        Some("camunda-forms:bpmn:review-form")
    );
    // The completion waits for `check`, and so does its answer.
    let mut connection = Connection::open(&addr, &ClientConfig::default()).expect("connect");
    let completing = connection
        .send(&Request::CompleteJob {
            job_key: task.key,
            variables: r#"{"approved": true}"#.into(),
        })
        .expect("send the completion");
    assert!(
        connection
            .recv_timeout(Duration::from_millis(300))
            .expect("nothing yet")
            .is_none(),
        "answered before its listener ran"
    );
    // Stopped with a snapshot that holds the completion while `check` waits: the waiting
    // request is told.
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    match connection.wait_for(completing, Duration::from_secs(10)) {
        Ok(Response::Error(error)) => {
            assert_eq!(error.code, ErrorCode::Unavailable, "{error:?}");
            assert!(
                error.message.contains("waits for its task listeners")
                    && error.message.contains("shutting down"),
                "{error:?}"
            );
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }

    let server = Server::start(&data, &addr, &["--shards", "1"]);
    let mut client = server.client();
    let mut checks = activate(&mut client, "check", 5_000);
    let check = checks.remove(0);
    assert_eq!(check.listener, Some(ringflow_wire::JobListener::Completing));
    let variables: Value = serde_json::from_str(&check.variables).expect("JSON");
    assert_eq!(variables["approved"], true, "{variables}");
    drop(client);
    // Denied from the CLI.
    let denied = cli_json(
        &addr,
        &[
            "jobs",
            "complete",
            &check.key.to_string(),
            "--deny",
            "--deny-reason",
            "add a comment",
        ],
    );
    assert!(denied.is_object(), "{denied}");
    let refused = cli(&addr, &["jobs", "complete", "1", "--deny", "--vars", "{}"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--vars"), "{stderr}");
    // The denial is journaled; a crash leaves it to replay.
    server.kill9();

    let server = Server::start(&data, &addr, &["--shards", "1"]);
    let mut client = server.client();
    let mut tasks = activate(&mut client, "io.camunda.zeebe:userTask", 5_000);
    let again = tasks.remove(0);
    assert_eq!(
        job_header(&again, "ringflow:deniedReason"),
        Some("add a comment")
    );
    assert_eq!(job_header(&again, "io.camunda.zeebe:assignee"), Some("bo"));
    // An assignment from the CLI waits for `notify`, which denies it: the CLI says why.
    let assigning = {
        let (addr, key) = (addr.clone(), again.key.to_string());
        std::thread::spawn(move || cli(&addr, &["jobs", "assign", &key, "--assignee", "dan"]))
    };
    let mut notifies = activate(&mut client, "notify", 5_000);
    let notify = notifies.remove(0);
    assert_eq!(
        job_header(&notify, "io.camunda.zeebe:assignee"),
        Some("dan")
    );
    client
        .complete_task_listener_job(
            notify.key,
            ringflow_wire::TaskListenerDecision {
                denied: true,
                denied_reason: "dan is away".into(),
                ..Default::default()
            },
        )
        .expect("denied");
    let refused = assigning.join().expect("the CLI ran");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        format!(
            "ringflow: INVALID_STATE: the assignment of the user task of job {} was denied by \
             a task listener: dan is away",
            again.key
        )
    );
    // Again, approved: the CLI's answer comes once `notify` is done.
    let assigning = {
        let (addr, key) = (addr.clone(), again.key.to_string());
        std::thread::spawn(move || cli_json(&addr, &["jobs", "assign", &key, "--assignee", "cy"]))
    };
    let notify = complete_one(&mut client, "notify");
    assert_eq!(job_header(&notify, "io.camunda.zeebe:assignee"), Some("cy"));
    let assigned = assigning.join().expect("the CLI ran");
    assert!(assigned.is_object(), "{assigned}");
    let updated = cli_json(
        &addr,
        &[
            "jobs",
            "update",
            &again.key.to_string(),
            "--candidate-groups",
            "audit",
            "--priority",
            "95",
        ],
    );
    assert!(updated.is_object(), "{updated}");
    let mut connection = Connection::open(&addr, &ClientConfig::default()).expect("connect");
    let completing = connection
        .send(&Request::CompleteJob {
            job_key: again.key,
            variables: r#"{"approved": true, "comment": "fine"}"#.into(),
        })
        .expect("send the completion");
    let check = complete_one(&mut client, "check");
    assert_eq!(check.process_instance_key, created.process_instance_key);
    match connection.wait_for(completing, Duration::from_secs(10)) {
        Ok(Response::Done { key, .. }) => assert_eq!(key, again.key),
        other => panic!("expected the completion done, got {other:?}"),
    }
    let gone = client
        .done(&Request::CancelInstance {
            process_instance_key: created.process_instance_key,
        })
        .expect_err("ended");
    assert_eq!(gone.code(), Some(ErrorCode::InstanceNotFound), "{gone}");
    drop(client);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    // The cold store lists the task's two jobs: the denied one and the one completed.
    let output = Command::new(BIN)
        .args(["user-tasks", "--all", "--json", "--data"])
        .arg(&data)
        .output()
        .expect("run ringflow user-tasks");
    assert!(output.status.success(), "{output:?}");
    let listed: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let rows = listed.as_array().expect("a list");
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!(rows[0]["jobKey"], again.key, "{listed}");
    assert_eq!(rows[0]["deniedReason"], "add a comment");
    assert_eq!(rows[0]["assignee"], "cy", "assigned from the CLI");
    assert_eq!(rows[0]["priority"], 95, "updated from the CLI");
    assert_eq!(rows[0]["candidateGroups"], serde_json::json!(["audit"]));
    assert_eq!(rows[0]["state"], "completed");
    assert_eq!(rows[1]["jobKey"], task.key);
    assert_eq!(
        rows[1]["candidateGroups"],
        serde_json::json!(["sales", "ops"])
    );
    let open = Command::new(BIN)
        .args(["user-tasks", "--data"])
        .arg(&data)
        .output()
        .expect("run ringflow user-tasks");
    assert_eq!(
        String::from_utf8_lossy(&open.stdout).trim(),
        "no user tasks match"
    );
}

/// A completion that waits for its task listeners is answered TIMEOUT after
/// `--task-listener-wait-ms` and goes on; the answers to the requests after it on the same
/// connection do not wait for it.
#[test]
fn a_held_completion_times_out_without_holding_up_the_answers_after_it() {
    let (mut server, _, _) = start_server_with(
        "held-timeout",
        1,
        &[
            "--task-listener-wait-ms",
            "3000",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let metrics = server.metrics_addr();
    let waits = || {
        metric(
            &scrape(&metrics),
            "ringflow_user_task_transition_waits{shard=\"0\"}",
        )
    };
    assert_eq!(waits(), 0.0);
    let mut client = server.client();
    deploy(&mut client, "reviewed.bpmn", REVIEWED);
    let created = client
        .create_instance(create("reviewed", r#"{"owner": "ana"}"#, ""))
        .expect("create");
    complete_one(&mut client, "route");
    complete_one(&mut client, "notify");
    let task = activate(&mut client, "io.camunda.zeebe:userTask", 5_000).remove(0);
    let mut connection = Connection::open(&server.addr, &ClientConfig::default()).expect("connect");
    let ids = connection
        .send_batch(&[
            Request::CompleteJob {
                job_key: task.key,
                variables: r#"{"approved": true}"#.into(),
            },
            Request::CreateInstance(create("reviewed", r#"{"owner": "bo"}"#, "")),
        ])
        .expect("send");
    // The create behind the held completion is answered first.
    let (first, answer) = connection
        .recv_timeout(Duration::from_secs(10))
        .expect("an answer")
        .expect("one within 10 s");
    assert_eq!(first, ids[1], "{answer:?}");
    assert!(matches!(answer, Response::InstanceCreated(_)), "{answer:?}");
    // The held completion is counted while it waits (its 3 s are far from over).
    assert_eq!(waits(), 1.0, "one request waits for the listener");
    match connection.wait_for(ids[0], Duration::from_secs(10)) {
        Ok(Response::Error(error)) => {
            assert_eq!(error.code, ErrorCode::Timeout, "{error:?}");
            assert_eq!(
                error.message,
                format!(
                    "the completion of the user task of job {} still waits for its task \
                     listeners after 3000 ms; it goes on when they are done",
                    task.key
                )
            );
        }
        other => panic!("expected TIMEOUT, got {other:?}"),
    }
    assert_eq!(waits(), 0.0, "given up");
    // It goes on: the listener approves and the instance ends.
    let check = complete_one(&mut client, "check");
    assert_eq!(check.process_instance_key, created.process_instance_key);
    let gone = client
        .done(&Request::CancelInstance {
            process_instance_key: created.process_instance_key,
        })
        .expect_err("ended");
    assert_eq!(gone.code(), Some(ErrorCode::InstanceNotFound), "{gone}");
}
