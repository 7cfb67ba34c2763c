//! `ringflow demo`: the whole engine on its embedded defaults, in one command.
//!
//! Starts `ringflow serve` as a child process (a shard per CPU, a fresh data directory, the
//! SQLite cold store), deploys the bundled order process (`bpmn/models/order-process.bpmn`:
//! an exclusive gateway, a parallel split, a message wait with a timer on it), runs built-in
//! workers for its four job types and a closed-loop load of orders with a progress line per
//! second, stops the server (which writes the rest of the history to the cold store), and
//! prints a summary with the paths and the commands to look at what happened.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringflow_wire::{Job, PublishMessage, Resource};

use crate::cold::Target;
use crate::cold::query::Store;
use crate::load::{self, InstanceSpec, Mode, ServerProcess, Workload};

/// The bundled example.
pub const ORDER_PROCESS: &[u8] = include_bytes!("../../../bpmn/models/order-process.bpmn");
/// Its process id.
pub const ORDER_PROCESS_ID: &str = "order-process";
/// How long the server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to stop (it drains the exporters for up to 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the demo waits for the cold store to catch up after the load.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the engine on its defaults with a bundled example and a load, then summarizes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory, which must not exist yet [default: `ringflow-demo-<time>` in the
    /// current directory].
    #[arg(long)]
    data: Option<PathBuf>,
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Orders kept in flight.
    #[arg(long, default_value_t = 512)]
    inflight: usize,
    /// Shards [default: one per CPU].
    #[arg(long)]
    shards: Option<usize>,
    /// The port of shard 0 (shard i uses PORT+i, the metrics PORT-100); 0 lets the server
    /// pick free ports (and one for its metrics) and report them.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// An extra argument for the server's `ringflow serve` (repeat it:
    /// `--server-arg=--history-level --server-arg=instances`).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

/// The order load: every order is in stock but one in twenty; each gets its
/// `shipment-confirmed` message right after it is created (buffered until the order waits).
struct Orders {
    run: u32,
}

impl Workload for Orders {
    fn process_id(&self) -> &str {
        ORDER_PROCESS_ID
    }

    fn job_types(&self) -> Vec<String> {
        [
            "check-stock",
            "charge-payment",
            "reserve-items",
            "notify-customer",
        ]
        .map(String::from)
        .to_vec()
    }

    fn instance(&self, n: u64) -> InstanceSpec {
        let order = format!("order-{}-{n}", self.run);
        InstanceSpec {
            variables: format!(
                r#"{{"orderId":"{order}","items":[{{"sku":"A-{}","quantity":{}}}],"total":{}.{:02}}}"#,
                n % 97,
                1 + n % 3,
                10 + n % 490,
                n % 100
            ),
            business_key: order.clone(),
            messages: vec![PublishMessage {
                name: "shipment-confirmed".to_string(),
                correlation_key: order,
                variables: r#"{"carrier":"demo-post"}"#.to_string(),
                ttl_ms: 60_000,
                message_id: String::new(),
            }],
        }
    }

    fn job_result(&self, job: &Job) -> String {
        match &*job.job_type {
            "check-stock" => format!(
                r#"{{"inStock":{}}}"#,
                !job.process_instance_key.is_multiple_of(20)
            ),
            "charge-payment" => r#"{"paid":true}"#.to_string(),
            _ => String::new(),
        }
    }
}

