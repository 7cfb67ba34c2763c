//! One shard: the engine's state, the open batch, and the tasks that make commands durable.
//!
//! ```text
//! submit(command) ─▶ encode with Ctx ─▶ engine.process ─▶ append to the open batch ─┐
//!                                                                                    │
//! committer task:  take the open batch ─▶ write ─▶ sync task: fdatasync ─▶ durable LSN ◀┘
//!                  ─▶ in LSN order: arm timers (effects), hand each caller its answer
//! timer task:      due job leases, backoffs, message TTLs and timer events
//!                  ─▶ submit(JobLeaseExpired / JobRetryDue / ExpireMessage / TriggerTimer)
//! snapshot task:   (low priority) encode the state ─▶ wait until durable ─▶ write file
//!                  ─▶ the committer removes the segments the older kept snapshot covers
//! ```
//!
//! The commit is pipelined: the committer writes a batch, hands its fdatasync to a task of
//! its own, and writes the next batch while that sync is in flight (at most
//! `journal::writer::UNSYNCED_BATCHES_MAX`, two, batches unsynced; a batch that needs a new
//! segment waits until nothing is). An fdatasync makes every write that returned before it
//! durable, so whichever sync returns releases everything up to its batch, in LSN order; a
//! sync that returns later finds its records released already, and one that returns after
//! the shard stopped releases nothing. With `--journal-sync dsync` the sync task writes the
//! batch through instead (`JournalSync::Dsync`), and what it releases is up to the last
//! batch that returned with every batch before it. Nothing leaves the shard before the record that
//! caused it is durable:
//! not an answer, not a rejection (a rejection waits for the records it was judged against),
//! not a timer. A failed write or fdatasync stops the shard: every waiting caller gets
//! [`SubmitError::Stopped`], later submissions too, and the error ends the committer; the
//! process exits and recovers from disk when restarted.
//!
//! The answer's effects are applied by the committer, not by the caller, so a caller that
//! goes away does not lose a timer.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use ringflow_core::codec::{decode_command, encode_command};
use ringflow_core::key::KeyMap;
use ringflow_core::{
    Command, Ctx, Effect, JobState, Key, Outcome, Rejection, RejectionCode, State, TransitionEnd,
    Variables, process,
};

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::cold::{ExportQueue, ExportRecord};
use crate::journal::{Batch, Journal, JournalConfig, JournalError, Room};
use crate::metrics::ShardMetrics;
use crate::snapshot::SnapshotStore;
use crate::storage::{Dir, StorageError};
use crate::wait::{Notify, Slot, WaitList};

/// Default: a snapshot after this many records since the last one.
pub const SNAPSHOT_EVERY_RECORDS_DEFAULT: u64 = 1_000_000;
/// Default: a snapshot after this many journal bytes since the last one.
pub const SNAPSHOT_EVERY_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
/// Longest the timer task sleeps before looking at its timers again, in milliseconds (it is
/// woken earlier when a sooner timer is armed).
pub const TIMER_SLEEP_MILLIS_MAX: u64 = 1_000;
/// Due timers fired together in one round (submitted at once, sharing group commits); the
/// next round starts when they are durable.
pub const TIMER_FIRES_PER_ROUND_MAX: usize = 4_096;

/// Default: the exporter lag (durable records not yet in the cold store) at which the shard
/// logs a warning.
pub const EXPORT_LAG_WARN_RECORDS_DEFAULT: u64 = 100_000;
/// Default: the exporter lag at which the shard refuses new work (create instance, publish
/// message, deploy) with BUSY. The events of that many records wait in memory (a one-task
/// instance takes about 1 KiB over its three records).
pub const EXPORT_LAG_MAX_RECORDS_DEFAULT: u64 = 1_000_000;

/// How far the cold store may fall behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportLimits {
    /// Log a warning (and raise `ringflow_exporter_lag_alarm`) past this many records.
    pub warn_lag_records: u64,
    /// Refuse new work with BUSY past this many records.
    pub max_lag_records: u64,
}

impl Default for ExportLimits {
    fn default() -> Self {
        ExportLimits {
            warn_lag_records: EXPORT_LAG_WARN_RECORDS_DEFAULT,
            max_lag_records: EXPORT_LAG_MAX_RECORDS_DEFAULT,
        }
    }
}

/// How one shard runs.
#[derive(Clone, Copy, Debug)]
pub struct ShardConfig {
    /// The journal's layout and batch caps.
    pub journal: JournalConfig,
    /// Take a snapshot after this many records (0: never).
    pub snapshot_every_records: u64,
    /// Take a snapshot after this many journal bytes (0: never).
    pub snapshot_every_bytes: u64,
    /// The exporter's lag limits (used when the shard has a cold store).
    pub export: ExportLimits,
    /// How many shards the cluster has, so that the engine knows which correlation and
    /// business keys live on other shards. 0: as the snapshot says (tools that only read the
    /// data), or every key local when there is none.
    pub cluster_shards: u16,
    /// A commit that takes this long from its batch's first record to its release is logged
    /// with where the time went (0: never). See [`SLOW_COMMIT_MICROS_DEFAULT`].
    pub slow_commit_micros: u64,
}

/// Default of [`ShardConfig::slow_commit_micros`]: 100 ms, far above a healthy commit (a
/// fdatasync of 0.1 to 2 ms plus the wait for the one before), so that a log line means a
/// stall worth looking at.
pub const SLOW_COMMIT_MICROS_DEFAULT: u64 = 100_000;

impl ShardConfig {
    /// The defaults for `shard`.
    pub fn new(shard: u16) -> ShardConfig {
        ShardConfig {
            journal: JournalConfig::new(shard),
            snapshot_every_records: SNAPSHOT_EVERY_RECORDS_DEFAULT,
            snapshot_every_bytes: SNAPSHOT_EVERY_BYTES_DEFAULT,
            export: ExportLimits::default(),
            cluster_shards: 0,
            slow_commit_micros: SLOW_COMMIT_MICROS_DEFAULT,
        }
    }
}

/// Why a command got no answer from the engine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The engine refused it; nothing changed.
    #[error("{0}")]
    Rejected(Rejection),
    /// The shard stopped (a write or fdatasync failed); restart it to recover from disk.
    #[error("shard stopped: {0}")]
    Stopped(String),
    /// The shard refuses new work for now (the cold store is too far behind); try later.
    #[error("busy: {0}")]
    Busy(String),
}

/// Why a shard could not start.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// Reading or writing the data directory failed.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// The journal is damaged or does not fit the snapshot.
    #[error("{0}")]
    Journal(#[from] JournalError),
    /// The data was written by a cluster of another size.
    #[error(
        "the snapshot was written in a cluster of {stored} shards, this node is configured for \
         {configured}; a cluster cannot change its shard count (the keys would route elsewhere)"
    )]
    ClusterSize {
        /// The count in the snapshot.
        stored: u16,
        /// The count configured.
        configured: u16,
    },
    /// The cold store has more of this shard's history than its journal: it was written from
    /// another data directory (or this one's journal was removed). Exporting on would skip the
    /// new records up to the store's position and let new keys overwrite old rows.
    #[error(
        "the cold store holds this shard's history up to LSN {position}, past the end of its \
         journal here (LSN {durable}): the store was written from another data directory, or \
         this one's journal was removed. Going on would skip new history up to LSN {position} \
         and overwrite old rows with new ones of the same keys. Start the node on the data \
         directory that wrote the store, or give it a store of its own (--cold-store, or move \
         the data directory's cold/ away)"
    )]
    StoreAhead {
        /// The store's exporter position for the shard.
        position: u64,
        /// The last durable LSN of the shard's journal here.
        durable: u64,
    },
    /// A journaled command did not replay: the data is from an incompatible version or the
    /// engine is not deterministic (a bug).
    #[error("replay failed at LSN {lsn}: {reason}; inspect it with `ringflow journal inspect`")]
    Replay {
        /// The record.
        lsn: u64,
        /// What went wrong.
        reason: String,
    },
}

/// What recovery did, for the startup log.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    /// The snapshot loaded (file name and LSN).
    pub snapshot: Option<(String, u64)>,
    /// Snapshots skipped as damaged, with the reason.
    pub skipped_snapshots: Vec<(String, String)>,
    /// Journal records replayed after the snapshot.
    pub replayed: usize,
    /// A torn tail cut off: segment and offset.
    pub torn_tail: Option<(String, usize)>,
    /// Spare segments ready for reuse (`journal::writer` module docs).
    pub spares: usize,
    /// Spares a fresh journal zero-filled at this start (`prefill_segments`).
    pub prefilled: usize,
    /// The highest durable LSN.
    pub durable_lsn: u64,
    /// With a cold store: its position, and the records handed to the exporter again.
    pub exported: Option<(u64, usize)>,
    /// Records the cold store will never have (its position was behind every snapshot and
    /// the journal no longer had them): (first LSN, last LSN).
    pub export_gap: Option<(u64, u64)>,
}

