//! The exporter of one shard: a thread of its own, at low priority, that takes the events of
//! durable journal records from the shard's [`ExportQueue`] and writes them to the cold store
//! in batched transactions, each with the shard's exporter position.
//!
//! ```text
//! shard thread (committer, after fdatasync):  queue.push(records, durable LSN)   one lock per commit
//! exporter thread:  take ≤ EXPORT_BATCH_RECORDS ─▶ fold into row changes ─▶ BEGIN; rows;
//!                   position := LSN; COMMIT ─▶ exported LSN (read by the shard: segment removal,
//!                   lag alarm, BUSY)
//! ```
//!
//! The database never blocks the shard: the shard only appends to the queue. A failing or
//! unreachable database is retried with backoff (`EXPORT_RETRY_MILLIS_MAX` at most between
//! tries) while the queue grows; the shard raises the alarm and finally refuses new work
//! when the lag passes its limits (see [`crate::shard::ExportLimits`]).
//!
//! **History time to live.** With a TTL (`--history-ttl`), the exporter also deletes the
//! shard's process instances that ended longer ago than that, with every row of theirs
//! (element instances, jobs, user tasks, incidents, variables), at most
//! `HISTORY_CLEANUP_INSTANCES_PER_TRANSACTION` per transaction, oldest end first, between
//! export transactions while the export lag is under `HISTORY_CLEANUP_LAG_MAX_RECORDS` (so
//! exporting comes first, and cleaning alone does not push the lag to its warning). After a
//! full cleanup transaction it cleans again after the next export transaction (or at once
//! when nothing is queued), else after `HISTORY_CLEANUP_INTERVAL_MILLIS`. Active instances are never deleted, however
//! old. The store keeps an index of ended instances by end time for this
//! (`process_instances_ended`, made at the first start with a TTL).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::HistoryLevel;
use super::delta::{Delta, ExportRecord};
use super::sql::{ColdError, Conn, Param, Target};

/// Most journal records one transaction covers.
pub const EXPORT_BATCH_RECORDS: usize = 4_096;
/// Longest pause between tries when the database fails.
pub const EXPORT_RETRY_MILLIS_MAX: u64 = 10_000;
/// The exporter thread's nice value (higher is lower priority).
pub const EXPORTER_NICE: i32 = 10;
/// Past this many durable records not in the store, the exporter runs at nice 0, the
/// shards' priority, until the lag is under `EXPORTER_CATCH_UP_DONE_RECORDS` (see
/// [`catching_up`]).
pub const EXPORTER_CATCH_UP_LAG_RECORDS: u64 = 100_000;
/// The lag under which a catching-up exporter goes back to `EXPORTER_NICE`.
pub const EXPORTER_CATCH_UP_DONE_RECORDS: u64 = 25_000;
/// Most process instances (with their rows) one history cleanup transaction deletes.
pub const HISTORY_CLEANUP_INSTANCES_PER_TRANSACTION: usize = 1_000;
/// How long an exporter waits to look for expired history again after a look that found
/// less than a full transaction.
pub const HISTORY_CLEANUP_INTERVAL_MILLIS: u64 = 10_000;
/// History is cleaned only while fewer durable records than this wait for the store
/// (half the default `export-lag-warn-records`).
pub const HISTORY_CLEANUP_LAG_MAX_RECORDS: u64 = 50_000;
/// The tables whose rows belong to a process instance by `process_instance_key`.
const INSTANCE_TABLES: [&str; 5] = [
    "element_instances",
    "jobs",
    "user_tasks",
    "incidents",
    "variables",
];

struct Queued {
    records: VecDeque<ExportRecord>,
    /// Every record up to this LSN is durable and in `records` (or had no events).
    watermark: u64,
    closed: bool,
}

/// What a shard hands its exporter, and what the exporter reports back.
pub struct ExportQueue {
    shard: u16,
    queued: Mutex<Queued>,
    ready: Condvar,
    exported: AtomicU64,
    watermark: AtomicU64,
    failing: AtomicBool,
    failures: AtomicU64,
    transactions: AtomicU64,
    cleaned: AtomicU64,
}

