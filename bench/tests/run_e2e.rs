//! `ringflow-bench run` end to end: it starts the `ringflow` binary built beside it, runs a
//! short closed loop and writes a report that names what it measured.

use std::path::{Path, PathBuf};
use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_ringflow-bench");

fn server_binary() -> PathBuf {
    let binary = Path::new(BENCH).with_file_name("ringflow");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        binary.display()
    );
    binary
}

/// A fresh folder `name` under the tests' scratch directory.
fn fresh_folder(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create the test folder");
    root
}

/// `ringflow-bench run ARGS` against the test's server binary, with its data and
/// `report.json` in `root`; asserts it succeeded and returns the report and its stderr.
fn run_bench(root: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let json = root.join("report.json");
    let output = Command::new(BENCH)
        .arg("run")
        .args(args)
        .arg("--server-bin")
        .arg(server_binary())
        .arg("--data-root")
        .arg(root.join("data"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run ringflow-bench");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let report =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    (report, stderr)
}

#[test]
fn a_short_run_reports_throughput_latency_and_the_server_it_measured() {
    let test_began_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let root = fresh_folder("bench-run-e2e");
    let markdown = root.join("report.md");
    let (report, stderr) = run_bench(
        &root,
        &[
            "--scenario",
            "one_task",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--inflight",
            "64",
            "--cold-store",
            "none",
            "--quiet",
            "--markdown",
            markdown.to_str().expect("a UTF-8 path"),
        ],
    );
    assert_eq!(report["scenario"], "one_task");
    assert_eq!(report["mode"], "closed");
    let completed = report["completed"].as_u64().expect("completed");
    assert!(completed > 0, "{report}");
    let throughput = report["throughput_per_s"].as_f64().expect("throughput");
    assert!(
        (throughput - completed as f64 / 2.0).abs() < 1.0,
        "{report}"
    );
    let latency = &report["latency_us"];
    let p50 = latency["p50"].as_u64().expect("p50");
    let p99 = latency["p99"].as_u64().expect("p99");
    let max = latency["max"].as_u64().expect("max");
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{latency}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    // The latency cut at each instance's job: each part of an instance is at most its whole.
    let part = |name: &str, field: &str| {
        report["phases"][name][field]
            .as_u64()
            .unwrap_or_else(|| panic!("phases.{name}.{field} in {report}"))
    };
    for name in ["to_last_job_us", "last_job_to_result_us"] {
        assert!(part(name, "p50") > 0, "{report}");
        assert!(part(name, "max") <= max, "{name} above the whole: {report}");
    }
    assert!(
        stderr.contains("where the latency went: due to last job"),
        "{stderr}"
    );
    // The server's own side, from its metrics: creates and completions were answered in
    // the window, and commits made; the counts over 5 ms are within those over 2.5 ms.
    let server = &report["server_latency"];
    let count = |field: &str| {
        server[field]
            .as_u64()
            .unwrap_or_else(|| panic!("server_latency.{field} in {report}"))
    };
    assert!(count("requests") >= completed, "{report}");
    assert!(count("requests_over_5ms") <= count("requests_over_2_5ms"));
    assert!(count("requests_over_2_5ms") <= count("requests"));
    assert!(count("commits") > 0 && count("commits_over_5ms") <= count("commits"));
    assert!(
        count("pushes") > 0 && count("answer_writes") > 0,
        "{report}"
    );
    assert!(stderr.contains("inside the server, over 5 ms:"), "{stderr}");
    // A second per entry, warm-up (1 s) and measurement (2 s) at least; together they hold
    // every instance the window counted.
    let timeline = report["timeline"].as_array().expect("timeline");
    let phases: Vec<&str> = timeline
        .iter()
        .map(|second| second["phase"].as_str().expect("phase"))
        .collect();
    assert_eq!(
        &phases[..3],
        ["warm-up", "measuring", "measuring"],
        "{phases:?}"
    );
    let in_seconds: u64 = timeline
        .iter()
        .map(|second| second["completed"].as_u64().expect("completed"))
        .sum();
    assert!(in_seconds >= completed, "{in_seconds} < {completed}");
    for second in timeline {
        let (p50, p99, max) = (
            second["p50_us"].as_u64().expect("p50_us"),
            second["p99_us"].as_u64().expect("p99_us"),
            second["max_us"].as_u64().expect("max_us"),
        );
        assert!(p50 <= p99 && p99 <= max, "{second}");
    }
    // The generator worked between its waits for the sockets in every second it completed
    // instances.
    assert!(
        timeline
            .iter()
            .filter(|second| second["completed"].as_u64() > Some(0))
            .all(|second| second["loop_busy_max_us"].as_u64() > Some(0)),
        "{report}"
    );
    // The machine beside each second: as many seconds as the run's, on the same clock; the
    // server ran and the journal flushed its commits to the disk under the data root.
    let machine = report["machine_timeline"]
        .as_array()
        .expect("machine_timeline");
    assert!(
        !machine.is_empty() && machine.len() + 1 >= timeline.len(),
        "{} machine seconds for {} seconds of the run",
        machine.len(),
        timeline.len()
    );
    for (index, second) in machine.iter().enumerate() {
        assert_eq!(second["at_s"].as_u64(), Some(index as u64 + 1), "{second}");
    }
    let total = |field: &str| -> u64 {
        machine
            .iter()
            .map(|second| second[field].as_u64().unwrap_or_else(|| panic!("{field}")))
            .sum()
    };
    assert!(total("server_ms") > 0, "{machine:?}");
    // The engine's pace on the server's CPU, before and after.
    let pace = report["engine_pace_per_s"]
        .as_array()
        .expect("engine_pace_per_s");
    assert_eq!(pace.len(), 2, "{pace:?}");
    assert!(
        pace.iter().all(|p| p.as_f64().expect("a rate") > 0.0),
        "{pace:?}"
    );
    // The run began after this test did, and before the report was read.
    let started = report["started_unix_ms"].as_u64().expect("started_unix_ms");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    assert!(
        started >= test_began_ms && started <= now_ms,
        "{test_began_ms} {started} {now_ms}"
    );
    assert!(total("generator_ms") > 0, "{machine:?}");
    // The disk is known where the data root's filesystem has a block device of its own.
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&root).expect("root"));
    if libc::major(dev) != 0 {
        assert!(total("disk_writes") > 0, "{machine:?}");
    }
    assert_eq!(report["server"]["started_by_generator"], true);
    let version = report["server"]["version"]
        .as_str()
        .expect("server version");
    assert!(
        version.starts_with("ringflow ") && version.ends_with(')'),
        "{version}"
    );
    let table = std::fs::read_to_string(&markdown).expect("the Markdown report");
    assert!(table.contains("one_task"), "{table}");
    assert!(table.contains(version), "{table}");
    assert!(table.contains("server threads waited"), "{table}");
    assert!(
        table.contains("the engine alone on the server's CPU did"),
        "{table}"
    );
    assert!(
        !root
            .join("data")
            .read_dir()
            .expect("data root")
            .any(|entry| entry.expect("entry").path().is_dir()),
        "the server's data directory is removed without --keep-data"
    );
}

