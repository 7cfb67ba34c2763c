//! `ringflow-bench run` and `ringflow-bench sweep`: the load generator.
//!
//! One measurement starts a server as its own process on a fresh data directory, pinned to
//! its CPUs ([`server`]), deploys the scenario's model ([`scenario`]), drives it from one
//! generator thread pinned to the other CPUs ([`driver`]), and reports throughput and
//! end-to-end latency as JSON and a Markdown table ([`report`]). A sweep repeats that over
//! shard counts (closed loop: throughput against shards) and rates (open loop: latency
//! against rate) and writes CSV and SVG plots.

pub mod compare;
pub mod report;
pub mod sampler;
pub mod scenario;
pub mod server;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use ringflow_wire::{Client, Resource};

use crate::machine::Machine;
use report::Report;
use ringflow_shard::load::{self as driver, Mode};
use scenario::Scenario;

/// Where fresh data directories go by default: a real filesystem (`/tmp` may be tmpfs).
pub const DATA_ROOT_DEFAULT: &str = "/var/tmp/ringflow-bench";
/// Shard 0's port of a server the generator starts: 0, free ports the server picks and
/// reports (two runs side by side, or a run beside a test's server, never collide).
pub const PORT_DEFAULT: u16 = 0;

/// What every measurement takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// How long to measure, after the warm-up (`15s`, `500ms`, `2m`).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    duration: Duration,
    /// How long to run before measuring.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// Closed loop: instances kept in flight, over all shards.
    #[arg(long, default_value_t = 2048)]
    inflight: usize,
    /// Open loop: the most instances in flight; what is due beyond waits, and its latency
    /// counts the wait.
    #[arg(long, default_value_t = 200_000)]
    inflight_max: usize,
    /// Jobs the server may push ahead to each worker connection.
    #[arg(long, default_value_t = 4096)]
    credits: u32,
    /// Only these variables in each job the workers get (comma separated; default: all, as
    /// the published figures were measured).
    #[arg(long, value_delimiter = ',')]
    fetch_variables: Vec<String>,
    /// Open loop: send the creates that fell due at most every this many µs, in one write per
    /// connection (0: each as soon as it is due). Their latency still counts from when each
    /// was due, so the wait for the tick is measured, not hidden.
    #[arg(long, default_value_t = 0)]
    send_tick_us: u64,
    /// Measure a server that is already running at this address instead of starting one.
    #[arg(long)]
    addr: Option<String>,
    /// The CPUs of the server it starts [default: the first --shards usable CPUs].
    #[arg(long, value_delimiter = ',')]
    server_cpus: Vec<usize>,
    /// The CPUs of the generator [default: the usable CPUs the server does not use, or all
    /// of them when none is left].
    #[arg(long, value_delimiter = ',')]
    generator_cpus: Vec<usize>,
    /// The `ringflow` binary to start [default: the one beside ringflow-bench].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Where the server's fresh data directory is made (a real filesystem, not tmpfs).
    #[arg(long, default_value = DATA_ROOT_DEFAULT)]
    data_root: PathBuf,
    /// Shard 0's port of the server it starts (0: free ports the server picks).
    #[arg(long, default_value_t = PORT_DEFAULT)]
    port: u16,
    /// The server's cold store: `none`, `sqlite` (the default of `ringflow serve`: SQLite in
    /// the data directory) or a postgres:// URL (empty for each run: the server refuses a
    /// store that is ahead of its fresh journal).
    #[arg(long, default_value = "sqlite")]
    cold_store: String,
    /// Keep the server's data directory and log.
    #[arg(long)]
    keep_data: bool,
    /// Skip the engine's pace probe (the engine alone for a second on the server's first
    /// CPU, before the server starts and after it stops; `engine_pace_per_s` in the JSON).
    #[arg(long)]
    no_pace: bool,
    /// An extra argument for `ringflow serve` (repeat it: `--server-arg=--snapshot-every-records
    /// --server-arg=5000000`).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

/// Arguments of `ringflow-bench run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The scenario.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Open loop at this many instances per second [default: closed loop, see --inflight].
    #[arg(long)]
    rate: Option<f64>,
    /// Shards of the server it starts.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as a Markdown table here (it is printed either way).
    #[arg(long)]
    markdown: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `ringflow-bench sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// The scenario.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Shard counts for the closed-loop throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    shards: Vec<usize>,
    /// Rates (instances/s) for the open-loop latency runs, each at every shard count.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// The folder for sweep.csv, sweep.md, throughput.svg, latency.svg and one JSON per run.
    #[arg(long, default_value = "bench-sweep")]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

/// Parses `15s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (say 15s, 500ms or 2m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use ms, s or m)")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("`{text}` must be longer than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// One measurement: what was asked.
struct Plan<'a> {
    scenario: Scenario,
    mode: Mode,
    shards: usize,
    common: &'a Common,
}

