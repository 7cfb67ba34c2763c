//! `ringflow-bench export`: the SQLite cold store's exporters alone, no server.
//!
//! Makes each exporter's journal records first (one_task instances run through the engine
//! with `--inflight` in flight, one record per command, as a server under `run`'s closed
//! loop writes them), then times E exporter threads writing them in transactions of
//! [`EXPORT_BATCH_RECORDS`] records, in three layouts, in turn, each round:
//!
//! - `one exporter`: one exporter, one file: the pace of one shard's exporter;
//! - `one file`: E exporters into one shared SQLite file (`--cold-store sqlite:PATH`, and a
//!   `DATA/cold.db` from before the file per shard), taking turns at its write lock;
//! - `a file each`: E exporters into a file per shard (`sqlite-shards:DIR`, the default).
//!
//! An instance here is one step of the engine: a create, an activation and a completion
//! (three records), what one one_task instance costs in steady state. After each run it
//! counts the instances in the store and fails unless every one made is there.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use ringflow_shard::cold::exporter::EXPORT_BATCH_RECORDS;
use ringflow_shard::cold::query::Store;
use ringflow_shard::cold::{ExportRecord, Exporter, HistoryLevel, Target};

/// Arguments of `ringflow-bench export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Exporters writing at once (shards).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    exporters: u16,
    /// Instances each exporter writes.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=5_000_000))]
    instances: u32,
    /// Instances in flight while the records are made (`run` keeps 2,048 per shard): how far
    /// apart an instance's create and completion are, so how many of its rows a transaction
    /// inserts and then the next one updates.
    #[arg(long, default_value_t = 2_048, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    inflight: u32,
    /// Rounds; each runs the three layouts once, in turn.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// The folder for the SQLite files (a subfolder of it per run, removed after the run).
    #[arg(long, default_value = "ringflow-bench-export")]
    dir: PathBuf,
    /// What the exporters write: `full` or `instances` (as `serve --history-level`).
    #[arg(long, default_value = "full", value_parser = HistoryLevel::parse)]
    history_level: HistoryLevel,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    OneExporter,
    OneFile,
    FileEach,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::OneExporter => "one exporter",
            Layout::OneFile => "one file",
            Layout::FileEach => "a file each",
        }
    }
}

/// Writes `records` as one exporter of `shard` does, in transactions of
/// [`EXPORT_BATCH_RECORDS`]; returns the seconds it took.
fn export(
    target: &Target,
    shard: u16,
    records: &[ExportRecord],
    history: HistoryLevel,
) -> anyhow::Result<f64> {
    let mut exporter = Exporter::open(target, shard)
        .context("open the exporter")?
        .with_history(history);
    let started = Instant::now();
    for batch in records.chunks(EXPORT_BATCH_RECORDS) {
        let reach = batch.last().map_or(0, |record| record.lsn);
        exporter.export(batch, reach).context("export")?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// One run: the exporters of `shards` write their records into `target` at once; returns
/// the wall seconds.
fn run_layout(
    target: &Target,
    shards: &[u16],
    records: &[Vec<ExportRecord>],
    history: HistoryLevel,
) -> anyhow::Result<f64> {
    ringflow_shard::cold::prepare(target, shards).context("prepare the store")?;
    let started = Instant::now();
    std::thread::scope(|scope| {
        let threads: Vec<_> = shards
            .iter()
            .zip(records)
            .map(|(&shard, records)| scope.spawn(move || export(target, shard, records, history)))
            .collect();
        for thread in threads {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("an exporter thread panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(started.elapsed().as_secs_f64())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.dir.exists() && !args.dir.is_dir() {
        bail!("--dir {}: not a folder", args.dir.display());
    }
    let shards: Vec<u16> = (0..args.exporters).collect();
    eprintln!(
        "ringflow-bench export: making the records of {} instances for each of {} exporters",
        args.instances, args.exporters
    );
    let made = shards
        .iter()
        .map(|&shard| crate::engine::one_task_records(shard, args.instances, args.inflight))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let created_per_shard = made[0].1;
    let records: Vec<Vec<ExportRecord>> = made.into_iter().map(|(records, _)| records).collect();
    println!("machine: {}", crate::machine::describe());
    println!(
        "{} exporter(s), {} one_task instances each ({} records each, {} in flight), \
         history level {}, transactions of {EXPORT_BATCH_RECORDS} records",
        args.exporters,
        args.instances,
        records[0].len(),
        args.inflight,
        args.history_level.name()
    );
    println!();
    println!("| round | layout | exporters | instances | seconds | instances/s |");
    println!("|---:|---|---:|---:|---:|---:|");
    let layouts = [Layout::OneExporter, Layout::OneFile, Layout::FileEach];
    let mut paces: Vec<(Layout, Vec<f64>)> = layouts.iter().map(|&l| (l, Vec::new())).collect();
    for round in 1..=args.rounds {
        for (layout, paces) in &mut paces {
            let folder = args.dir.join(format!(
                "run-{}-{round}-{}",
                std::process::id(),
                *layout as u8
            ));
            if folder.exists() {
                std::fs::remove_dir_all(&folder)?;
            }
            let (target, shards) = match layout {
                Layout::OneExporter => (Target::Sqlite(folder.join("cold.db")), &shards[..1]),
                Layout::OneFile => (Target::Sqlite(folder.join("cold.db")), &shards[..]),
                Layout::FileEach => (Target::SqliteShards(folder.clone()), &shards[..]),
            };
            let result =
                run_layout(&target, shards, &records, args.history_level).and_then(|seconds| {
                    // Every instance made is in the store, or the figure means nothing.
                    let stored: i64 = Store::open_read_only(&target)?
                        .count_by_state()?
                        .iter()
                        .map(|(_, count)| count)
                        .sum();
                    let expected = created_per_shard * shards.len() as u64;
                    if stored != expected as i64 {
                        bail!("the store holds {stored} instances, not {expected}");
                    }
                    Ok(seconds)
                });
            let _ = std::fs::remove_dir_all(&folder);
            let seconds =
                result.with_context(|| format!("{} ({})", layout.name(), target.describe()))?;
            let instances = u64::from(args.instances) * shards.len() as u64;
            let pace = instances as f64 / seconds;
            paces.push(pace);
            println!(
                "| {round} | {} | {} | {instances} | {seconds:.2} | {pace:.0} |",
                layout.name(),
                shards.len()
            );
        }
    }
    let _ = std::fs::remove_dir(&args.dir);
    println!();
    println!("| layout | instances/s, lowest | highest |");
    println!("|---|---:|---:|");
    for (layout, paces) in &paces {
        let low = paces.iter().copied().fold(f64::INFINITY, f64::min);
        let high = paces.iter().copied().fold(0.0, f64::max);
        println!("| {} | {low:.0} | {high:.0} |", layout.name());
    }
    Ok(())
}