#[test]
fn the_journal_bench_commits_pipelined_by_default_and_one_at_a_time_when_asked() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-journal-e2e");
    let _ = std::fs::remove_dir_all(&root);
    for (extra, mode) in [
        (None, "pipelined commits"),
        (Some("--no-pipeline"), "one commit at a time"),
    ] {
        let output = Command::new(BENCH)
            .args([
                "journal",
                "--seconds",
                "1",
                "--shards",
                "1",
                "--rate",
                "20000",
            ])
            .args(["--record-bytes", "100", "--segment-mib", "8", "--dir"])
            .arg(&root)
            .args(extra)
            .output()
            .expect("run ringflow-bench journal");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(mode), "{stdout}");
        let row: Vec<&str> = stdout
            .lines()
            .find(|line| line.starts_with("| 1 |"))
            .unwrap_or_else(|| panic!("no row for one shard in:\n{stdout}"))
            .split('|')
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .collect();
        assert_eq!(row.len(), 12, "{row:?}");
        let records_per_s: f64 = row[4].parse().expect("records/s");
        let per_sync: f64 = row[5].parse().expect("records/fdatasync");
        assert!(records_per_s > 0.0 && per_sync >= 1.0, "{row:?}");
    }
    assert!(
        !root.exists(),
        "the journal bench left its directory behind"
    );
}