/// Runs one measurement, starting (and stopping) a server unless `--addr` was given.
fn measure(plan: &Plan) -> anyhow::Result<Report> {
    let common = plan.common;
    // The report names the cold store from `--cold-store`; one passed to the server another
    // way would run while the report named another.
    if let Some(arg) = common
        .server_args
        .iter()
        .find(|arg| *arg == "--cold-store" || arg.starts_with("--cold-store="))
    {
        bail!(
            "`{arg}` given as a server argument: choose the cold store with --cold-store \
             (none, sqlite or a postgres:// URL), so that the report names the one the server ran"
        );
    }
    let usable = server::usable_cpus();
    let server_cpus: Vec<usize> = if !common.server_cpus.is_empty() {
        if common.server_cpus.len() != plan.shards {
            bail!(
                "--server-cpus names {} CPUs for {} shards",
                common.server_cpus.len(),
                plan.shards
            );
        }
        common.server_cpus.clone()
    } else {
        if plan.shards == 0 || plan.shards > usable.len() {
            bail!(
                "--shards {} needs between 1 and {} CPUs (this process may use {:?})",
                plan.shards,
                usable.len(),
                usable
            );
        }
        usable[..plan.shards].to_vec()
    };
    let generator_cpus: Vec<usize> = if !common.generator_cpus.is_empty() {
        common.generator_cpus.clone()
    } else if common.addr.is_some() {
        usable.clone()
    } else {
        let rest: Vec<usize> = usable
            .iter()
            .copied()
            .filter(|cpu| !server_cpus.contains(cpu))
            .collect();
        if rest.is_empty() {
            usable.clone()
        } else {
            rest
        }
    };
    if common.addr.is_none()
        && server::on_tmpfs(
            common
                .data_root
                .ancestors()
                .find(|dir| dir.exists())
                .unwrap_or(&common.data_root),
        )
    {
        bail!(
            "{} is on tmpfs, where O_DIRECT and fdatasync mean nothing: pass --data-root on a real filesystem",
            common.data_root.display()
        );
    }
    let machine = Machine::read();
    // The CPU's pace before the run: the engine alone on the server's first CPU.
    let pace_cpu = server_cpus[0];
    let pace_before = if common.no_pace || common.addr.is_some() {
        None
    } else {
        Some(engine_pace(pace_cpu)?)
    };
    let mut server_version = None;
    // The server's metrics endpoint, read by the sampler for the server's own latency.
    let mut metrics_addr: Option<String> = None;
    let (server, topology, addr) = match &common.addr {
        Some(addr) => {
            let client = Client::connect(addr).with_context(|| format!("cannot reach {addr}"))?;
            (None, client.topology().clone(), addr.clone())
        }
        None => {
            let cold_store = match common.cold_store.as_str() {
                "sqlite" => String::new(),
                other => other.to_string(),
            };
            let mut extra_args = common.server_args.clone();
            if server::metrics_arg(&extra_args).is_none() {
                // A free port the server picks; its address is read back from its log.
                extra_args.extend(["--metrics".to_string(), "127.0.0.1:0".to_string()]);
            }
            let spawn = server::Spawn {
                binary: common
                    .server_bin
                    .clone()
                    .unwrap_or_else(server::default_binary),
                cpus: server_cpus.clone(),
                data_root: common.data_root.clone(),
                port: common.port,
                cold_store,
                keep_data: common.keep_data,
                extra_args,
            };
            server_version = server::version(&spawn.binary);
            let (server, topology) = server::Server::start(&spawn)?;
            metrics_addr = server.metrics_addr();
            let addr = server.addr.clone();
            (Some(server), topology, addr)
        }
    };
    server::pin_current_thread(&generator_cpus)?;
    // Deploy the scenario's model (once per shard, as the client does).
    let mut client = Client::connect(&addr).with_context(|| format!("cannot reach {addr}"))?;
    client
        .deploy(vec![Resource {
            name: format!(
                "{}.bpmn",
                ringflow_shard::load::Workload::process_id(&plan.scenario)
            ),
            content: plan.scenario.bpmn().into_bytes(),
        }])
        .with_context(|| format!("cannot deploy the {} model", plan.scenario.name()))?;
    drop(client);
    let config = driver::Config {
        topology: topology.clone(),
        mode: plan.mode,
        warmup: common.warmup,
        duration: common.duration,
        drain: Duration::from_secs(10),
        credits: common.credits,
        fetch_variables: common.fetch_variables.clone(),
        progress: !common.quiet,
        send_tick: Duration::from_micros(common.send_tick_us),
    };
    if !common.quiet {
        eprintln!(
            "ringflow-bench: {} on {} shard(s), {}, server CPUs {:?}, generator CPUs {:?}",
            plan.scenario.name(),
            topology.shard_count(),
            report::describe_mode(plan.mode),
            server_cpus,
            generator_cpus
        );
    }
    let pid = server.as_ref().map(server::Server::pid);
    let cpu_before = pid.and_then(server::cpu_time);
    let own_before = server::cpu_time(std::process::id());
    // What the machine does beside the run, each second (the server's and the generator's
    // CPUs and processes, the disk of the data): only for a server this generator started.
    let sampler = match pid {
        Some(pid) => Some(
            sampler::Sampler::start(sampler::Target {
                pid: Some(pid),
                cpus: server_cpus.clone(),
                generator_pid: Some(std::process::id()),
                generator_cpus: generator_cpus.clone(),
                disk: sampler::disk_of(&common.data_root),
                metrics: metrics_addr.clone(),
            })
            .context("cannot start the machine sampler")?,
        ),
        None => None,
    };
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let outcome = driver::run(&config, &plan.scenario);
    let machine_timeline = sampler.map(sampler::Sampler::finish).unwrap_or_default();
    let cpu_after = pid.and_then(server::cpu_time);
    let own_after = server::cpu_time(std::process::id());
    let data = server.as_ref().map(|server| server.data.clone());
    if let Some(server) = server {
        server.stop()?;
    }
    let outcome = outcome?;
    let pace_after = match pace_before {
        Some(_) => Some(engine_pace(pace_cpu)?),
        None => None,
    };
    let server_cpu = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    Ok(Report::new(report::Inputs {
        scenario: plan.scenario,
        mode: plan.mode,
        send_tick: Duration::from_micros(common.send_tick_us),
        shards: topology.shard_count(),
        warmup: common.warmup,
        addr,
        server_started: pid.is_some(),
        server_cpus: if pid.is_some() {
            server_cpus
        } else {
            Vec::new()
        },
        generator_cpus,
        cold_store: common.cold_store.clone(),
        server_version,
        data: data.filter(|_| common.keep_data),
        server_cpu,
        generator_cpu: match (own_before, own_after) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        },
        machine,
        machine_timeline,
        started_unix_ms,
        engine_pace_per_s: pace_before.zip(pace_after),
        outcome,
    }))
}