/// The shard's timer set keeps an entry until it comes due, even when what it was armed for
/// ended first (a job completed before its lease ran out, a boundary timer whose task
/// completed). When the set holds at least this many entries and more than twice what the
/// state can still need ([`State::timer_bound`]), it is rebuilt from the state, so its memory
/// stays within twice the live timers plus this many.
pub const TIMERS_COMPACT_MIN: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Lease,
    Retry,
    MessageTtl,
    Bpmn,
    /// A signal with subscriptions left to deliver to (due at once).
    Signal,
    /// A compensation throw with handlers left to start (due at once).
    Compensation,
}

/// A caller waiting for its record to be durable.
struct Pending {
    lsn: u64,
    now_millis: i64,
    answer: Result<Outcome, Rejection>,
    slot: Slot<Result<Outcome, SubmitError>>,
}

struct Inner {
    state: State,
    batch: Batch,
    applied_lsn: u64,
    durable_lsn: u64,
    pending: VecDeque<Pending>,
    stopped: Option<String>,
    last_now_millis: i64,
    timers: BTreeSet<(i64, Key, TimerKind)>,
    since_snapshot_records: u64,
    since_snapshot_bytes: u64,
    snapshot_running: bool,
    remove_segments_up_to: u64,
    encoded: Vec<u8>,
    /// Waiters for a durable LSN (the snapshot task): true when reached, false on a stop.
    durable_waiters: VecDeque<(u64, Slot<bool>)>,
    /// Callers waiting for an instance to complete (create with await-result), by instance.
    result_waiters: KeyMap<ResultWaiter>,
    /// User task transitions that wait for their task listeners, by the shard's number for
    /// the wait ([`Shard::claim_transition`]).
    transition_waiters: BTreeMap<u64, TransitionWaiter>,
    /// The number of the wait of each user task whose transition is held, by its element
    /// instance key.
    transition_by_element: KeyMap<u64>,
    /// The last number given to a wait.
    transition_seq: u64,
    /// Whether the exporter lag alarm is raised.
    lag_alarm: bool,
    /// Whether the exporter lag was over its hard limit at the last commit (new work
    /// refused with BUSY), so that the log says when refusing starts and ends.
    lag_refusing: bool,
    /// When the first record went into the open batch (commit latency).
    batch_opened: Option<std::time::Instant>,
    /// Durable mail not yet acknowledged, by destination shard and number: what the couriers
    /// send (see [`crate::mail`]).
    mail_out: BTreeMap<u16, BTreeMap<u64, ringflow_core::Mail>>,
}

/// The end of an instance created with `await_result`: its variables, once the command that
/// completed it is durable, or `None` when the wait was given up ([`Shard::give_up_result`]:
/// its time ran out, the server shuts down). Dropping it stops nothing; call
/// [`Shard::forget_result`] when the caller gives up.
pub type ResultSlot = Slot<Option<Variables>>;

/// Who is told the end of an instance created with `await_result`.
enum ResultWaiter {
    /// A task awaiting a slot ([`Shard::submit_awaiting`]); registered until
    /// [`Shard::forget_result`].
    Slot(ResultSlot),
    /// A queue ([`Shard::submit_now_awaited`]): the result goes in with the caller's token,
    /// and the registration ends with it.
    Queue {
        queue: Rc<ResultQueue>,
        token: u64,
        timeout_ms: u32,
        /// The create's own answer (`Response::InstanceCreated`), handed back with the result.
        created: ringflow_core::Response,
    },
}

/// How a user task's completion, assignment or update that waited for its task listeners
/// ended, once the command that ended it is durable ([`Shard::claim_transition`]); `None`
/// when the wait was given up ([`Shard::give_up_transition`]: its time ran out, the server
/// shuts down).
pub type TransitionSlot = Slot<Option<TransitionEnd>>;

/// The caller of a held user task transition, from the command that began it (registered
/// then, so no later command can end it unseen) until the caller has its end.
struct TransitionWaiter {
    end: TransitionSlot,
    /// The caller holds `end` (the entry goes when it is filled).
    claimed: bool,
}

/// The end of an awaited instance, as [`ResultQueue`] hands it over.
pub struct QueuedResult {
    /// The token given to [`Shard::submit_now_awaited`].
    pub token: u64,
    /// The wait's timeout given with it, in ms (for the caller's message).
    pub timeout_ms: u32,
    /// The create's own answer (`Response::InstanceCreated`).
    pub created: ringflow_core::Response,
    /// Its variables at the end, once the command that completed it is durable; `None` when
    /// the wait was given up ([`Shard::give_up_result`]: its time ran out, the server shuts
    /// down).
    pub variables: Option<Variables>,
}

/// Where the ends of many awaited instances go, for one consumer (a connection's writer)
/// that drains them when `ready` is raised: a task per awaited create costs more than the
/// engine's work for it (bench/RESULTS.md). Unbounded by itself: it holds at most one entry
/// per create in flight, which `inflight_per_connection_max` bounds.
pub struct ResultQueue {
    results: RefCell<Vec<QueuedResult>>,
    ready: Rc<Notify>,
}

impl ResultQueue {
    /// A queue that raises `ready` when a result goes in.
    pub fn new(ready: Rc<Notify>) -> ResultQueue {
        ResultQueue {
            results: RefCell::new(Vec::new()),
            ready,
        }
    }

    fn push(&self, result: QueuedResult) {
        self.results.borrow_mut().push(result);
        self.ready.notify();
    }

    /// Moves the results that came, in the order they came, to the end of `into`.
    pub fn take(&self, into: &mut Vec<QueuedResult>) {
        into.append(&mut self.results.borrow_mut());
    }
}

/// How [`Shard::try_submit`] registers the wait of a create with `await_result`.
enum AwaitWith<'a> {
    /// A slot ([`Shard::submit_awaiting`]).
    Slot,
    /// A queue, a token and the wait's timeout ([`Shard::submit_now_awaited`]).
    Queue(&'a Rc<ResultQueue>, u64, u32),
}

/// One shard. Shared by its tasks through `Rc`; never leaves its thread.
pub struct Shard<D: Dir> {
    inner: RefCell<Inner>,
    config: ShardConfig,
    work: Notify,
    timer_armed: Notify,
    snapshot_due: Notify,
    room: WaitList,
    jobs_available: WaitList,
    mail_ready: WaitList,
    snapshots: SnapshotStore<D>,
    journal: RefCell<Option<Journal<D>>>,
    export: Option<Arc<ExportQueue>>,
    metrics: Arc<ShardMetrics>,
}

/// Recovers a shard from its journal and snapshot directories, without a cold store.
pub async fn recover<D: Dir>(
    journal_dir: D,
    snapshot_dir: D,
    config: ShardConfig,
) -> Result<(Shard<D>, RecoveryReport), RecoveryError> {
    recover_exporting(journal_dir, snapshot_dir, config, None).await
}

