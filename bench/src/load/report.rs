//! Reports of the load generator: JSON per run, a Markdown table, CSV and SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::sampler::{self, MachineSecond};
use super::scenario::Scenario;
use crate::machine::Machine;
use ringflow_shard::load::{Mode, Outcome};

/// How far apart the engine's pace before and after a run may be (as a fraction of the
/// lower) before `ringflow-bench run` warns that the machine's pace moved.
pub const PACE_MOVED: f64 = 0.2;

/// End-to-end latency percentiles, in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// The largest.
    pub max: u64,
    /// The mean.
    pub mean: f64,
}

impl Latency {
    /// The percentiles of `histogram` (all 0 when it is empty).
    pub fn of(histogram: &hdrhistogram::Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency {
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
                mean: 0.0,
            };
        }
        Latency {
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

/// Where the latency went: `ringflow_shard::load::Phases` as percentiles.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseLatencies {
    /// From when an instance was due to when its last job reached the generator (the create
    /// sent, created, committed, the job pushed); none for a scenario without jobs.
    pub to_last_job_us: Option<Latency>,
    /// From then to its result (the job completed and sent, committed, the answer back).
    pub last_job_to_result_us: Option<Latency>,
    /// From when a create was due to when the generator queued it: its lateness.
    pub send_lag_us: Latency,
}

/// The server's own latency in the measured window, from its metrics (a server the
/// generator started): requests (a create until durable) and group commits, and how many of
/// each took over 2.5 and over 5 ms inside the server.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ServerLatency {
    pub requests: u64,
    pub requests_over_2_5ms: u64,
    pub requests_over_5ms: u64,
    pub commits: u64,
    pub commits_over_2_5ms: u64,
    pub commits_over_5ms: u64,
    pub pushes: u64,
    pub pushes_over_5ms: u64,
    pub answer_writes: u64,
    pub answer_writes_over_5ms: u64,
}

impl ServerLatency {
    /// The sums over the seconds whose end lies in the window (`warmup`, `warmup + window`].
    pub fn over(seconds: &[MachineSecond], warmup: Duration, window: Duration) -> ServerLatency {
        let (from, to) = (warmup.as_secs(), (warmup + window).as_secs());
        let mut total = ServerLatency::default();
        for second in seconds.iter().filter(|s| s.at_s > from && s.at_s <= to) {
            total.requests += second.server_requests;
            total.requests_over_2_5ms += second.server_requests_over_2_5ms;
            total.requests_over_5ms += second.server_requests_over_5ms;
            total.commits += second.server_commits;
            total.commits_over_2_5ms += second.server_commits_over_2_5ms;
            total.commits_over_5ms += second.server_commits_over_5ms;
            total.pushes += second.server_pushes;
            total.pushes_over_5ms += second.server_pushes_over_5ms;
            total.answer_writes += second.server_answer_writes;
            total.answer_writes_over_5ms += second.server_answer_writes_over_5ms;
        }
        total
    }
}

