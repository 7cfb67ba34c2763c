//! Metrics: per-shard counters and histograms the shard thread updates with relaxed atomics
//! (each shard has its own, so no cache line is shared between cores), and the Prometheus text
//! endpoint that reads them from another thread.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `ringflow_commands_total` | counter | shard, command | accepted commands, by type |
//! | `ringflow_rejections_total` | counter | shard, code | refused commands, by rejection code |
//! | `ringflow_busy_rejections_total` | counter | shard, cause | requests refused with BUSY: `exporter_lag` (new work while the cold store lags) or `inflight` (the server's in-flight and connection limits) |
//! | `ringflow_journal_batch_records` | histogram | shard | records per group commit |
//! | `ringflow_journal_fdatasync_seconds` | histogram | shard | fdatasync of one commit |
//! | `ringflow_commit_latency_seconds` | histogram | shard | from the first record of a batch to durable |
//! | `ringflow_push_latency_seconds` | histogram | shard | a job subscription's push: from activating ready jobs (a command, committed like any other) to the jobs queued for the writer |
//! | `ringflow_answer_write_seconds` | histogram | shard | from when the oldest answer (or pushed jobs) of a write was queued to when the write to the socket returned |
//! | `ringflow_request_latency_seconds` | histogram | shard | for each request that runs a command (or brings mail from another shard): from when the shard read its frame to when its answer was queued for the writer; for a create, to when it is durable (an awaited result waits for the process besides). Long polls, and requests answered on the spot (topology, credits, refusals before any command), are left out |
//! | `ringflow_durable_lsn` | gauge | shard | highest durable journal LSN |
//! | `ringflow_live_instances` | gauge | shard | running process instances |
//! | `ringflow_open_jobs` | gauge | shard | open jobs |
//! | `ringflow_timers` | gauge | shard | entries of the shard's timer set (leases, backoffs, message TTLs, timer events; stale ones until compaction) |
//! | `ringflow_mail_unacknowledged` | gauge | shard | durable mail to other shards not yet acknowledged by them |
//! | `ringflow_user_task_transition_waits` | gauge | shard | requests (a user task's completion, assignment or update) waiting for the task's listeners |
//! | `ringflow_io_workers_sliced` | gauge | shard | io_uring worker threads of the shard with the short slice of `--io-worker-slice-us` now (0 when it is off) |
//! | `ringflow_exporter_position` | gauge | shard | highest LSN in the cold store |
//! | `ringflow_exporter_lag_records` | gauge | shard | durable records not in the cold store |
//! | `ringflow_exporter_lag_alarm` | gauge | shard | 1 while the lag is past the warning limit |
//! | `ringflow_exporter_failures_total` | counter | shard | failed cold store writes (retried) |
//! | `ringflow_exporter_transactions_total` | counter | shard | cold store transactions committed |
//! | `ringflow_history_cleaned_instances_total` | counter | shard | process instances deleted from the cold store for their age (`--history-ttl`) |
//! | `ringflow_log_lines_dropped_total` | counter | | log lines (and messages on stderr) that could not be written: stderr on a full disk, a pipe whose reader went away (`crate::say`) |
//!
//! The endpoint answers `GET /metrics` (HTTP/1.1, one request per connection) on the address
//! given with `--metrics`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringflow_core::{Command, RejectionCode};

use crate::cold::ExportQueue;

/// The command types, as the `command` label says them.
pub const COMMAND_KINDS: [&str; 26] = [
    "deploy",
    "create_instance",
    "cancel_instance",
    "activate_jobs",
    "complete_job",
    "fail_job",
    "throw_error",
    "job_lease_expired",
    "job_retry_due",
    "update_job_retries",
    "resolve_incident",
    "set_variables",
    "publish_message",
    "expire_message",
    "trigger_timer",
    "receive",
    "acknowledge",
    "broadcast_signal",
    "continue_signal",
    "continue_compensation",
    "evaluate_conditional",
    "activate_ad_hoc_activities",
    "complete_ad_hoc_job",
    "complete_task_listener_job",
    "assign_user_task",
    "update_user_task",
];