/// Recovers a shard whose events go to a cold store through `export`: it starts from a
/// snapshot at or before the store's position and hands the events of every later record to
/// the exporter again.
pub async fn recover_exporting<D: Dir>(
    journal_dir: D,
    snapshot_dir: D,
    config: ShardConfig,
    export: Option<Arc<ExportQueue>>,
) -> Result<(Shard<D>, RecoveryReport), RecoveryError> {
    let shard = config.journal.shard;
    let snapshots = SnapshotStore::new(snapshot_dir, shard);
    let exported = export.as_ref().map(|queue| queue.exported());
    let mut load = snapshots.load_at_most(exported).await?;
    let mut export_gap = None;
    if load.loaded.is_none() && exported.is_some() {
        // No snapshot at or before the store's position: the journal from LSN 1 serves if it
        // is all there; otherwise the store is behind what this shard kept (it was replaced
        // or lost its data), and what the journal no longer has cannot be exported again.
        let first_segment = crate::journal::writer::segment_names(&journal_dir)
            .await?
            .first()
            .map(|(lsn, _)| *lsn);
        if first_segment.is_some_and(|first| first > 1) {
            load = snapshots.load_at_most(None).await?;
            if let Some(loaded) = &load.loaded {
                export_gap = Some((exported.unwrap_or(0) + 1, loaded.lsn));
            }
        }
    }
    let mut report = RecoveryReport {
        skipped_snapshots: load.skipped,
        export_gap,
        ..RecoveryReport::default()
    };
    let (mut state, snapshot_lsn, mut now_millis) = match load.loaded {
        Some(loaded) => {
            report.snapshot = Some((loaded.name, loaded.lsn));
            (loaded.state, loaded.lsn, loaded.now_millis)
        }
        None => (State::new(shard), 0, 0),
    };
    // 0 configured (tools that only read the data): whatever the snapshot says.
    let stored = state.cluster_shards();
    if stored != 0 && config.cluster_shards != 0 && stored != config.cluster_shards {
        return Err(RecoveryError::ClusterSize {
            stored,
            configured: config.cluster_shards,
        });
    }
    if config.cluster_shards != 0 {
        state.set_cluster_shards(config.cluster_shards);
    }
    let (journal, recovered) = Journal::open(journal_dir, config.journal, snapshot_lsn).await?;
    report.torn_tail = recovered.torn_tail;
    report.spares = recovered.spares.len();
    report.prefilled = recovered.prefilled.len();
    let export_from = exported.map(|lsn| lsn.max(snapshot_lsn));
    let mut again = Vec::new();
    for record in &recovered.records {
        let (command, ctx) =
            decode_command(&record.payload).map_err(|error| RecoveryError::Replay {
                lsn: record.lsn,
                reason: error.to_string(),
            })?;
        let valid_key = ctx.next_key.shard() == shard && ctx.next_key > state.last_key();
        if !valid_key {
            return Err(RecoveryError::Replay {
                lsn: record.lsn,
                reason: format!("the record's next key {} does not follow on", ctx.next_key),
            });
        }
        let outcome =
            process(&mut state, command, &ctx).map_err(|rejection| RecoveryError::Replay {
                lsn: record.lsn,
                reason: format!("the engine refused a journaled command: {rejection}"),
            })?;
        now_millis = now_millis.max(ctx.now_millis);
        if export_from.is_some_and(|from| record.lsn > from) && !outcome.events.is_empty() {
            again.push(ExportRecord {
                lsn: record.lsn,
                now_millis: ctx.now_millis,
                events: outcome.events,
            });
        }
    }
    report.replayed = recovered.records.len();
    report.durable_lsn = journal.durable_lsn();
    // The exporter only ever takes durable records, so its position cannot pass this
    // journal's end unless the store and the data directory do not belong together.
    if let Some(position) = exported
        && position > report.durable_lsn
    {
        return Err(RecoveryError::StoreAhead {
            position,
            durable: report.durable_lsn,
        });
    }
    if let (Some(queue), Some(from)) = (&export, export_from) {
        report.exported = Some((from, again.len()));
        queue.push(again, journal.durable_lsn());
    }
    let timers = timers_of(&state);
    let mut mail_out: BTreeMap<u16, BTreeMap<u64, ringflow_core::Mail>> = BTreeMap::new();
    for (to, seq, mail) in state.outbox() {
        mail_out.entry(to).or_default().insert(seq, mail.clone());
    }
    let inner = Inner {
        state,
        batch: journal.first_batch(),
        applied_lsn: journal.durable_lsn(),
        durable_lsn: journal.durable_lsn(),
        pending: VecDeque::new(),
        stopped: None,
        last_now_millis: now_millis,
        timers,
        since_snapshot_records: report.replayed as u64,
        // The journal bytes since the snapshot, less the padding, which recovery does not see.
        since_snapshot_bytes: recovered
            .records
            .iter()
            .map(|record| {
                (record.payload.len() + crate::journal::record::RECORD_HEADER_BYTES) as u64
            })
            .sum(),
        snapshot_running: false,
        remove_segments_up_to: 0,
        encoded: Vec::new(),
        durable_waiters: VecDeque::new(),
        result_waiters: KeyMap::default(),
        transition_waiters: BTreeMap::new(),
        transition_by_element: KeyMap::default(),
        transition_seq: 0,
        lag_alarm: false,
        lag_refusing: false,
        batch_opened: None,
        mail_out,
    };
    let shard = Shard {
        inner: RefCell::new(inner),
        config,
        work: Notify::default(),
        timer_armed: Notify::default(),
        snapshot_due: Notify::default(),
        room: WaitList::default(),
        jobs_available: WaitList::default(),
        mail_ready: WaitList::default(),
        snapshots,
        journal: RefCell::new(Some(journal)),
        export,
        metrics: Arc::new(ShardMetrics::new(config.journal.shard)),
    };
    let unacknowledged = shard
        .inner
        .borrow()
        .mail_out
        .values()
        .map(BTreeMap::len)
        .sum::<usize>();
    shard
        .metrics
        .mail_unacknowledged
        .store(unacknowledged as u64, Relaxed);
    {
        // The gauges show the recovered state from the start, not zeros until the first
        // commit.
        let inner = shard.inner.borrow();
        shard.metrics.record_state(
            inner.durable_lsn,
            inner.state.instance_count(),
            inner.state.job_count(),
            inner.timers.len(),
        );
    }
    Ok((shard, report))
}

/// The timers a recovered state needs: every leased job's deadline, every backoff, every
/// buffered message's expiry and every armed timer event. Those that came due while the
/// server was down fire at once, each once: a fired timer is gone from the state.
fn timers_of(state: &State) -> BTreeSet<(i64, Key, TimerKind)> {
    let messages = state
        .messages()
        .map(|message| (message.deadline_millis, message.key, TimerKind::MessageTtl))
        .chain(
            state
                .timers()
                .map(|timer| (timer.due_millis, timer.key, TimerKind::Bpmn)),
        )
        .chain(
            state
                .signal_deliveries()
                .map(|(key, _)| (0, key, TimerKind::Signal)),
        )
        .chain(
            state
                .compensation_throws()
                .into_iter()
                .map(|key| (0, key, TimerKind::Compensation)),
        );
    state
        .jobs()
        .filter_map(|job| match job.state {
            JobState::Activated {
                deadline_millis, ..
            } => Some((deadline_millis, job.key, TimerKind::Lease)),
            JobState::Backoff { due_millis } => Some((due_millis, job.key, TimerKind::Retry)),
            JobState::Activatable | JobState::Failed => None,
        })
        .chain(messages)
        .collect()
}

/// Whether a timer entry still stands for something in the state: a stale one (the job
/// completed, the message was correlated, the timer event was cancelled) is dropped without
/// submitting a command.
fn timer_live(state: &State, due: i64, key: Key, kind: TimerKind) -> bool {
    match kind {
        TimerKind::Lease => state.job(key).is_some_and(|job| {
            matches!(job.state, JobState::Activated { deadline_millis, .. } if deadline_millis == due)
        }),
        TimerKind::Retry => state.job(key).is_some_and(
            |job| matches!(job.state, JobState::Backoff { due_millis } if due_millis == due),
        ),
        TimerKind::MessageTtl => state.message(key).is_some(),
        // A start timer refused while the shard was full is put back with a later due time,
        // so only its presence is checked.
        TimerKind::Bpmn => state.timer(key).is_some(),
        TimerKind::Signal => state.signal_delivery(key).is_some(),
        TimerKind::Compensation => state.compensation_throw_pending(key),
    }
}

fn wall_clock_millis() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_millis() as i64
}

impl<D: Dir> Shard<D> {
    /// The shard id.
    pub fn id(&self) -> u16 {
        self.config.journal.shard
    }

    /// The highest durable LSN.
    pub fn durable_lsn(&self) -> u64 {
        self.inner.borrow().durable_lsn
    }

    /// Reads the state (for queries; the state includes commands not yet durable).
    pub fn with_state<T>(&self, read: impl FnOnce(&State) -> T) -> T {
        read(&self.inner.borrow().state)
    }

    /// Runs `command` and answers once its record is durable. A rejection changes nothing and
    /// is answered once everything it was judged against is durable. With a cold store, the
    /// answer's events are only its `IncidentCreated` ones: the rest went to the exporter.
    pub async fn submit(&self, command: Command) -> Result<Outcome, SubmitError> {
        let (outcome, result) = self.submit_awaiting(command).await?;
        if result.is_some()
            && let ringflow_core::Response::InstanceCreated {
                process_instance_key,
                ..
            } = &outcome.response
        {
            self.forget_result(*process_instance_key);
        }
        Ok(outcome)
    }

    /// [`Shard::submit`], and for a `CreateInstance` with `await_result` also the slot that
    /// receives the instance's variables when it completes.
    pub async fn submit_awaiting(
        &self,
        command: Command,
    ) -> Result<(Outcome, Option<ResultSlot>), SubmitError> {
        let awaiting = matches!(
            command,
            Command::CreateInstance {
                await_result: true,
                ..
            }
        );
        let mut command = Some(command);
        loop {
            match self.try_submit(&mut command, AwaitWith::Slot) {
                Ok(slot) => {
                    let outcome = slot.await?;
                    let result = match (&outcome.response, awaiting) {
                        (
                            ringflow_core::Response::InstanceCreated {
                                process_instance_key,
                                ..
                            },
                            true,
                        ) => self.result_slot(*process_instance_key),
                        _ => None,
                    };
                    return Ok((outcome, result));
                }
                Err(Full) => {
                    // The open batch is full: the committer takes it when its commit returns.
                    self.work.notify();
                    self.room.wait().await;
                }
            }
        }
    }