/// The server side of a run.
#[derive(Clone, Debug, Serialize)]
pub struct ServerSide {
    /// The address measured.
    pub addr: String,
    /// Whether the generator started it (else `--addr` named a running one).
    pub started_by_generator: bool,
    /// The CPUs it was pinned to (empty when not started by the generator).
    pub cpus: Vec<usize>,
    /// Its cold store setting.
    pub cold_store: String,
    /// `ringflow --version` of the binary started: the version and the commit it was built
    /// from (`+dirty` with uncommitted changes); none when not started by the generator.
    pub version: Option<String>,
    /// CPU seconds the server process used during the whole run (warm-up and drain too).
    pub cpu_seconds: Option<f64>,
    /// Its data directory, when kept.
    pub data: Option<PathBuf>,
}

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: &'static str,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Open loop: the target rate.
    pub rate_per_s: Option<f64>,
    /// Open loop: how often due creates were sent together, µs (0: each when due).
    pub send_tick_us: Option<u64>,
    /// Closed loop: instances in flight.
    pub inflight: Option<usize>,
    /// Shards of the server.
    pub shards: usize,
    /// The measured window, in seconds.
    pub duration_s: f64,
    /// The warm-up before it, in seconds.
    pub warmup_s: f64,
    /// Completed instances per second in the window.
    pub throughput_per_s: f64,
    /// Completed jobs per second in the window.
    pub jobs_per_s: f64,
    /// Instances completed in the window.
    pub completed: u64,
    /// End-to-end latency, from when an instance was due to its completion.
    pub latency_us: Latency,
    /// The same latency cut where each instance's last job reached the generator, and the
    /// generator's lateness in sending creates.
    pub phases: PhaseLatencies,
    /// The server's own request and commit latency in the window (none for a server at
    /// `--addr`, or when its metrics could not be read).
    pub server_latency: Option<ServerLatency>,
    /// Refusals and failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Instances still unfinished after the drain.
    pub unfinished: u64,
    /// Open loop: the largest backlog of due but unsent instances.
    pub backlog_max: u64,
    /// The server.
    pub server: ServerSide,
    /// The generator's CPUs.
    pub generator_cpus: Vec<usize>,
    /// CPU seconds the generator used during the run (warm-up and drain too).
    pub generator_cpu_seconds: Option<f64>,
    /// The machine, kernel, commit and date.
    pub machine: Machine,
    /// Each second of the run (warm-up and drain too): completions and their p50, p99 and
    /// max, to see when a run's tail happened.
    pub timeline: Vec<ringflow_shard::load::Second>,
    /// Each second of the run beside it: the server CPUs' busy, interrupt, idle and stolen
    /// time, the server's CPU time and run-queue wait, the disk's writes and flushes
    /// (empty for a server at `--addr`). Its `at_s` lines up with `timeline`'s.
    pub machine_timeline: Vec<MachineSecond>,
    /// When the run (warm-up first) began, in ms since the Unix epoch: the timelines'
    /// `at_s` count from here, to line them up with the server's log (`--slow-commit-ms`).
    pub started_unix_ms: u64,
    /// The engine alone on the server's first CPU for a second, before the server started
    /// and after it stopped, in one-task instances/s: the CPU's pace around the run (this
    /// VM's moved 1.6x within minutes). None with `--no-pace` or `--addr`.
    pub engine_pace_per_s: Option<(f64, f64)>,
}

/// What [`Report::new`] takes.
pub struct Inputs {
    pub scenario: Scenario,
    pub mode: Mode,
    pub send_tick: Duration,
    pub shards: usize,
    pub warmup: Duration,
    pub addr: String,
    pub server_started: bool,
    pub server_cpus: Vec<usize>,
    pub generator_cpus: Vec<usize>,
    pub cold_store: String,
    pub server_version: Option<String>,
    pub data: Option<PathBuf>,
    pub server_cpu: Option<Duration>,
    pub generator_cpu: Option<Duration>,
    pub machine: Machine,
    pub machine_timeline: Vec<MachineSecond>,
    pub started_unix_ms: u64,
    pub engine_pace_per_s: Option<(f64, f64)>,
    pub outcome: Outcome,
}

/// "closed loop, 2048 in flight" or "open loop at 50,000/s".
pub fn describe_mode(mode: Mode) -> String {
    match mode {
        Mode::Closed { inflight } => format!("closed loop, {inflight} in flight"),
        Mode::Open { rate, .. } => format!("open loop at {}/s", thousands(rate as u64)),
    }
}

