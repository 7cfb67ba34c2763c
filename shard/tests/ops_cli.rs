//! Operations as a user meets them: `ringflow doctor`, `ringflow serve --config` and
//! `--print-config`, and the files in deploy/ (each checked against the binary that runs
//! them).

mod common;
use common::text;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ringflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringflow"))
        .args(args)
        .output()
        .expect("ringflow runs")
}

/// `ringflow doctor` for one shard on `data`, with a configuration file (written to the
/// temporary folder and removed after) that sets `listen`.
fn doctor_listening_on(data: &Path, listen: &str) -> Output {
    let config = std::env::temp_dir().join(format!(
        "ringflow-doctor-{}-{}.toml",
        std::process::id(),
        listen.replace([':', '.'], "-")
    ));
    std::fs::write(&config, format!("listen = \"{listen}\"\n")).unwrap();
    let output = ringflow(&[
        "doctor",
        "--data",
        data.to_str().unwrap(),
        "--shards",
        "1",
        "--config",
        config.to_str().unwrap(),
    ]);
    std::fs::remove_file(&config).unwrap();
    output
}

/// A fresh folder on the build's filesystem (not /tmp, which may be tmpfs).
fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[test]
fn doctor_passes_on_a_disk_directory_and_names_every_check() {
    let dir = scratch("doctor-ok");
    let data = dir.join("data");
    // Port 0: whatever else listens on this machine, the node could start.
    let output = doctor_listening_on(&data, "127.0.0.1:0");
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("listen port 0: the node picks 1 free port(s)"),
        "{out}"
    );
    for check in [
        "kernel",
        "io_uring",
        "memlock",
        "filesystem",
        "mount",
        "o_direct",
        "disk",
        "cpus",
        "steal",
        "clock",
        "ports",
    ] {
        assert!(
            out.lines()
                .any(|line| line.split_whitespace().nth(1) == Some(check)),
            "no {check} line in:\n{out}"
        );
    }
    assert!(out.contains("does not exist yet"), "{out}");
    assert!(!data.exists(), "doctor must not create the data directory");
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(leftovers.is_empty(), "the O_DIRECT probe was left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn doctor_fails_on_a_port_another_process_listens_on() {
    let dir = scratch("doctor-port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = doctor_listening_on(&dir.join("data"), &format!("127.0.0.1:{port}"));
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "FAIL  ports      cannot listen on 127.0.0.1:{port}: the port is in use"
        )) && out.contains("`ss -ltnp` names it"),
        "{out}"
    );
    drop(taken);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Beside a node that runs on the same data directory (an upgrade's install script runs
/// doctor so), its ports in use are a warning, not a failure.
#[test]
fn doctor_beside_the_running_node_warns_about_its_ports_and_passes() {
    let dir = scratch("doctor-running");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (log, file) = common::ServerLog::open(&dir.join("server.log"));
    let mut server = Command::new(env!("CARGO_BIN_EXE_ringflow"))
        .args([
            "serve",
            "--shards",
            "1",
            "--cold-store",
            "none",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start ringflow serve");
    let addr = log.listen_addr(&mut server);
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no server"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = doctor_listening_on(&data, &addr);
    let _ = server.kill();
    let _ = server.wait();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "warn  ports      cannot listen on {addr}: the port is in use"
        )) && out.contains(&format!(
            "(the ringflow process {} runs on this data directory",
            server.id()
        )),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn doctor_fails_on_tmpfs_with_the_fix() {
    // /dev/shm is tmpfs on every Linux this runs on; if it is not, say so rather than pass.
    let output = Command::new("stat")
        .args(["-f", "-c", "%T", "/dev/shm"])
        .output()
        .expect("stat runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "tmpfs",
        "this test needs /dev/shm on tmpfs"
    );
    let output = ringflow(&[
        "doctor",
        "--data",
        "/dev/shm/ringflow-doctor",
        "--shards",
        "1",
    ]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let line = out
        .lines()
        .find(|line| line.starts_with("FAIL") && line.contains("filesystem"))
        .unwrap_or_else(|| panic!("no filesystem failure:\n{out}"));
    assert!(line.contains("tmpfs"), "{line}");
    assert!(
        out.contains("fix: tmpfs keeps data in memory only"),
        "{out}"
    );
}

/// Drops CAP_IPC_LOCK (which makes io_uring ignore RLIMIT_MEMLOCK, and which root has) from
/// the bounding set, so that the program this process executes does not get it, root or not.
fn drop_cap_ipc_lock() -> std::io::Result<()> {
    const CAP_IPC_LOCK: libc::c_ulong = 14;
    // SAFETY: prctl with PR_CAPBSET_DROP takes two integers and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0) } != 0 {
        let error = std::io::Error::last_os_error();
        // Without CAP_SETPCAP (not root) the process has no CAP_IPC_LOCK to drop either.
        if error.raw_os_error() != Some(libc::EPERM) {
            return Err(error);
        }
    }
    Ok(())
}

#[test]
fn doctor_fails_on_a_low_memlock_limit_and_too_many_shards() {
    let dir = scratch("doctor-memlock");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringflow"));
    command.args(["doctor", "--data", dir.to_str().unwrap(), "--shards", "1"]);
    // SAFETY: setrlimit and prctl are plain system calls on the child's own limits and
    // capabilities, safe between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64 * 1024,
                rlim_max: 64 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            drop_cap_ipc_lock()
        });
    }
    let output = command.output().expect("ringflow runs");
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("RLIMIT_MEMLOCK is 64 KiB"), "{out}");
    assert!(out.contains("ulimit -l 3328"), "{out}");

    let too_many = (usable_cpus() + 1).to_string();
    let output = ringflow(&[
        "doctor",
        "--data",
        dir.to_str().unwrap(),
        "--shards",
        &too_many,
    ]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.lines()
            .any(|line| line.starts_with("FAIL") && line.contains("cpus")),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn doctor_and_serve_reject_a_bad_configuration_file_by_key_and_line() {
    let dir = scratch("bad-config");
    let config = dir.join("ringflow.toml");
    std::fs::write(&config, "data = \"d\"\nsegment-mb = 64\n").unwrap();
    for command in ["doctor", "serve"] {
        let output = ringflow(&[command, "--config", config.to_str().unwrap()]);
        let out = text(&output);
        assert_eq!(output.status.code(), Some(2), "{command}: {out}");
        assert!(
            out.contains("segment-mb") && out.contains("line 2"),
            "{command}: {out}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn print_config_shows_the_file_overridden_by_flags_and_does_not_start() {
    let dir = scratch("print-config");
    let config = dir.join("ringflow.toml");
    std::fs::write(
        &config,
        "data = \"node-data\"\nshards = 1\nring-depth = 256\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let output = ringflow(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--ring-depth",
        "64",
        "--print-config",
    ]);
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let data = dir.join("node-data");
    assert!(
        out.contains(&format!("data = \"{}\"", data.display())),
        "{out}"
    );
    assert!(out.contains("\nring-depth = 64\n"), "the flag wins:\n{out}");
    assert!(out.contains("\nshards = 1\n"), "{out}");
    assert!(out.contains("# Unit: entries. Default: 128."), "{out}");
    assert!(out.contains("\n# cold-store =\n"), "{out}");
    assert!(!data.exists(), "--print-config must not start the server");
    // What it prints is itself a configuration file that gives the same configuration.
    let printed = dir.join("printed.toml");
    std::fs::write(&printed, &out).unwrap();
    let again = ringflow(&[
        "serve",
        "--config",
        printed.to_str().unwrap(),
        "--print-config",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(String::from_utf8_lossy(&again.stdout), out);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `ringflow ARGS` with stdout a pipe whose reader is already gone, as in
/// `ringflow ... | head` after `head` exited.
fn ringflow_into_a_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_ringflow"))
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("ringflow runs")
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_and_never_panics() {
    use std::os::unix::process::ExitStatusExt;
    let dir = scratch("closed-pipe");
    // A one-shot command ends by SIGPIPE, as `cat` does, with nothing on stderr (it
    // panicked: "failed printing to stdout: Broken pipe", exit 101).
    let config = dir.join("ringflow.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\n").unwrap();
    let doctor = ringflow_into_a_closed_pipe(&[
        "doctor",
        "--data",
        dir.join("data").to_str().unwrap(),
        "--shards",
        "1",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(
        doctor.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {}",
        doctor.status,
        text(&doctor)
    );
    assert!(doctor.stderr.is_empty(), "{}", text(&doctor));
    // A result that cannot be written (a full disk) is an error that names why, exit 2.
    let full = Command::new(env!("CARGO_BIN_EXE_ringflow"))
        .args(["doctor", "--data", dir.join("data").to_str().unwrap()])
        .args(["--shards", "1", "--config", config.to_str().unwrap()])
        .stdout(std::fs::File::create("/dev/full").expect("/dev/full"))
        .output()
        .expect("ringflow runs");
    assert_eq!(full.status.code(), Some(2), "{}", text(&full));
    assert_eq!(
        String::from_utf8_lossy(&full.stderr),
        "ringflow: cannot write the output: No space left on device (os error 28)\n"
    );
    // `serve` keeps SIGPIPE ignored (a node must not die for a log line) and drops what it
    // cannot write: --print-config exits 0.
    let printed = ringflow_into_a_closed_pipe(&["serve", "--shards", "1", "--print-config"]);
    assert_eq!(printed.status.code(), Some(0), "{}", text(&printed));
    assert!(printed.stderr.is_empty(), "{}", text(&printed));
    // A command whose error goes to stderr still reports it.
    let missing =
        ringflow_into_a_closed_pipe(&["validate", dir.join("missing.bpmn").to_str().unwrap()]);
    assert!(!missing.status.success(), "{:?}", missing.status);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deploy_names_a_file_over_the_deployment_limit_before_reading_or_sending_it() {
    let dir = scratch("deploy-too-big");
    let big = dir.join("big.bpmn");
    // Sparse: 48 MiB long, no blocks written.
    std::fs::File::create(&big)
        .and_then(|file| file.set_len(48 << 20))
        .expect("a sparse file");
    // Nothing listens on port 1: the file is refused before any connection is tried.
    let output = ringflow(&["deploy", big.to_str().unwrap(), "--addr", "127.0.0.1:1"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("big.bpmn (50331648 bytes) takes the deployment past DEPLOYMENT_BYTES_MAX (33554432 bytes"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The value of every `Key=` line of a systemd unit.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_systemd_install_stages_a_unit_whose_commands_this_binary_accepts() {
    let stage = scratch("systemd");
    let output = Command::new(repo().join("deploy/systemd/install.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_ringflow")])
        .args(["--root", stage.to_str().unwrap(), "--cpus", "0"])
        .output()
        .expect("install.sh runs");
    assert!(output.status.success(), "{}", text(&output));
    let unit_path = stage.join("etc/systemd/system/ringflow.service");
    let unit = std::fs::read_to_string(&unit_path).expect("the unit is installed");
    assert_eq!(unit_values(&unit, "CPUAffinity"), ["0"]);
    assert_eq!(unit_values(&unit, "LimitMEMLOCK"), ["infinity"]);
    // A lagging exporter may raise itself to nice 0 (shard::cold::exporter::catching_up).
    assert_eq!(unit_values(&unit, "LimitNICE"), ["+0"]);
    assert_eq!(unit_values(&unit, "Restart"), ["on-failure"]);
    assert_eq!(unit_values(&unit, "User"), ["ringflow"]);
    assert_eq!(unit_values(&unit, "StateDirectory"), ["ringflow"]);
    assert!(stage.join("usr/local/bin/ringflow").exists());
    assert!(stage.join("var/lib/ringflow").is_dir());
    let config = stage.join("etc/ringflow/ringflow.toml");
    let config_text = config.to_str().unwrap();

    // Each command of the unit, run with the staged configuration: the configuration is one
    // serve accepts, and doctor runs on it.
    let binary = env!("CARGO_BIN_EXE_ringflow");
    for (key, extra) in [("ExecStart", "--print-config"), ("ExecStartPre", "")] {
        let [command] = unit_values(&unit, key)[..] else {
            panic!("one {key} expected in\n{unit}");
        };
        let mut words = command.split_whitespace();
        assert_eq!(words.next(), Some("/usr/local/bin/ringflow"), "{command}");
        let args: Vec<&str> = words
            .map(|word| {
                if word == "/etc/ringflow/ringflow.toml" {
                    config_text
                } else {
                    word
                }
            })
            .chain((!extra.is_empty()).then_some(extra))
            .collect();
        let output = ringflow(&args);
        let out = text(&output);
        match key {
            "ExecStart" => {
                assert_eq!(output.status.code(), Some(0), "{command}: {out}");
                assert!(out.contains("data = \"/var/lib/ringflow\""), "{out}");
            }
            _ => {
                assert!(
                    out.starts_with("ringflow doctor: node 0"),
                    "{command}: {out}"
                );
                assert_ne!(output.status.code(), Some(2), "{command}: {out}");
            }
        }
    }

    // systemd's own check of the unit, where systemd is installed (it needs the commands to
    // exist, so they point at this build).
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let checked = stage.join("ringflow.service");
        std::fs::write(&checked, unit.replace("/usr/local/bin/ringflow", binary)).unwrap();
        let output = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&checked)
            .output()
            .expect("systemd-analyze runs");
        assert!(output.status.success(), "{}", text(&output));
        assert!(text(&output).trim().is_empty(), "{}", text(&output));
    } else {
        eprintln!("systemd-analyze is not installed: the unit's syntax was not verified");
    }
    std::fs::remove_dir_all(&stage).unwrap();
}