    /// Submits a command without waiting: the slot of its answer (filled once it is
    /// durable), or the command back when the open batch has no room for it (then
    /// [`Shard::submit`] waits for room). Answers come in the order of submission, so a
    /// caller may await the slots of many commands one after the other. Not for a
    /// `CreateInstance` with `await_result` (see [`Shard::submit_now_awaited`] and
    /// [`Shard::submit_awaiting`]).
    pub fn submit_now(
        &self,
        command: Command,
    ) -> Result<Slot<Result<Outcome, SubmitError>>, Command> {
        debug_assert!(!matches!(
            command,
            Command::CreateInstance {
                await_result: true,
                ..
            }
        ));
        self.submit_now_with(command, AwaitWith::Slot)
    }

    /// [`Shard::submit_now`] for a `CreateInstance` with `await_result`: the slot of the
    /// create's own answer (`InstanceCreated`, once durable), and when the instance ends (the
    /// command that ended it is durable) or its wait is given up, a [`QueuedResult`] with
    /// `token` and `timeout_ms` (the wait's, which the caller keeps; the shard only hands it
    /// back) goes into `results`. Its end may go in before the create's slot is filled (an
    /// instance that ends in the create's own commit). Nothing goes into `results` when the
    /// create is refused.
    pub fn submit_now_awaited(
        &self,
        command: Command,
        results: &Rc<ResultQueue>,
        token: u64,
        timeout_ms: u32,
    ) -> Result<Slot<Result<Outcome, SubmitError>>, Command> {
        assert!(
            matches!(
                command,
                Command::CreateInstance {
                    await_result: true,
                    ..
                }
            ),
            "submit_now_awaited takes a create with await_result"
        );
        self.submit_now_with(command, AwaitWith::Queue(results, token, timeout_ms))
    }

    /// [`Shard::submit_now_awaited`], waiting for room in the open batch when it has none.
    pub async fn submit_awaited(
        &self,
        command: Command,
        results: &Rc<ResultQueue>,
        token: u64,
        timeout_ms: u32,
    ) -> Result<Outcome, SubmitError> {
        let mut command = command;
        loop {
            match self.submit_now_awaited(command, results, token, timeout_ms) {
                Ok(slot) => return slot.await,
                Err(refused) => {
                    command = refused;
                    self.room.wait().await;
                }
            }
        }
    }

    fn submit_now_with(
        &self,
        command: Command,
        await_with: AwaitWith<'_>,
    ) -> Result<Slot<Result<Outcome, SubmitError>>, Command> {
        let mut command = Some(command);
        match self.try_submit(&mut command, await_with) {
            Ok(slot) => Ok(slot),
            Err(Full) => {
                self.work.notify();
                Err(command.take().expect("a command refused for room is kept"))
            }
        }
    }

    fn try_submit(
        &self,
        command: &mut Option<Command>,
        await_with: AwaitWith<'_>,
    ) -> Result<Slot<Result<Outcome, SubmitError>>, Full> {
        let _span = tracing::trace_span!("command", shard = self.id()).entered();
        let slot = Slot::default();
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        if let Some(reason) = &inner.stopped {
            slot.fill(Err(SubmitError::Stopped(reason.clone())));
            return Ok(slot);
        }
        if let Some(busy) = self.export_refusal(command.as_ref()) {
            self.metrics.busy.fetch_add(1, Relaxed);
            slot.fill(Err(SubmitError::Busy(busy)));
            return Ok(slot);
        }
        let now_millis = wall_clock_millis().max(inner.last_now_millis);
        let Some(next_key) = inner.state.last_key().next() else {
            let rejection = Rejection {
                code: RejectionCode::KeysExhausted,
                message: format!("shard {} has handed out every key", self.id()),
            };
            self.answer_after_durable(inner, Err(rejection), &slot);
            return Ok(slot);
        };
        let ctx = Ctx {
            now_millis,
            next_key,
        };
        let pending_command = command.as_ref().expect("a command to submit");
        inner.encoded.clear();
        encode_command(pending_command, &ctx, &mut inner.encoded);
        match inner.batch.room_for(inner.encoded.len()) {
            Room::Now => {}
            Room::AfterCommit => return Err(Full),
            Room::Never => {
                let rejection = Rejection {
                    code: RejectionCode::LimitExceeded,
                    message: format!(
                        "the command takes {} bytes in the journal, over record_bytes_max ({})",
                        inner.encoded.len(),
                        self.config.journal.batch.record_bytes_max
                    ),
                };
                self.answer_after_durable(inner, Err(rejection), &slot);
                return Ok(slot);
            }
        }
        let command = command.take().expect("a command to submit");
        let outcome_kind = crate::metrics::command_kind(&command);
        let awaiting = matches!(
            command,
            Command::CreateInstance {
                await_result: true,
                ..
            }
        );
        match process(&mut inner.state, command, &ctx) {
            Ok(mut outcome) => {
                if let ringflow_core::Response::UserTaskTransitionHeld {
                    element_instance_key,
                    seq,
                    ..
                } = &mut outcome.response
                {
                    // Registered now, before any later command can end it.
                    inner.transition_seq += 1;
                    *seq = inner.transition_seq;
                    inner
                        .transition_by_element
                        .insert(*element_instance_key, *seq);
                    let waiter = TransitionWaiter {
                        end: Slot::default(),
                        claimed: false,
                    };
                    inner.transition_waiters.insert(*seq, waiter);
                    self.note_transition_waits(inner);
                }
                if let (
                    ringflow_core::Response::InstanceCreated {
                        process_instance_key,
                        ..
                    },
                    true,
                ) = (&outcome.response, awaiting)
                {
                    // Registered now, before any later command can complete the instance.
                    let waiter = match await_with {
                        AwaitWith::Slot => ResultWaiter::Slot(Slot::default()),
                        AwaitWith::Queue(queue, token, timeout_ms) => ResultWaiter::Queue {
                            queue: Rc::clone(queue),
                            token,
                            timeout_ms,
                            created: outcome.response.clone(),
                        },
                    };
                    inner.result_waiters.insert(*process_instance_key, waiter);
                }
                let lsn = inner
                    .batch
                    .append(&inner.encoded)
                    .expect("room was checked before the state changed");
                if inner.batch_opened.is_none() {
                    inner.batch_opened = Some(std::time::Instant::now());
                }
                self.metrics.record_command(outcome_kind);
                inner.applied_lsn = lsn;
                inner.last_now_millis = now_millis;
                inner.since_snapshot_records += 1;
                let jobs = outcome
                    .effects
                    .iter()
                    .any(|effect| matches!(effect, Effect::JobsAvailable { .. }));
                inner.pending.push_back(Pending {
                    lsn,
                    now_millis,
                    answer: Ok(outcome),
                    slot: slot.clone(),
                });
                self.work.notify();
                if jobs {
                    // Now, not at the commit: the subscriptions' ActivateJobs then goes into
                    // this batch or the next, not into one after this batch is durable. The
                    // jobs still leave only with the answer to ActivateJobs, which waits for
                    // that record, and so for this one before it, to be durable.
                    self.jobs_available.wake_all();
                }
            }
            Err(rejection) => {
                self.metrics.record_rejection(rejection.code);
                self.answer_after_durable(inner, Err(rejection), &slot)
            }
        }
        Ok(slot)
    }

    /// The result slot registered for an awaited instance (filled already if the instance
    /// completed meanwhile). It stays registered until [`Shard::forget_result`].
    fn result_slot(&self, instance: Key) -> Option<ResultSlot> {
        match self.inner.borrow().result_waiters.get(&instance) {
            Some(ResultWaiter::Slot(slot)) => Some(slot.clone()),
            Some(ResultWaiter::Queue { .. }) | None => None,
        }
    }

    /// Stops waiting for an awaited instance: call it once the result came or the caller
    /// gave up.
    pub fn forget_result(&self, instance: Key) {
        self.inner.borrow_mut().result_waiters.remove(&instance);
    }

    /// Ends the wait for an awaited instance that has not completed: its slot gets `None`.
    /// Nothing happens when nobody waits for it any more (it completed, it was forgotten).
    pub fn give_up_result(&self, instance: Key) {
        let waiter = self.inner.borrow_mut().result_waiters.remove(&instance);
        match waiter {
            // A result that came meanwhile and was not taken yet stays.
            Some(ResultWaiter::Slot(slot)) => slot.fill_if_empty(None),
            Some(ResultWaiter::Queue {
                queue,
                token,
                timeout_ms,
                created,
            }) => queue.push(QueuedResult {
                token,
                timeout_ms,
                created,
                variables: None,
            }),
            None => {}
        }
    }

