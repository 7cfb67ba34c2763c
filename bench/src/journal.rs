//! `ringflow-bench journal`: the journal alone (no engine), one pinned glommio executor per
//! shard, against the raw device measured in the same run.
//!
//! Per shard, a producer task appends records of `--record-bytes` into the open batch, and a
//! committer task commits whatever is there the way a shard's committer does
//! (`ringflow_shard::shard`): it writes a batch, hands its fdatasync to a task of its own and
//! writes the next batch while that sync is in flight (at most
//! `journal::writer::UNSYNCED_BATCHES_MAX` unsynced). With `--no-pipeline` it commits one
//! batch at a time (write, fdatasync, then the next), as shards did before 50012b0.
//!
//! - Closed loop (no `--rate`): the producer keeps the open batch full. Gives appends/s, MB/s
//!   and records per fdatasync at saturation.
//! - Open loop (`--rate R`, records/s per shard): records are due at fixed intervals; each
//!   record's commit latency runs from when it was due (not when it was appended), so a
//!   stalled producer does not hide latency (coordinated omission).
//! - Raw: the same executor writes `--raw-write-kib` blocks with O_DIRECT and fdatasyncs after
//!   each, on a preallocated file: the device limit for this write pattern.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use hdrhistogram::Histogram;
use ringflow_shard::journal::{Batch, Journal, JournalConfig, Room};
use ringflow_shard::storage::dma::DmaDir;
use ringflow_shard::storage::{Dir, File};

/// Arguments of `ringflow-bench journal`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the journals (a real filesystem: tmpfs ignores O_DIRECT and fdatasync).
    #[arg(long, default_value = "bench-journal-data")]
    dir: PathBuf,
    /// Shard counts to run, e.g. 1,2.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    shards: Vec<usize>,
    /// Payload bytes per record (the 32-byte header comes on top).
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Records per second per shard (open loop); without it, closed loop.
    #[arg(long)]
    rate: Option<u64>,
    /// Segment size in MiB.
    #[arg(long, default_value_t = 64)]
    segment_mib: u64,
    /// Bytes per write of the raw device measurement, in KiB.
    #[arg(long, default_value_t = 4096)]
    raw_write_kib: usize,
    /// Commit one batch at a time (write, fdatasync, then the next) instead of writing the
    /// next batch while the one before is being synced, as a shard does.
    #[arg(long)]
    no_pipeline: bool,
}

