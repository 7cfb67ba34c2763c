//! The journal's segments: opening them after a crash, and committing batches to them.
//!
//! A segment is a file `<first LSN, 20 digits>.seg` in the journal directory, reserved at its
//! full size when created. Batches are written at the end of the newest segment; a batch that
//! does not fit opens a new segment named after the batch's first LSN (and the directory is
//! fsynced before anything is written to it).
//!
//! **Recycling.** Segments that a snapshot covers are not all deleted: up to
//! [`JournalConfig::spare_segments`] of them are renamed to `<old first LSN>.spare` and kept,
//! and the next new segment is a spare renamed into place rather than a file created and
//! reserved. (PostgreSQL recycles its WAL files the same way.) Measured on ext4 over a virtio
//! disk (bench/RESULTS.md): a write into reserved but never written blocks makes the
//! fdatasync after it commit filesystem metadata (the extents turn from unwritten to
//! written), and unlinking a 64 MiB segment stalled a concurrent journal write for 25 ms; a
//! recycled segment's blocks are written already, so its fdatasyncs flush data only, and
//! nothing is unlinked. A spare keeps its old records; they are never read as records of
//! its new life, because their LSNs are all below its new first LSN (see `scan`).
//!
//! A fresh journal (no segment, no spare, no snapshot) first writes zeros through
//! [`JournalConfig::prefill_segments`] spares of its own, `<n>.zero`, so that its first
//! segments are written-through too, not only those after the first snapshots. They hold no
//! records at all, so they need no LSN check.
//!
//! [`Journal::commit`] writes one batch with one write and one fdatasync; only when the sync
//! returns are its LSNs durable. The shard's committer pipelines instead: [`Journal::write`]
//! writes a batch and returns a [`Written`] to sync, and the next batch may be written while
//! that sync is in flight ([`Journal::may_write`]: at most [`UNSYNCED_BATCHES_MAX`] batches
//! unsynced, and a new segment only when none is). Such a batch is flagged
//! (`record::FLAG_AFTER_UNSYNCED`) so that recovery knows the batch before it may be torn.
//! With [`JournalSync::Dsync`] the segments are written through instead: [`Journal::write`]
//! only places the batch, and [`Written::sync`] writes it with
//! [`crate::storage::File::write_durable_at`], which returns once it is durable. Two such
//! writes may be in flight and return in either order, so a batch is durable only when it
//! and every batch before it returned, and a batch counts against the pipeline's two until
//! then (so a crash can still damage only the last two batches written). A failed write or
//! sync is never retried: the journal refuses all further work, and the shard recovers from
//! disk ([`Journal::open`]).
//!
//! Recovery ([`Journal::open`]) reads every segment, in LSN order:
//!
//! | what it finds | what it does |
//! |---|---|
//! | segments whose names do not follow on from the one before | stops: corrupt |
//! | a torn tail in the last segment holding records | zeroes the leftovers past it (below) and syncs, then zeroes the tail, syncs, appends after it |
//! | past the end of the last segment, headers of records with the next LSN or higher (left by a torn write) | zeroes their blocks, syncs |
//! | a torn-looking end in an earlier segment, and the next segment starts right after its last record | nothing: the next batch went to the next segment, and what follows the end is old bytes of a recycled segment |
//! | a torn tail in an earlier segment, and the next one does not follow on | stops: corrupt (later segments were written after it) |
//! | damage before later records, or a record past the end | stops: corrupt |
//! | segments at the end with no records | removes them (they were created just before a crash) |
//! | spares of another size, beyond `spare_segments`, or (`.spare`) with no segment left to follow | removes them |
//! | nothing at all (a fresh journal) | zero-fills `prefill_segments` spares (`<n>.zero`) |
//! | a first segment that starts after the snapshot's LSN + 1 | stops: records are missing |
//!
//! A read that shows damage is read again: a bit flipped on the way (not on the disk) must
//! not be taken for a torn tail and cut off, since that would lose acknowledged records.

use super::batch::{Batch, BatchLimits};
use super::record;
use super::scan::{self, BLOCK_BYTES, End, Found};
use crate::storage::{Dir, File, StorageError};

/// Default size of one segment file.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Default cap on records in one batch.
pub const BATCH_RECORDS_MAX_DEFAULT: usize = 4096;
/// Default cap on bytes in one batch.
pub const BATCH_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024;
/// Default cap on one record, header included: the largest command (a deployment of
/// `DEPLOYMENT_BYTES_MAX` with its resource names) fits.
pub const RECORD_BYTES_MAX_DEFAULT: usize = 40 * 1024 * 1024;
/// Most reads of a segment that looks damaged while looking for two reads in a row that
/// agree (to tell a bit flipped on the way from damage on the disk).
pub const READS_MAX: usize = 8;
/// Bytes per read at recovery (and per write when zeroing a torn tail).
const IO_CHUNK_BYTES: usize = 1024 * 1024;
/// Default number of covered segments kept for reuse (see the module docs): six 64 MiB files
/// per shard, 384 MiB. A snapshot period (at most 256 MiB of journal by default, headers and
/// padding counted) retires at most five segments: one that held the older snapshot's
/// position and four full ones (a segment is left when a batch of up to 4 MiB does not fit,
/// so it holds at least 60 MiB unless a record larger than a batch, a deployment, came
/// next). In bench/RESULTS.md one period retired 1 segment (one_task, closed loop), 2 or 3
/// (one_task at 50,000/s: small batches pad more) and 4 (realistic), and one more is room
/// to spare. Each covered segment beyond the spares is deleted: each deletion of a 64 MiB
/// segment stalled concurrent journal writes for 11-29 ms (retiring two of `realistic`'s
/// took 100-140 ms), and the next segment is then a new file whose first writes commit
/// filesystem metadata.
pub const SPARE_SEGMENTS_DEFAULT: usize = 6;
/// Default number of spares a fresh journal zero-fills: two (of the six kept by default),
/// 128 MiB of writes per shard at its first start (about 45 ms on this project's
/// 2-CPU VM). With the pipelined commit, a write into never-written blocks waits for the
/// filesystem journal commit of the fdatasync in flight; from a fresh data directory at
/// 50,000 one-task instances/s, p99 was lower with the prefill in 6 of 9 alternated pairs
/// (4 of 5 in a calm hour, 2 of 4 in a noisy one) and p50 lower in most (bench/RESULTS.md).
/// (Before the pipeline it lowered p50 but not p99, and was off by default.)
pub const PREFILL_SEGMENTS_DEFAULT: usize = 2;
/// The most spares a journal may be configured to keep.
pub const SPARE_SEGMENTS_MAX: usize = 64;
/// The largest journal segment: 4 GiB. Each segment is allocated whole (fallocate) when it
/// is made, so a mistyped size took the filesystem's free space before failing with ENOSPC
/// (`--segment-mib 100000` on a disk with 26 GiB free did); and a segment is retired only
/// as a whole, so larger ones only keep more journal on disk.
pub const SEGMENT_BYTES_MAX: u64 = 4 << 30;