    /// The end of the held user task transition that the shard numbered `seq`
    /// ([`ringflow_core::Response::UserTaskTransitionHeld`]): filled once the command that
    /// ends it is durable (maybe already). `None` when there is no such wait (given up).
    /// The caller that asked for the transition takes it, once.
    pub fn claim_transition(&self, seq: u64) -> Option<TransitionSlot> {
        let mut inner = self.inner.borrow_mut();
        let waiter = inner.transition_waiters.get_mut(&seq)?;
        let end = waiter.end.clone();
        if end.is_filled() {
            inner.transition_waiters.remove(&seq);
            self.note_transition_waits(&inner);
        } else {
            waiter.claimed = true;
        }
        Some(end)
    }

    /// Publishes how many requests wait for a user task's listeners (a gauge).
    fn note_transition_waits(&self, inner: &Inner) {
        self.metrics
            .transition_waits
            .store(inner.transition_waiters.len() as u64, Relaxed);
    }

    /// Stops waiting for the end of the held user task transition `seq` (its caller's time
    /// is over, the server shuts down): its slot gets `None` unless its end came already;
    /// the transition goes on. Nothing happens when nobody waits for it any more.
    pub fn give_up_transition(&self, seq: u64) {
        let mut inner = self.inner.borrow_mut();
        if let Some(waiter) = inner.transition_waiters.remove(&seq) {
            waiter.end.fill_if_empty(None);
            self.note_transition_waits(&inner);
        }
    }

    /// Whether a caller still waits for the held user task transition `seq`.
    pub fn awaits_transition(&self, seq: u64) -> bool {
        self.inner.borrow().transition_waiters.contains_key(&seq)
    }

    /// How many callers wait for a held user task transition to end.
    pub fn transition_waits(&self) -> usize {
        self.inner.borrow().transition_waiters.len()
    }

    /// Whether a caller still waits for this instance's result.
    pub fn awaits_result(&self, instance: Key) -> bool {
        self.inner.borrow().result_waiters.contains_key(&instance)
    }

    /// How many callers wait for an instance's result.
    pub fn awaited_results(&self) -> usize {
        self.inner.borrow().result_waiters.len()
    }

    /// How many jobs of a type are ready to be handed out now.
    pub fn ready_jobs(&self, job_type: &str) -> usize {
        self.inner.borrow().state.ready_job_count(job_type)
    }

    /// Waits until new jobs may be ready (a command that made some activatable was applied;
    /// it may not be durable yet, but an `ActivateJobs` after it is answered only once both
    /// are). Create the future before looking at [`Shard::ready_jobs`] so that no wake-up is
    /// missed.
    pub fn jobs_available(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.jobs_available.wait()
    }

    /// Answers at once when everything applied is durable, else after the commit.
    fn answer_after_durable(
        &self,
        inner: &mut Inner,
        answer: Result<Outcome, Rejection>,
        slot: &Slot<Result<Outcome, SubmitError>>,
    ) {
        if inner.applied_lsn == inner.durable_lsn && inner.pending.is_empty() {
            slot.fill(answer.map_err(SubmitError::Rejected));
        } else {
            inner.pending.push_back(Pending {
                lsn: inner.applied_lsn,
                now_millis: inner.last_now_millis,
                answer,
                slot: slot.clone(),
            });
        }
    }

    /// The committer: writes whatever is in the open batch, and syncs each batch written in
    /// a task of its own, so that the next batch is written while the one before is being
    /// synced (at most `journal::writer::UNSYNCED_BATCHES_MAX` unsynced), until the journal
    /// fails. Returns that failure.
    pub async fn run_committer(self: Rc<Self>) -> JournalError
    where
        D: 'static,
    {
        let mut journal = self
            .journal
            .borrow_mut()
            .take()
            .expect("one committer per shard");
        let failure: Rc<RefCell<Option<JournalError>>> = Rc::default();
        loop {
            if let Some(error) = failure.borrow_mut().take() {
                journal.set_stopped();
                return error;
            }
            let batch = {
                let mut inner = self.inner.borrow_mut();
                if inner.batch.is_empty() || !journal.may_write(&inner.batch) {
                    None
                } else {
                    let next = inner.batch.successor();
                    Some(std::mem::replace(&mut inner.batch, next))
                }
            };
            let Some(batch) = batch else {
                self.remove_covered(&mut journal);
                self.work.notified().await;
                continue;
            };
            self.room.wake_all();
            let records = batch.records();
            let opened = self.inner.borrow_mut().batch_opened.take();
            let started = std::time::Instant::now();
            let padded_bytes = batch.padded_bytes() as u64;
            let span = tracing::trace_span!("group_commit", shard = self.id(), records);
            let written = tracing::Instrument::instrument(journal.write(batch), span).await;
            let written = match written {
                Ok(written) => written,
                Err(error) => {
                    self.stop(&error.to_string());
                    return error;
                }
            };
            // Journal bytes, as written: headers and padding count, so that a snapshot
            // period spans at most `snapshot_every_bytes` of segments (what the spares are
            // sized for, `journal::writer::segments_per_snapshot_max`).
            self.inner.borrow_mut().since_snapshot_bytes += padded_bytes;
            let shard = Rc::clone(&self);
            let failure = Rc::clone(&failure);
            glommio::spawn_local(async move {
                match written.sync().await {
                    Ok((durable, times)) => {
                        shard
                            .metrics
                            .record_commit(records, times.sync_micros, opened);
                        let releasing = std::time::Instant::now();
                        shard.release(durable);
                        shard.maybe_snapshot();
                        shard.trace_commit(records, opened, started, releasing, times);
                    }
                    Err(error) => {
                        let error = JournalError::from(error);
                        if shard.stopped().is_none() {
                            shard.stop(&error.to_string());
                        }
                        failure.borrow_mut().get_or_insert(error);
                    }
                }
                // The committer may be waiting for this sync (the pipeline was full, or the
                // next batch needs a new segment), or for this failure.
                shard.work.notify();
            })
            .detach();
        }
    }

    /// Logs a commit slower than `slow_commit_micros`, from its batch's first record to the
    /// end of its release, with the stages: the batch's wait for the committer (the commit
    /// before, or the thread busy elsewhere), a new segment, the write, the fdatasync, the
    /// release (effects and answers).
    fn trace_commit(
        &self,
        records: usize,
        opened: Option<std::time::Instant>,
        started: std::time::Instant,
        releasing: std::time::Instant,
        times: crate::journal::writer::CommitTimes,
    ) {
        let threshold = self.config.slow_commit_micros;
        let Some(opened) = opened else {
            return;
        };
        let total_us = opened.elapsed().as_micros() as u64;
        if threshold == 0 || total_us < threshold {
            return;
        }
        tracing::warn!(
            shard = self.id(),
            records,
            total_us,
            batch_wait_us = started.saturating_duration_since(opened).as_micros() as u64,
            segment_us = times.segment_micros,
            write_us = times.write_micros,
            fdatasync_us = times.sync_micros,
            release_us = releasing.elapsed().as_micros() as u64,
            "slow commit"
        );
    }

    /// Retires the segments the oldest kept snapshot covers, when a snapshot asked for it:
    /// up to `spare_segments` become spares for the next segments, the rest are deleted
    /// (`journal::writer::retire_segments`). The journal forgets them at once; the renames,
    /// unlinks and the directory sync run in a task of their own, so that the next commit
    /// does not wait for them. A failure there stops the shard.
    fn remove_covered(self: &Rc<Self>, journal: &mut Journal<D>)
    where
        D: 'static,
    {
        let up_to = std::mem::take(&mut self.inner.borrow_mut().remove_segments_up_to);
        if up_to == 0 {
            return;
        }
        let names = journal.take_covered(up_to);
        if names.is_empty() {
            return;
        }
        let dir = journal.dir_handle();
        let spares = journal.spares_handle();
        let config = journal.config();
        let shard = Rc::clone(self);
        glommio::spawn_local(async move {
            let retiring = std::time::Instant::now();
            let retired = crate::journal::writer::retire_segments(
                &*dir,
                &names,
                &spares,
                config.spare_segments,
                config.segment_bytes,
            )
            .await;
            match retired {
                Ok(retired) => {
                    tracing::info!(
                        shard = shard.id(),
                        recycled = ?retired.recycled,
                        removed = ?retired.removed,
                        took_us = retiring.elapsed().as_micros() as u64,
                        "retired covered segments"
                    );
                }
                Err(error) => shard.stop(&format!("retiring covered segments: {error}")),
            }
        })
        .detach();
    }

