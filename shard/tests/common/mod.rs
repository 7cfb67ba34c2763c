//! Helpers shared by the end-to-end tests (each test file includes what it uses).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Output;

use ringflow_wire::ActivateJobs;
use ringflow_wire::client::Client;

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
