//! `ringflow doctor`: checks that this machine can run the configured node, and says how to
//! fix what it cannot.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Flags};
use crate::preflight::{self, DoctorInput, Level};
use crate::runtime;

/// Options of `ringflow doctor`: the same configuration `serve` reads.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file `serve` runs with (its shards, CPUs, data directory, I/O
    /// memory and segment size are what is checked).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data directory to check [default: the configuration's, else ringflow-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Check for this many shards [default: the configuration's, else one per usable CPU].
    #[arg(long)]
    shards: Option<usize>,
    /// Check a node of a cluster file (with --node) rather than a single node.
    #[arg(long, requires = "node")]
    cluster: Option<PathBuf>,
    /// The node of --cluster to check (an index, or `ordinal`).
    #[arg(long, requires = "cluster")]
    node: Option<config::NodeSpec>,
}

/// Runs `ringflow doctor`; exit status 1 when a check failed (the server would not start or
/// would not keep acknowledged data), 0 otherwise (warnings included).
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let flags = Flags {
        config: args.config.clone(),
        data: args.data.clone(),
        shards: args.shards,
        cluster: args.cluster.clone(),
        node: args.node.clone(),
        ..Flags::default()
    };
    let config = config::effective(&flags)?;
    let usable = runtime::usable_cpus();
    // The CPU check reports too many shards itself, so plan with the CPUs named when the
    // default would refuse.
    let mut for_plan = config.clone();
    let shards_wanted = match (&config.cluster, config.shards) {
        (None, Some(shards)) => Some(shards),
        _ => None,
    };
    if let (Some(shards), None) = (shards_wanted, &config.cpus)
        && shards > usable.len()
    {
        for_plan.cpus = Some(config::CpuList((0..shards).collect()));
    }
    let plan = for_plan.plan(&usable)?;
    let input = DoctorInput {
        data_dir: config.data.clone(),
        shards: plan.cpus.len(),
        cpus: plan.cpus.clone(),
        usable_cpus: usable,
        io_memory_bytes: plan.io_memory_bytes,
        segment_bytes: plan.shard.journal.segment_bytes,
    };
    out!(
        "ringflow doctor: node {} with {} shard(s), data in {}{}",
        plan.node,
        input.shards,
        input.data_dir.display(),
        match &args.config {
            Some(path) => format!(", configuration {}", path.display()),
            None => String::new(),
        }
    );
    let mut findings = preflight::doctor(&input);
    findings.push(preflight::ports_finding(
        &plan.bind_host,
        plan.me.base_port,
        plan.me.shard_count,
        runtime::running_node(&config.data),
    ));
    for finding in &findings {
        out!(
            "{:<5} {:<10} {}",
            finding.level.label(),
            finding.check,
            finding.what
        );
        if !finding.fix.is_empty() {
            out!("{:<16} fix: {}", "", finding.fix);
        }
    }
    let count = |level: Level| findings.iter().filter(|f| f.level == level).count();
    let (warnings, failures) = (count(Level::Warn), count(Level::Fail));
    out!(
        "{} ok, {warnings} warning(s), {failures} failure(s){}",
        count(Level::Ok),
        if failures > 0 {
            ": the server would not start, or would not keep what it acknowledges, until the \
             failures are fixed"
        } else if warnings > 0 {
            ": the server runs; the warnings cost speed or safety"
        } else {
            ""
        }
    );
    Ok(if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