    /// After a commit: applies the effects and answers the callers, in LSN order.
    fn release(&self, durable: u64) {
        let mut released = Vec::new();
        {
            let mut inner = self.inner.borrow_mut();
            if durable <= inner.durable_lsn || inner.stopped.is_some() {
                // A later batch's sync returned first and released this one's records (or,
                // written through, this batch returned before the one ahead of it); or
                // the shard stopped (another sync failed) and answered every caller already:
                // a sync that returns after that acknowledges nothing.
                return;
            }
            inner.durable_lsn = durable;
            while inner.pending.front().is_some_and(|p| p.lsn <= durable) {
                released.push(inner.pending.pop_front().expect("checked"));
            }
            self.metrics.record_state(
                durable,
                inner.state.instance_count(),
                inner.state.job_count(),
                inner.timers.len(),
            );
            if let Some(queue) = &self.export {
                let inner = &mut *inner;
                let lag_state = (&mut inner.lag_alarm, &mut inner.lag_refusing);
                self.export_released(queue, &mut released, durable, lag_state);
            }
            while inner
                .durable_waiters
                .front()
                .is_some_and(|w| w.0 <= durable)
            {
                let (_, slot) = inner.durable_waiters.pop_front().expect("checked");
                slot.fill(true);
            }
            let mut armed = false;
            let mut mail = false;
            for pending in &mut released {
                if let Ok(outcome) = &mut pending.answer {
                    armed |= arm_timers(&mut inner.timers, &outcome.effects);
                    for effect in &mut outcome.effects {
                        match effect {
                            Effect::InstanceResult {
                                process_instance_key,
                                variables,
                            } => match inner.result_waiters.get(process_instance_key) {
                                // Moved: nothing reads an answer's effects after this.
                                Some(ResultWaiter::Slot(slot)) => {
                                    slot.fill(Some(std::mem::take(variables)))
                                }
                                Some(ResultWaiter::Queue { .. }) => {
                                    let Some(ResultWaiter::Queue {
                                        queue,
                                        token,
                                        timeout_ms,
                                        created,
                                    }) = inner.result_waiters.remove(process_instance_key)
                                    else {
                                        unreachable!("looked up just before");
                                    };
                                    queue.push(QueuedResult {
                                        token,
                                        timeout_ms,
                                        created,
                                        variables: Some(std::mem::take(variables)),
                                    });
                                }
                                None => {}
                            },
                            Effect::UserTaskTransitionEnded {
                                element_instance_key,
                                end,
                            } => {
                                let inner = &mut *inner;
                                if let Some(seq) =
                                    inner.transition_by_element.remove(element_instance_key)
                                    && let Some(waiter) = inner.transition_waiters.get(&seq)
                                {
                                    waiter.end.fill(Some(end.clone()));
                                    if waiter.claimed {
                                        inner.transition_waiters.remove(&seq);
                                        self.note_transition_waits(inner);
                                    }
                                }
                            }
                            Effect::Send {
                                to,
                                seq,
                                mail: sent,
                            } => {
                                // Durable now: the courier may send it.
                                let outbox = inner.mail_out.entry(*to).or_default();
                                outbox.insert(*seq, sent.clone());
                                mail = true;
                            }
                            // Woken when the command was applied (`submit`).
                            Effect::JobsAvailable { .. }
                            | Effect::JobBackoff { .. }
                            | Effect::JobLease { .. }
                            | Effect::MessageTtl { .. }
                            | Effect::ContinueSignal { .. }
                            | Effect::ContinueCompensation { .. }
                            | Effect::Timer { .. } => {}
                        }
                    }
                }
            }
            if inner.timers.len() >= TIMERS_COMPACT_MIN
                && inner.timers.len() > 2 * inner.state.timer_bound()
            {
                inner.timers = timers_of(&inner.state);
            }
            if armed {
                self.timer_armed.notify();
            }
            if mail {
                let unacknowledged = inner.mail_out.values().map(BTreeMap::len).sum::<usize>();
                self.metrics
                    .mail_unacknowledged
                    .store(unacknowledged as u64, Relaxed);
                self.mail_ready.wake_all();
            }
        }
        for pending in released {
            pending
                .slot
                .fill(pending.answer.map_err(SubmitError::Rejected));
        }
    }

    /// Hands the events of newly durable records to the exporter. The answers keep only their
    /// `IncidentCreated` events (the server reports the incident key); the rest move.
    fn export_released(
        &self,
        queue: &ExportQueue,
        released: &mut [Pending],
        durable: u64,
        (lag_alarm, lag_refusing): (&mut bool, &mut bool),
    ) {
        let mut records = Vec::new();
        let mut last_lsn = 0;
        for pending in released.iter_mut() {
            let Ok(outcome) = &mut pending.answer else {
                continue;
            };
            // Only the first answer of an LSN carries its record's events (rejections reuse
            // the LSN they waited for and have none).
            if pending.lsn == last_lsn || outcome.events.is_empty() {
                continue;
            }
            last_lsn = pending.lsn;
            let events = std::mem::take(&mut outcome.events);
            outcome.events = events
                .iter()
                .filter(|event| matches!(event, ringflow_core::Event::IncidentCreated { .. }))
                .cloned()
                .collect();
            records.push(ExportRecord {
                lsn: pending.lsn,
                now_millis: pending.now_millis,
                events,
            });
        }
        queue.push(records, durable);
        let lag = queue.lag();
        let limits = self.config.export;
        if !*lag_alarm && lag > limits.warn_lag_records {
            *lag_alarm = true;
            self.metrics.lag_alarm.store(1, Relaxed);
            tracing::warn!(
                shard = self.id(),
                lag,
                warn = limits.warn_lag_records,
                refuse_at = limits.max_lag_records,
                failing = queue.failing(),
                "the cold store exporter is falling behind"
            );
        } else if *lag_alarm && lag <= limits.warn_lag_records / 2 {
            *lag_alarm = false;
            self.metrics.lag_alarm.store(0, Relaxed);
            tracing::info!(shard = self.id(), lag, "the cold store exporter caught up");
        }
        let refusing = lag > limits.max_lag_records;
        if refusing && !*lag_refusing {
            tracing::warn!(
                shard = self.id(),
                lag,
                limit = limits.max_lag_records,
                failing = queue.failing(),
                "the exporter lag is over its limit: creates, publishes and deploys are \
                 refused with BUSY until the cold store catches up"
            );
        } else if !refusing && *lag_refusing {
            tracing::info!(
                shard = self.id(),
                lag,
                "the exporter lag is under its limit again: new work is taken"
            );
        }
        *lag_refusing = refusing;
    }

    /// Why new work is refused now, if it is: the exporter is past its hard lag limit.
    fn export_refusal(&self, command: Option<&Command>) -> Option<String> {
        let queue = self.export.as_ref()?;
        let new_work = matches!(
            command?,
            Command::CreateInstance { .. }
                | Command::PublishMessage { .. }
                | Command::BroadcastSignal { .. }
                | Command::EvaluateConditional { .. }
                | Command::Deploy { .. }
        );
        let lag = queue.lag();
        let max = self.config.export.max_lag_records;
        if !new_work || lag <= max {
            return None;
        }
        let cause = if queue.failing() {
            "the cold store refuses writes (see the server log)"
        } else {
            "the cold store cannot keep up"
        };
        Some(format!(
            "shard {} refuses new work: {lag} durable records are not in the cold store yet, over \
             the exporter lag limit of {max} records; {cause}",
            self.id()
        ))
    }

    /// The shard's counters, for the metrics endpoint.
    pub fn metrics(&self) -> Arc<ShardMetrics> {
        Arc::clone(&self.metrics)
    }

    /// The exporter queue, when the shard has a cold store.
    pub fn export_queue(&self) -> Option<Arc<ExportQueue>> {
        self.export.clone()
    }

    /// Stops the shard as a failed write would: every waiting caller and every later
    /// submission gets [`SubmitError::Stopped`], and its tasks end. For simulations of a
    /// crash (the process would exit here and recover from disk).
    pub fn halt(&self, reason: &str) {
        self.stop(reason);
    }

    fn stop(&self, reason: &str) {
        tracing::error!(shard = self.id(), %reason, "the shard stops");
        let pending = {
            let mut inner = self.inner.borrow_mut();
            inner.stopped = Some(reason.to_string());
            for (_, slot) in inner.durable_waiters.drain(..) {
                slot.fill(false);
            }
            std::mem::take(&mut inner.pending)
        };
        self.snapshot_due.notify();
        self.mail_ready.wake_all();
        for waiting in pending {
            waiting
                .slot
                .fill(Err(SubmitError::Stopped(reason.to_string())));
        }
        self.room.wake_all();
    }

    /// Whether the shard stopped, and why.
    pub fn stopped(&self) -> Option<String> {
        self.inner.borrow().stopped.clone()
    }

    fn maybe_snapshot(&self) {
        let inner = self.inner.borrow();
        let records = self.config.snapshot_every_records;
        let bytes = self.config.snapshot_every_bytes;
        let due = (records > 0 && inner.since_snapshot_records >= records)
            || (bytes > 0 && inner.since_snapshot_bytes >= bytes);
        if due && !inner.snapshot_running {
            self.snapshot_due.notify();
        }
    }

