//! A short scheduler slice for the shard's io_uring worker threads (`--io-worker-slice-us`).
//!
//! io_uring cannot run an fdatasync without blocking, so it hands each one to a kernel worker
//! thread of the submitting thread, named `iou-wrk-TID` after it. The shard's thread is pinned,
//! and its workers run on the same CPU. When an fdatasync's worker is woken (to start the sync,
//! or when the device answers), it is queued behind the shard's thread: with Linux's EEVDF
//! scheduler it waits, on average, half of the shard's slice (the default slice is
//! `sched_base_slice`, 0.75 ms times 1 + log2 of the CPU count). `perf sched latency` measured
//! 0.79 ms on average and 3.6 ms at most at 50,000 instances/s on the 2-CPU VM of
//! bench/RESULTS.md, while the shard itself waited 0.021 ms: the commit waits for its worker.
//!
//! Linux 6.12 and later take a `SCHED_OTHER` thread's slice from `sched_attr.sched_runtime`
//! (clamped to 100 µs to 100 ms). A woken thread with a shorter slice gets an earlier virtual
//! deadline and preempts the running one at once; it still gets no more than its fair share of
//! the CPU. With the option set, each shard gives that slice to its own workers, and to nothing
//! else: a short slice for the whole server made p99 worse (RESULTS.md).
//!
//! The workers come and go (io_uring starts one when every one it has is busy and ends one that
//! has been idle for some seconds), so every [`SCAN_INTERVAL`] the shard lists
//! `/proc/self/task`, reads the name of each thread it has not seen before, and sets the slice
//! on those named after its own thread. Nothing of procfs is on a disk; a scan that finds no new
//! thread is one `getdents`. A worker started between two scans runs with the default slice
//! until the next.
//!
//! A thread's other scheduling settings (policy, nice, reset-on-fork) are read first and kept;
//! threads that are not `SCHED_OTHER` or `SCHED_BATCH` (someone chose a real-time or idle
//! policy for them) are left alone. If the kernel keeps the default slice (before 6.12), or
//! refuses the call (a seccomp filter), the shard logs why once and stops trying; the gauge
//! `ringflow_io_workers_sliced` says how many of a shard's workers have the slice now.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::metrics::ShardMetrics;

/// How often a shard looks for new io_uring workers.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(100);
/// The shortest slice Linux takes (it clamps shorter ones up to it), in microseconds.
pub const IO_WORKER_SLICE_MICROS_MIN: u64 = 100;
/// The longest slice Linux takes (it clamps longer ones down to it), in microseconds.
pub const IO_WORKER_SLICE_MICROS_MAX: u64 = 100_000;

/// The longest thread name (`comm`) the kernel keeps: TASK_COMM_LEN less the NUL.
const COMM_BYTES_MAX: usize = 15;
const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;
const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;
/// `SCHED_ATTR_SIZE_VER1`: the layout below.
const SCHED_ATTR_SIZE: u32 = 56;

/// `struct sched_attr` of `<linux/sched/types.h>`, version 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

