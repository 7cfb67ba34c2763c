//! `ringflow journal inspect DATA/shard-N`: what a shard's data directory holds, read-only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::journal::scan::End;
use crate::journal::writer::{scan_segment, segment_names, spare_names};
use crate::snapshot::{self, SnapshotStore};
use crate::storage::std_fs::StdDir;
use crate::storage::{Dir, block_on, read_whole};

/// Arguments of `ringflow journal`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: JournalCommand,
}

#[derive(Debug, clap::Subcommand)]
enum JournalCommand {
    /// Print a shard's segments (LSN ranges, record counts, how each ends), its snapshots,
    /// and the first bad record if there is one. Reads only; changes nothing.
    ///
    /// Exits 0 when everything is readable, 1 when damage was found.
    Inspect(InspectArgs),
}

#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// The shard's directory: DATA/shard-N.
    #[arg(value_name = "DATA/shard-N")]
    dir: PathBuf,
    /// The shard id, when the directory is not named shard-N.
    #[arg(long)]
    shard: Option<u16>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    shard: u16,
    segments: Vec<SegmentReport>,
    /// Covered segments kept for reuse (`<old first LSN>.spare`).
    spares: Vec<String>,
    snapshots: Vec<SnapshotReport>,
    first_bad_record: Option<BadRecord>,
}

#[derive(Serialize)]
struct SegmentReport {
    file: String,
    first_lsn: u64,
    last_lsn: Option<u64>,
    records: usize,
    /// Batches (writes) the records came in.
    batches: usize,
    /// Of those, the ones written while the batch before was not yet synced (the pipelined
    /// commit): only such a batch may follow a torn one at a crash.
    batches_after_unsynced: usize,
    used_bytes: usize,
    size_bytes: u64,
    end: String,
}

#[derive(Serialize)]
struct SnapshotReport {
    file: String,
    lsn: u64,
    size_bytes: usize,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

#[derive(Serialize)]
struct BadRecord {
    segment: String,
    offset: usize,
    lsn: u64,
    reason: String,
}

/// Runs `ringflow journal ...`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        JournalCommand::Inspect(inspect) => run_inspect(inspect),
    }
}

fn shard_id(dir: &Path, given: Option<u16>) -> anyhow::Result<u16> {
    if let Some(shard) = given {
        return Ok(shard);
    }
    let name = dir.file_name().and_then(|name| name.to_str()).unwrap_or("");
    match name.strip_prefix("shard-").map(str::parse::<u16>) {
        Some(Ok(shard)) => Ok(shard),
        _ => bail!(
            "cannot tell the shard id from `{}`: name the directory shard-N or pass --shard N",
            dir.display()
        ),
    }
}