    /// The snapshot task: takes a snapshot whenever the records or bytes since the last one
    /// reach the configured thresholds. Run it in a low-priority task queue. Returns when the
    /// shard stops, or with the error of a failed snapshot write (which stops the shard).
    pub async fn run_snapshots(self: Rc<Self>) {
        loop {
            self.snapshot_due.notified().await;
            if self.stopped().is_some() {
                return;
            }
            if let Err(error) = self.snapshot().await {
                self.stop(&format!("snapshot failed: {error}"));
                return;
            }
        }
    }

    /// Takes a snapshot of the durable state now and lets the committer remove the segments
    /// the older kept snapshot covers. Encoding the state takes the shard's thread for a
    /// moment (the state is not copied on write); the file is written while commands go on.
    /// Returns the LSN the snapshot covers.
    pub async fn snapshot(&self) -> Result<u64, StorageError> {
        let (lsn, now_millis, bytes, reached) = {
            let mut inner = self.inner.borrow_mut();
            inner.snapshot_running = true;
            inner.since_snapshot_records = 0;
            inner.since_snapshot_bytes = 0;
            let lsn = inner.applied_lsn;
            // The snapshot may only cover durable records: wait for the commit of `lsn`.
            let reached = Slot::default();
            if inner.durable_lsn >= lsn {
                reached.fill(true);
            } else {
                inner.durable_waiters.push_back((lsn, reached.clone()));
            }
            let encoding = std::time::Instant::now();
            let bytes = inner.state.encode();
            let encode_us = encoding.elapsed().as_micros() as u64;
            (lsn, inner.last_now_millis, (bytes, encode_us), reached)
        };
        let (bytes, encode_us) = bytes;
        let written = if reached.await {
            let floor = self.export.as_ref().map(|queue| queue.exported());
            let writing = std::time::Instant::now();
            let written = self.snapshots.write(lsn, now_millis, &bytes, floor).await;
            tracing::info!(
                shard = self.id(),
                lsn,
                bytes = bytes.len(),
                encode_us,
                file_us = writing.elapsed().as_micros() as u64,
                "snapshot written"
            );
            written
        } else {
            Err(StorageError::Io {
                operation: "snapshot",
                name: format!("shard {}", self.id()),
                message: "the shard stopped before the snapshot's records were durable".to_string(),
            })
        };
        let mut inner = self.inner.borrow_mut();
        inner.snapshot_running = false;
        inner.remove_segments_up_to = written?;
        drop(inner);
        self.work.notify();
        Ok(lsn)
    }

    /// The timer task: fires due job leases and backoffs as journaled commands, from the
    /// shard's own clock. Runs until the shard stops.
    pub async fn run_timers(self: Rc<Self>)
    where
        D: 'static,
    {
        let mut due = Vec::new();
        loop {
            if self.stopped().is_some() {
                return;
            }
            let now = wall_clock_millis();
            let mut wait_millis = TIMER_SLEEP_MILLIS_MAX as i64;
            {
                let mut inner = self.inner.borrow_mut();
                while due.len() < TIMER_FIRES_PER_ROUND_MAX {
                    match inner.timers.first().copied() {
                        Some(timer) if timer.0 <= now => {
                            inner.timers.pop_first();
                            // A stale entry (the job completed, the message was correlated)
                            // is dropped without a command.
                            if timer_live(&inner.state, timer.0, timer.1, timer.2) {
                                due.push(timer);
                            }
                        }
                        Some(timer) => {
                            wait_millis = timer.0 - now;
                            break;
                        }
                        None => break,
                    }
                }
            }
            if due.is_empty() {
                let wait = (wait_millis.max(0) as u64).min(TIMER_SLEEP_MILLIS_MAX);
                self.sleep_or_armed(wait).await;
                continue;
            }
            // Every due timer is submitted at once, so that they share group commits; the
            // round ends when all are durable.
            let fired: Vec<_> = due
                .drain(..)
                .map(|(_, key, kind)| {
                    let shard = self.clone();
                    glommio::spawn_local(async move { shard.fire(key, kind).await })
                })
                .collect();
            for task in fired {
                task.await;
            }
        }
    }

    async fn fire(&self, key: Key, kind: TimerKind) {
        let command = match kind {
            TimerKind::Lease => Command::JobLeaseExpired { key },
            TimerKind::Retry => Command::JobRetryDue { key },
            TimerKind::MessageTtl => Command::ExpireMessage { key },
            TimerKind::Bpmn => Command::TriggerTimer { key },
            TimerKind::Signal => Command::ContinueSignal { key },
            TimerKind::Compensation => Command::ContinueCompensation { key },
        };
        // A timer that went stale meanwhile is refused by the engine: nothing to do. A start
        // timer refused because the shard is full tries again later.
        if let Err(SubmitError::Rejected(rejection)) = self.submit(command).await
            && rejection.code == RejectionCode::LimitExceeded
        {
            let retry = wall_clock_millis() + TIMER_SLEEP_MILLIS_MAX as i64;
            self.inner.borrow_mut().timers.insert((retry, key, kind));
            self.timer_armed.notify();
        }
    }

    async fn sleep_or_armed(&self, millis: u64) {
        let sleep = glommio::timer::sleep(Duration::from_millis(millis.max(1)));
        futures_lite::future::or(sleep, self.timer_armed.notified()).await;
    }

    /// Due timers, for tests and the inspector: (due, job key, is it a lease).
    pub fn timers(&self) -> Vec<(i64, Key, bool)> {
        let inner = self.inner.borrow();
        let timers = inner.timers.iter();
        timers
            .map(|(due, key, kind)| (*due, *key, *kind == TimerKind::Lease))
            .collect()
    }
}

/// Mail between shards: what the couriers and desks of [`crate::mail`] call.
impl<D: Dir> Shard<D> {
    /// The destinations that have durable mail not yet acknowledged.
    pub fn mail_destinations(&self) -> Vec<u16> {
        let inner = self.inner.borrow();
        let destinations = inner.mail_out.iter();
        destinations
            .filter(|(_, entries)| !entries.is_empty())
            .map(|(to, _)| *to)
            .collect()
    }

    /// Durable, unacknowledged mails for `to`, oldest first, encoded: at most `max` of them
    /// and no more than `bytes_max` bytes together (but always the first).
    pub fn mail_for(&self, to: u16, max: usize, bytes_max: usize) -> Vec<(u64, Vec<u8>)> {
        let inner = self.inner.borrow();
        let Some(entries) = inner.mail_out.get(&to) else {
            return Vec::new();
        };
        let mut batch = Vec::new();
        let mut bytes_total = 0;
        for (seq, mail) in entries.iter().take(max) {
            let mut bytes = Vec::new();
            ringflow_core::remote::encode_mail(mail, &mut bytes);
            bytes_total += bytes.len();
            if !batch.is_empty() && bytes_total > bytes_max {
                break;
            }
            batch.push((*seq, bytes));
        }
        batch
    }

    /// Waits until new mail became durable (or the shard stopped). Create the future before
    /// looking at [`Shard::mail_destinations`] so that no wake-up is missed.
    pub fn mail_ready(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.mail_ready.wait()
    }

    /// Wakes the postmaster (a courier ended while mail was waiting).
    pub fn wake_mail(&self) {
        self.mail_ready.wake_all();
    }