/// The index of a command's type in [`COMMAND_KINDS`].
pub fn command_kind(command: &Command) -> usize {
    match command {
        Command::Deploy { .. } => 0,
        Command::CreateInstance { .. } => 1,
        Command::CancelInstance { .. } => 2,
        Command::ActivateJobs { .. } => 3,
        Command::CompleteJob { .. } => 4,
        Command::FailJob { .. } => 5,
        Command::ThrowError { .. } => 6,
        Command::JobLeaseExpired { .. } => 7,
        Command::JobRetryDue { .. } => 8,
        Command::UpdateJobRetries { .. } => 9,
        Command::ResolveIncident { .. } => 10,
        Command::SetVariables { .. } => 11,
        Command::PublishMessage { .. } => 12,
        Command::ExpireMessage { .. } => 13,
        Command::TriggerTimer { .. } => 14,
        Command::Receive { .. } => 15,
        Command::Acknowledge { .. } => 16,
        Command::BroadcastSignal { .. } => 17,
        Command::ContinueSignal { .. } => 18,
        Command::ContinueCompensation { .. } => 19,
        Command::EvaluateConditional { .. } => 20,
        Command::ActivateAdHocActivities { .. } => 21,
        Command::CompleteAdHocJob { .. } => 22,
        Command::CompleteTaskListenerJob { .. } => 23,
        Command::AssignUserTask { .. } => 24,
        Command::UpdateUserTask { .. } => 25,
    }
}

const REJECTION_CODES: [RejectionCode; 10] = [
    RejectionCode::InvalidArgument,
    RejectionCode::InvalidModel,
    RejectionCode::LimitExceeded,
    RejectionCode::KeysExhausted,
    RejectionCode::ProcessNotFound,
    RejectionCode::InstanceNotFound,
    RejectionCode::JobNotFound,
    RejectionCode::InvalidState,
    RejectionCode::IncidentNotFound,
    RejectionCode::AlreadyExists,
];