const _: () = assert!(BATCH_BYTES_MAX_DEFAULT as u64 <= SEGMENT_BYTES_DEFAULT);
// The spares cover what one snapshot period retires at the default sizes (see above).
const _: () = assert!(
    SPARE_SEGMENTS_DEFAULT
        > segments_per_snapshot_max(
            crate::shard::SNAPSHOT_EVERY_BYTES_DEFAULT,
            SEGMENT_BYTES_DEFAULT,
            BATCH_BYTES_MAX_DEFAULT,
        )
);

/// The most segments one snapshot period can retire when a snapshot is taken every
/// `snapshot_every_bytes` of journal as written (0: by records only, no bound; returns 0):
/// one that held the older snapshot's position, and one per `segment_bytes - batch_bytes_max`
/// (a segment is left when the next batch does not fit). A record larger than a batch (a deployment) can
/// leave a segment emptier; that is rare enough not to count.
pub const fn segments_per_snapshot_max(
    snapshot_every_bytes: u64,
    segment_bytes: u64,
    batch_bytes_max: usize,
) -> usize {
    if snapshot_every_bytes == 0 {
        return 0;
    }
    let filled = segment_bytes.saturating_sub(batch_bytes_max as u64);
    let filled = if filled < BLOCK_BYTES as u64 {
        BLOCK_BYTES as u64
    } else {
        filled
    };
    1 + (snapshot_every_bytes / filled) as usize
}
const _: () = assert!(RECORD_BYTES_MAX_DEFAULT as u64 <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(RECORD_BYTES_MAX_DEFAULT <= record::RECORD_PAYLOAD_BYTES_MAX);
const _: () = assert!(
    RECORD_BYTES_MAX_DEFAULT
        >= ringflow_core::limits::DEPLOYMENT_BYTES_MAX
            + ringflow_core::limits::DEPLOYMENT_RESOURCES_MAX
                * (ringflow_core::limits::RESOURCE_NAME_BYTES_MAX + 8)
            + 4096
);
const _: () = assert!(IO_CHUNK_BYTES.is_multiple_of(BLOCK_BYTES));

/// How a journal is laid out and batched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// The shard that owns it: every record carries it.
    pub shard: u16,
    /// Bytes of one segment file (a multiple of 4 KiB, at least `batch.bytes_max` rounded up).
    pub segment_bytes: u64,
    /// The caps of one batch.
    pub batch: BatchLimits,
    /// How many covered segments are kept as spares for new segments (0: covered segments
    /// are deleted). At most [`SPARE_SEGMENTS_MAX`].
    pub spare_segments: usize,
    /// How many spares a fresh journal zero-fills before its first record (at most
    /// `spare_segments`; 0: its first segments are only reserved with fallocate).
    pub prefill_segments: usize,
    /// How a written batch is made durable.
    pub sync: JournalSync,
}

/// How a batch is made durable: the journal's `--journal-sync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JournalSync {
    /// Each batch is written, then the segment is fdatasynced; the next batch is written
    /// while that sync is in flight, and a sync makes every batch written before it durable.
    /// io_uring cannot issue an fdatasync without blocking, so it hands each one to a kernel
    /// worker thread (`iou-wrk`) that runs on the shard's CPU.
    #[default]
    Fdatasync,
    /// Segments are written through ([`crate::storage::File::write_durable_at`]: opened
    /// `O_DSYNC` on the disk): a write returns once it is durable, and needs no fdatasync and
    /// no worker thread. Two batches may be in flight at once; they can return in either
    /// order, and a batch is durable only when it and every batch before it returned. On a
    /// disk with a volatile cache and no FUA, the kernel issues the flush from the CPU that
    /// took the disk's interrupt.
    Dsync,
}

impl JournalSync {
    /// The name `--journal-sync` takes.
    pub fn name(self) -> &'static str {
        match self {
            JournalSync::Fdatasync => "fdatasync",
            JournalSync::Dsync => "dsync",
        }
    }

    /// Parses a `--journal-sync` value.
    pub fn parse(value: &str) -> Result<JournalSync, String> {
        match value {
            "fdatasync" => Ok(JournalSync::Fdatasync),
            "dsync" => Ok(JournalSync::Dsync),
            other => Err(format!(
                "journal-sync `{other}` is not known: `fdatasync` or `dsync`"
            )),
        }
    }
}

