//! The thread-per-core runtime: one glommio executor per shard, pinned to its own CPU.
//!
//! Shard `i` runs on the `i`-th CPU of [`RuntimeConfig::cpus`] (by default the CPUs this
//! process may use, in ascending order), so the mapping from shard to CPU is stable across
//! restarts and does not depend on which thread started first. Each executor is built by
//! `LocalExecutorPoolBuilder` with `PoolPlacement::Custom`, one single-CPU set per shard.
//!
//! | setting | default | why |
//! |---|---|---|
//! | `io_memory_bytes` | 1 MiB per shard | registered with each of glommio's 3 rings, so it is locked 3 times over; batches up to this size use fixed buffers, larger ones fall back to ordinary aligned memory |
//! | `ring_depth` | 128 | the journal has at most one write and two fdatasyncs in flight, plus reads at recovery: 128 leaves room for the network and the exporter later |
//!
//! In each shard, the committer and the timer task run in a task queue with 1000 shares
//! whose latency matters; snapshots run in a queue with 50 shares that does not.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use glommio::{CpuSet, Latency, LocalExecutorPoolBuilder, PoolPlacement, Shares};

use std::collections::HashMap;
use std::sync::Arc;

use crate::cold::{ExportQueue, Target};
use crate::journal::writer::JournalSync;
use crate::mail::{NodeLink, ShardChannels, channel_mesh, run_post};
use crate::metrics::Registry;
use crate::shard::{RecoveryReport, Shard, ShardConfig, recover_exporting};
use crate::storage::dma::DmaDir;

/// Default I/O memory per shard.
pub const IO_MEMORY_BYTES_DEFAULT: usize = 1024 * 1024;
/// Default io_uring submission ring depth.
pub const RING_DEPTH_DEFAULT: usize = 128;
/// Most shards one node runs (shard ids are 12 bits; a node runs at most one per CPU).
pub const SHARDS_MAX: usize = 1024;
/// Most shards in a cluster (shard ids are the top 12 bits of every key).
pub const SHARDS_MAX_CLUSTER: usize = 4096;
/// Shares of the critical task queue (commits, timers, requests).
pub const CRITICAL_SHARES: usize = 1000;
/// Shares of the background task queue (snapshots, later the exporter).
pub const BACKGROUND_SHARES: usize = 50;

/// How the node runs its shards.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The data directory: shard `s` keeps `shard-s/journal/` and `shard-s/snapshots/`.
    pub data_dir: PathBuf,
    /// The cluster-wide id of this node's first shard: the shard on `cpus[i]` has the id
    /// `first_shard + i` (0 on a single node).
    pub first_shard: u16,
    /// The CPU of each shard: `cpus[i]` runs shard `i`; its length is the shard count.
    pub cpus: Vec<usize>,
    /// I/O memory per shard, in bytes.
    pub io_memory_bytes: usize,
    /// io_uring submission ring depth.
    pub ring_depth: usize,
    /// The journal and snapshot settings; the shard id is filled in per shard.
    pub shard: ShardConfig,
    /// The cold store, if any: each shard gets an exporter thread writing to it.
    pub cold_store: Option<Target>,
    /// What the exporters write to the cold store.
    pub history: crate::cold::HistoryLevel,
    /// How long the exporters keep ended process instances in the cold store; `None`: for
    /// good.
    pub history_ttl: Option<Duration>,
    /// Where each shard registers its metrics, if anywhere.
    pub metrics: Option<Arc<Registry>>,
    /// The cluster, when the node is part of one: where the shards of other nodes are, for
    /// mail between shards. Without it the cluster is this node's shards.
    pub topology: Option<ringflow_wire::Topology>,
    /// The scheduler slice of each shard's io_uring worker threads ([`crate::sched`]); `None`
    /// leaves them the kernel's default.
    pub io_worker_slice: Option<Duration>,
}

/// How long a stopping node waits for its exporters to write what is queued; the rest is
/// exported again after the restart.
pub const EXPORT_DRAIN_SECONDS_MAX: u64 = 10;

/// The CPUs this process may run on, in ascending order.
pub fn usable_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes the cpu_set_t we own; CPU_ISSET reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|cpu| libc::CPU_ISSET(*cpu, &set))
            .collect()
    }
}

fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no arguments and only reads the calling thread's state.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// The directory of shard `index` in `data_dir`.
pub fn shard_dir(data_dir: &Path, index: usize) -> PathBuf {
    data_dir.join(format!("shard-{index}"))
}

/// How a shard ended.
pub type ShardResult = Result<(), String>;

