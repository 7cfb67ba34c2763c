//! Helpers shared by the end-to-end tests (each test file includes what it uses).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Output;

use ringflow_wire::ActivateJobs;
use ringflow_wire::client::Client;

/// A base port for servers that need ports named in advance (a cluster file, `--port`):
/// `span` consecutive ports that bind on every host of `hosts`, picked at random below the
/// kernel's ephemeral range. There no outgoing connection, and no `--listen HOST:0` server
/// of a test running beside, can take them between this probe and the servers' bind (a
/// port from bind(0) could be handed to either). Panics after 200 tries.
pub fn fixed_ports(hosts: &[&str], span: u16) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, high) = (10_000u16, ephemeral_low.max(20_000) - span);
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |since| since.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32)
        | 1;
    for _ in 0..200 {
        // xorshift64: enough to spread parallel tests over the range.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let base = low + (state % u64::from(high - low)) as u16;
        let bound: Result<Vec<_>, _> = hosts
            .iter()
            .flat_map(|host| (base..base + span).map(move |port| (*host, port)))
            .map(std::net::TcpListener::bind)
            .collect();
        if bound.is_ok() {
            return base;
        }
    }
    panic!("no {span} consecutive ports free on {hosts:?}");
}

/// Activates every ready `e2e-work` job of the cluster (leased for a minute) for `worker`.
pub fn activate_all(client: &mut Client, worker: &str) -> Vec<ringflow_wire::Job> {
    let mut all = Vec::new();
    loop {
        let jobs = client
            .activate_jobs(ActivateJobs {
                job_type: "e2e-work".into(),
                worker: worker.into(),
                max_jobs: 1000,
                lease_ms: 60_000,
                long_poll_ms: 0,
                fetch_variables: Vec::new(),
            })
            .expect("activate");
        if jobs.is_empty() {
            return all;
        }
        all.extend(jobs);
    }
}

/// A process's stdout and stderr, for assertion messages and searches.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The instances in the cold store of the data folder `data`, as `ringflow instances --json`
/// lists them (newest first).
pub fn stored_instances(data: &std::path::Path) -> Vec<serde_json::Value> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringflow"))
        .args(["instances", "--json", "--limit", "10000", "--data"])
        .arg(data)
        .output()
        .expect("ringflow instances runs");
    assert!(output.status.success(), "{}", text(&output));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    list.as_array().expect("a list").clone()
}

/// The text of `GET /metrics` at `addr`.
pub fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response
}

/// The value of the first sample named `name_and_labels` (as the line starts).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name_and_labels} in the metrics"))
}

/// Runs `ringflow serve ARGS`, which must exit by itself within a minute (it fails the test
/// otherwise); returns its exit status and what it printed on stderr.
pub fn serve_until_it_exits(args: &[&std::ffi::OsStr]) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringflow"))
        .arg("serve")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ringflow serve");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringflow serve {args:?} kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status, stderr)
}

/// The stderr of a `ringflow serve` that a test started, in a log file (appended to by every
/// start on the same file): what this start wrote, and the addresses it reported. With
/// `--listen 127.0.0.1:0` the server picks its own free ports, so parallel tests never race
/// each other (or the OS) for one.
pub struct ServerLog {
    path: std::path::PathBuf,
    start: u64,
}

impl ServerLog {
    /// Opens (appends to) `path` for a server's stderr.
    pub fn open(path: &std::path::Path) -> (ServerLog, std::fs::File) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("server log");
        let start = file.metadata().expect("log metadata").len();
        let log = ServerLog {
            path: path.to_path_buf(),
            start,
        };
        (log, file)
    }

    /// What this start of the server wrote so far.
    pub fn text(&self) -> String {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let start = usize::try_from(self.start).expect("a log offset");
        String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned()
    }

    /// Waits (up to 60 s) for the server to report shard 0's address, as `HOST:PORT`;
    /// panics with the log if the server exits first.
    pub fn listen_addr(&self, child: &mut std::process::Child) -> String {
        self.wait_for(child, ringflow_shard::load::listen_addr_in)
    }

    /// Waits (up to 60 s) for the server to report its metrics address.
    pub fn metrics_addr(&self, child: &mut std::process::Child) -> String {
        self.wait_for(child, ringflow_shard::load::metrics_addr_in)
    }

    fn wait_for(
        &self,
        child: &mut std::process::Child,
        find: fn(&str) -> Option<String>,
    ) -> String {
        let started = std::time::Instant::now();
        loop {
            let text = self.text();
            if let Some(found) = find(&text) {
                return found;
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("ringflow serve exited with {status}:\n{}", self.text());
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "ringflow serve reported no address:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
