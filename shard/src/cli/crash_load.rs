//! `ringflow crash-load` (hidden): a load for the kill -9 test, run on the real runtime.
//!
//! Until the wire protocol exists, this is how a harness drives real shards on a real
//! filesystem: each shard deploys a one-task process, then creates instances with unique
//! business keys, `--concurrency` at a time, and prints `ack BUSINESS_KEY INSTANCE_KEY` on
//! standard output for each creation only after the shard acknowledged it (its record was
//! durable). The harness kills the process at random moments and checks, after a restart,
//! that every printed instance exists.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::bail;
use ringflow_core::{Command, ProcessRef, Resource, Response, Variables};

use crate::journal::writer::JournalSync;
use crate::runtime::{self, RuntimeConfig};
use crate::shard::{Shard, ShardConfig};
use crate::storage::Dir;

/// The process every instance runs: start, a service task of type `crash-test`, end.
pub const MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="crash-load-definitions">
  <bpmn:process id="crash-load" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="task"/>
    <bpmn:serviceTask id="task">
      <bpmn:extensionElements><zeebe:taskDefinition type="crash-test"/></bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="task" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

/// Arguments of `ringflow crash-load`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// Shards to run, one per CPU from the first usable CPU [default: the usable CPUs].
    #[arg(long)]
    shards: Option<usize>,
    /// Business keys are PREFIX-SHARD-N.
    #[arg(long)]
    prefix: String,
    /// Instances each shard creates (then it exits 0).
    #[arg(long, default_value_t = 1_000)]
    count: u64,
    /// Creations in flight per shard.
    #[arg(long, default_value_t = 32)]
    concurrency: u64,
    /// Segment size in KiB (small segments exercise roll-over and removal).
    #[arg(long, default_value_t = 1024)]
    segment_kib: u64,
    /// Records between snapshots.
    #[arg(long, default_value_t = 5_000)]
    snapshot_every_records: u64,
    /// How journal batches are made durable, as `ringflow serve --journal-sync`: fdatasync
    /// or dsync.
    #[arg(long, default_value = "fdatasync")]
    journal_sync: String,
}

/// The shard settings crash-load runs with (the kill -9 checker recovers with the same):
/// segments of `segment_kib`, batches of at most half a segment.
pub fn shard_config(shard: u16, segment_kib: u64, snapshot_every_records: u64) -> ShardConfig {
    let mut config = ShardConfig::new(shard);
    config.journal.segment_bytes = segment_kib * 1024;
    let half_segment = segment_kib as usize * 512;
    config.journal.batch.bytes_max = config.journal.batch.bytes_max.min(half_segment);
    config.journal.batch.record_bytes_max = config.journal.batch.bytes_max;
    config.snapshot_every_records = snapshot_every_records;
    config
}

/// Runs `ringflow crash-load`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let cpus = runtime::usable_cpus();
    let shards = args.shards.unwrap_or(cpus.len());
    if shards == 0 || shards > cpus.len() {
        bail!("--shards must be 1 to {} (the usable CPUs)", cpus.len());
    }
    let mut shard = shard_config(0, args.segment_kib, args.snapshot_every_records);
    shard.journal.sync = JournalSync::parse(&args.journal_sync).map_err(anyhow::Error::msg)?;
    let config = RuntimeConfig {
        first_shard: 0,
        data_dir: args.data.clone(),
        cpus: cpus[..shards].to_vec(),
        io_memory_bytes: runtime::IO_MEMORY_BYTES_DEFAULT,
        ring_depth: runtime::RING_DEPTH_DEFAULT,
        shard,
        cold_store: None,
        history: Default::default(),
        history_ttl: None,
        metrics: None,
        topology: None,
        io_worker_slice: None,
    };
    let prefix = Arc::new(args.prefix.clone());
    let (count, concurrency) = (args.count, args.concurrency.max(1));
    let results = runtime::run(config, move |shard| {
        drive(shard, prefix, count, concurrency)
    })
    .map_err(anyhow::Error::msg)?;
    let mut failed = false;
    for (index, result) in results.iter().enumerate() {
        if let Err(error) = result {
            say!("ringflow: shard {index}: {error}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn drive<D: Dir + 'static>(
    shard: Rc<Shard<D>>,
    prefix: Arc<String>,
    count: u64,
    concurrency: u64,
) -> Result<(), String> {
    let deploy = Command::Deploy {
        resources: vec![Resource {
            name: "crash-load.bpmn".to_string(),
            content: Arc::from(MODEL.as_bytes()),
        }],
    };
    if let Err(error) = shard.submit(deploy).await {
        return Err(format!("deploy failed: {error}"));
    }
    let next = Rc::new(std::cell::Cell::new(0u64));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (shard, prefix, next) = (shard.clone(), prefix.clone(), next.clone());
        workers.push(glommio::spawn_local(async move {
            loop {
                let n = next.get();
                if n >= count {
                    return Ok(());
                }
                next.set(n + 1);
                let business_key = format!("{prefix}-{}-{n}", shard.id());
                let create = Command::CreateInstance {
                    process: ProcessRef::Latest("crash-load".to_string()),
                    variables: Variables::new(),
                    business_key: Some(business_key.clone()),
                    await_result: false,
                };
                match shard.submit(create).await {
                    Ok(outcome) => {
                        if let Response::InstanceCreated {
                            process_instance_key,
                            ..
                        } = outcome.response
                        {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "ack {business_key} {process_instance_key}");
                        }
                    }
                    Err(error) => return Err(format!("create failed: {error}")),
                }
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    Ok(())
}