impl Report {
    /// Builds the report of one run.
    pub fn new(inputs: Inputs) -> Report {
        let outcome = &inputs.outcome;
        let (mode, rate_per_s, inflight) = match inputs.mode {
            Mode::Closed { inflight } => ("closed", None, Some(inflight)),
            Mode::Open { rate, .. } => ("open", Some(rate), None),
        };
        Report {
            scenario: inputs.scenario.name(),
            mode,
            rate_per_s,
            send_tick_us: rate_per_s.map(|_| inputs.send_tick.as_micros() as u64),
            inflight,
            shards: inputs.shards,
            duration_s: outcome.window.as_secs_f64(),
            warmup_s: inputs.warmup.as_secs_f64(),
            throughput_per_s: outcome.throughput_per_s(),
            jobs_per_s: outcome.jobs as f64 / outcome.window.as_secs_f64(),
            completed: outcome.completed,
            latency_us: Latency::of(&outcome.latency_us),
            phases: {
                let phases = &outcome.phases;
                let with_jobs = !phases.to_last_job_us.is_empty();
                PhaseLatencies {
                    to_last_job_us: with_jobs.then(|| Latency::of(&phases.to_last_job_us)),
                    last_job_to_result_us: with_jobs
                        .then(|| Latency::of(&phases.last_job_to_result_us)),
                    send_lag_us: Latency::of(&phases.send_lag_us),
                }
            },
            server_latency: Some(ServerLatency::over(
                &inputs.machine_timeline,
                inputs.warmup,
                outcome.window,
            ))
            .filter(|latency| latency.requests > 0),
            errors: outcome
                .errors
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            unfinished: outcome.unfinished,
            backlog_max: outcome.backlog_max,
            server: ServerSide {
                addr: inputs.addr,
                started_by_generator: inputs.server_started,
                cpus: inputs.server_cpus,
                cold_store: inputs.cold_store,
                version: inputs.server_version,
                cpu_seconds: inputs.server_cpu.map(|cpu| cpu.as_secs_f64()),
                data: inputs.data,
            },
            generator_cpus: inputs.generator_cpus,
            generator_cpu_seconds: inputs.generator_cpu.map(|cpu| cpu.as_secs_f64()),
            machine: inputs.machine,
            timeline: outcome.timeline.clone(),
            machine_timeline: inputs.machine_timeline,
            started_unix_ms: inputs.started_unix_ms,
            engine_pace_per_s: inputs.engine_pace_per_s,
        }
    }

    /// One line on where the latency went ([`PhaseLatencies`]), for the end of a run.
    pub fn phases_line(&self) -> String {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let lag = &self.phases.send_lag_us;
        let mut line = format!("send lag p99 {:.1} ms, max {:.1}", ms(lag.p99), ms(lag.max));
        if let (Some(before), Some(after)) = (
            &self.phases.to_last_job_us,
            &self.phases.last_job_to_result_us,
        ) {
            line = format!(
                "due to last job p50 {:.1} ms, p99 {:.1}; last job to result p50 {:.1} ms, p99 \
                 {:.1}; {line}",
                ms(before.p50),
                ms(before.p99),
                ms(after.p50),
                ms(after.p99)
            );
        }
        if let Some(server) = &self.server_latency {
            let share = |part: u64, whole: u64| 100.0 * part as f64 / whole.max(1) as f64;
            line = format!(
                "{line}; inside the server, over 5 ms: {} of {} requests ({:.2}%), {} of {} \
                 commits, {} of {} pushes, {} of {} answer writes",
                server.requests_over_5ms,
                server.requests,
                share(server.requests_over_5ms, server.requests),
                server.commits_over_5ms,
                server.commits,
                server.pushes_over_5ms,
                server.pushes,
                server.answer_writes_over_5ms,
                server.answer_writes
            );
        }
        line
    }

    /// A warning when the engine's pace after the run differs from before by more than
    /// [`PACE_MOVED`]: the machine's CPU changed speed during the run, so its figures
    /// compare with other runs only loosely.
    pub fn pace_warning(&self) -> Option<String> {
        pace_warning(self.engine_pace_per_s)
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes") + "\n"
    }

    fn mode_text(&self) -> String {
        match (self.rate_per_s, self.inflight) {
            (Some(rate), _) => format!("open {}/s", thousands(rate as u64)),
            (None, Some(inflight)) => format!("closed {inflight}"),
            _ => self.mode.to_string(),
        }
    }
}

/// The warning of [`Report::pace_warning`], from the pace before and after.
fn pace_warning(pace: Option<(f64, f64)>) -> Option<String> {
    let (before, after) = pace?;
    let moved = (after - before).abs() / before.min(after).max(1.0);
    (moved > PACE_MOVED).then(|| {
        format!(
            "the CPU's pace moved during the run: the engine alone did {}/s before and {}/s after ({:.0}% apart); compare this run with others loosely",
            thousands(before.round() as u64),
            thousands(after.round() as u64),
            moved * 100.0
        )
    })
}