/// What [`ExportQueue::take`] found.
enum Taken {
    /// Records and the LSN they reach.
    Records(Vec<ExportRecord>, u64),
    /// Nothing came before the deadline.
    Idle,
    /// The queue is closed and empty.
    Closed,
}

impl ExportQueue {
    /// A queue for `shard` whose store holds everything up to `exported`.
    pub fn new(shard: u16, exported: u64) -> Arc<ExportQueue> {
        Arc::new(ExportQueue {
            shard,
            queued: Mutex::new(Queued {
                records: VecDeque::new(),
                watermark: exported,
                closed: false,
            }),
            ready: Condvar::new(),
            exported: AtomicU64::new(exported),
            watermark: AtomicU64::new(exported),
            failing: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            cleaned: AtomicU64::new(0),
        })
    }

    /// The shard.
    pub fn shard(&self) -> u16 {
        self.shard
    }

    /// The highest LSN the store holds (committed with its position).
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Acquire)
    }

    /// Durable records not yet in the store.
    pub fn lag(&self) -> u64 {
        self.watermark
            .load(Ordering::Acquire)
            .saturating_sub(self.exported())
    }

    /// Whether the last try to write failed.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Failed tries so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Transactions committed so far.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Process instances deleted from the store for their age so far (`--history-ttl`).
    pub fn cleaned(&self) -> u64 {
        self.cleaned.load(Ordering::Relaxed)
    }

    /// Hands over the events of newly durable records (those with events; records in
    /// between had none) and the durable LSN.
    pub fn push(&self, records: impl IntoIterator<Item = ExportRecord>, durable: u64) {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        queued.records.extend(records);
        if durable > queued.watermark {
            queued.watermark = durable;
            self.watermark.store(durable, Ordering::Release);
        }
        drop(queued);
        self.ready.notify_one();
    }

    /// Ends the exporter once it has written what is queued.
    pub fn close(&self) {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.ready.notify_all();
    }

    /// Waits until the store holds everything up to `lsn`, at most `timeout`; returns
    /// whether it does.
    pub fn wait_exported(&self, lsn: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.exported() < lsn {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Takes up to `max` records and the LSN they reach, waiting for them until `deadline`
    /// (for good without one).
    fn take(&self, max: usize, deadline: Option<std::time::Instant>) -> Taken {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if queued.watermark > self.exported() || !queued.records.is_empty() {
                let count = queued.records.len().min(max);
                let records: Vec<ExportRecord> = queued.records.drain(..count).collect();
                let reach = match queued.records.front() {
                    Some(next) => next.lsn - 1,
                    None => queued.watermark,
                };
                return Taken::Records(records, reach);
            }
            if queued.closed {
                return Taken::Closed;
            }
            queued = match deadline {
                None => self.ready.wait(queued).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Taken::Idle;
                    }
                    self.ready
                        .wait_timeout(queued, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    fn is_closed(&self) -> bool {
        self.queued.lock().is_ok_and(|queued| queued.closed)
    }
}

/// Writes batches for one shard: skips what the store already holds, and commits each batch
/// with the shard's position.
pub struct Exporter {
    conn: Conn,
    shard: u16,
    position: u64,
    history: HistoryLevel,
    /// Tests: the next export writes its rows, then fails before it commits (as a crash
    /// would).
    pub fail_before_commit: bool,
}

impl Exporter {
    /// Connects (to the shard's own file, for a file per shard) and reads the shard's
    /// position.
    pub fn open(target: &Target, shard: u16) -> Result<Exporter, ColdError> {
        let mut conn = Conn::open(&target.for_shard(shard))?;
        let position = position(&mut conn, shard)?.0;
        Ok(Exporter {
            conn,
            shard,
            position,
            history: HistoryLevel::Full,
            fail_before_commit: false,
        })
    }

    /// Writes what `history` keeps from the next export on ([`HistoryLevel::Full`] unless
    /// told).
    pub fn with_history(mut self, history: HistoryLevel) -> Exporter {
        self.history = history;
        self
    }

    /// The highest LSN the store holds for this shard.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Makes the index that history cleanup looks ended instances up by, unless the store
    /// has it (on a large store this reads every instance once).
    pub fn index_ended_instances(&mut self) -> Result<(), ColdError> {
        self.conn.batch(
            "CREATE INDEX IF NOT EXISTS process_instances_ended ON process_instances \
             (shard, end_millis) WHERE end_millis IS NOT NULL",
        )
    }

    /// Deletes up to `max` (the exporter thread: `HISTORY_CLEANUP_INSTANCES_PER_TRANSACTION`)
    /// of this shard's process instances that ended before `cutoff_millis`, oldest end first,
    /// with every row of theirs, in one transaction; returns how many. On an error nothing
    /// was deleted.
    pub fn clean_up(&mut self, cutoff_millis: i64, max: usize) -> Result<usize, ColdError> {
        self.conn.batch("BEGIN")?;
        match self.delete_expired(cutoff_millis, max) {
            Ok(count) => {
                self.conn.batch("COMMIT")?;
                Ok(count)
            }
            Err(error) => {
                let _ = self.conn.batch("ROLLBACK");
                Err(error)
            }
        }
    }

    fn delete_expired(&mut self, cutoff_millis: i64, max: usize) -> Result<usize, ColdError> {
        let rows = self.conn.query(
            &format!(
                "SELECT key FROM process_instances WHERE shard = $1 AND end_millis < $2 \
                 ORDER BY end_millis LIMIT {max}"
            ),
            &[
                Param::Int(Some(i64::from(self.shard))),
                Param::Int(Some(cutoff_millis)),
            ],
        )?;
        let keys: Vec<String> = rows
            .iter()
            .filter_map(|row| row[0].int())
            .map(|key| key.to_string())
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        // Integers the store gave back, written as literals: one statement per table.
        let keys = keys.join(",");
        for table in INSTANCE_TABLES {
            self.conn.execute(
                &format!("DELETE FROM {table} WHERE process_instance_key IN ({keys})"),
                &[],
            )?;
        }
        self.conn.execute(
            &format!("DELETE FROM process_instances WHERE key IN ({keys})"),
            &[],
        )?;
        Ok(rows.len())
    }

    /// Writes `records` (those after the position) and moves the position to `reach`, in
    /// one transaction. On an error nothing was written.
    pub fn export(&mut self, records: &[ExportRecord], reach: u64) -> Result<(), ColdError> {
        if reach <= self.position {
            return Ok(());
        }
        let mut delta = Delta::new(self.history);
        for record in records.iter().filter(|r| r.lsn > self.position) {
            delta.add(record);
        }
        self.conn.batch("BEGIN")?;
        match self.write(&delta, reach) {
            Ok(()) => {
                self.conn.batch("COMMIT")?;
                self.position = reach;
                Ok(())
            }
            Err(error) => {
                let _ = self.conn.batch("ROLLBACK");
                Err(error)
            }
        }
    }

    fn write(&mut self, delta: &Delta, reach: u64) -> Result<(), ColdError> {
        if std::mem::take(&mut self.fail_before_commit) {
            delta.write(&mut self.conn, self.shard)?;
            return Err(ColdError {
                target: self.conn.target().to_string(),
                message: "injected failure".to_string(),
            });
        }
        delta.write(&mut self.conn, self.shard)?;
        let now = now_millis();
        self.conn.execute(
            "INSERT INTO exporter_positions (shard, lsn, records, updated_millis) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (shard) DO UPDATE SET lsn = excluded.lsn, \
             records = exporter_positions.records + excluded.records, \
             updated_millis = excluded.updated_millis",
            &[
                Param::Int(Some(i64::from(self.shard))),
                Param::Int(Some(reach as i64)),
                Param::Int(Some(delta.records as i64)),
                Param::Int(Some(now)),
            ],
        )?;
        Ok(())
    }
}

/// A shard's exporter position: (LSN, records exported); (0, 0) when it has none.
pub fn position(conn: &mut Conn, shard: u16) -> Result<(u64, u64), ColdError> {
    let rows = conn.query(
        "SELECT lsn, records FROM exporter_positions WHERE shard = $1",
        &[Param::Int(Some(i64::from(shard)))],
    )?;
    Ok(rows
        .first()
        .map(|row| {
            (
                row[0].int().unwrap_or(0) as u64,
                row[1].int().unwrap_or(0) as u64,
            )
        })
        .unwrap_or((0, 0)))
}

/// Sets this thread's nice value; the error when the kernel refuses (raising a thread's
/// priority needs CAP_SYS_NICE or an RLIMIT_NICE that allows it).
fn set_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid and setpriority take plain integers and change only this thread.
    let result = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn lower_priority() {
    if let Err(error) = set_nice(EXPORTER_NICE) {
        tracing::warn!(%error, "the exporter thread stays at the shards' priority");
    }
}

/// Whether the exporter should run at the shards' priority: from a lag past
/// `EXPORTER_CATCH_UP_LAG_RECORDS` until it is under `EXPORTER_CATCH_UP_DONE_RECORDS`.
///
/// At nice 10 on a busy shard's CPU the exporter can get too little of it to keep up (on the
/// 2-CPU test VM at 8,000 one_task instances/s: 1.6% of the CPU, the lag past 190,000
/// records, and growing to the limit that refuses new work; at nice 0 it stayed under 30,
/// bench/RESULTS.md). Refusing work for a lagging store is worse than the shards sharing
/// their CPU with it for a while.
pub fn catching_up(lag: u64, now: bool) -> bool {
    if now {
        lag >= EXPORTER_CATCH_UP_DONE_RECORDS
    } else {
        lag > EXPORTER_CATCH_UP_LAG_RECORDS
    }
}

/// The exporter's priority, moved between `EXPORTER_NICE` and 0 by [`catching_up`].
struct Priority {
    catching_up: bool,
    /// The kernel refused nice 0 once: not tried again (said once in the log).
    refused: bool,
}

impl Priority {
    fn follow(&mut self, queue: &ExportQueue) {
        let lag = queue.lag();
        let want = catching_up(lag, self.catching_up);
        if want == self.catching_up || (want && self.refused) {
            return;
        }
        let shard = queue.shard();
        if want {
            match set_nice(0) {
                Ok(()) => tracing::info!(
                    shard,
                    lag,
                    "the exporter is behind: it runs at the shards' priority until it has caught up"
                ),
                Err(error) => {
                    self.refused = true;
                    tracing::warn!(
                        shard,
                        lag,
                        %error,
                        "the exporter is behind and may not raise its priority (allow it with \
                         CAP_SYS_NICE or LimitNICE=+0 in the systemd unit)"
                    );
                    return;
                }
            }
        } else {
            let _ = set_nice(EXPORTER_NICE);
            tracing::info!(shard, lag, "the exporter has caught up: back at nice 10");
        }
        self.catching_up = want;
    }
}

/// Starts the exporter thread of a shard, writing what `history` keeps and, with a
/// `history_ttl`, deleting instances that ended longer ago. It runs until the queue is closed
/// and drained.
pub fn spawn(
    target: Target,
    queue: Arc<ExportQueue>,
    history: HistoryLevel,
    history_ttl: Option<Duration>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("ringflow-export-{}", queue.shard()))
        .spawn(move || {
            lower_priority();
            run(&target, &queue, history, history_ttl);
        })
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn run(target: &Target, queue: &ExportQueue, history: HistoryLevel, ttl: Option<Duration>) {
    let shard = queue.shard();
    let open = || {
        let mut exporter = Exporter::open(target, shard)?.with_history(history);
        if ttl.is_some() {
            let started = std::time::Instant::now();
            exporter.index_ended_instances()?;
            let took = started.elapsed();
            if took > Duration::from_secs(1) {
                // The first start with a TTL on a large store: say why the exporter was late.
                tracing::info!(
                    shard,
                    seconds = took.as_secs_f64(),
                    "made the index of ended instances that --history-ttl needs"
                );
            }
        }
        Ok::<_, ColdError>(exporter)
    };
    let mut backoff = 100u64;
    let mut exporter = loop {
        match open() {
            Ok(exporter) => break exporter,
            Err(error) => {
                retry_pause(queue, &error, &mut backoff);
                if queue.queued.lock().is_ok_and(|q| q.closed) {
                    return;
                }
            }
        }
    };
    // When to look for expired history next (at once after the start).
    let mut next_cleanup = ttl.map(|_| std::time::Instant::now());
    let mut priority = Priority {
        catching_up: false,
        refused: false,
    };
    loop {
        let (records, reach) = match queue.take(EXPORT_BATCH_RECORDS, next_cleanup) {
            Taken::Records(records, reach) => (records, reach),
            Taken::Idle => {
                clean_up(&mut exporter, queue, ttl, &mut next_cleanup);
                continue;
            }
            Taken::Closed => break,
        };
        loop {
            match exporter.export(&records, reach) {
                Ok(()) => {
                    backoff = 100;
                    if queue.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(shard, "the cold store accepts writes again");
                    }
                    queue.transactions.fetch_add(1, Ordering::Relaxed);
                    queue.exported.store(exporter.position(), Ordering::Release);
                    break;
                }
                Err(error) => {
                    retry_pause(queue, &error, &mut backoff);
                    if let Ok(reopened) = open() {
                        exporter = reopened;
                    }
                }
            }
        }
        priority.follow(queue);
        // Between export transactions: the history's cleanup, if it is due and the lag
        // leaves room for it.
        if queue.lag() < HISTORY_CLEANUP_LAG_MAX_RECORDS {
            clean_up(&mut exporter, queue, ttl, &mut next_cleanup);
        }
    }
}

/// One history cleanup transaction, if a TTL is set, it is due and the node is not
/// stopping; then when the next is due.
fn clean_up(
    exporter: &mut Exporter,
    queue: &ExportQueue,
    ttl: Option<Duration>,
    next: &mut Option<std::time::Instant>,
) {
    let (Some(ttl), Some(due)) = (ttl, *next) else {
        return;
    };
    let now = std::time::Instant::now();
    if now < due || queue.is_closed() {
        return;
    }
    let cutoff = now_millis().saturating_sub(ttl.as_millis() as i64);
    let interval = Duration::from_millis(HISTORY_CLEANUP_INTERVAL_MILLIS);
    let max = HISTORY_CLEANUP_INSTANCES_PER_TRANSACTION;
    *next = Some(match exporter.clean_up(cutoff, max) {
        Ok(count) => {
            queue.cleaned.fetch_add(count as u64, Ordering::Relaxed);
            if count == max { now } else { now + interval }
        }
        Err(error) => {
            // The next export reports a store that fails and reconnects; this only waits.
            tracing::warn!(shard = queue.shard(), %error, "history cleanup failed; trying again later");
            now + interval
        }
    });
}

fn retry_pause(queue: &ExportQueue, error: &ColdError, backoff: &mut u64) {
    queue.failures.fetch_add(1, Ordering::Relaxed);
    if !queue.failing.swap(true, Ordering::Relaxed) {
        tracing::error!(shard = queue.shard(), %error, "the exporter cannot write; retrying");
    }
    std::thread::sleep(Duration::from_millis(*backoff));
    *backoff = (*backoff * 2).min(EXPORT_RETRY_MILLIS_MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exporter_catches_up_past_its_lag_limit_until_well_under_it() {
        let mut now = false;
        let mut changes = Vec::new();
        for lag in [
            0, 50_000, 100_000, 100_001, 60_000, 25_000, 24_999, 90_000, 100_001,
        ] {
            let next = catching_up(lag, now);
            if next != now {
                changes.push((lag, next));
            }
            now = next;
        }
        assert_eq!(
            changes,
            vec![(100_001, true), (24_999, false), (100_001, true)],
            "past EXPORTER_CATCH_UP_LAG_RECORDS on, under EXPORTER_CATCH_UP_DONE_RECORDS off"
        );
    }
}
