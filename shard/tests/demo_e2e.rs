//! End to end: `ringflow demo`, the README's main command, runs a server on its defaults,
//! runs the order load, exits 0, and leaves a data directory whose cold store the CLI reads.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ringflow");

/// A port for `ringflow demo --port`, free with its neighbours: a shard per CPU on PORT and
/// up, the metrics on PORT-100 (fixed ports below the ephemeral range; see
/// `common::fixed_ports`).
fn demo_port() -> u16 {
    let shards = std::thread::available_parallelism().map_or(1, |cpus| cpus.get() as u16);
    loop {
        let port = common::fixed_ports(&["127.0.0.1"], shards);
        if TcpListener::bind(("127.0.0.1", port - 100)).is_ok() {
            return port;
        }
    }
}

/// A successful run of `ringflow demo` (2 s, 32 in flight) in a fresh folder `name`, on
/// `port` (`None`: the default, free ports the server picks), with `extra` arguments: its
/// data directory, stdout, stderr and server log. Fails the test, showing all four, when the
/// demo fails.
fn run_demo(name: &str, port: Option<u16>, extra: &[&str]) -> (PathBuf, String, String, String) {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create the test folder");
    let data = root.join("demo");
    let port: Vec<String> = port
        .map(|port| vec!["--port".to_string(), port.to_string()])
        .unwrap_or_default();
    let output = Command::new(BIN)
        .args(["demo", "--seconds", "2", "--inflight", "32"])
        .args(&port)
        .arg("--data")
        .arg(&data)
        .args(extra)
        .output()
        .expect("run ringflow demo");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "demo failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{log}",
        output.status
    );
    (data, stdout, stderr, log)
}

/// The summary's count of completed orders and the cold store's count of completed
/// instances.
fn completed_counts(stdout: &str) -> (u64, u64) {
    let completed = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("orders completed: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no completed count in:\n{stdout}"));
    let in_store = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("completed "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cold store count in:\n{stdout}"));
    (completed, in_store)
}

#[test]
fn the_demo_runs_the_order_load_and_leaves_history_the_cli_reads() {
    let (data, stdout, stderr, _) = run_demo("demo-e2e", None, &[]);
    // On its defaults the server picked free ports, and the demo says which.
    let port: u16 = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("server: "))
        .and_then(|rest| rest.split(" on 127.0.0.1:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no server address in:\n{stdout}"));
    assert_ne!(port, 0, "{stdout}");
    // The progress line came once a second, with rates and latency.
    assert!(
        stderr.contains("inst/s") && stderr.contains("p99"),
        "{stderr}"
    );
    let (completed, in_store) = completed_counts(&stdout);
    assert!(completed > 0, "{stdout}");
    assert!(stdout.contains("cold store caught up"), "{stdout}");
    // The cold store holds at least every order the summary counted, all completed.
    assert!(in_store >= completed, "{in_store} < {completed}\n{stdout}");
    // The count is over every shard's file of the store.
    assert!(
        stdout.contains("cold store: SQLite, a file per shard")
            && data.join("cold").join("shard-0.db").exists(),
        "{stdout}"
    );
    assert!(
        !stdout.contains("active "),
        "orders left running:\n{stdout}"
    );
    // The command it suggests for one instance works and shows the whole order flow.
    let key = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("ringflow instance "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no instance command in:\n{stdout}"))
        .to_string();
    let shown = Command::new(BIN)
        .args(["instance", &key, "--data"])
        .arg(&data)
        .output()
        .expect("run ringflow instance");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    assert!(
        text.contains("order-process") && text.contains("completed"),
        "{text}"
    );
    for element in ["Task_CheckStock", "Gateway_InStock"] {
        assert!(text.contains(element), "{element} missing:\n{text}");
    }
    // A second run refuses the same directory rather than mixing two runs.
    let again = Command::new(BIN)
        .args(["demo", "--data"])
        .arg(&data)
        .output()
        .expect("run ringflow demo again");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// A server that pushes back: with an exporter lag limit of a few records, creates and
/// publishes are refused with BUSY again and again. The load sends each again, the demo says
/// how many were pushed back, and it still succeeds with every order in the store.
#[test]
fn the_demo_rides_out_busy_and_says_so() {
    // A port named: shard 0 on it, the metrics 100 below.
    let (_, stdout, _, log) = run_demo(
        "demo-e2e-busy",
        Some(demo_port()),
        &[
            "--server-arg=--export-lag-warn-records",
            "--server-arg=2",
            "--server-arg=--export-lag-max-records",
            "--server-arg=4",
        ],
    );
    assert!(stdout.contains("pushed back: "), "{stdout}");
    assert!(!stdout.contains("errors:"), "{stdout}");
    assert!(log.contains("the exporter lag is over its limit"), "{log}");
    let (completed, in_store) = completed_counts(&stdout);
    assert!(completed > 0 && in_store >= completed, "{stdout}");
}

/// A demo killed with SIGKILL (no chance to stop its server) still takes its server with it:
/// the server gets SIGTERM from the kernel when the demo dies, and stops gracefully. Before,
/// it went on running, on the demo's ports and CPUs, until someone found it.
#[test]
fn a_demo_killed_with_sigkill_does_not_leave_its_server_running() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-e2e-sigkill");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create the test folder");
    let data = root.join("demo");
    let mut demo = Command::new(BIN)
        .args(["demo", "--seconds", "120", "--inflight", "8"])
        .arg("--data")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ringflow demo");
    // The server runs once it holds the data directory's lock, and serves once it says
    // where it listens.
    let started = std::time::Instant::now();
    let server = loop {
        let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
        if let Some(pid) = ringflow_shard::runtime::running_node(&data)
            && ringflow_shard::load::listen_addr_in(&log).is_some()
        {
            break pid;
        }
        assert!(
            demo.try_wait().expect("try_wait").is_none(),
            "the demo ended before its server ran: {log}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no server after a minute: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    demo.kill().expect("SIGKILL the demo");
    demo.wait().expect("wait");
    let killed = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{server}")).exists() {
        assert!(
            killed.elapsed() < std::time::Duration::from_secs(30),
            "the server (pid {server}) still runs 30 s after its demo was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(data.join("server.log")).expect("the server's log");
    assert!(
        log.contains("stopped; snapshot at LSN"),
        "not a graceful stop:\n{log}"
    );
}