impl JournalConfig {
    /// The defaults for `shard`: 64 MiB segments, batches of at most 4096 records and 4 MiB,
    /// records of at most 40 MiB, six spare segments, two of them zero-filled at the start.
    pub fn new(shard: u16) -> JournalConfig {
        JournalConfig {
            shard,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            batch: BatchLimits {
                records_max: BATCH_RECORDS_MAX_DEFAULT,
                bytes_max: BATCH_BYTES_MAX_DEFAULT,
                record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
            },
            spare_segments: SPARE_SEGMENTS_DEFAULT,
            prefill_segments: PREFILL_SEGMENTS_DEFAULT,
            sync: JournalSync::Fdatasync,
        }
    }

    /// Checks that the sizes fit together; says what to change when they do not.
    pub fn check(&self) -> Result<(), String> {
        let largest = self.batch.bytes_max.max(self.batch.record_bytes_max);
        let padded_batch = (largest.div_ceil(BLOCK_BYTES) * BLOCK_BYTES) as u64;
        if !self.segment_bytes.is_multiple_of(BLOCK_BYTES as u64) {
            return Err(format!(
                "segment size {} bytes is not a multiple of {BLOCK_BYTES}",
                self.segment_bytes
            ));
        }
        if self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err(format!(
                "segment size {} bytes is over SEGMENT_BYTES_MAX ({SEGMENT_BYTES_MAX} bytes, \
                 4 GiB)",
                self.segment_bytes
            ));
        }
        if self.segment_bytes < padded_batch {
            return Err(format!(
                "segment size {} bytes is smaller than the largest batch ({padded_batch} bytes)",
                self.segment_bytes
            ));
        }
        if self.batch.records_max == 0
            || self.batch.bytes_max <= record::RECORD_HEADER_BYTES
            || self.batch.record_bytes_max > record::RECORD_PAYLOAD_BYTES_MAX
        {
            return Err("a batch must hold at least one record".to_string());
        }
        if self.spare_segments > SPARE_SEGMENTS_MAX {
            return Err(format!(
                "{} spare segments asked for, at most {SPARE_SEGMENTS_MAX} are allowed",
                self.spare_segments
            ));
        }
        if self.prefill_segments > self.spare_segments {
            return Err(format!(
                "{} segments to prefill, but only {} spare segments are kept",
                self.prefill_segments, self.spare_segments
            ));
        }
        Ok(())
    }
}

/// Why the journal cannot go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// A read, write or sync failed; the journal refuses further work until it is opened
    /// again.
    #[error("journal stopped: {0}; restart the shard to recover from disk")]
    Storage(#[from] StorageError),
    /// An earlier failure stopped the journal.
    #[error("journal stopped by an earlier failure; restart the shard to recover from disk")]
    Stopped,
    /// Damage that recovery must not cut off: the shard does not start.
    #[error(
        "journal corrupt in segment `{segment}` at offset {offset}, LSN {lsn}: {reason}; \
         inspect it with `ringflow journal inspect`"
    )]
    Corrupt {
        /// The segment file.
        segment: String,
        /// Where in it.
        offset: usize,
        /// The LSN expected there.
        lsn: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Where one commit's time went, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitTimes {
    /// Opening a new segment (a spare renamed, or a file created and reserved) and syncing
    /// the directory; 0 when the batch fit in the current one.
    pub segment_micros: u64,
    /// The write of the batch.
    pub write_micros: u64,
    /// The fdatasync after it; with [`JournalSync::Dsync`], the durable write itself (the
    /// batch's `write_micros` is 0 then).
    pub sync_micros: u64,
}

fn micros_since(start: std::time::Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// The file name of the segment whose first record has LSN `first_lsn`.
pub fn segment_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}.seg")
}

/// The first LSN of a segment file name, or `None` for other files.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    parse_numbered(name, ".seg")
}

/// The file name of a spare made from the segment whose first LSN was `old_first_lsn`.
pub fn spare_name(old_first_lsn: u64) -> String {
    format!("{old_first_lsn:020}.spare")
}

/// The old first LSN of a spare's file name, or `None` for other files.
pub fn parse_spare_name(name: &str) -> Option<u64> {
    parse_numbered(name, ".spare")
}

/// The file name of the `n`-th spare a fresh journal zero-filled.
pub fn zero_spare_name(n: u64) -> String {
    format!("{n:020}.zero")
}