/// Thousands separated by commas.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A Markdown table of the runs, with the machine line under it.
pub fn markdown(reports: &[Report]) -> String {
    let mut out = String::from(
        "| scenario | shards | load | cold store | instances/s | jobs/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | errors | server CPU s | generator CPU s |\n\
         |---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for report in reports {
        let latency = &report.latency_us;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            report.scenario,
            report.shards,
            report.mode_text(),
            report.server.cold_store,
            thousands(report.throughput_per_s.round() as u64),
            thousands(report.jobs_per_s.round() as u64),
            thousands(latency.p50),
            thousands(latency.p90),
            thousands(latency.p99),
            thousands(latency.p999),
            thousands(latency.max),
            thousands(report.errors.values().sum()),
            report
                .server
                .cpu_seconds
                .map_or("-".to_string(), |s| format!("{s:.1}")),
            report
                .generator_cpu_seconds
                .map_or("-".to_string(), |s| format!("{s:.1}")),
        );
    }
    if let Some(first) = reports.first() {
        let _ = writeln!(
            out,
            "\n{}; {} s measured after {} s warm-up; server CPUs {:?}, generator CPUs {:?}; server {}.",
            first.machine,
            first.duration_s,
            first.warmup_s,
            first.server.cpus,
            first.generator_cpus,
            first
                .server
                .version
                .as_deref()
                .unwrap_or("at --addr (version not known)")
        );
        let errors: BTreeMap<&String, u64> = reports
            .iter()
            .flat_map(|report| report.errors.iter())
            .fold(BTreeMap::new(), |mut all, (kind, count)| {
                *all.entry(kind).or_default() += count;
                all
            });
        if !errors.is_empty() {
            let _ = writeln!(out, "Errors: {errors:?}.");
        }
        for report in reports.iter().filter(|r| !r.machine_timeline.is_empty()) {
            let pace = report
                .engine_pace_per_s
                .map_or(String::new(), |(before, after)| {
                    format!(
                        "; the engine alone on the server's CPU did {}/s before and {}/s after",
                        thousands(before.round() as u64),
                        thousands(after.round() as u64)
                    )
                });
            let _ = writeln!(
                out,
                "Beside {} {} on {} shard(s), {}{pace}.",
                report.scenario,
                report.mode_text(),
                report.shards,
                sampler::summary(&report.machine_timeline)
            );
        }
    }
    out
}

/// One CSV line per run.
pub fn csv(reports: &[Report]) -> String {
    let mut out = String::from(
        "scenario,shards,mode,rate_per_s,inflight,cold_store,throughput_per_s,jobs_per_s,p50_us,p90_us,p99_us,p999_us,max_us,errors,unfinished,server_cpu_s,generator_cpu_s\n",
    );
    for r in reports {
        let l = &r.latency_us;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.1},{:.1},{},{},{},{},{},{},{},{},{}",
            r.scenario,
            r.shards,
            r.mode,
            r.rate_per_s.map_or(String::new(), |v| format!("{v}")),
            r.inflight.map_or(String::new(), |v| v.to_string()),
            r.server.cold_store,
            r.throughput_per_s,
            r.jobs_per_s,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            r.errors.values().sum::<u64>(),
            r.unfinished,
            r.server
                .cpu_seconds
                .map_or(String::new(), |s| format!("{s:.2}")),
            r.generator_cpu_seconds
                .map_or(String::new(), |s| format!("{s:.2}")),
        );
    }
    out
}

/// A line plot: series of (x, y) points, axes from zero.
struct Plot<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

impl Plot<'_> {
    fn svg(&self) -> String {
        let (width, height) = (640.0, 400.0);
        let (left, right, top, bottom) = (80.0, 20.0, 40.0, 60.0);
        let points = self.series.iter().flat_map(|(_, points)| points.iter());
        let x_max = nice(points.clone().map(|p| p.0).fold(0.0, f64::max));
        let y_max = nice(points.map(|p| p.1).fold(0.0, f64::max));
        let sx = |x: f64| left + x / x_max * (width - left - right);
        let sy = |y: f64| height - bottom - y / y_max * (height - top - bottom);
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
            width / 2.0,
            escape(self.title)
        );
        for tick in 0..=4 {
            let fraction = f64::from(tick) / 4.0;
            let (x, y) = (sx(x_max * fraction), sy(y_max * fraction));
            let _ = writeln!(
                out,
                r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                width - right,
                left - 6.0,
                y + 4.0,
                short(y_max * fraction)
            );
            let _ = writeln!(
                out,
                r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
                height - bottom + 18.0,
                short(x_max * fraction)
            );
        }
        let _ = writeln!(
            out,
            r#"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{0}" stroke="black"/>"#,
            height - bottom,
            width - right
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (left + width - right) / 2.0,
            height - 15.0,
            escape(self.x_label)
        );
        let _ = writeln!(
            out,
            r#"<text transform="translate(18,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (top + height - bottom) / 2.0,
            escape(self.y_label)
        );
        for (index, (name, points)) in self.series.iter().enumerate() {
            let color = COLORS[index % COLORS.len()];
            let path: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            for (x, y) in points {
                let _ = writeln!(
                    out,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    sx(*x),
                    sy(*y)
                );
            }
            let legend_y = top + 16.0 * index as f64;
            let _ = writeln!(
                out,
                r#"<rect x="{}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
                left + 12.0,
                legend_y + 4.0,
                left + 30.0,
                legend_y + 9.0,
                escape(name)
            );
        }
        out.push_str("</svg>\n");
        out
    }
}