/// Runs every shard until its `driver` returns (and what it submitted is durable), the
/// driver fails, or the shard fails. `driver` gets the recovered shard on its own executor. Returns each shard's
/// result, by shard index.
pub fn run<G, F>(config: RuntimeConfig, driver: G) -> Result<Vec<ShardResult>, String>
where
    G: FnOnce(Rc<Shard<DmaDir>>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<(), String>> + 'static,
{
    let shards = config.cpus.len();
    if shards == 0 || shards > SHARDS_MAX {
        return Err(format!("--shards must be 1 to {SHARDS_MAX}, not {shards}"));
    }
    config.shard.journal.check()?;
    let problems = crate::preflight::check_all(shards, config.io_memory_bytes);
    if !problems.is_empty() {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(format!("cannot start the shards:\n{}", listed.join("\n")));
    }
    let mut config = config;
    if config.data_dir.exists() && !config.data_dir.is_dir() {
        return Err(format!(
            "data directory {}: it exists and is not a directory (name another with --data)",
            config.data_dir.display()
        ));
    }
    // glommio opens directories relative to no descriptor: give it an absolute path.
    std::fs::create_dir_all(&config.data_dir)
        .and_then(|()| std::fs::canonicalize(&config.data_dir))
        .map(|absolute| config.data_dir = absolute)
        .map_err(|error| format!("data directory {}: {error}", config.data_dir.display()))?;
    let _lock = DataLock::acquire(&config.data_dir)?;
    let exporters = start_exporters(&config)?;
    let queues: Arc<HashMap<u16, Arc<ExportQueue>>> = Arc::new(
        exporters
            .iter()
            .map(|(queue, _)| (queue.shard(), Arc::clone(queue)))
            .collect(),
    );
    let count = u16::try_from(shards).map_err(|_| "too many shards".to_string())?;
    let mesh: Arc<std::sync::Mutex<std::collections::BTreeMap<u16, ShardChannels>>> = Arc::new(
        std::sync::Mutex::new(channel_mesh(config.first_shard, count)),
    );
    let online = CpuSet::online().map_err(|error| format!("cannot list the CPUs: {error}"))?;
    let mut sets = Vec::with_capacity(shards);
    for cpu in &config.cpus {
        let set = online.clone().filter(|location| location.cpu == *cpu);
        if set.is_empty() {
            return Err(format!("CPU {cpu} is not online"));
        }
        sets.push(set);
    }
    let gate = Arc::new(StartGate::new(shards));
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Custom(sets))
        .name("ringflow-shard")
        .io_memory(config.io_memory_bytes)
        .ring_depth(config.ring_depth)
        .on_all_shards(move || async move {
            let Some(index) =
                current_cpu().and_then(|cpu| config.cpus.iter().position(|c| *c == cpu))
            else {
                let error = "a shard thread is not on its CPU".to_string();
                let _ = gate.arrive(Some(error.clone())).await;
                return (usize::MAX, Err(error));
            };
            let result = run_shard(&config, index, &queues, &mesh, &gate, driver).await;
            (index, result)
        })
        .map_err(|error| format!("cannot start the executors: {error}"))?;
    let joined = handles.join_all();
    stop_exporters(exporters);
    let mut results: Vec<ShardResult> = vec![Err("did not run".to_string()); shards];
    for joined in joined {
        match joined {
            Ok((index, result)) if index < shards => results[index] = result,
            Ok((_, Err(error))) => return Err(error),
            Ok((_, Ok(()))) => return Err("a shard thread did not find its index".to_string()),
            Err(error) => return Err(format!("a shard thread failed: {error}")),
        }
    }
    Ok(results)
}

/// The ids of the shards a node runs.
fn shard_ids(config: &RuntimeConfig) -> Vec<u16> {
    (0..config.cpus.len())
        .filter_map(|index| u16::try_from(index).ok())
        .filter_map(|index| config.first_shard.checked_add(index))
        .collect()
}

/// The name of the lock file in a data directory.
pub const DATA_LOCK_FILE: &str = "LOCK";

/// An exclusive `flock` on `DATA/LOCK`, held while a node runs, so that a second process
/// on the same data directory (which would write the same journals) is refused instead of
/// corrupting them. The kernel drops the lock when the process ends, however it ends, so a
/// crash leaves no stale lock. The file holds the owner's pid, for the refusal's message.
pub struct DataLock {
    _file: std::fs::File,
}

/// The pid of the ringflow process that runs on `data_dir` now, from its `LOCK` file (a
/// pid that is not a running `ringflow`, or this process, counts as none). It reads; it
/// takes no lock.
pub fn running_node(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join(DATA_LOCK_FILE)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    if pid == std::process::id() {
        return None;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "ringflow").then_some(pid)
}

