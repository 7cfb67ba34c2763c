//! The server under test as its own process: `ringflow serve` on a fresh data directory,
//! pinned to its own CPUs (the process and every thread it starts, exporters included), so
//! that the generator, pinned to the other CPUs, never competes with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use ringflow_shard::load::ServerProcess;
use ringflow_wire::Topology;

/// How long the server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping server may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start the server.
#[derive(Clone, Debug)]
pub struct Spawn {
    /// The `ringflow` binary.
    pub binary: PathBuf,
    /// Shards, one per CPU of `cpus`.
    pub cpus: Vec<usize>,
    /// The parent of the fresh data directory (a real filesystem: O_DIRECT, fdatasync).
    pub data_root: PathBuf,
    /// The port of shard 0 (0: free ports the server picks).
    pub port: u16,
    /// `--cold-store` (`none`, or empty for the default SQLite file).
    pub cold_store: String,
    /// Keep the data directory afterwards.
    pub keep_data: bool,
    /// More arguments for `ringflow serve`.
    pub extra_args: Vec<String>,
}

/// A running server.
pub struct Server {
    process: ServerProcess,
    /// Its data directory.
    pub data: PathBuf,
    /// Its log (stderr), in the data directory's parent.
    pub log: PathBuf,
    /// Its address (shard 0).
    pub addr: String,
    keep_data: bool,
}

/// The `ringflow` binary beside this one (both are built by `cargo build --release`).
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("ringflow")))
        .unwrap_or_else(|| PathBuf::from("ringflow"))
}

/// What `BINARY --version` prints (`ringflow 0.1.0 (abc1234)`), if it runs.
pub fn version(binary: &std::path::Path) -> Option<String> {
    let output = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The address a `--metrics` among `args` names (`--metrics ADDR` or `--metrics=ADDR`).
pub fn metrics_arg(args: &[String]) -> Option<String> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--metrics" {
            return args.next().cloned();
        }
        if let Some(addr) = arg.strip_prefix("--metrics=") {
            return Some(addr.to_string());
        }
    }
    None
}

impl Server {
    /// Starts the server and waits until every shard answers.
    pub fn start(spawn: &Spawn) -> anyhow::Result<(Server, Topology)> {
        if !spawn.binary.exists() {
            bail!(
                "the server binary {} does not exist: build it with `cargo build --release -p ringflow-shard` or pass --server-bin",
                spawn.binary.display()
            );
        }
        std::fs::create_dir_all(&spawn.data_root)
            .with_context(|| format!("cannot create {}", spawn.data_root.display()))?;
        let data = spawn.data_root.join(format!(
            "run-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ));
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        let log = data.with_extension("log");
        let addr = format!("127.0.0.1:{}", spawn.port);
        let cpus: Vec<String> = spawn.cpus.iter().map(usize::to_string).collect();
        let mut command = Command::new(&spawn.binary);
        command
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .arg("--listen")
            .arg(&addr)
            .arg("--shards")
            .arg(spawn.cpus.len().to_string())
            .arg("--cpus")
            .arg(cpus.join(","));
        if !spawn.cold_store.is_empty() {
            command.arg("--cold-store").arg(&spawn.cold_store);
        }
        command.args(&spawn.extra_args);
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let set = cpu_set(&spawn.cpus)?;
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // sched_setaffinity, which is async-signal-safe, on a cpu_set_t copied into it.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (process, client) = ServerProcess::start(command, &addr, &log, START_TIMEOUT)?;
        // With port 0, the address the server reported.
        let addr = process.addr().to_string();
        let server = Server {
            process,
            data,
            log,
            addr,
            keep_data: spawn.keep_data,
        };
        Ok((server, client.topology().clone()))
    }

    /// The server's metrics address, as it reported it in its log.
    pub fn metrics_addr(&self) -> Option<String> {
        self.process.metrics_addr()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops the server (SIGTERM, then SIGKILL after a timeout) and removes its data unless
    /// asked to keep it (its log is kept when it failed).
    pub fn stop(mut self) -> anyhow::Result<()> {
        let stopped = self.process.stop(STOP_TIMEOUT);
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data);
            if stopped.is_ok() {
                let _ = std::fs::remove_file(&self.log);
            }
        }
        stopped
    }
}

/// A `cpu_set_t` with these CPUs.
pub fn cpu_set(cpus: &[usize]) -> anyhow::Result<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes within it for CPUs
    // below CPU_SETSIZE, checked first.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                bail!("CPU {cpu} is beyond CPU_SETSIZE");
            }
            libc::CPU_SET(cpu, &mut set);
        }
        Ok(set)
    }
}

/// Pins the calling thread to these CPUs.
pub fn pin_current_thread(cpus: &[usize]) -> anyhow::Result<()> {
    let set = cpu_set(cpus)?;
    // SAFETY: sched_setaffinity reads the cpu_set_t we own.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
    }
    Ok(())
}

/// The CPUs this process may use, in ascending order, as they were at the first call (the
/// generator pins its thread afterwards, which must not shrink the set for the next run of a
/// sweep).
pub fn usable_cpus() -> Vec<usize> {
    static USABLE: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    USABLE
        .get_or_init(ringflow_shard::runtime::usable_cpus)
        .clone()
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory effects.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / per_second))
}

/// Whether `path` is on tmpfs or ramfs (where O_DIRECT and fdatasync mean nothing).
pub fn on_tmpfs(path: &Path) -> bool {
    ringflow_shard::preflight::on_memory_filesystem(path)
}