fn run_inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    if !args.dir.is_dir() {
        bail!(
            "`{}` is not a directory (a shard's is DATA/shard-N)",
            args.dir.display()
        );
    }
    let shard = shard_id(&args.dir, args.shard)?;
    let journal_path = args.dir.join("journal");
    if !journal_path.is_dir() {
        bail!(
            "`{}` is not a shard directory (no journal/ in it)",
            args.dir.display()
        );
    }
    let report = block_on(inspect(&args.dir, shard))?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&args.dir, &report);
    }
    let damaged = report.first_bad_record.is_some() || report.snapshots.iter().any(|s| !s.valid);
    Ok(if damaged {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn inspect(dir: &Path, shard: u16) -> anyhow::Result<Report> {
    let journal = StdDir::existing(&dir.join("journal"))?;
    let mut segments = Vec::new();
    let mut first_bad_record = None;
    let names = segment_names(&journal).await?;
    for (index, (_, name)) in names.iter().enumerate() {
        let scan = scan_segment(&journal, name, shard, false).await?;
        let size_bytes = std::fs::metadata(journal.path().join(name))
            .with_context(|| format!("stat of {name}"))?
            .len();
        let last = index + 1 == names.len();
        let next_lsn = scan.first_lsn + scan.scan.records.len() as u64;
        let next_follows = names
            .get(index + 1)
            .is_some_and(|(first, _)| *first == next_lsn);
        let end = match &scan.scan.end {
            End::Clean { next_write_offset } => format!("clean, next write at {next_write_offset}"),
            End::TornTail { offset, .. } if next_follows => {
                format!("ends at offset {offset} (old bytes of a recycled segment follow)")
            }
            End::TornTail { offset, error } if last => {
                format!("torn tail at offset {offset} ({error}); recovery cuts it off")
            }
            End::TornTail { offset, error } => {
                let lsn = scan.first_lsn + scan.scan.records.len() as u64;
                first_bad_record.get_or_insert(BadRecord {
                    segment: name.clone(),
                    offset: *offset,
                    lsn,
                    reason: format!("{error}, in a segment followed by later ones"),
                });
                format!("damaged at offset {offset}")
            }
            End::Corrupt {
                offset,
                lsn,
                reason,
            } => {
                first_bad_record.get_or_insert(BadRecord {
                    segment: name.clone(),
                    offset: *offset,
                    lsn: *lsn,
                    reason: reason.clone(),
                });
                format!("CORRUPT at offset {offset}, LSN {lsn}")
            }
        };
        let (batches, batches_after_unsynced) = scan
            .scan
            .records
            .iter()
            .filter(|record| record.batch_start)
            .fold((0, 0), |(all, flagged), record| {
                (all + 1, flagged + usize::from(record.after_unsynced))
            });
        segments.push(SegmentReport {
            file: name.clone(),
            first_lsn: scan.first_lsn,
            last_lsn: scan.scan.records.last().map(|record| record.lsn),
            records: scan.scan.records.len(),
            batches,
            batches_after_unsynced,
            used_bytes: scan.end_offset,
            size_bytes,
            end,
        });
    }
    let mut snapshots = Vec::new();
    let snapshot_path = dir.join("snapshots");
    let listed = match StdDir::existing(&snapshot_path) {
        Ok(listing) => SnapshotStore::new(listing, shard).list().await?,
        Err(_) => Vec::new(),
    };
    for (lsn, name) in listed {
        let snapshot_dir = StdDir::existing(&snapshot_path)?;
        let file = snapshot_dir.open(&name).await?;
        let bytes = read_whole(&file, 1 << 20).await?;
        let problem = snapshot::decode(&bytes, shard, lsn).err();
        snapshots.push(SnapshotReport {
            file: name,
            lsn,
            size_bytes: bytes.len(),
            valid: problem.is_none(),
            problem,
        });
    }
    let spares = spare_names(&journal)
        .await?
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    Ok(Report {
        shard,
        segments,
        spares,
        snapshots,
        first_bad_record,
    })
}

fn print_text(dir: &Path, report: &Report) {
    out!("shard {} in {}", report.shard, dir.display());
    out!("snapshots (newest first):");
    if report.snapshots.is_empty() {
        out!("  none");
    }
    for snapshot in &report.snapshots {
        let state = match &snapshot.problem {
            None => "valid".to_string(),
            Some(problem) => format!("DAMAGED: {problem}"),
        };
        out!(
            "  {}  LSN {}  {} bytes  {state}",
            snapshot.file,
            snapshot.lsn,
            snapshot.size_bytes
        );
    }
    out!("journal segments:");
    if report.segments.is_empty() {
        out!("  none");
    }
    for segment in &report.segments {
        let range = match segment.last_lsn {
            Some(last) => format!("LSN {}..={last}", segment.first_lsn),
            None => format!("LSN {} (empty)", segment.first_lsn),
        };
        out!(
            "  {}  {range}  {} records in {} batches ({} written while the one before was \
             unsynced)  {} of {} bytes used  {}",
            segment.file,
            segment.records,
            segment.batches,
            segment.batches_after_unsynced,
            segment.used_bytes,
            segment.size_bytes,
            segment.end
        );
    }
    if !report.spares.is_empty() {
        out!(
            "spare segments (reused for the next ones): {}",
            report.spares.join(", ")
        );
    }
    match &report.first_bad_record {
        None => out!("first bad record: none"),
        Some(bad) => out!(
            "first bad record: {} offset {} LSN {}: {}",
            bad.segment,
            bad.offset,
            bad.lsn,
            bad.reason
        ),
    }
}