impl DataLock {
    /// Takes the lock of `data_dir` (which exists), or says who holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataLock, String> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let path = data_dir.join(DATA_LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(format!("cannot lock {}: {error}", path.display()));
            }
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            return Err(format!(
                "the data directory {} is in use by another ringflow process{}; two processes \
                 on one data directory would write the same journals",
                data_dir.display(),
                if owner.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {owner})")
                }
            ));
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        Ok(DataLock { _file: file })
    }
}

/// Holds a node's shards after their recovery until every one of them has recovered, so
/// that a node whose shard cannot start (a damaged journal, a changed shard count) stops
/// with that error instead of serving with the shard missing.
struct StartGate {
    shards: usize,
    /// Shards arrived, and the first failure.
    arrived: std::sync::Mutex<(usize, Option<String>)>,
}

impl StartGate {
    /// How often a waiting shard looks at the gate.
    const POLL: Duration = Duration::from_millis(5);

    fn new(shards: usize) -> StartGate {
        StartGate {
            shards,
            arrived: std::sync::Mutex::new((0, None)),
        }
    }

    /// Arrives (with this shard's failure, if it failed) and waits until every shard has
    /// arrived or one failed; returns the first failure.
    async fn arrive(&self, failure: Option<String>) -> Result<(), String> {
        {
            let mut arrived = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
            arrived.0 += 1;
            if let Some(failure) = failure {
                arrived.1.get_or_insert(failure);
            }
        }
        loop {
            {
                let arrived = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(failure) = &arrived.1 {
                    return Err(failure.clone());
                }
                if arrived.0 >= self.shards {
                    return Ok(());
                }
            }
            glommio::timer::sleep(Self::POLL).await;
        }
    }
}

type Exporters = Vec<(Arc<ExportQueue>, std::thread::JoinHandle<()>)>;

/// Prepares the cold store (schema, positions) and starts one exporter thread per shard.
fn start_exporters(config: &RuntimeConfig) -> Result<Exporters, String> {
    let Some(target) = &config.cold_store else {
        return Ok(Vec::new());
    };
    let shards = shard_ids(config);
    let positions = crate::cold::prepare(target, &shards).map_err(|error| {
        let fix = match target {
            crate::cold::Target::Postgres(_) => {
                "start PostgreSQL, fix --cold-store, or run with --cold-store none"
            }
            crate::cold::Target::Sqlite(_) | crate::cold::Target::SqliteShards(_) => {
                "move a file that is not a SQLite database (or a damaged one) away, name \
                 another place with --cold-store, or run with --cold-store none"
            }
        };
        format!(
            "{error}\nthe cold store must be usable at startup (the shards resume from its \
             positions): {fix}"
        )
    })?;
    let mut exporters = Vec::new();
    for (shard, position) in shards.into_iter().zip(positions) {
        let queue = ExportQueue::new(shard, position);
        let thread = crate::cold::exporter::spawn(
            target.clone(),
            Arc::clone(&queue),
            config.history,
            config.history_ttl,
        )
        .map_err(|error| format!("cannot start the exporter of shard {shard}: {error}"))?;
        exporters.push((queue, thread));
    }
    Ok(exporters)
}

/// Lets the exporters write what is queued (for at most [`EXPORT_DRAIN_SECONDS_MAX`]).
fn stop_exporters(exporters: Exporters) {
    let deadline = std::time::Instant::now() + Duration::from_secs(EXPORT_DRAIN_SECONDS_MAX);
    for (queue, _) in &exporters {
        queue.close();
    }
    for (queue, thread) in exporters {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let target = queue.exported() + queue.lag();
        if queue.wait_exported(target, left) {
            let _ = thread.join();
        } else {
            tracing::warn!(
                shard = queue.shard(),
                lag = queue.lag(),
                "the exporter did not finish in time; the rest is exported after the restart"
            );
        }
    }
}

async fn run_shard<G, F>(
    config: &RuntimeConfig,
    index: usize,
    queues: &HashMap<u16, Arc<ExportQueue>>,
    mesh: &std::sync::Mutex<std::collections::BTreeMap<u16, ShardChannels>>,
    gate: &StartGate,
    driver: G,
) -> ShardResult
where
    G: FnOnce(Rc<Shard<DmaDir>>) -> F,
    F: Future<Output = Result<(), String>> + 'static,
{
    let recovered = recover_shard(config, index, queues).await;
    let failed_here = recovered.as_ref().err().cloned();
    let verdict = gate.arrive(failed_here).await;
    let (id, shard, report) = recovered?;
    verdict.map_err(|other| format!("shard {id} not started, since {other}"))?;
    run_recovered(config, id, shard, report, mesh, driver).await
}