/// The engine's pace ([`crate::engine::pace`], one second) on `cpu`, in a thread of its own
/// pinned there.
fn engine_pace(cpu: usize) -> anyhow::Result<f64> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                server::pin_current_thread(&[cpu])?;
                crate::engine::pace(Duration::from_secs(1))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the pace probe panicked"))?
    })
    .context("the engine's pace probe")
}

/// The loop `--rate` asks for: open at that rate, or closed with `--inflight` in flight.
fn mode_of(rate: Option<f64>, common: &Common) -> anyhow::Result<Mode> {
    Ok(match rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => Mode::Open {
            rate,
            inflight_max: common.inflight_max,
        },
        Some(rate) => bail!("--rate {rate} must be a positive number of instances per second"),
        None => Mode::Closed {
            inflight: common.inflight,
        },
    })
}

/// `ringflow-bench run`.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let mode = mode_of(args.rate, &args.common)?;
    let report = measure(&Plan {
        scenario: args.scenario,
        mode,
        shards: args.shards,
        common: &args.common,
    })?;
    let markdown = report::markdown(std::slice::from_ref(&report));
    println!("{markdown}");
    eprintln!(
        "ringflow-bench: where the latency went: {}",
        report.phases_line()
    );
    if let Some(warning) = report.pace_warning() {
        eprintln!("ringflow-bench: warning: {warning}");
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, &markdown)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("ringflow-bench: report written to {}", path.display());
    }
    Ok(())
}

/// `ringflow-bench sweep`.
pub fn sweep(args: &SweepArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut reports = Vec::new();
    let mut runs: Vec<(usize, Mode)> = args
        .shards
        .iter()
        .map(|&shards| {
            (
                shards,
                Mode::Closed {
                    inflight: args.common.inflight,
                },
            )
        })
        .collect();
    for &shards in &args.shards {
        for &rate in &args.rates {
            runs.push((
                shards,
                Mode::Open {
                    rate,
                    inflight_max: args.common.inflight_max,
                },
            ));
        }
    }
    let total = runs.len();
    for (index, (shards, mode)) in runs.into_iter().enumerate() {
        eprintln!(
            "ringflow-bench sweep: run {} of {total}: {shards} shard(s), {}",
            index + 1,
            report::describe_mode(mode)
        );
        let report = measure(&Plan {
            scenario: args.scenario,
            mode,
            shards,
            common: &args.common,
        })?;
        if let Some(warning) = report.pace_warning() {
            eprintln!(
                "ringflow-bench sweep: warning: run {}: {warning}",
                index + 1
            );
        }
        let name = format!("run-{:02}.json", index + 1);
        std::fs::write(args.out.join(&name), report.to_json())?;
        reports.push(report);
    }
    let markdown = report::markdown(&reports);
    println!("{markdown}");
    let files = [
        ("sweep.md", markdown),
        ("sweep.csv", report::csv(&reports)),
        ("throughput.svg", report::throughput_svg(&reports)),
        ("latency.svg", report::latency_svg(&reports)),
    ];
    for (name, content) in files {
        let path = args.out.join(name);
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "ringflow-bench sweep: sweep.csv, sweep.md, throughput.svg and latency.svg in {}",
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(
            parse_duration("ten")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("3h").unwrap_err().contains("unknown unit"));
    }
}