#[derive(Default)]
struct Stats {
    records: u64,
    bytes: u64,
    commits: u64,
    commit_micros: Option<Histogram<u64>>,
    latency_micros: Option<Histogram<u64>>,
    elapsed: Duration,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn check_filesystem(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if ringflow_shard::preflight::filesystem_magic(dir).is_none() {
        bail!(
            "statfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    if ringflow_shard::preflight::on_memory_filesystem(dir) {
        bail!(
            "{} is on tmpfs, which ignores O_DIRECT and fdatasync: use a real disk",
            dir.display()
        );
    }
    Ok(())
}

/// Runs `ringflow-bench journal`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    check_filesystem(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let cpus = ringflow_shard::runtime::usable_cpus();
    println!("machine: {}", crate::machine::describe());
    println!("directory: {}", dir.display());
    let mode = match args.rate {
        Some(rate) => format!("open loop, {rate} records/s per shard"),
        None => "closed loop".to_string(),
    };
    let mode = if args.no_pipeline {
        format!("{mode}, one commit at a time")
    } else {
        format!("{mode}, pipelined commits")
    };
    println!(
        "records: {} payload bytes + 32 header bytes; {mode}; {} s per run\n",
        args.record_bytes, args.seconds
    );
    let config = journal_config(args)?;
    println!(
        "| shards | raw MB/s | journal MB/s | % of raw | records/s | records/fdatasync | fdatasync p50 µs | p99 µs | max µs | commit latency p50 µs | p99 µs | p99.9 µs |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &shards in &args.shards {
        if shards == 0 || shards > cpus.len() {
            bail!(
                "{shards} shards: this machine has {} usable CPUs",
                cpus.len()
            );
        }
        let raw = on_shards(&cpus[..shards], &dir, args, Measure::Raw)?;
        let journal = on_shards(&cpus[..shards], &dir, args, Measure::Journal(config))?;
        print_row(shards, &raw, &journal);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The journal's layout for `args`, checked: its records are `--record-bytes` each, so the
/// largest record is capped at the batch size (a shard's 40 MiB cap, for deployments, would
/// not fit segments under 40 MiB).
fn journal_config(args: &Args) -> anyhow::Result<JournalConfig> {
    let mut config = JournalConfig::new(0);
    config.segment_bytes = args
        .segment_mib
        .checked_mul(1 << 20)
        .context("--segment-mib is too large")?;
    config.batch.record_bytes_max = config.batch.bytes_max;
    let record = args.record_bytes + ringflow_shard::journal::record::RECORD_HEADER_BYTES;
    if args.record_bytes == 0 || record > config.batch.record_bytes_max {
        bail!(
            "--record-bytes {} must be 1 to {} (a batch holds {} bytes, 32 of each record are \
             its header)",
            args.record_bytes,
            config.batch.record_bytes_max - ringflow_shard::journal::record::RECORD_HEADER_BYTES,
            config.batch.bytes_max
        );
    }
    config
        .check()
        .map_err(|error| anyhow::anyhow!("--segment-mib {}: {error}", args.segment_mib))?;
    Ok(config)
}

#[derive(Clone, Copy)]
enum Measure {
    Raw,
    Journal(JournalConfig),
}

fn on_shards(
    cpus: &[usize],
    dir: &Path,
    args: &Args,
    measure: Measure,
) -> anyhow::Result<Vec<Stats>> {
    let online = CpuSet::online().map_err(|error| anyhow::anyhow!("listing CPUs: {error}"))?;
    let sets = cpus
        .iter()
        .map(|cpu| online.clone().filter(|location| location.cpu == *cpu))
        .collect();
    let (dir, seconds, record_bytes, rate, pipeline) = (
        dir.to_path_buf(),
        args.seconds,
        args.record_bytes,
        args.rate,
        !args.no_pipeline,
    );
    let raw_write_bytes = args.raw_write_kib * 1024;
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Custom(sets))
        .io_memory(ringflow_shard::runtime::IO_MEMORY_BYTES_DEFAULT)
        .on_all_shards(move || async move {
            let index = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let shard_dir = dir.join(format!("bench-{index}"));
            let _ = std::fs::remove_dir_all(&shard_dir);
            let duration = Duration::from_secs(seconds);
            let result = match measure {
                Measure::Raw => raw(&shard_dir, raw_write_bytes, duration).await,
                Measure::Journal(mut config) => {
                    config.shard = index as u16;
                    let load = Load {
                        record_bytes,
                        rate,
                        duration,
                        pipeline,
                    };
                    journal(&shard_dir, config, load).await
                }
            };
            let _ = std::fs::remove_dir_all(&shard_dir);
            result.map_err(|error| error.to_string())
        })
        .map_err(|error| anyhow::anyhow!("starting the executors: {error}"))?;
    let mut all = Vec::new();
    for joined in handles.join_all() {
        let stats = joined.map_err(|error| anyhow::anyhow!("{error}"))?;
        all.push(stats.map_err(anyhow::Error::msg)?);
    }
    Ok(all)
}

async fn raw(dir: &Path, write_bytes: usize, duration: Duration) -> anyhow::Result<Stats> {
    let store = DmaDir::open(dir).await?;
    let file_bytes = 1u64 << 30;
    let file = store.create("raw", file_bytes).await?;
    let block = vec![0xA5u8; write_bytes];
    let mut stats = Stats {
        commit_micros: Some(histogram()),
        ..Stats::default()
    };
    let start = Instant::now();
    let mut offset = 0u64;
    while start.elapsed() < duration {
        if offset + write_bytes as u64 > file_bytes {
            offset = 0;
        }
        let began = Instant::now();
        file.write_at(offset, &block).await?;
        file.sync().await?;
        record(&mut stats.commit_micros, began.elapsed());
        offset += write_bytes as u64;
        stats.bytes += write_bytes as u64;
        stats.commits += 1;
    }
    stats.elapsed = start.elapsed();
    Ok(stats)
}

fn record(histogram: &mut Option<Histogram<u64>>, elapsed: Duration) {
    if let Some(histogram) = histogram {
        let micros = (elapsed.as_micros() as u64).clamp(1, 60_000_000);
        histogram.record(micros).expect("within bounds");
    }
}

struct Open {
    batch: Batch,
    due: Vec<Instant>,
    room: Rc<ringflow_shard::wait::WaitList>,
    work: Rc<ringflow_shard::wait::Notify>,
}

/// What the producer and the committer of one shard do.
#[derive(Clone, Copy)]
struct Load {
    record_bytes: usize,
    rate: Option<u64>,
    duration: Duration,
    pipeline: bool,
}

async fn journal(dir: &Path, config: JournalConfig, load: Load) -> anyhow::Result<Stats> {
    let store = DmaDir::open(dir).await?;
    let (mut journal, _) = Journal::open(store, config, 0).await?;
    let open = Rc::new(RefCell::new(Open {
        batch: journal.first_batch(),
        due: Vec::new(),
        room: Rc::new(ringflow_shard::wait::WaitList::default()),
        work: Rc::new(ringflow_shard::wait::Notify::default()),
    }));
    let work = open.borrow().work.clone();
    let payload = vec![0x5Au8; load.record_bytes];
    let start = Instant::now();
    let producer = glommio::spawn_local(produce(
        open.clone(),
        payload,
        load.rate,
        start,
        load.duration,
    ));
    let stats = Rc::new(RefCell::new(Stats {
        commit_micros: Some(histogram()),
        latency_micros: Some(histogram()),
        ..Stats::default()
    }));
    // A failed sync in a pipelined commit, for the committer to return.
    let failed: Rc<RefCell<Option<anyhow::Error>>> = Rc::default();
    let syncing = Rc::new(std::cell::Cell::new(0usize));
    while start.elapsed() < load.duration {
        if let Some(error) = failed.borrow_mut().take() {
            return Err(error);
        }
        let taken = {
            let mut open = open.borrow_mut();
            if open.batch.is_empty() || !journal.may_write(&open.batch) {
                None
            } else {
                let next = open.batch.successor();
                Some((
                    std::mem::replace(&mut open.batch, next),
                    std::mem::take(&mut open.due),
                ))
            }
        };
        let Some((batch, due)) = taken else {
            // Wait for the producer or for a sync, as a shard's committer does (no
            // spinning).
            let idle = glommio::timer::sleep(Duration::from_millis(10));
            futures_lite::future::or(idle, work.notified()).await;
            continue;
        };
        open.borrow().room.wake_all();
        let (records, bytes) = (batch.records() as u64, batch.bytes() as u64);
        let began = Instant::now();
        let written = journal.write(batch).await?;
        syncing.set(syncing.get() + 1);
        let sync = {
            let (stats, failed, work) = (stats.clone(), failed.clone(), work.clone());
            let syncing = syncing.clone();
            async move {
                match written.sync().await {
                    Ok(_) => {
                        let done = Instant::now();
                        let mut stats = stats.borrow_mut();
                        record(&mut stats.commit_micros, done - began);
                        for due in due {
                            record(
                                &mut stats.latency_micros,
                                done.saturating_duration_since(due),
                            );
                        }
                        stats.records += records;
                        stats.bytes += bytes;
                        stats.commits += 1;
                    }
                    Err(error) => *failed.borrow_mut() = Some(error.into()),
                }
                syncing.set(syncing.get() - 1);
                work.notify();
            }
        };
        if load.pipeline {
            glommio::spawn_local(sync).detach();
        } else {
            sync.await;
        }
    }
    while syncing.get() > 0 {
        work.notified().await;
    }
    if let Some(error) = failed.borrow_mut().take() {
        return Err(error);
    }
    producer.cancel().await;
    let mut stats = Rc::try_unwrap(stats)
        .map_err(|_| anyhow::anyhow!("a sync task outlived the run"))?
        .into_inner();
    stats.elapsed = start.elapsed();
    Ok(stats)
}

async fn produce(
    open: Rc<RefCell<Open>>,
    payload: Vec<u8>,
    rate: Option<u64>,
    start: Instant,
    duration: Duration,
) {
    let mut produced = 0u64;
    while start.elapsed() < duration {
        let due_now = match rate {
            Some(rate) => (start.elapsed().as_nanos() * rate as u128 / 1_000_000_000) as u64,
            None => u64::MAX,
        };
        let mut full = false;
        {
            let mut open = open.borrow_mut();
            while produced < due_now {
                if open.batch.room_for(payload.len()) != Room::Now {
                    full = true;
                    break;
                }
                open.batch.append(&payload).expect("room checked");
                let due = match rate {
                    Some(rate) => start + Duration::from_nanos(produced * 1_000_000_000 / rate),
                    None => Instant::now(),
                };
                open.due.push(due);
                produced += 1;
            }
            open.work.notify();
        }
        if full {
            let room = open.borrow().room.clone();
            room.wait().await;
        } else {
            glommio::timer::sleep(Duration::from_micros(50)).await;
        }
    }
}

fn percentile(stats: &[Stats], pick: fn(&Stats) -> &Option<Histogram<u64>>, q: f64) -> u64 {
    let mut merged = histogram();
    for stat in stats {
        if let Some(histogram) = pick(stat) {
            merged.add(histogram).expect("same bounds");
        }
    }
    if merged.is_empty() {
        0
    } else {
        merged.value_at_quantile(q)
    }
}

fn print_row(shards: usize, raw: &[Stats], journal: &[Stats]) {
    let mb_per_s = |stats: &[Stats]| {
        stats
            .iter()
            .map(|s| s.bytes as f64 / s.elapsed.as_secs_f64() / 1e6)
            .sum::<f64>()
    };
    let raw_mb = mb_per_s(raw);
    let journal_mb = mb_per_s(journal);
    let records: f64 = journal
        .iter()
        .map(|s| s.records as f64 / s.elapsed.as_secs_f64())
        .sum();
    let commits: u64 = journal.iter().map(|s| s.commits).sum();
    let total_records: u64 = journal.iter().map(|s| s.records).sum();
    let per_sync = total_records as f64 / commits.max(1) as f64;
    let commit = |q| percentile(journal, |s| &s.commit_micros, q);
    let latency = |q| percentile(journal, |s| &s.latency_micros, q);
    let max = journal
        .iter()
        .filter_map(|s| s.commit_micros.as_ref().map(Histogram::max))
        .max()
        .unwrap_or(0);
    println!(
        "| {shards} | {raw_mb:.1} | {journal_mb:.1} | {:.0}% | {records:.0} | {per_sync:.1} | {} | {} | {max} | {} | {} | {} |",
        100.0 * journal_mb / raw_mb.max(f64::MIN_POSITIVE),
        commit(0.5),
        commit(0.99),
        latency(0.5),
        latency(0.99),
        latency(0.999),
    );
}