/// Throughput (closed loop) against shards, with the linear ideal from one shard.
pub fn throughput_svg(reports: &[Report]) -> String {
    let mut measured: Vec<(f64, f64)> = reports
        .iter()
        .filter(|r| r.mode == "closed")
        .map(|r| (r.shards as f64, r.throughput_per_s))
        .collect();
    measured.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut series = vec![("measured".to_string(), measured.clone())];
    if let Some(&(shards, throughput)) = measured.first() {
        let per_shard = throughput / shards;
        series.push((
            "linear from the first point".to_string(),
            measured.iter().map(|(x, _)| (*x, x * per_shard)).collect(),
        ));
    }
    let scenario = reports.first().map_or("", |r| r.scenario);
    Plot {
        title: &format!("{scenario}: throughput against shards (closed loop)"),
        x_label: "shards",
        y_label: "completed instances/s",
        series,
    }
    .svg()
}

/// p50 and p99 latency (open loop) against the rate, one pair of lines per shard count.
pub fn latency_svg(reports: &[Report]) -> String {
    let mut by_shards: BTreeMap<usize, Vec<&Report>> = BTreeMap::new();
    for report in reports.iter().filter(|r| r.mode == "open") {
        by_shards.entry(report.shards).or_default().push(report);
    }
    let mut series = Vec::new();
    for (shards, mut runs) in by_shards {
        runs.sort_by(|a, b| {
            a.rate_per_s
                .unwrap_or(0.0)
                .total_cmp(&b.rate_per_s.unwrap_or(0.0))
        });
        for (name, pick) in [("p50", 0usize), ("p99", 1)] {
            series.push((
                format!("{shards} shard(s) {name}"),
                runs.iter()
                    .map(|r| {
                        let value = if pick == 0 {
                            r.latency_us.p50
                        } else {
                            r.latency_us.p99
                        };
                        (r.rate_per_s.unwrap_or(0.0), value as f64 / 1000.0)
                    })
                    .collect(),
            ));
        }
    }
    let scenario = reports.first().map_or("", |r| r.scenario);
    Plot {
        title: &format!("{scenario}: end-to-end latency against rate (open loop)"),
        x_label: "target instances/s",
        y_label: "latency, ms",
        series,
    }
    .svg()
}

/// The next "round" number at or above `value` (1, 2 or 5 times a power of ten).
fn nice(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * power)
}

fn short(value: f64) -> String {
    if value >= 1_000_000.0 {
        format!("{:.1}M", value / 1_000_000.0)
    } else if value >= 1_000.0 {
        format!("{:.0}k", value / 1_000.0)
    } else if value >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_that_moved_more_than_a_fifth_is_warned_about() {
        assert_eq!(pace_warning(None), None);
        assert_eq!(pace_warning(Some((600_000.0, 550_000.0))), None);
        let warning = pace_warning(Some((637_805.0, 396_053.0))).expect("moved 61%");
        assert!(
            warning.contains("637,805/s before and 396,053/s after (61% apart)"),
            "{warning}"
        );
        assert!(pace_warning(Some((400_000.0, 500_000.0))).is_some());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(3.0), 5.0);
        assert_eq!(nice(120_000.0), 200_000.0);
        assert_eq!(nice(1000.0), 1000.0);
    }

    #[test]
    fn a_plot_is_an_svg_with_one_polyline_per_series() {
        let svg = Plot {
            title: "t <1>",
            x_label: "x",
            y_label: "y",
            series: vec![
                ("a".into(), vec![(1.0, 10.0), (2.0, 19.0)]),
                ("b".into(), vec![(1.0, 10.0), (2.0, 20.0)]),
            ],
        }
        .svg();
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("t &lt;1&gt;"));
    }
}