    /// Takes mail from shard `from`, in order, and answers the highest number taken from it
    /// once that is durable here: the number the sender may drop its mail up to. Mail it had
    /// already is not taken twice; mail after a gap is left for the sender to send again.
    pub async fn take_mail(
        &self,
        from: u16,
        mails: Vec<(u64, Vec<u8>)>,
    ) -> Result<u64, SubmitError> {
        let mut commands = Vec::with_capacity(mails.len());
        for (seq, bytes) in mails {
            let mail = ringflow_core::remote::decode_mail(&bytes).map_err(|error| {
                SubmitError::Rejected(Rejection {
                    code: RejectionCode::InvalidArgument,
                    message: format!("mail {seq} from shard {from} does not decode: {error}"),
                })
            })?;
            commands.push(Command::Receive { from, seq, mail });
        }
        let mut slots = Vec::with_capacity(commands.len());
        for command in commands {
            let mut command = Some(command);
            loop {
                match self.try_submit(&mut command, AwaitWith::Slot) {
                    Ok(slot) => break slots.push(slot),
                    Err(Full) => {
                        self.work.notify();
                        self.room.wait().await;
                    }
                }
            }
        }
        // Everything applied now is durable once the last answer came (answers come in
        // journal order), so this number is safe to hand out then.
        let taken = self.inner.borrow().state.received_from(from);
        for slot in slots {
            match slot.await {
                Ok(_) => {}
                Err(SubmitError::Rejected(rejection))
                    if matches!(
                        rejection.code,
                        RejectionCode::AlreadyExists | RejectionCode::InvalidState
                    ) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(taken)
    }

    /// Shard `to` took this shard's mail up to `seq`: it leaves the couriers' queue now and
    /// the outbox with the journaled `Acknowledge`.
    pub async fn mail_acknowledged(&self, to: u16, seq: u64) -> Result<(), SubmitError> {
        {
            let mut inner = self.inner.borrow_mut();
            if let Some(entries) = inner.mail_out.get_mut(&to) {
                entries.retain(|number, _| *number > seq);
            }
            let unacknowledged = inner.mail_out.values().map(BTreeMap::len).sum::<usize>();
            self.metrics
                .mail_unacknowledged
                .store(unacknowledged as u64, Relaxed);
        }
        match self.submit(Command::Acknowledge { to, seq }).await {
            Ok(_) => Ok(()),
            // Acknowledged already (a duplicate answer).
            Err(SubmitError::Rejected(rejection))
                if rejection.code == RejectionCode::AlreadyExists =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

struct Full;

/// Arms the timers the effects ask for; returns whether any was armed.
/// Adds the timers of `effects`. True when the earliest timer is now earlier than before
/// (or there was none): only then must the timer task, which sleeps until the earliest one,
/// wake to look again. A lease later than every timer there (the usual case: leases of one
/// length, handed out in time order) does not wake it.
fn arm_timers(timers: &mut BTreeSet<(i64, Key, TimerKind)>, effects: &[Effect]) -> bool {
    let first_before = timers.first().map(|first| first.0);
    for effect in effects {
        let timer = match effect {
            Effect::JobLease {
                key,
                deadline_millis,
            } => (*deadline_millis, *key, TimerKind::Lease),
            Effect::JobBackoff { key, due_millis } => (*due_millis, *key, TimerKind::Retry),
            Effect::MessageTtl {
                key,
                deadline_millis,
            } => (*deadline_millis, *key, TimerKind::MessageTtl),
            Effect::Timer { key, due_millis } => (*due_millis, *key, TimerKind::Bpmn),
            Effect::ContinueSignal { key, due_millis } => (*due_millis, *key, TimerKind::Signal),
            Effect::ContinueCompensation { key, due_millis } => {
                (*due_millis, *key, TimerKind::Compensation)
            }
            Effect::JobsAvailable { .. }
            | Effect::InstanceResult { .. }
            | Effect::Send { .. }
            | Effect::UserTaskTransitionEnded { .. } => {
                continue;
            }
        };
        timers.insert(timer);
    }
    match (first_before, timers.first()) {
        (Some(before), Some(first)) => first.0 < before,
        (None, Some(_)) => true,
        (_, None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard-0 engine with `xml` deployed as `p.bpmn`, and a runner that gives each
    /// command the next context.
    fn deployed(xml: &str) -> (State, impl FnMut(&mut State, Command) -> Outcome) {
        let mut state = State::new(0);
        let mut ctx = ringflow_core::Ctx {
            now_millis: 1_000,
            next_key: Key::first(0),
        };
        let mut run = move |state: &mut State, command: Command| {
            let outcome = ringflow_core::process(state, command, &ctx).expect("accepted");
            ctx.next_key = outcome.next_key;
            outcome
        };
        run(
            &mut state,
            Command::Deploy {
                resources: vec![ringflow_core::Resource {
                    name: "p.bpmn".into(),
                    content: std::sync::Arc::from(xml.as_bytes()),
                }],
            },
        );
        (state, run)
    }

    /// Creates an instance of the latest `p`.
    fn create_p() -> Command {
        Command::CreateInstance {
            process: ringflow_core::ProcessRef::Latest("p".into()),
            variables: ringflow_core::Variables::new(),
            business_key: None,
            await_result: false,
        }
    }

    #[test]
    fn a_recovered_signal_with_subscriptions_left_fires_its_continue_at_once() {
        let xml = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">
          <bpmn:process id="p" isExecutable="true"><bpmn:startEvent id="s"/>
          <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="w"/>
          <bpmn:intermediateCatchEvent id="w"><bpmn:signalEventDefinition signalRef="g"/>
          </bpmn:intermediateCatchEvent><bpmn:sequenceFlow id="f2" sourceRef="w" targetRef="e"/>
          <bpmn:endEvent id="e"/></bpmn:process><bpmn:signal id="g" name="go"/>
          </bpmn:definitions>"#;
        let (mut state, mut run) = deployed(xml);
        for _ in 0..=ringflow_core::limits::SIGNAL_SUBSCRIPTIONS_PER_COMMAND_MAX {
            run(&mut state, create_p());
        }
        let outcome = run(
            &mut state,
            Command::BroadcastSignal {
                name: "go".into(),
                variables: ringflow_core::Variables::new(),
            },
        );
        let (signal, _) = state.signal_deliveries().next().expect("one left");
        assert!(outcome.effects.iter().any(|effect| matches!(
            effect,
            Effect::ContinueSignal { key, .. } if *key == signal
        )));
        // What recovery arms from the state: the continue, due at once, and live.
        let timers = timers_of(&state);
        assert!(
            timers.contains(&(0, signal, TimerKind::Signal)),
            "{timers:?}"
        );
        assert!(timer_live(&state, 0, signal, TimerKind::Signal));
        run(&mut state, Command::ContinueSignal { key: signal });
        assert!(!timer_live(&state, 0, signal, TimerKind::Signal));
        assert_eq!(state.instance_count(), 0);
    }

    #[test]
    fn a_recovered_compensation_throw_with_handlers_left_fires_its_continue_at_once() {
        let handlers = ringflow_core::limits::COMPENSATION_HANDLERS_PER_COMMAND_MAX + 5;
        let xml = format!(
            r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
              xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
          <bpmn:process id="p" isExecutable="true"><bpmn:startEvent id="s"/>
          <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="each"/>
          <bpmn:subProcess id="each"><bpmn:multiInstanceLoopCharacteristics>
            <bpmn:extensionElements><zeebe:loopCharacteristics
              inputCollection="=for i in 1..{handlers} return i"/></bpmn:extensionElements>
            </bpmn:multiInstanceLoopCharacteristics>
            <bpmn:startEvent id="es"/><bpmn:sequenceFlow id="e1" sourceRef="es" targetRef="t"/>
            <bpmn:task id="t"/><bpmn:boundaryEvent id="b" attachedToRef="t">
            <bpmn:compensateEventDefinition/></bpmn:boundaryEvent>
            <bpmn:task id="u" isForCompensation="true"/>
            <bpmn:association id="a" sourceRef="b" targetRef="u"/>
            <bpmn:sequenceFlow id="e2" sourceRef="t" targetRef="ee"/><bpmn:endEvent id="ee"/>
          </bpmn:subProcess>
          <bpmn:sequenceFlow id="f2" sourceRef="each" targetRef="c"/>
          <bpmn:endEvent id="c"><bpmn:compensateEventDefinition/></bpmn:endEvent>
          </bpmn:process></bpmn:definitions>"#
        );
        let (mut state, mut run) = deployed(&xml);
        let outcome = run(&mut state, create_p());
        let [throw] = state.compensation_throws()[..] else {
            panic!(
                "one throw with handlers left: {:?}",
                state.compensation_throws()
            );
        };
        assert!(outcome.effects.iter().any(|effect| matches!(
            effect,
            Effect::ContinueCompensation { key, .. } if *key == throw
        )));
        // What recovery arms from the state: the continue, due at once, and live.
        let timers = timers_of(&state);
        assert!(
            timers.contains(&(0, throw, TimerKind::Compensation)),
            "{timers:?}"
        );
        assert!(timer_live(&state, 0, throw, TimerKind::Compensation));
        run(&mut state, Command::ContinueCompensation { key: throw });
        assert!(!timer_live(&state, 0, throw, TimerKind::Compensation));
        assert_eq!(state.instance_count(), 0);
    }

    fn lease(key: u64, deadline_millis: i64) -> Effect {
        Effect::JobLease {
            key: Key(key),
            deadline_millis,
        }
    }

    #[test]
    fn only_an_earlier_first_timer_wakes_the_timer_task() {
        let mut timers = BTreeSet::new();
        assert!(!arm_timers(&mut timers, &[]), "nothing to wait for");
        assert!(
            arm_timers(&mut timers, &[lease(1, 1_000)]),
            "the first timer"
        );
        assert!(
            !arm_timers(&mut timers, &[lease(2, 2_000), lease(3, 3_000)]),
            "later leases: the task already wakes for the first"
        );
        assert!(
            arm_timers(&mut timers, &[lease(4, 4_000), lease(5, 500)]),
            "an earlier one among them"
        );
        let backoff = Effect::JobBackoff {
            key: Key(6),
            due_millis: 100,
        };
        assert!(
            arm_timers(&mut timers, &[backoff]),
            "a backoff before the leases"
        );
        assert_eq!(timers.len(), 6, "every timer is kept");
        assert_eq!(timers.first().map(|t| t.0), Some(100));
    }
}