/// Runs `ringflow demo`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.seconds == 0 || args.inflight == 0 {
        bail!("--seconds and --inflight must be at least 1");
    }
    if args.port != 0 && args.port < 1024 {
        bail!(
            "--port must be 0 (free ports) or at least 1024 (the metrics listen on --port minus 100)"
        );
    }
    let data = match &args.data {
        Some(path) => path.clone(),
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            PathBuf::from(format!("ringflow-demo-{stamp}"))
        }
    };
    if data.exists() {
        bail!(
            "{} already exists: the demo starts from a fresh directory (pass another --data)",
            data.display()
        );
    }
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let data = data.canonicalize()?;
    let log = data.join("server.log");
    let addr = format!("127.0.0.1:{}", args.port);
    let metrics = if args.port == 0 {
        "127.0.0.1:0".to_string()
    } else {
        format!("127.0.0.1:{}", args.port - 100)
    };
    tell!("ringflow demo");
    tell!("  data directory: {}", data.display());
    let exe = std::env::current_exe().context("cannot find the ringflow binary")?;
    let mut command = Command::new(exe);
    command
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .arg("--listen")
        .arg(&addr)
        .arg("--metrics")
        .arg(&metrics);
    if let Some(shards) = args.shards {
        command.arg("--shards").arg(shards.to_string());
    }
    command.args(&args.server_args);
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let (mut server, mut client) = ServerProcess::start(command, &addr, &log, START_TIMEOUT)?;
    let addr = server.addr().to_string();
    let metrics = server.metrics_addr().with_context(|| {
        format!(
            "the server reported no metrics address in {}",
            log.display()
        )
    })?;
    let topology = client.topology().clone();
    tell!(
        "  server: {} shard(s) on {addr} (log: {})",
        topology.shard_count(),
        log.display()
    );
    let deployed = client
        .deploy(vec![Resource {
            name: "order-process.bpmn".to_string(),
            content: ORDER_PROCESS.to_vec(),
        }])
        .context("cannot deploy the order process")?;
    let version = deployed
        .processes
        .iter()
        .find(|process| process.bpmn_process_id == ORDER_PROCESS_ID)
        .map_or(0, |process| process.version);
    tell!(
        "  deployed: order-process version {version} (check stock, in-stock gateway, payment and reservation in parallel, wait for shipment-confirmed with a 1 h timer, notify)"
    );
    drop(client);
    tell!(
        "  load: {} orders in flight for {} s; workers complete check-stock (1 in 20 out of stock), charge-payment, reserve-items, notify-customer",
        args.inflight,
        args.seconds
    );
    let config = load::Config {
        topology,
        mode: Mode::Closed {
            inflight: args.inflight,
        },
        warmup: Duration::ZERO,
        duration: Duration::from_secs(args.seconds),
        drain: Duration::from_secs(10),
        credits: 1024,
        fetch_variables: Vec::new(),
        progress: true,
        send_tick: Duration::ZERO,
    };
    let orders = Orders {
        run: std::process::id(),
    };
    let outcome = load::run(&config, &orders);
    if outcome.is_ok() {
        wait_for_cold_store(&metrics)?;
    }
    tell!("  stopping the server");
    let stopped = server.stop(STOP_TIMEOUT);
    let outcome = outcome?;
    stopped?;
    let latency = &outcome.latency_us;
    let quantile = |q: f64| {
        if latency.is_empty() {
            0.0
        } else {
            latency.value_at_quantile(q) as f64 / 1000.0
        }
    };
    tell!();
    tell!("summary");
    tell!(
        "  orders completed: {} in {} s ({:.0}/s), {} still running at the end",
        outcome.completed,
        args.seconds,
        outcome.throughput_per_s(),
        outcome.unfinished
    );
    tell!(
        "  end-to-end latency (create to completion): p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        quantile(0.5),
        quantile(0.99),
        quantile(0.999),
        if latency.is_empty() {
            0.0
        } else {
            latency.max() as f64 / 1000.0
        }
    );
    // BUSY is the server pushing back (over its exporter lag or in-flight limit): the load
    // sent each refused create and publish again, so it is reported, not a failure.
    let (busy, failed): (Vec<_>, Vec<_>) = outcome
        .errors
        .iter()
        .partition(|(kind, _)| kind.ends_with(": BUSY"));
    let errors: u64 = failed.iter().map(|(_, count)| **count).sum();
    if !busy.is_empty() {
        let refused: u64 = busy.iter().map(|(_, count)| **count).sum();
        tell!(
            "  pushed back: {refused} requests refused with BUSY and sent again ({}): the \
             server was over a limit and held new work back, most often the cold store's \
             exporter lag (--export-lag-max-records; the server's log names the cause)",
            busy.iter()
                .map(|(kind, count)| format!("{kind} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if errors > 0 {
        tell!("  errors: {failed:?}");
    }
    let store = crate::cold::default_target(&data);
    let counts = count_instances(&store)?;
    tell!("  cold store: {}", store.describe());
    for (state, count) in &counts {
        tell!("    {state:<11} {count}");
    }
    tell!("  journal and snapshots: {}/shard-*/", data.display());
    tell!();
    tell!("look around");
    tell!("  ringflow instances --data {} --limit 10", data.display());
    if let Some(key) = outcome.sample_instance {
        tell!("  ringflow instance {key} --data {}", data.display());
    }
    tell!(
        "  ringflow journal --data {} (the shard's log)",
        data.display()
    );
    tell!(
        "  ringflow serve --data {} (restarts from where the demo stopped)",
        data.display()
    );
    let completed_in_store = counts
        .iter()
        .find(|(state, _)| state == "completed")
        .map_or(0, |(_, count)| *count);
    if outcome.completed == 0 || errors > 0 || outcome.unfinished > 0 {
        say!(
            "ringflow demo: the load did not run cleanly (see above and {})",
            log.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if completed_in_store < outcome.completed_total as i64 {
        say!(
            "ringflow demo: the cold store has {completed_in_store} completed instances, fewer than the {} that completed",
            outcome.completed_total
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until every shard's exporter has written all durable records to the cold store,
/// printing the lag once a second.
fn wait_for_cold_store(metrics: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_print = None::<Instant>;
    loop {
        let lag = exporter_lag(metrics)
            .with_context(|| format!("cannot read the server's metrics at {metrics}"))?;
        if lag == 0 {
            tell!(
                "  cold store caught up ({:.1} s after the load)",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if last_print.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            tell!("  waiting for the cold store: {lag} journal records still to export");
            last_print = Some(Instant::now());
        }
        if started.elapsed() > CATCH_UP_TIMEOUT {
            tell!(
                "  the cold store is still {lag} records behind after {CATCH_UP_TIMEOUT:?}; the server exports them when it next starts"
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sum of `ringflow_exporter_lag_records` over the shards.
fn exporter_lag(metrics: &str) -> anyhow::Result<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(metrics)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: ringflow\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let mut lag = 0;
    let mut seen = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("ringflow_exporter_lag_records{")
            && let Some((_, value)) = rest.rsplit_once(' ')
        {
            lag += value
                .trim()
                .parse::<u64>()
                .context("a lag that is not a number")?;
            seen = true;
        }
    }
    if !seen {
        bail!("no ringflow_exporter_lag_records in the metrics");
    }
    Ok(lag)
}

/// Instances in the cold store by state.
fn count_instances(store: &Target) -> anyhow::Result<Vec<(String, i64)>> {
    Store::open_read_only(store)
        .and_then(|mut store| store.count_by_state())
        .context("cannot count the instances in the cold store")
}