#[test]
fn compare_alternates_the_first_binary_and_sums_up_the_pairs() {
    let root = fresh_folder("bench-compare-e2e");
    let out = root.join("out");
    let output = Command::new(BENCH)
        .args(["compare", "--scenario", "one_task", "--pairs", "2"])
        .args(["--duration", "1s", "--warmup", "500ms", "--inflight", "32"])
        .args(["--cold-store", "none", "--quiet", "--no-pace"])
        .arg("--baseline")
        .arg(server_binary())
        .arg("--candidate")
        .arg(server_binary())
        // The same binary, run another way: the candidate's arguments reach its server only.
        .args(["--candidate-arg=--journal-sync", "--candidate-arg=dsync"])
        .arg("--data-root")
        .arg(root.join("data"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run ringflow-bench compare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // The baseline first in pair 1, the candidate first in pair 2.
    let order: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("ringflow-bench compare: pair "))
        .map(|line| {
            line.split(": ")
                .nth(1)
                .expect("which")
                .split(' ')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        order,
        ["baseline", "candidate", "candidate", "baseline"],
        "{stderr}"
    );
    let candidate_lines = stderr
        .lines()
        .filter(|line| line.contains(": candidate ("))
        .filter(|line| line.ends_with(" --journal-sync dsync)"))
        .count();
    assert_eq!(candidate_lines, 2, "{stderr}");
    assert!(
        stderr
            .lines()
            .filter(|line| line.contains(": baseline ("))
            .all(|line| !line.contains("--journal-sync")),
        "{stderr}"
    );
    for name in [
        "pair-01-baseline.json",
        "pair-01-candidate.json",
        "pair-02-candidate.json",
        "pair-02-baseline.json",
    ] {
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(name)).expect(name)).expect("JSON");
        assert!(
            report["throughput_per_s"].as_f64().expect("throughput") > 0.0,
            "{name}"
        );
    }
    let summary = std::fs::read_to_string(out.join("compare.md")).expect("compare.md");
    assert!(summary.contains("| 1 | baseline |"), "{summary}");
    assert!(summary.contains("| 2 | candidate |"), "{summary}");
    assert!(summary.contains("of 2 pairs"), "{summary}");
    assert!(summary.contains("Sign test"), "{summary}");
    assert!(
        summary.contains("with `--journal-sync dsync`") && summary.matches(" with `").count() == 1,
        "{summary}"
    );

    // Bad input is refused before anything runs.
    let refused = Command::new(BENCH)
        .args(["compare", "--scenario", "one_task", "--pairs", "0"])
        .arg("--baseline")
        .arg(server_binary())
        .arg("--candidate")
        .arg(root.join("no-such-binary"))
        .output()
        .expect("run ringflow-bench compare");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--pairs must be at least 1"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = Command::new(BENCH)
        .args(["compare", "--scenario", "one_task"])
        .arg("--baseline")
        .arg(server_binary())
        .arg("--candidate")
        .arg(root.join("no-such-binary"))
        .output()
        .expect("run ringflow-bench compare");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("no-such-binary is not a file"), "{stderr}");
    // A cold store passed around `--cold-store` would run while the report named another.
    for args in [
        ["--server-arg=--cold-store", "--server-arg=none"],
        ["--server-arg=--cold-store=none", "--quiet"],
    ] {
        let refused = Command::new(BENCH)
            .args(["run", "--scenario", "one_task", "--duration", "1s"])
            .args(args)
            .arg("--server-bin")
            .arg(server_binary())
            .output()
            .expect("run ringflow-bench run");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{args:?}");
        assert!(
            stderr.contains("choose the cold store with --cold-store"),
            "{stderr}"
        );
    }
}

/// `--send-tick-us`: the open loop sends the creates due in each tick together, and their
/// latency still counts from when each was due, so the wait for the tick shows as send lag.
#[test]
fn an_open_loop_with_a_send_tick_times_creates_from_when_they_were_due() {
    let root = fresh_folder("bench-tick-e2e");
    let (report, _) = run_bench(
        &root,
        &[
            "--scenario",
            "one_task",
            "--rate",
            "2000",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--send-tick-us",
            "5000",
            "--cold-store",
            "none",
            "--quiet",
            "--no-pace",
        ],
    );
    assert_eq!(report["mode"], "open");
    assert_eq!(report["send_tick_us"], 5000, "{report}");
    assert!(report["completed"].as_u64() > Some(0), "{report}");
    // A create due anywhere in a 5 ms tick waits for the tick's end, so the slowest tenth
    // waits about 4.5 ms; a p90 of at least 0.5 ms holds on any machine (a slower one only
    // waits longer), and each instance's latency includes its wait.
    let lag_p90 = report["phases"]["send_lag_us"]["p90"]
        .as_u64()
        .expect("send lag p90");
    assert!(lag_p90 >= 500, "{report}");
    let latency_p90 = report["latency_us"]["p90"].as_u64().expect("p90");
    assert!(latency_p90 >= lag_p90, "{report}");
}

/// `ringflow-bench export` writes the same records in its three layouts, checks that the
/// store holds every instance after each run, and leaves no files behind.
#[test]
fn the_export_bench_times_three_layouts_and_cleans_up() {
    let root = fresh_folder("export-bench");
    let dir = root.join("stores");
    let output = Command::new(BENCH)
        .args([
            "export",
            "--exporters",
            "3",
            "--instances",
            "400",
            "--inflight",
            "32",
            "--rounds",
            "2",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .expect("run ringflow-bench export");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (layout, exporters) in [("one exporter", 1), ("one file", 3), ("a file each", 3)] {
        let rows: Vec<&str> = stdout
            .lines()
            .filter(|line| line.contains(&format!("| {layout} | {exporters} | ")))
            .collect();
        assert_eq!(rows.len(), 2, "{layout}, once a round:\n{stdout}");
        for row in rows {
            let pace: f64 = row
                .trim_end_matches(" |")
                .rsplit("| ")
                .next()
                .and_then(|pace| pace.parse().ok())
                .unwrap_or_else(|| panic!("no pace in {row}"));
            assert!(pace > 0.0, "{row}");
            assert!(row.contains(&format!("| {} |", 400 * exporters)), "{row}");
        }
    }
    assert!(!dir.exists(), "the stores were left in {}", dir.display());
}