fn get_attr(tid: i32) -> std::io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    // SAFETY: sched_getattr writes at most SCHED_ATTR_SIZE bytes into the struct we own, whose
    // layout is the kernel's.
    let result = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid,
            &mut attr as *mut SchedAttr,
            SCHED_ATTR_SIZE,
            0u32,
        )
    };
    if result == 0 {
        Ok(attr)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_attr(tid: i32, attr: &SchedAttr) -> std::io::Result<()> {
    // SAFETY: sched_setattr reads `attr.size` bytes of the struct, which has that layout.
    let result =
        unsafe { libc::syscall(libc::SYS_sched_setattr, tid, attr as *const SchedAttr, 0u32) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's id.
pub fn current_tid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// The slice of thread `tid` as the kernel reports it, in nanoseconds: for a `SCHED_OTHER`
/// thread on Linux 6.12 or later its slice, on older kernels 0.
pub fn thread_slice_nanos(tid: i32) -> std::io::Result<u64> {
    get_attr(tid).map(|attr| attr.runtime)
}

/// Whether this kernel takes a `SCHED_OTHER` thread's slice from `sched_runtime`: tried on a
/// thread started for it, so no thread of the caller changes.
pub fn kernel_takes_slices() -> std::io::Result<bool> {
    std::thread::Builder::new()
        .name("ringflow-probe".to_string())
        .spawn(|| {
            let asked = IO_WORKER_SLICE_MICROS_MIN * 1000;
            let attr = SchedAttr {
                size: SCHED_ATTR_SIZE,
                policy: SCHED_OTHER,
                runtime: asked,
                ..SchedAttr::default()
            };
            set_attr(0, &attr)?;
            Ok(get_attr(0)?.runtime == asked)
        })?
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the probe thread panicked")))
}

/// The name io_uring gives the workers of thread `owner`, as `comm` shows it.
pub fn worker_comm(owner: i32) -> String {
    let mut name = format!("iou-wrk-{owner}");
    name.truncate(COMM_BYTES_MAX);
    name
}

/// Why a shard stopped giving its workers the slice.
#[derive(Debug)]
pub enum SliceError {
    /// The kernel took the call but kept another slice: it does not honour
    /// `sched_attr.sched_runtime` for `SCHED_OTHER` threads.
    Ignored { tid: i32, asked: u64, kept: u64 },
    /// A system call failed.
    Os { what: String, error: std::io::Error },
}

impl std::fmt::Display for SliceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SliceError::Ignored { tid, asked, kept } => write!(
                f,
                "the kernel kept a slice of {kept} ns for thread {tid} where {asked} ns was \
                 asked: it does not take sched_attr.sched_runtime for SCHED_OTHER threads \
                 (Linux 6.12 or later does), so --io-worker-slice-us has no effect here"
            ),
            SliceError::Os { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for SliceError {}

/// What a scan knows of a thread it has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// One of the owner's workers, now with the slice.
    Sliced,
    /// Anything else, or a worker whose policy is not ours to change.
    Other,
}

/// Gives the io_uring workers of one thread a slice, a scan at a time.
#[derive(Debug)]
pub struct WorkerSlicer {
    comm: String,
    slice_nanos: u64,
    seen: HashMap<i32, Seen>,
}

impl WorkerSlicer {
    /// Gives the workers of thread `owner` a slice of `slice`.
    pub fn new(owner: i32, slice: Duration) -> WorkerSlicer {
        WorkerSlicer {
            comm: worker_comm(owner),
            slice_nanos: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
            seen: HashMap::new(),
        }
    }

    /// Looks at the threads of this process not seen before and gives the slice to those that
    /// are the owner's workers; forgets threads that have ended. Returns how many of the
    /// owner's workers have the slice now.
    pub fn scan(&mut self) -> Result<usize, SliceError> {
        let tasks = std::fs::read_dir("/proc/self/task").map_err(|error| SliceError::Os {
            what: "cannot list /proc/self/task".to_string(),
            error,
        })?;
        let mut alive = Vec::new();
        for entry in tasks.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
            else {
                continue;
            };
            alive.push(tid);
            if self.seen.contains_key(&tid) {
                continue;
            }
            // A thread that ends between the listing and here is skipped: it is not listed the
            // next time.
            let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
                continue;
            };
            let seen = if comm.trim_end_matches('\n') == self.comm {
                match self.give_slice(tid)? {
                    Some(seen) => seen,
                    None => continue,
                }
            } else {
                Seen::Other
            };
            self.seen.insert(tid, seen);
        }
        alive.sort_unstable();
        self.seen.retain(|tid, _| alive.binary_search(tid).is_ok());
        Ok(self
            .seen
            .values()
            .filter(|seen| **seen == Seen::Sliced)
            .count())
    }

    /// Sets the slice of worker `tid`, keeping its other settings. `None`: the thread ended.
    fn give_slice(&self, tid: i32) -> Result<Option<Seen>, SliceError> {
        let gone = |error: &std::io::Error| error.raw_os_error() == Some(libc::ESRCH);
        let attr = match get_attr(tid) {
            Ok(attr) => attr,
            Err(error) if gone(&error) => return Ok(None),
            Err(error) => {
                return Err(SliceError::Os {
                    what: format!("sched_getattr of io_uring worker {tid}"),
                    error,
                });
            }
        };
        if attr.policy != SCHED_OTHER && attr.policy != SCHED_BATCH {
            return Ok(Some(Seen::Other));
        }
        let wanted = SchedAttr {
            size: SCHED_ATTR_SIZE,
            policy: attr.policy,
            flags: attr.flags & SCHED_FLAG_RESET_ON_FORK,
            nice: attr.nice,
            runtime: self.slice_nanos,
            ..SchedAttr::default()
        };
        match set_attr(tid, &wanted) {
            Ok(()) => {}
            Err(error) if gone(&error) => return Ok(None),
            Err(error) => {
                return Err(SliceError::Os {
                    what: format!("sched_setattr of io_uring worker {tid}"),
                    error,
                });
            }
        }
        match get_attr(tid) {
            Ok(now) if now.runtime == self.slice_nanos => Ok(Some(Seen::Sliced)),
            Ok(now) => Err(SliceError::Ignored {
                tid,
                asked: self.slice_nanos,
                kept: now.runtime,
            }),
            Err(error) if gone(&error) => Ok(None),
            Err(error) => Err(SliceError::Os {
                what: format!("sched_getattr of io_uring worker {tid}"),
                error,
            }),
        }
    }
}

/// Gives the calling shard thread's io_uring workers `slice`, every [`SCAN_INTERVAL`], until
/// the shard stops; sets `ringflow_io_workers_sliced`. Run it on the shard's executor.
pub async fn run_io_worker_slices(shard: u16, slice: Duration, metrics: Arc<ShardMetrics>) {
    let mut slicer = WorkerSlicer::new(current_tid(), slice);
    loop {
        match slicer.scan() {
            Ok(sliced) => metrics.io_workers_sliced.store(sliced as u64, Relaxed),
            Err(error) => {
                metrics.io_workers_sliced.store(0, Relaxed);
                tracing::warn!(
                    shard,
                    %error,
                    "io_uring workers keep the default slice"
                );
                return;
            }
        }
        glommio::timer::sleep(SCAN_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts a thread named `name` that lives until the returned sender is dropped; returns
    /// its id.
    fn named_thread(
        name: &str,
    ) -> (
        i32,
        std::sync::mpsc::Sender<()>,
        std::thread::JoinHandle<()>,
    ) {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                tid_tx.send(current_tid()).unwrap();
                let _ = stop_rx.recv();
            })
            .unwrap();
        (tid_rx.recv().unwrap(), stop_tx, handle)
    }

    #[test]
    fn the_probe_leaves_the_caller_alone() {
        let before = thread_slice_nanos(current_tid()).unwrap();
        let takes = kernel_takes_slices().unwrap();
        assert_eq!(thread_slice_nanos(current_tid()).unwrap(), before);
        // Linux reports a SCHED_OTHER thread's slice from 6.12 on, and 0 before.
        assert_eq!(takes, before != 0);
    }

    #[test]
    fn worker_names_are_cut_as_the_kernel_cuts_them() {
        assert_eq!(worker_comm(4242), "iou-wrk-4242");
        assert_eq!(worker_comm(1234567), "iou-wrk-1234567");
        assert_eq!(worker_comm(12345678), "iou-wrk-1234567");
    }

    /// Threads named like the workers of an owner get the slice; a thread named like another
    /// thread's worker and the owner itself keep theirs; a worker that ends is forgotten.
    #[test]
    fn only_the_owners_workers_get_the_slice() {
        let owner = current_tid();
        let before = thread_slice_nanos(owner).unwrap();
        let (mine, stop_mine, mine_handle) = named_thread(&worker_comm(owner));
        let (theirs, stop_theirs, theirs_handle) = named_thread(&worker_comm(owner + 1));
        let theirs_before = thread_slice_nanos(theirs).unwrap();
        let slice = Duration::from_micros(IO_WORKER_SLICE_MICROS_MIN);
        let mut slicer = WorkerSlicer::new(owner, slice);
        match slicer.scan() {
            Ok(sliced) => {
                assert_eq!(sliced, 1);
                assert_eq!(thread_slice_nanos(mine).unwrap(), 100_000);
                assert_eq!(thread_slice_nanos(theirs).unwrap(), theirs_before);
                assert_eq!(thread_slice_nanos(owner).unwrap(), before);
                assert_eq!(slicer.scan().unwrap(), 1, "a second scan sets nothing new");
                drop(stop_mine);
                mine_handle.join().unwrap();
                // `join` returns once the thread has exited, which can be a moment before the
                // kernel removes it from /proc/self/task (a CI run once saw it there): wait
                // for that, up to 10 s.
                let task = format!("/proc/self/task/{mine}");
                for _ in 0..1_000 {
                    if !std::path::Path::new(&task).exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(!std::path::Path::new(&task).exists(), "{task} stays");
                assert_eq!(slicer.scan().unwrap(), 0, "an ended worker is forgotten");
            }
            Err(SliceError::Ignored { tid, kept, .. }) => {
                // A kernel before 6.12: the slice is refused by being ignored, which the scan
                // must say.
                assert_eq!(tid, mine);
                assert_ne!(kept, 100_000);
                say!("this kernel ignores sched_runtime for SCHED_OTHER: checked the error");
            }
            Err(error) => panic!("scan failed: {error}"),
        }
        drop(stop_theirs);
        theirs_handle.join().unwrap();
    }

    /// A worker someone put under another policy (here SCHED_IDLE) keeps it.
    #[test]
    fn workers_under_other_policies_are_left_alone() {
        let owner = current_tid();
        let (mine, stop, handle) = named_thread(&worker_comm(owner));
        let idle = SchedAttr {
            size: SCHED_ATTR_SIZE,
            policy: libc::SCHED_IDLE as u32,
            ..SchedAttr::default()
        };
        set_attr(mine, &idle).unwrap();
        let mut slicer = WorkerSlicer::new(owner, Duration::from_micros(100));
        assert_eq!(slicer.scan().unwrap(), 0);
        let attr = get_attr(mine).unwrap();
        assert_eq!(attr.policy, libc::SCHED_IDLE as u32);
        drop(stop);
        handle.join().unwrap();
    }

    /// The real thing: a glommio executor's fdatasyncs run on io_uring workers named after its
    /// thread, and the slicer run on it gives them the slice.
    #[test]
    fn a_glommio_executors_fdatasync_workers_get_the_slice() {
        let dir = std::env::temp_dir().join(format!("ringflow-sched-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("synced");
        let result = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let file = glommio::io::DmaFile::create(&path).await.unwrap();
                let mut buffer = file.alloc_dma_buffer(4096);
                buffer.as_bytes_mut().fill(7);
                let mut buffer = Some(buffer);
                let mut slicer = WorkerSlicer::new(current_tid(), Duration::from_micros(100));
                let mut sliced = 0;
                for round in 0..200u64 {
                    let written = file.write_at(buffer.take().unwrap(), round * 4096).await;
                    assert_eq!(written.unwrap(), 4096);
                    file.fdatasync().await.unwrap();
                    buffer = Some(file.alloc_dma_buffer(4096));
                    sliced = match slicer.scan() {
                        Ok(sliced) => sliced,
                        Err(SliceError::Ignored { .. }) => return (0, true),
                        Err(error) => panic!("scan failed: {error}"),
                    };
                    if sliced > 0 {
                        break;
                    }
                }
                file.close().await.unwrap();
                (sliced, false)
            })
            .unwrap()
            .join()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            (_, true) => say!("this kernel ignores sched_runtime for SCHED_OTHER"),
            (sliced, false) => assert!(
                sliced >= 1,
                "200 fdatasyncs showed no io_uring worker named after the executor's thread"
            ),
        }
    }
}