/// A histogram with fixed upper bounds, in Prometheus' cumulative form when rendered.
pub struct Histogram {
    bounds: &'static [u64],
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

/// Bounds of the record-count histogram.
pub const BATCH_RECORD_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
/// Bounds of the latency histograms, in microseconds.
pub const LATENCY_MICROS_BOUNDS: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

impl Histogram {
    fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one value.
    pub fn observe(&self, value: u64) {
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|count| count.load(Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, scale: f64) {
        let mut cumulative = 0;
        for (index, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[index].load(Relaxed);
            let le = *bound as f64 / scale;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum.load(Relaxed) as f64 / scale;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// One shard's metrics.
pub struct ShardMetrics {
    shard: u16,
    commands: [AtomicU64; COMMAND_KINDS.len()],
    rejections: [AtomicU64; REJECTION_CODES.len()],
    /// New work refused with BUSY because the exporter lags.
    pub busy: AtomicU64,
    /// Requests refused with BUSY by the server's in-flight and connection limits.
    pub server_busy: AtomicU64,
    /// Records per group commit.
    pub batch_records: Histogram,
    /// fdatasync per commit, µs.
    pub fdatasync_micros: Histogram,
    /// First record of a batch to durable, µs.
    pub commit_micros: Histogram,
    /// A request's frame read to its answer queued (a create: to durable), µs.
    pub request_micros: Histogram,
    /// A push's activation to its jobs queued, µs.
    pub push_micros: Histogram,
    /// The oldest answer of a write queued to the write returned, µs.
    pub answer_write_micros: Histogram,
    durable_lsn: AtomicU64,
    live_instances: AtomicU64,
    open_jobs: AtomicU64,
    timers: AtomicU64,
    /// Durable mail to other shards not yet acknowledged.
    pub mail_unacknowledged: AtomicU64,
    /// Requests waiting for a user task's task listeners.
    pub transition_waits: AtomicU64,
    /// 1 while the exporter lag is past the warning limit.
    pub lag_alarm: AtomicU64,
    /// io_uring workers of the shard with the short slice now (`crate::sched`).
    pub io_workers_sliced: AtomicU64,
}

impl ShardMetrics {
    /// Zeroed metrics of `shard`.
    pub fn new(shard: u16) -> ShardMetrics {
        ShardMetrics {
            shard,
            commands: std::array::from_fn(|_| AtomicU64::new(0)),
            rejections: std::array::from_fn(|_| AtomicU64::new(0)),
            busy: AtomicU64::new(0),
            server_busy: AtomicU64::new(0),
            batch_records: Histogram::new(BATCH_RECORD_BOUNDS),
            fdatasync_micros: Histogram::new(LATENCY_MICROS_BOUNDS),
            commit_micros: Histogram::new(LATENCY_MICROS_BOUNDS),
            request_micros: Histogram::new(LATENCY_MICROS_BOUNDS),
            push_micros: Histogram::new(LATENCY_MICROS_BOUNDS),
            answer_write_micros: Histogram::new(LATENCY_MICROS_BOUNDS),
            durable_lsn: AtomicU64::new(0),
            live_instances: AtomicU64::new(0),
            open_jobs: AtomicU64::new(0),
            timers: AtomicU64::new(0),
            mail_unacknowledged: AtomicU64::new(0),
            transition_waits: AtomicU64::new(0),
            lag_alarm: AtomicU64::new(0),
            io_workers_sliced: AtomicU64::new(0),
        }
    }

    /// Counts an accepted command of type `kind` ([`command_kind`]).
    pub fn record_command(&self, kind: usize) {
        self.commands[kind].fetch_add(1, Relaxed);
    }

    /// Accepted commands of a type so far.
    pub fn commands(&self, kind: usize) -> u64 {
        self.commands[kind].load(Relaxed)
    }

    /// Counts a refused command.
    pub fn record_rejection(&self, code: RejectionCode) {
        if let Some(index) = REJECTION_CODES.iter().position(|c| *c == code) {
            self.rejections[index].fetch_add(1, Relaxed);
        }
    }

    /// Counts a group commit.
    pub fn record_commit(&self, records: usize, sync_micros: u64, opened: Option<Instant>) {
        self.batch_records.observe(records as u64);
        self.fdatasync_micros.observe(sync_micros);
        if let Some(opened) = opened {
            self.commit_micros
                .observe(opened.elapsed().as_micros() as u64);
        }
    }

    /// Counts a request read at `arrived` and answered (or, a create, made durable) now.
    pub fn record_request(&self, arrived: Instant) {
        self.request_micros
            .observe(arrived.elapsed().as_micros() as u64);
    }

    /// Counts a push of jobs whose activation began at `started`.
    pub fn record_push(&self, started: Instant) {
        self.push_micros
            .observe(started.elapsed().as_micros() as u64);
    }

    /// Counts a write whose oldest answer was queued at `queued`.
    pub fn record_answer_write(&self, queued: Instant) {
        self.answer_write_micros
            .observe(queued.elapsed().as_micros() as u64);
    }

    /// Sets the gauges after a commit.
    pub fn record_state(
        &self,
        durable_lsn: u64,
        live_instances: usize,
        open_jobs: usize,
        timers: usize,
    ) {
        self.durable_lsn.store(durable_lsn, Relaxed);
        self.live_instances.store(live_instances as u64, Relaxed);
        self.open_jobs.store(open_jobs as u64, Relaxed);
        self.timers.store(timers as u64, Relaxed);
    }
}

type Registered = (Arc<ShardMetrics>, Option<Arc<ExportQueue>>);
/// A metric read from a shard: (name, type, help, read).
type ShardGauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardMetrics) -> u64,
);
/// A histogram of a shard: (name, help, unit divisor, read).
type ShardHistogram = (
    &'static str,
    &'static str,
    f64,
    fn(&ShardMetrics) -> &Histogram,
);
/// A metric read from a shard and its exporter: (name, type, help, read).
type ExporterGauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardMetrics, &ExportQueue) -> u64,
);

/// The node's metrics: every shard's, with its exporter queue.
#[derive(Default)]
pub struct Registry {
    shards: Mutex<Vec<Registered>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Registry {
    /// Adds a shard.
    pub fn register(&self, metrics: Arc<ShardMetrics>, export: Option<Arc<ExportQueue>>) {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        shards.push((metrics, export));
        shards.sort_by_key(|(metrics, _)| metrics.shard);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        header(
            &mut out,
            "ringflow_commands_total",
            "counter",
            "Accepted commands by type.",
        );
        for (metrics, _) in shards.iter() {
            for (index, name) in COMMAND_KINDS.iter().enumerate() {
                let value = metrics.commands[index].load(Relaxed);
                let _ = writeln!(
                    out,
                    "ringflow_commands_total{{shard=\"{}\",command=\"{name}\"}} {value}",
                    metrics.shard
                );
            }
        }
        header(
            &mut out,
            "ringflow_rejections_total",
            "counter",
            "Refused commands by code.",
        );
        for (metrics, _) in shards.iter() {
            for (index, code) in REJECTION_CODES.iter().enumerate() {
                let value = metrics.rejections[index].load(Relaxed);
                let _ = writeln!(
                    out,
                    "ringflow_rejections_total{{shard=\"{}\",code=\"{}\"}} {value}",
                    metrics.shard,
                    code.code()
                );
            }
        }
        header(
            &mut out,
            "ringflow_busy_rejections_total",
            "counter",
            "Requests refused with BUSY (backpressure), by cause.",
        );
        for (metrics, _) in shards.iter() {
            for (cause, value) in [
                ("exporter_lag", metrics.busy.load(Relaxed)),
                ("inflight", metrics.server_busy.load(Relaxed)),
            ] {
                let _ = writeln!(
                    out,
                    "ringflow_busy_rejections_total{{shard=\"{}\",cause=\"{cause}\"}} {value}",
                    metrics.shard
                );
            }
        }
        let gauges: [ShardGauge; 7] = [
            (
                "ringflow_durable_lsn",
                "gauge",
                "Highest durable journal LSN.",
                |m| m.durable_lsn.load(Relaxed),
            ),
            (
                "ringflow_live_instances",
                "gauge",
                "Running process instances.",
                |m| m.live_instances.load(Relaxed),
            ),
            ("ringflow_open_jobs", "gauge", "Open jobs.", |m| {
                m.open_jobs.load(Relaxed)
            }),
            (
                "ringflow_timers",
                "gauge",
                "Entries of the shard's timer set.",
                |m| m.timers.load(Relaxed),
            ),
            (
                "ringflow_mail_unacknowledged",
                "gauge",
                "Durable mail to other shards not yet acknowledged by them.",
                |m| m.mail_unacknowledged.load(Relaxed),
            ),
            (
                "ringflow_user_task_transition_waits",
                "gauge",
                "Requests waiting for a user task's task listeners.",
                |m| m.transition_waits.load(Relaxed),
            ),
            (
                "ringflow_io_workers_sliced",
                "gauge",
                "io_uring worker threads with the short slice of --io-worker-slice-us now.",
                |m| m.io_workers_sliced.load(Relaxed),
            ),
        ];
        for (name, kind, help, read) in gauges {
            header(&mut out, name, kind, help);
            for (metrics, _) in shards.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{}\"}} {}",
                    metrics.shard,
                    read(metrics)
                );
            }
        }
        let histograms: [ShardHistogram; 6] = [
            (
                "ringflow_journal_batch_records",
                "Records per group commit.",
                1.0,
                |m| &m.batch_records,
            ),
            (
                "ringflow_journal_fdatasync_seconds",
                "fdatasync of one commit.",
                1e6,
                |m| &m.fdatasync_micros,
            ),
            (
                "ringflow_commit_latency_seconds",
                "From the first record of a batch to durable.",
                1e6,
                |m| &m.commit_micros,
            ),
            (
                "ringflow_request_latency_seconds",
                "From a request's frame read to its answer queued (a create: to durable).",
                1e6,
                |m| &m.request_micros,
            ),
            (
                "ringflow_push_latency_seconds",
                "A job subscription's push: activating ready jobs to the jobs queued.",
                1e6,
                |m| &m.push_micros,
            ),
            (
                "ringflow_answer_write_seconds",
                "The oldest answer of a write queued to the write returned.",
                1e6,
                |m| &m.answer_write_micros,
            ),
        ];
        for (name, help, scale, read) in histograms {
            header(&mut out, name, "histogram", help);
            for (metrics, _) in shards.iter() {
                let labels = format!("shard=\"{}\"", metrics.shard);
                read(metrics).render(&mut out, name, &labels, scale);
            }
        }
        let exporters: [ExporterGauge; 6] = [
            (
                "ringflow_exporter_position",
                "gauge",
                "Highest LSN in the cold store.",
                |_, q| q.exported(),
            ),
            (
                "ringflow_exporter_lag_records",
                "gauge",
                "Durable records not in the cold store.",
                |_, q| q.lag(),
            ),
            (
                "ringflow_exporter_lag_alarm",
                "gauge",
                "1 while the exporter lag is past the warning limit.",
                |m, _| m.lag_alarm.load(Relaxed),
            ),
            (
                "ringflow_exporter_failures_total",
                "counter",
                "Failed cold store writes (retried).",
                |_, q| q.failures(),
            ),
            (
                "ringflow_exporter_transactions_total",
                "counter",
                "Cold store transactions committed.",
                |_, q| q.transactions(),
            ),
            (
                "ringflow_history_cleaned_instances_total",
                "counter",
                "Process instances deleted from the cold store for their age (--history-ttl).",
                |_, q| q.cleaned(),
            ),
        ];
        for (name, kind, help, read) in exporters {
            header(&mut out, name, kind, help);
            for (metrics, queue) in shards.iter() {
                if let Some(queue) = queue {
                    let value = read(metrics, queue);
                    let _ = writeln!(out, "{name}{{shard=\"{}\"}} {value}", metrics.shard);
                }
            }
        }
        header(
            &mut out,
            "ringflow_log_lines_dropped_total",
            "counter",
            "Log lines that could not be written (stderr on a full disk, a closed pipe).",
        );
        let _ = writeln!(
            out,
            "ringflow_log_lines_dropped_total {}",
            crate::say::dropped()
        );
        out
    }
}

/// Longest a metrics client may take to send its request.
pub const METRICS_REQUEST_TIMEOUT_MILLIS: u64 = 2_000;

/// Serves `GET /metrics` on `addr` from a thread of its own. Returns the bound address.
pub fn serve(addr: SocketAddr, registry: Arc<Registry>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("ringflow-metrics".to_string())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let timeout = Some(Duration::from_millis(METRICS_REQUEST_TIMEOUT_MILLIS));
                let _ = stream.set_read_timeout(timeout);
                let _ = stream.set_write_timeout(timeout);
                let mut request = [0u8; 4096];
                let mut read = 0;
                while read < request.len() {
                    match stream.read(&mut request[read..]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                    if request[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&request[..read]);
                let line = head.lines().next().unwrap_or("");
                let (status, body) = if line.starts_with("GET /metrics ") {
                    ("200 OK", registry.render())
                } else {
                    (
                        "404 Not Found",
                        "only GET /metrics is served here\n".to_string(),
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        })?;
    Ok(bound)
}