/// Opens a shard's directories and recovers it.
async fn recover_shard(
    config: &RuntimeConfig,
    index: usize,
    queues: &HashMap<u16, Arc<ExportQueue>>,
) -> Result<(u16, Shard<DmaDir>, RecoveryReport), String> {
    let id = u16::try_from(index)
        .ok()
        .and_then(|index| config.first_shard.checked_add(index))
        .filter(|id| usize::from(*id) < SHARDS_MAX_CLUSTER)
        .ok_or_else(|| {
            format!(
                "shard {index} of first shard {} is past the last shard id",
                config.first_shard
            )
        })?;
    let dir = shard_dir(&config.data_dir, usize::from(id));
    let journal_dir = DmaDir::open(&dir.join("journal"))
        .await
        .map_err(|e| e.to_string())?
        .write_through(config.shard.journal.sync == JournalSync::Dsync);
    let snapshot_dir = DmaDir::open(&dir.join("snapshots"))
        .await
        .map_err(|e| e.to_string())?;
    let mut shard_config = config.shard;
    shard_config.journal.shard = id;
    shard_config.cluster_shards = match &config.topology {
        Some(topology) => u16::try_from(topology.shard_count())
            .map_err(|_| "the cluster has too many shards".to_string())?,
        None => config.first_shard + u16::try_from(config.cpus.len()).unwrap_or(u16::MAX),
    };
    let export = queues.get(&id).cloned();
    let (shard, report) = recover_exporting(journal_dir, snapshot_dir, shard_config, export)
        .await
        .map_err(|error| format!("shard {id} ({}): {error}", dir.display()))?;
    Ok((id, shard, report))
}

/// Runs a recovered shard until `driver` ends.
async fn run_recovered<G, F>(
    config: &RuntimeConfig,
    id: u16,
    shard: Shard<DmaDir>,
    report: RecoveryReport,
    mesh: &std::sync::Mutex<std::collections::BTreeMap<u16, ShardChannels>>,
    driver: G,
) -> ShardResult
where
    G: FnOnce(Rc<Shard<DmaDir>>) -> F,
    F: Future<Output = Result<(), String>> + 'static,
{
    if let Some((position, again)) = report.exported {
        tracing::info!(shard = id, position, again, "cold store exporter resumes");
    }
    if let Some((first, last)) = report.export_gap {
        tracing::warn!(
            shard = id,
            first,
            last,
            "the cold store is behind every snapshot: LSNs first..=last cannot be exported \
             (was the store replaced?)"
        );
    }
    if let Some(registry) = &config.metrics {
        registry.register(shard.metrics(), shard.export_queue());
    }
    tracing::info!(
        shard = id,
        snapshot = ?report.snapshot,
        replayed = report.replayed,
        torn_tail = ?report.torn_tail,
        spare_segments = report.spares,
        prefilled_segments = report.prefilled,
        durable_lsn = report.durable_lsn,
        "recovered"
    );
    for (name, reason) in &report.skipped_snapshots {
        tracing::warn!(shard = id, %name, %reason, "skipped a damaged snapshot");
    }
    let shard = Rc::new(shard);
    let executor = glommio::executor();
    let critical = executor.create_task_queue(
        Shares::Static(CRITICAL_SHARES),
        Latency::Matters(Duration::from_millis(1)),
        "critical",
    );
    let background = executor.create_task_queue(
        Shares::Static(BACKGROUND_SHARES),
        Latency::NotImportant,
        "background",
    );
    let spawn_error = |error: glommio::GlommioError<()>| error.to_string();
    let committer =
        glommio::spawn_local_into(shard.clone().run_committer(), critical).map_err(spawn_error)?;
    glommio::spawn_local_into(shard.clone().run_timers(), critical)
        .map_err(spawn_error)?
        .detach();
    glommio::spawn_local_into(shard.clone().run_snapshots(), background)
        .map_err(spawn_error)?
        .detach();
    if let Some(slice) = config.io_worker_slice {
        let sliced = crate::sched::run_io_worker_slices(id, slice, shard.metrics());
        glommio::spawn_local_into(sliced, background)
            .map_err(spawn_error)?
            .detach();
    }
    let channels = mesh
        .lock()
        .map_err(|_| "the channel mesh is poisoned".to_string())?
        .remove(&id)
        .ok_or_else(|| format!("shard {id} has no channels"))?;
    let link = NodeLink::start(shard.clone(), channels, config.topology.clone());
    glommio::spawn_local_into(run_post(shard.clone(), Rc::new(link)), critical)
        .map_err(spawn_error)?
        .detach();
    let driven = glommio::spawn_local_into(driver(shard.clone()), critical).map_err(spawn_error)?;
    let ended = futures_lite::future::or(async { Err(committer.await.to_string()) }, driven).await;
    match (ended, shard.stopped()) {
        (Err(error), _) => Err(format!("shard {id}: {error}")),
        (Ok(()), Some(reason)) => Err(format!("shard {id}: {reason}")),
        (Ok(()), None) => Ok(()),
    }
}