fn parse_numbered(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One segment as recovery found it.
#[derive(Debug)]
pub struct SegmentScan {
    /// File name.
    pub name: String,
    /// LSN of its first record, from the name.
    pub first_lsn: u64,
    /// The scan of its bytes (records and how it ends).
    pub scan: scan::Scan,
    /// Where its log ends: the bytes its records (and their padding) take.
    pub end_offset: usize,
    /// Its size in bytes.
    pub size_bytes: usize,
    /// Past the end, the blocks holding headers of records with the next LSN or higher
    /// (left by a torn write; see `scan::leftovers`): (offset, bytes). Looked for only in a
    /// confirmed scan (the segment recovery appends to); empty otherwise.
    pub leftovers: Vec<(usize, usize)>,
    /// For a torn tail: the block it starts in, as read (the part before the tail is kept).
    pub torn_block: Vec<u8>,
    /// Whether two reads in a row agreed even though the end looked clean.
    pub confirmed: bool,
}

/// Reads and scans one segment. A scan that is not clean is trusted only when two reads in
/// a row gave the same bytes: a bit flipped on the way (not on the disk) must not be taken for
/// a torn tail and cut off. (A flip cannot make a damaged segment look clean: every record is
/// checksummed, and the end is zeros or a whole record with an old LSN.) With `confirm`,
/// two reads in a row must agree in any case: recovery confirms the segment it appends to,
/// since a flipped bit could hide a piece of a torn write past the end (see `leftovers`).
pub async fn scan_segment<D: Dir>(
    dir: &D,
    name: &str,
    shard: u16,
    confirm: bool,
) -> Result<SegmentScan, JournalError> {
    let first_lsn = parse_segment_name(name).expect("a segment name");
    let file = dir.open(name).await?;
    let mut bytes = crate::storage::read_whole(&file, IO_CHUNK_BYTES).await?;
    let mut found = scan::scan(&bytes, shard, first_lsn);
    let mut reads = 1;
    while confirm || !matches!(found.end, End::Clean { .. }) {
        let again = crate::storage::read_whole(&file, IO_CHUNK_BYTES).await?;
        if again == bytes {
            break;
        }
        reads += 1;
        if reads > READS_MAX {
            return Err(JournalError::Storage(StorageError::Io {
                operation: "read",
                name: name.to_string(),
                message: format!("{READS_MAX} reads in a row gave different bytes"),
            }));
        }
        bytes = again;
        found = scan::scan(&bytes, shard, first_lsn);
    }
    let end_offset = match found.end {
        End::Clean { next_write_offset } => next_write_offset,
        End::TornTail { offset, .. } | End::Corrupt { offset, .. } => offset,
    };
    let next_lsn = first_lsn + found.records.len() as u64;
    let leftovers = if confirm {
        scan::leftovers(
            &bytes,
            end_offset.div_ceil(BLOCK_BYTES) * BLOCK_BYTES,
            shard,
            next_lsn,
        )
    } else {
        Vec::new()
    };
    let torn_block = match found.end {
        End::TornTail { offset, .. } => {
            let start = offset / BLOCK_BYTES * BLOCK_BYTES;
            let mut block =
                bytes[start.min(bytes.len())..(start + BLOCK_BYTES).min(bytes.len())].to_vec();
            block.resize(BLOCK_BYTES, 0);
            block
        }
        _ => Vec::new(),
    };
    Ok(SegmentScan {
        name: name.to_string(),
        first_lsn,
        size_bytes: bytes.len(),
        scan: found,
        end_offset,
        leftovers,
        torn_block,
        confirmed: confirm,
    })
}

/// The segment files of a journal directory, in LSN order.
pub async fn segment_names<D: Dir>(dir: &D) -> Result<Vec<(u64, String)>, StorageError> {
    let mut segments: Vec<(u64, String)> = dir
        .list()
        .await?
        .into_iter()
        .filter_map(|name| parse_segment_name(&name).map(|lsn| (lsn, name)))
        .collect();
    segments.sort();
    Ok(segments)
}

/// The spare files of a journal directory: the zero-filled ones (`<n>.zero`, LSN `None`),
/// then the recycled ones (`<old first LSN>.spare`) oldest first.
pub async fn spare_names<D: Dir>(dir: &D) -> Result<Vec<(Option<u64>, String)>, StorageError> {
    let mut spares: Vec<(Option<u64>, String)> = dir
        .list()
        .await?
        .into_iter()
        .filter_map(|name| {
            if parse_numbered(&name, ".zero").is_some() {
                return Some((None, name));
            }
            parse_spare_name(&name).map(|lsn| (Some(lsn), name))
        })
        .collect();
    spares.sort();
    Ok(spares)
}

struct Current<F> {
    file: std::rc::Rc<F>,
    write_offset: u64,
}

/// Most batches written whose fdatasync has not returned yet (with [`JournalSync::Dsync`]:
/// that are not durable yet). The next batch is written while the one before is being
/// synced (its fdatasync covers both); a third waits, so that at a crash only the last two
/// batches can be missing pieces (see `scan`).
pub const UNSYNCED_BATCHES_MAX: usize = 2;

/// A batch written to its segment and not yet synced (with [`JournalSync::Dsync`]: handed
/// out to be written): [`Written::sync`] makes it durable. Dropping it without syncing leaves
/// the batch's LSNs undecided until the next sync; with `Dsync` the batch was never written,
/// so nothing after it can become durable, and the journal stops.
pub struct Written<F> {
    file: std::rc::Rc<F>,
    last_lsn: u64,
    times: CommitTimes,
    /// With [`JournalSync::Dsync`]: where to write the batch, and its bytes.
    write: Option<(u64, Vec<u8>)>,
    pipeline: std::rc::Rc<Pipeline>,
    synced: bool,
}

/// What the journal and its [`Written`] batches share.
#[derive(Default)]
struct Pipeline {
    /// Batches written (with `Dsync`: handed out) whose [`Written`] has not synced yet.
    unsynced: std::cell::Cell<usize>,
    /// The last LSN of each batch not yet durable, oldest first, and whether its own sync
    /// (or durable write) returned.
    in_flight: std::cell::RefCell<std::collections::VecDeque<(u64, bool)>>,
    /// The highest durable LSN: every batch up to it returned.
    durable: std::cell::Cell<u64>,
    /// A write or sync failed (or a `Dsync` batch was dropped unwritten): no more work.
    stopped: std::cell::Cell<bool>,
}

impl Pipeline {
    /// Batches that may not be durable yet: written (or handed out) and not synced, or
    /// synced but behind one that is not (with `Dsync`, where a later batch can return
    /// first). A crash can damage only these; the pipeline keeps them to
    /// [`UNSYNCED_BATCHES_MAX`], the last ones written.
    fn open_batches(&self) -> usize {
        self.unsynced.get().max(self.in_flight.borrow().len())
    }

    /// The batch ending at `last_lsn` returned; with `covers_earlier` (an fdatasync) so did
    /// every batch written before it. Returns the highest durable LSN now.
    fn returned(&self, last_lsn: u64, covers_earlier: bool) -> u64 {
        let mut in_flight = self.in_flight.borrow_mut();
        for (lsn, done) in in_flight.iter_mut() {
            if *lsn == last_lsn || (covers_earlier && *lsn < last_lsn) {
                *done = true;
            }
        }
        while let Some(&(lsn, true)) = in_flight.front() {
            self.durable.set(self.durable.get().max(lsn));
            in_flight.pop_front();
        }
        self.durable.get()
    }
}

impl<F: File> Written<F> {
    /// The batch's last LSN.
    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    /// Makes the batch durable: an fdatasync of the segment (which covers every batch
    /// written before this one), or with [`JournalSync::Dsync`] the write itself. Returns the
    /// highest durable LSN now: every record up to it may be acknowledged. It is the batch's
    /// last LSN, or with `Dsync` lower while the batch before it is still being written (its
    /// sync then returns the higher one). Also returns where the time went.
    pub async fn sync(mut self) -> Result<(u64, CommitTimes), StorageError> {
        let syncing = std::time::Instant::now();
        let (result, covers_earlier) = match self.write.take() {
            Some((offset, bytes)) => (self.file.write_durable_at(offset, &bytes).await, false),
            None => (self.file.sync().await, true),
        };
        self.times.sync_micros = micros_since(syncing);
        self.synced = true;
        let pipeline = &self.pipeline;
        pipeline.unsynced.set(pipeline.unsynced.get() - 1);
        if let Err(error) = result {
            pipeline.stopped.set(true);
            return Err(error);
        }
        let durable = pipeline.returned(self.last_lsn, covers_earlier);
        Ok((durable, self.times))
    }
}

impl<F> Drop for Written<F> {
    fn drop(&mut self) {
        if !self.synced {
            self.pipeline.unsynced.set(self.pipeline.unsynced.get() - 1);
            if self.write.is_some() {
                self.pipeline.stopped.set(true);
            }
        }
    }
}

/// One shard's journal.
pub struct Journal<D: Dir> {
    /// Shared with the task that removes covered segments off the commit path.
    dir: std::rc::Rc<D>,
    config: JournalConfig,
    current: Option<Current<D::File>>,
    /// (first LSN, name) of every segment, oldest first.
    segments: Vec<(u64, String)>,
    /// The spares ready to become the next segments, oldest first; shared with the task that
    /// retires covered segments, which adds to it once their renames are durable.
    spares: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    next_lsn: u64,
    /// Shared with the [`Written`] batches: what is unsynced, what is durable, whether the
    /// journal stopped.
    pipeline: std::rc::Rc<Pipeline>,
}

/// What [`Journal::open`] found.
#[derive(Debug)]
pub struct Recovered {
    /// The records after the snapshot's LSN, in order.
    pub records: Vec<Found>,
    /// Whether a torn tail was cut off (and where: segment, offset).
    pub torn_tail: Option<(String, usize)>,
    /// Empty segments at the end that were removed.
    pub removed_empty: Vec<String>,
    /// Spares kept for reuse.
    pub spares: Vec<String>,
    /// Spares removed (another size, more than `spare_segments`, or nothing to follow).
    pub removed_spares: Vec<String>,
    /// Spares a fresh journal zero-filled (`JournalConfig::prefill_segments`).
    pub prefilled: Vec<String>,
}

impl<D: Dir> Journal<D> {
    /// Opens the journal in `dir`, recovering what is there (see the module docs). Records up
    /// to `snapshot_lsn` (0 without a snapshot) are covered by the snapshot and skipped.
    pub async fn open(
        dir: D,
        config: JournalConfig,
        snapshot_lsn: u64,
    ) -> Result<(Journal<D>, Recovered), JournalError> {
        config
            .check()
            .expect("the configuration was checked at startup");
        let names = segment_names(&dir).await?;
        let mut scans = Vec::with_capacity(names.len());
        for (_, name) in &names {
            scans.push(scan_segment(&dir, name, config.shard, false).await?);
        }
        let mut removed_empty = Vec::new();
        // A segment with no records at the end was created just before a crash (its first
        // batch, if any, was torn and never acknowledged). Corruption is never removed.
        while scans.last().is_some_and(|last| {
            last.scan.records.is_empty() && !matches!(last.scan.end, End::Corrupt { .. })
        }) {
            let last = scans.pop().expect("checked");
            dir.remove(&last.name).await?;
            removed_empty.push(last.name);
        }
        if !removed_empty.is_empty() {
            dir.sync().await?;
        }
        // The segment to append to is read until two reads agree, whatever its end looked like.
        if let Some(last) = scans.last_mut()
            && !last.confirmed
        {
            *last = scan_segment(&dir, &last.name, config.shard, true).await?;
        }
        check_sequence(&scans, snapshot_lsn)?;
        let mut torn_tail = None;
        let mut current = None;
        if let Some(last) = scans.last() {
            let file = dir.open(&last.name).await?;
            let mut zero = last.leftovers.clone();
            let write_offset = match &last.scan.end {
                End::Clean { next_write_offset } => *next_write_offset,
                End::TornTail { offset, .. } => {
                    torn_tail = Some((last.name.clone(), *offset));
                    let boundary = offset.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
                    // A torn record that began inside a block: the log now ends at the next
                    // boundary, so that block must read as the end too.
                    if boundary != *offset && boundary < last.size_bytes {
                        zero.push((boundary, BLOCK_BYTES));
                    }
                    boundary
                }
                End::Corrupt { .. } => unreachable!("check_sequence refuses corruption"),
            };
            // Pieces of a torn write past the end would be taken for records once the log
            // reaches their LSNs again: zero them before anything is appended. They go (and
            // are synced) before the torn tail is cut: a crash in between leaves the torn
            // tail as it was, with or without them, which the next recovery reads as this
            // one did. The other order could leave a clean-looking end followed by a whole
            // record with a later LSN, which reads as corruption.
            zero_ranges(&file, &zero).await?;
            if !zero.is_empty() {
                file.sync().await?;
            }
            if let End::TornTail { offset, .. } = &last.scan.end {
                // This rewrites the block's head unchanged: a crash during it leaves each
                // sector old or new, both the same there (a device that garbled sectors of
                // an interrupted write could damage the records before the tail).
                zero_block_tail(&file, *offset, &last.torn_block).await?;
            }
            if !last.leftovers.is_empty() {
                torn_tail.get_or_insert((last.name.clone(), last.end_offset));
            }
            if torn_tail.is_some() {
                file.sync().await?;
                // Trust, but verify: a write that landed somewhere else (a misdirected
                // write) must not go unnoticed, least of all one that zeroed records.
                let again = scan_segment(&dir, &last.name, config.shard, true).await?;
                let ends_there = again.scan.end
                    == End::Clean {
                        next_write_offset: write_offset,
                    };
                if again.scan.records.len() != last.scan.records.len()
                    || !ends_there
                    || !again.leftovers.is_empty()
                {
                    let lsn = last.first_lsn + last.scan.records.len() as u64;
                    let reason = format!(
                        "after cutting the torn tail the segment reads back as {} records \
                         ending {:?} (expected {} records ending at offset {write_offset}): \
                         a write went to the wrong place",
                        again.scan.records.len(),
                        again.scan.end,
                        last.scan.records.len()
                    );
                    return Err(corrupt(last, write_offset, lsn, reason));
                }
            }
            current = Some(Current {
                file: std::rc::Rc::new(file),
                write_offset: write_offset as u64,
            });
        }
        let last_lsn = scans
            .last()
            .and_then(|last| last.scan.records.last())
            .map_or(0, |record| record.lsn);
        let next_lsn = last_lsn.max(snapshot_lsn) + 1;
        let segments: Vec<(u64, String)> = scans
            .iter()
            .map(|scan| (scan.first_lsn, scan.name.clone()))
            .collect();
        // A recycled spare holds records below the LSN it was named after, so it may only
        // follow on from segments that start after it (without segments there is nothing to
        // check against, and spares are cheap to lose). A zero-filled one holds no records.
        let mut spares = Vec::new();
        let mut removed_spares = Vec::new();
        let first_segment = segments.first().map(|(lsn, _)| *lsn);
        let listed = spare_names(&dir).await?;
        let fresh = segments.is_empty() && listed.is_empty() && snapshot_lsn == 0;
        for (lsn, name) in listed {
            let size = dir.open(&name).await?.size().await?;
            let follows = match lsn {
                None => true,
                Some(lsn) => first_segment.is_some_and(|first| lsn < first),
            };
            let keep =
                follows && spares.len() < config.spare_segments && size == config.segment_bytes;
            if keep {
                spares.push(name);
            } else {
                dir.remove(&name).await?;
                removed_spares.push(name);
            }
        }
        if !removed_spares.is_empty() {
            dir.sync().await?;
        }
        let mut prefilled = Vec::new();
        if fresh {
            for n in 0..config.prefill_segments as u64 {
                let name = zero_spare_name(n);
                let file = dir.create(&name, config.segment_bytes).await?;
                zero_ranges(&file, &[(0, config.segment_bytes as usize)]).await?;
                file.sync().await?;
                prefilled.push(name);
            }
            if !prefilled.is_empty() {
                dir.sync().await?;
            }
            spares.extend(prefilled.iter().cloned());
        }
        let records = scans
            .into_iter()
            .flat_map(|scan| scan.scan.records)
            .filter(|record| record.lsn > snapshot_lsn)
            .collect();
        let journal = Journal {
            dir: std::rc::Rc::new(dir),
            config,
            current,
            segments,
            spares: std::rc::Rc::new(std::cell::RefCell::new(spares.clone())),
            next_lsn,
            pipeline: std::rc::Rc::new(Pipeline {
                durable: std::cell::Cell::new(next_lsn - 1),
                ..Pipeline::default()
            }),
        };
        let recovered = Recovered {
            records,
            torn_tail,
            removed_empty,
            spares,
            removed_spares,
            prefilled,
        };
        Ok((journal, recovered))
    }

    /// An empty batch for the next records.
    pub fn first_batch(&self) -> Batch {
        Batch::new(self.config.shard, self.config.batch, self.next_lsn)
    }

    /// Writes and syncs `batch`, which must start at the next LSN, with no other batch
    /// unsynced. Returns the highest durable LSN: every record up to it may be acknowledged
    /// now, in LSN order. A failed write or sync stops the journal.
    pub async fn commit(&mut self, batch: Batch) -> Result<u64, JournalError> {
        if batch.is_empty() {
            return if self.pipeline.stopped.get() {
                Err(JournalError::Stopped)
            } else {
                Ok(self.durable_lsn())
            };
        }
        let written = self.write(batch).await?;
        match written.sync().await {
            Ok((durable, _)) => Ok(durable),
            Err(error) => Err(error.into()),
        }
    }

    /// Whether `batch` may be written now: fewer than [`UNSYNCED_BATCHES_MAX`] batches are
    /// unsynced or not yet durable, and if any is, `batch` fits in the current segment (a new
    /// segment is opened only when everything before it is durable).
    pub fn may_write(&self, batch: &Batch) -> bool {
        let unsynced = self.pipeline.open_batches();
        unsynced == 0 || (unsynced < UNSYNCED_BATCHES_MAX && self.fits(batch.padded_bytes()))
    }

    fn fits(&self, bytes: usize) -> bool {
        self.current
            .as_ref()
            .is_some_and(|current| current.write_offset + bytes as u64 <= self.config.segment_bytes)
    }

    /// Writes `batch`, which must start at the next LSN and be allowed by
    /// [`Journal::may_write`] (it panics otherwise: the caller broke the pipeline's rule).
    /// Its LSNs are durable once the returned [`Written`] (or one written after it) synced.
    /// A failed write stops the journal.
    pub async fn write(&mut self, batch: Batch) -> Result<Written<D::File>, JournalError> {
        if self.pipeline.stopped.get() {
            return Err(JournalError::Stopped);
        }
        assert_eq!(batch.first_lsn(), self.next_lsn, "batches out of order");
        assert!(!batch.is_empty(), "an empty batch is not written");
        assert!(
            self.may_write(&batch),
            "a batch written past the pipeline's rule"
        );
        let next_lsn = batch.next_lsn();
        let first_lsn = batch.first_lsn();
        let mut bytes = batch.into_padded_bytes();
        if self.pipeline.open_batches() > 0 {
            // A crash may now leave this batch whole and the one before it torn: say so, for
            // recovery (`scan`).
            record::mark_after_unsynced(&mut bytes);
        }
        let dsync = self.config.sync == JournalSync::Dsync;
        let placed = if dsync {
            self.place_bytes(first_lsn, bytes.len())
                .await
                .map(|(file, offset, times)| (file, times, Some((offset, bytes))))
        } else {
            self.write_bytes(first_lsn, &bytes)
                .await
                .map(|(file, times)| (file, times, None))
        };
        match placed {
            Ok((file, times, write)) => {
                self.next_lsn = next_lsn;
                let pipeline = &self.pipeline;
                pipeline.unsynced.set(pipeline.unsynced.get() + 1);
                pipeline
                    .in_flight
                    .borrow_mut()
                    .push_back((next_lsn - 1, false));
                Ok(Written {
                    file,
                    last_lsn: next_lsn - 1,
                    times,
                    write,
                    pipeline: std::rc::Rc::clone(&self.pipeline),
                    synced: false,
                })
            }
            Err(error) => {
                self.pipeline.stopped.set(true);
                Err(error)
            }
        }
    }

    /// Marks the journal stopped (a sync of a [`Written`] failed): it refuses further work.
    pub fn set_stopped(&mut self) {
        self.pipeline.stopped.set(true);
    }

    async fn write_bytes(
        &mut self,
        first_lsn: u64,
        bytes: &[u8],
    ) -> Result<(std::rc::Rc<D::File>, CommitTimes), JournalError> {
        let (file, offset, mut times) = self.place_bytes(first_lsn, bytes.len()).await?;
        let writing = std::time::Instant::now();
        file.write_at(offset, bytes).await?;
        times.write_micros = micros_since(writing);
        Ok((file, times))
    }

    /// Finds room for `len` bytes starting with `first_lsn` (opening the next segment when
    /// they do not fit in the current one) and reserves it: returns the segment and where.
    async fn place_bytes(
        &mut self,
        first_lsn: u64,
        len: usize,
    ) -> Result<(std::rc::Rc<D::File>, u64, CommitTimes), JournalError> {
        let started = std::time::Instant::now();
        let mut times = CommitTimes::default();
        if !self.fits(len) {
            let name = segment_name(first_lsn);
            let spare = {
                let mut spares = self.spares.borrow_mut();
                (!spares.is_empty()).then(|| spares.remove(0))
            };
            let file = match spare {
                Some(spare) => {
                    self.dir.rename(&spare, &name).await?;
                    self.dir.open(&name).await?
                }
                None => self.dir.create(&name, self.config.segment_bytes).await?,
            };
            self.dir.sync().await?;
            times.segment_micros = micros_since(started);
            self.segments.push((first_lsn, name));
            self.current = Some(Current {
                file: std::rc::Rc::new(file),
                write_offset: 0,
            });
        }
        let current = self.current.as_mut().expect("a current segment");
        let offset = current.write_offset;
        current.write_offset += len as u64;
        Ok((std::rc::Rc::clone(&current.file), offset, times))
    }

    /// The highest durable LSN: the last batch of a [`Written::sync`] (or a commit) that
    /// returned, or what recovery found.
    pub fn durable_lsn(&self) -> u64 {
        self.pipeline.durable.get()
    }

    /// Retires the segments whose records all have LSNs up to `lsn` (a snapshot covers
    /// them): keeps them as spares or removes them ([`retire_segments`]). The newest segment
    /// is always kept.
    pub async fn remove_covered(&mut self, lsn: u64) -> Result<Retired, JournalError> {
        let taken = self.take_covered(lsn);
        retire_segments(
            &*self.dir,
            &taken,
            &self.spares,
            self.config.spare_segments,
            self.config.segment_bytes,
        )
        .await
    }

    /// Forgets the segments a snapshot at `lsn` covers and returns their names, for
    /// [`retire_segments`] (possibly in another task, off the commit path: the journal never
    /// touches them again, and recovery skips covered segments left behind).
    pub fn take_covered(&mut self, lsn: u64) -> Vec<String> {
        let mut taken = Vec::new();
        // Segment i holds LSNs [first_i, first_{i+1}): covered when first_{i+1} - 1 <= lsn.
        while self.segments.len() > 1 && self.segments[1].0 <= lsn + 1 {
            let (_, name) = self.segments.remove(0);
            taken.push(name);
        }
        taken
    }

    /// The journal's directory, shared (for [`retire_segments`] in another task).
    pub fn dir_handle(&self) -> std::rc::Rc<D> {
        std::rc::Rc::clone(&self.dir)
    }

    /// The spares, shared (for [`retire_segments`] in another task).
    pub fn spares_handle(&self) -> std::rc::Rc<std::cell::RefCell<Vec<String>>> {
        std::rc::Rc::clone(&self.spares)
    }

    /// The spares ready for the next segments, oldest first.
    pub fn spares(&self) -> Vec<String> {
        self.spares.borrow().clone()
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> JournalConfig {
        self.config
    }

    /// The segments, oldest first: (first LSN, file name).
    pub fn segments(&self) -> &[(u64, String)] {
        &self.segments
    }

    /// The directory (tests crash it).
    pub fn dir(&self) -> &D {
        &self.dir
    }
}

/// What [`retire_segments`] did with covered segments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retired {
    /// Spares made (their new names).
    pub recycled: Vec<String>,
    /// Segments removed.
    pub removed: Vec<String>,
}

/// Retires segment files that [`Journal::take_covered`] gave up: while fewer than `keep`
/// spares are waiting, a segment of `segment_bytes` becomes a spare (renamed to
/// `<its first LSN>.spare`); the others are removed. Then the directory is synced, and only
/// then are the new spares offered to the journal, so that a segment is never made from a
/// spare whose name could still come back as the covered segment's after a crash.
pub async fn retire_segments<D: Dir>(
    dir: &D,
    names: &[String],
    spares: &std::cell::RefCell<Vec<String>>,
    keep: usize,
    segment_bytes: u64,
) -> Result<Retired, JournalError> {
    let mut room = keep.saturating_sub(spares.borrow().len());
    let mut retired = Retired::default();
    for name in names {
        let lsn = parse_segment_name(name).expect("a segment name");
        if room > 0 && dir.open(name).await?.size().await? == segment_bytes {
            let spare = spare_name(lsn);
            dir.rename(name, &spare).await?;
            retired.recycled.push(spare);
            room -= 1;
        } else {
            dir.remove(name).await?;
            retired.removed.push(name.clone());
        }
    }
    if !names.is_empty() {
        dir.sync().await?;
    }
    spares.borrow_mut().extend(retired.recycled.iter().cloned());
    Ok(retired)
}

/// Checks that the segments follow on from each other and from the snapshot, and that no
/// earlier segment lost records to a torn-looking end.
fn check_sequence(scans: &[SegmentScan], snapshot_lsn: u64) -> Result<(), JournalError> {
    if let Some(first) = scans.first()
        && first.first_lsn > snapshot_lsn + 1
    {
        return Err(corrupt(
            first,
            0,
            first.first_lsn,
            format!(
                "the journal starts at LSN {} but the snapshot covers only up to LSN \
                 {snapshot_lsn}: records are missing",
                first.first_lsn
            ),
        ));
    }
    for (index, segment) in scans.iter().enumerate() {
        let last = index + 1 == scans.len();
        let end = segment.first_lsn + segment.scan.records.len() as u64;
        let next_follows = scans
            .get(index + 1)
            .is_some_and(|next| next.first_lsn == end);
        match &segment.scan.end {
            End::Clean { .. } => {}
            // Bytes that are no record after the last one, and the next segment starts with
            // the next LSN: old bytes of a recycled segment that rolled over, not a loss.
            End::TornTail { .. } if !last && next_follows => {}
            End::TornTail { offset, error } if !last => {
                let reason = format!("{error}, in a segment followed by later segments");
                return Err(corrupt(segment, *offset, end, reason));
            }
            End::TornTail { .. } => {}
            End::Corrupt {
                offset,
                lsn,
                reason,
            } => return Err(corrupt(segment, *offset, *lsn, reason.clone())),
        }
        if let Some(next) = scans.get(index + 1)
            && next.first_lsn != end
        {
            let reason = format!(
                "this segment ends before LSN {end}, but the next one, `{}`, starts at LSN {}",
                next.name, next.first_lsn
            );
            return Err(corrupt(segment, 0, end, reason));
        }
    }
    let end = scans
        .last()
        .map(|last| last.first_lsn + last.scan.records.len() as u64 - 1);
    if let Some(end) = end
        && end < snapshot_lsn
    {
        let last = scans.last().expect("checked");
        let reason = format!("the journal ends at LSN {end}, before the snapshot's {snapshot_lsn}");
        return Err(corrupt(last, 0, end + 1, reason));
    }
    Ok(())
}

fn corrupt(segment: &SegmentScan, offset: usize, lsn: u64, reason: String) -> JournalError {
    JournalError::Corrupt {
        segment: segment.name.clone(),
        offset,
        lsn,
        reason,
    }
}

/// Rewrites the block that `from` is in from `block` (the bytes the scan checked, not a fresh
/// read that could differ) with everything from `from` on zeroed: the torn record is gone and
/// the block ends the log.
async fn zero_block_tail<F: File>(file: &F, from: usize, block: &[u8]) -> Result<(), StorageError> {
    let start = from / BLOCK_BYTES * BLOCK_BYTES;
    let mut head = block.to_vec();
    head[from - start..].fill(0);
    file.write_at(start as u64, &head).await
}

/// Writes zeros over each (offset, bytes) range (whole blocks).
async fn zero_ranges<F: File>(file: &F, ranges: &[(usize, usize)]) -> Result<(), StorageError> {
    let zeros = vec![0; IO_CHUNK_BYTES];
    for &(start, len) in ranges {
        let mut offset = start;
        while offset < start + len {
            let chunk = IO_CHUNK_BYTES.min(start + len - offset);
            file.write_at(offset as u64, &zeros[..chunk]).await?;
            offset += chunk;
        }
    }
    Ok(())
}
