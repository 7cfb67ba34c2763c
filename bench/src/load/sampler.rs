//! What the machine did in each second of a run: for the server and for the generator, the
//! time of their CPUs (busy, interrupts, idle, stolen by the hypervisor), the CPU time of
//! the process and how long its threads waited for a CPU; and the writes and flushes of the
//! disk under the server's data directory.
//!
//! A latency figure alone cannot say why one second was slow. Read next to the run's
//! `timeline`, these say whether the engine was short of CPU (steal, others busy on its
//! CPU, run-queue delay) or waiting for the disk (flush time). Everything comes from
//! `/proc` (`stat`, `<pid>/stat`, `<pid>/task/*/schedstat`, `diskstats`), read once a
//! second by a thread of the generator; CPU times are in the kernel's ticks (`USER_HZ`,
//! usually 10 ms), so a second's CPU figures are good to a tick.
//!
//! For a server it started, the same thread also reads the server's own latency histograms
//! from its `--metrics` endpoint each second (`ringflow_request_latency_seconds`: a request
//! read to its answer queued, a create to durable; `ringflow_commit_latency_seconds`: a
//! batch's first record to durable), summed over its shards, and counts how many in the
//! second took over 2.5 and over 5 ms: the server's side of the end-to-end tail.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringflow_shard::preflight::{CpuTicks, cpu_ticks};
use serde::Serialize;

/// One second of the machine, the deltas over it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MachineSecond {
    /// Seconds since sampling began (within milliseconds of the run's start), at this
    /// second's end: it lines up with the run timeline's `at_s`.
    pub at_s: u64,
    /// Time the server's CPUs ran tasks (user, nice and system), summed over them, in ms.
    pub cpu_busy_ms: u64,
    /// Time they served interrupts (irq and softirq), in ms.
    pub cpu_irq_ms: u64,
    /// Time they were idle (iowait included), in ms.
    pub cpu_idle_ms: u64,
    /// Time the hypervisor ran something else while they had work, in ms (0 on bare metal).
    pub cpu_steal_ms: u64,
    /// CPU time of the server process (user and system), in ms. `cpu_busy_ms` less this is
    /// what other tasks took on the server's CPUs.
    pub server_ms: u64,
    /// Time the server's threads were runnable but waited for a CPU, in ms.
    pub server_run_delay_ms: u64,
    /// The same four for the generator's CPUs: busy, interrupts, idle and stolen, in ms.
    pub generator_cpu_busy_ms: u64,
    /// Interrupts on the generator's CPUs, in ms (the disk's may be served there).
    pub generator_cpu_irq_ms: u64,
    /// Idle time of the generator's CPUs, in ms.
    pub generator_cpu_idle_ms: u64,
    /// Time stolen from the generator's CPUs, in ms.
    pub generator_cpu_steal_ms: u64,
    /// CPU time of the generator process, in ms.
    pub generator_ms: u64,
    /// Time the generator's threads waited for a CPU, in ms: a generator kept off its CPU
    /// sends late, and the latency it measures (from when each instance was due) grows.
    pub generator_run_delay_ms: u64,
    /// Writes the disk completed.
    pub disk_writes: u64,
    /// Time spent in those writes, summed over them, in ms.
    pub disk_write_ms: u64,
    /// Cache flushes the disk completed (what fdatasync waits for).
    pub disk_flushes: u64,
    /// Time spent in those flushes, summed over them, in ms.
    pub disk_flush_ms: u64,
    /// Time the disk had requests in flight, in ms.
    pub disk_busy_ms: u64,
    /// Requests the server answered (creates: made durable), from its metrics.
    pub server_requests: u64,
    /// Of those, how many took over 2.5 ms inside the server.
    pub server_requests_over_2_5ms: u64,
    /// And over 5 ms.
    pub server_requests_over_5ms: u64,
    /// Group commits the server made durable.
    pub server_commits: u64,
    /// Of those, how many took over 2.5 ms from their first record to durable.
    pub server_commits_over_2_5ms: u64,
    /// And over 5 ms.
    pub server_commits_over_5ms: u64,
    /// Pushes of jobs to subscriptions (each an activation, committed).
    pub server_pushes: u64,
    /// Of those, how many took over 5 ms from activation to queued.
    pub server_pushes_over_5ms: u64,
    /// Writes of answers to sockets.
    pub server_answer_writes: u64,
    /// Of those, how many returned over 5 ms after their oldest answer was queued.
    pub server_answer_writes_over_5ms: u64,
}

/// What is sampled: the server and the generator (each a process and its CPUs), and the
/// disk of the server's data directory.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// The server process (none: a server at `--addr`, whose process is not known).
    pub pid: Option<u32>,
    /// The server's CPUs (empty: none known).
    pub cpus: Vec<usize>,
    /// The generator process.
    pub generator_pid: Option<u32>,
    /// The generator's CPUs.
    pub generator_cpus: Vec<usize>,
    /// The disk as `major:minor` in `/proc/diskstats` (none: not known).
    pub disk: Option<(u32, u32)>,
    /// The server's metrics endpoint, `HOST:PORT` (none: not read).
    pub metrics: Option<String>,
}

/// A sampling thread; [`Sampler::finish`] stops it and returns its seconds.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<MachineSecond>>>,
}

impl Sampler {
    /// Starts sampling `target` every second (the thread takes the caller's CPU affinity).
    pub fn start(target: Target) -> std::io::Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("machine-sampler".into())
            .spawn(move || sample(&target, &flag))?;
        Ok(Sampler {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (within 50 ms) and returns the whole seconds it sampled.
    pub fn finish(mut self) -> Vec<MachineSecond> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn sample(target: &Target, stop: &AtomicBool) -> Vec<MachineSecond> {
    let tick_ms = 1000 / clock_ticks_per_second();
    let start = Instant::now();
    let mut seconds = Vec::new();
    let mut before = Reading::take(target);
    let mut next = 1u64;
    loop {
        // A second that is due is read even when told to stop (late, if this thread was
        // kept off the CPU), so that no whole second goes missing.
        let due = start + Duration::from_secs(next);
        let now = Instant::now();
        if now >= due {
            let after = Reading::take(target);
            seconds.push(after.since(&before, next, tick_ms));
            before = after;
            next += 1;
        } else if stop.load(Ordering::Relaxed) {
            return seconds;
        } else {
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
    }
}

/// The counters of one process and its CPUs at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
struct Side {
    /// Over the CPUs.
    cpu: CpuTicks,
    /// The process's utime + stime, in ticks.
    ticks: u64,
    /// Per thread, the run-queue wait in ns.
    run_delay_ns: HashMap<u64, u64>,
}

impl Side {
    fn take(stat: &str, pid: Option<u32>, cpus: &[usize]) -> Side {
        let mut side = Side {
            cpu: cpu_ticks(stat, cpus),
            ..Side::default()
        };
        let Some(pid) = pid else {
            return side;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            side.ticks = process_ticks(&stat).unwrap_or(0);
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                    continue;
                };
                if let Some(delay) = std::fs::read_to_string(task.path().join("schedstat"))
                    .ok()
                    .and_then(|text| run_delay_ns(&text))
                {
                    side.run_delay_ns.insert(tid, delay);
                }
            }
        }
        side
    }

    /// CPU busy, irq, idle and steal in ms, the process's ms and its run delay in ms.
    fn since(&self, before: &Side, tick_ms: u64) -> ([u64; 4], u64, u64) {
        let d = |after: u64, before: u64| after.saturating_sub(before);
        // A thread that appeared in this second waited from zero.
        let run_delay_ns: u64 = self
            .run_delay_ns
            .iter()
            .map(|(tid, after)| d(*after, before.run_delay_ns.get(tid).copied().unwrap_or(0)))
            .sum();
        (
            [
                d(self.cpu.busy, before.cpu.busy) * tick_ms,
                d(self.cpu.irq, before.cpu.irq) * tick_ms,
                d(self.cpu.idle, before.cpu.idle) * tick_ms,
                d(self.cpu.steal, before.cpu.steal) * tick_ms,
            ],
            d(self.ticks, before.ticks) * tick_ms,
            run_delay_ns / 1_000_000,
        )
    }
}

/// The counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
struct Reading {
    server: Side,
    generator: Side,
    /// writes, write ms, flushes, flush ms, busy ms.
    disk: [u64; 5],
    /// The server's histograms, cumulative, each as (all, within 2.5 ms, within 5 ms):
    /// requests, commits, pushes, answer writes.
    latency: [u64; 12],
}

impl Reading {
    fn take(target: &Target) -> Reading {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let mut reading = Reading {
            server: Side::take(&stat, target.pid, &target.cpus),
            generator: Side::take(&stat, target.generator_pid, &target.generator_cpus),
            disk: [0; 5],
            latency: [0; 12],
        };
        if let Some(addr) = &target.metrics
            && let Some(text) = scrape(addr)
        {
            reading.latency = latency_counts(&text);
        }
        if let Some(disk) = target.disk
            && let Ok(stats) = std::fs::read_to_string("/proc/diskstats")
        {
            reading.disk = disk_counters(&stats, disk).unwrap_or_default();
        }
        reading
    }

    fn since(&self, before: &Reading, at_s: u64, tick_ms: u64) -> MachineSecond {
        let d = |after: u64, before: u64| after.saturating_sub(before);
        // A server histogram's counts in the second: all of them, and those past a bound
        // (`latency[all]` less `latency[within]`, the count within it).
        let all = |index: usize| d(self.latency[index], before.latency[index]);
        let over = |all: usize, within: usize| {
            d(
                self.latency[all] - self.latency[within],
                before.latency[all] - before.latency[within],
            )
        };
        let (cpu, server_ms, server_run_delay_ms) = self.server.since(&before.server, tick_ms);
        let (gen_cpu, generator_ms, generator_run_delay_ms) =
            self.generator.since(&before.generator, tick_ms);
        MachineSecond {
            at_s,
            cpu_busy_ms: cpu[0],
            cpu_irq_ms: cpu[1],
            cpu_idle_ms: cpu[2],
            cpu_steal_ms: cpu[3],
            server_ms,
            server_run_delay_ms,
            generator_cpu_busy_ms: gen_cpu[0],
            generator_cpu_irq_ms: gen_cpu[1],
            generator_cpu_idle_ms: gen_cpu[2],
            generator_cpu_steal_ms: gen_cpu[3],
            generator_ms,
            generator_run_delay_ms,
            disk_writes: d(self.disk[0], before.disk[0]),
            disk_write_ms: d(self.disk[1], before.disk[1]),
            disk_flushes: d(self.disk[2], before.disk[2]),
            disk_flush_ms: d(self.disk[3], before.disk[3]),
            disk_busy_ms: d(self.disk[4], before.disk[4]),
            server_requests: all(0),
            server_requests_over_2_5ms: over(0, 1),
            server_requests_over_5ms: over(0, 2),
            server_commits: all(3),
            server_commits_over_2_5ms: over(3, 4),
            server_commits_over_5ms: over(3, 5),
            server_pushes: all(6),
            server_pushes_over_5ms: over(6, 8),
            server_answer_writes: all(9),
            server_answer_writes_over_5ms: over(9, 11),
        }
    }
}

/// The text of `GET /metrics` at `addr`, or none (within a second).
fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let timeout = Duration::from_secs(1);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: ringflow\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

/// From a metrics text: requests in all, within 2.5 ms and within 5 ms, then the same for
/// commits, pushes and answer writes, each summed over the shards (cumulative counts since
/// the server started).
fn latency_counts(text: &str) -> [u64; 12] {
    let mut counts = [0u64; 12];
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        for (name, first) in [
            ("ringflow_request_latency_seconds", 0),
            ("ringflow_commit_latency_seconds", 3),
            ("ringflow_push_latency_seconds", 6),
            ("ringflow_answer_write_seconds", 9),
        ] {
            let Some(rest) = series.strip_prefix(name) else {
                continue;
            };
            if rest.starts_with("_count{") {
                counts[first] += value;
            } else if rest.starts_with("_bucket{") && rest.ends_with(",le=\"0.0025\"}") {
                counts[first + 1] += value;
            } else if rest.starts_with("_bucket{") && rest.ends_with(",le=\"0.005\"}") {
                counts[first + 2] += value;
            }
        }
    }
    counts
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory effects.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).clamp(1, 1000) as u64
}

/// utime + stime of a `/proc/<pid>/stat` line, in ticks.
fn process_ticks(stat: &str) -> Option<u64> {
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The run-queue wait of a `schedstat` line: `<run ns> <wait ns> <timeslices>`.
fn run_delay_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().nth(1)?.parse().ok()
}

/// Writes completed, ms writing, flushes completed, ms flushing and ms busy of one device
/// in `/proc/diskstats` (flushes need Linux 5.5 or later; zeros before).
fn disk_counters(stats: &str, (major, minor): (u32, u32)) -> Option<[u64; 5]> {
    stats.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 14 || f[0].parse() != Ok(major) || f[1].parse() != Ok(minor) {
            return None;
        }
        // After major, minor and name: the 1-based fields of the kernel's iostats.rst.
        let at = |n: usize| f.get(n + 2).and_then(|v| v.parse().ok()).unwrap_or(0);
        Some([at(5), at(8), at(16), at(17), at(10)])
    })
}

/// The whole disk under `path`, as `major:minor`: a partition's parent disk, whose
/// counters hold the flushes. None where the filesystem has no block device of its own
/// (major 0: overlayfs, tmpfs, btrfs subvolumes), whose disk cannot be told this way.
pub fn disk_of(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    if major == 0 {
        return None;
    }
    let sys = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if sys.join("partition").exists()
        && let Ok(parent) = std::fs::read_to_string(sys.join("../dev"))
        && let Some((a, b)) = parent.trim().split_once(':')
        && let (Ok(a), Ok(b)) = (a.parse(), b.parse())
    {
        return Some((a, b));
    }
    Some((major, minor))
}

/// Totals over the seconds, for the one-line summary.
pub fn summary(seconds: &[MachineSecond]) -> String {
    let sum = |f: fn(&MachineSecond) -> u64| seconds.iter().map(f).sum::<u64>();
    let worst = |f: fn(&MachineSecond) -> u64| seconds.iter().map(f).max().unwrap_or(0);
    let busy = sum(|s| s.cpu_busy_ms);
    let server = sum(|s| s.server_ms);
    format!(
        "over {} s: server CPUs busy {} ms (the server {} ms, others {} ms), irq {} ms, stolen {} ms (worst second {} ms); server threads waited {} ms for a CPU (worst second {} ms); generator CPUs busy {} ms (the generator {} ms), irq {} ms, stolen {} ms; generator threads waited {} ms for a CPU (worst second {} ms); disk {} flushes taking {} ms (worst second {} ms)",
        seconds.len(),
        busy,
        server,
        busy.saturating_sub(server),
        sum(|s| s.cpu_irq_ms),
        sum(|s| s.cpu_steal_ms),
        worst(|s| s.cpu_steal_ms),
        sum(|s| s.server_run_delay_ms),
        worst(|s| s.server_run_delay_ms),
        sum(|s| s.generator_cpu_busy_ms),
        sum(|s| s.generator_ms),
        sum(|s| s.generator_cpu_irq_ms),
        sum(|s| s.generator_cpu_steal_ms),
        sum(|s| s.generator_run_delay_ms),
        worst(|s| s.generator_run_delay_ms),
        sum(|s| s.disk_flushes),
        sum(|s| s.disk_flush_ms),
        worst(|s| s.disk_flush_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ticks_skip_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (ring flow) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3";
        assert_eq!(process_ticks(stat), Some(325));
        assert_eq!(process_ticks("garbage"), None);
    }

    #[test]
    fn latency_counts_sum_the_shards_buckets() {
        let text = "\
# HELP ringflow_request_latency_seconds x
ringflow_request_latency_seconds_bucket{shard=\"0\",le=\"0.001\"} 5
ringflow_request_latency_seconds_bucket{shard=\"0\",le=\"0.0025\"} 8
ringflow_request_latency_seconds_bucket{shard=\"0\",le=\"0.005\"} 9
ringflow_request_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 10
ringflow_request_latency_seconds_sum{shard=\"0\"} 0.02
ringflow_request_latency_seconds_count{shard=\"0\"} 10
ringflow_request_latency_seconds_bucket{shard=\"1\",le=\"0.0025\"} 20
ringflow_request_latency_seconds_bucket{shard=\"1\",le=\"0.005\"} 20
ringflow_request_latency_seconds_count{shard=\"1\"} 20
ringflow_commit_latency_seconds_bucket{shard=\"0\",le=\"0.0025\"} 3
ringflow_commit_latency_seconds_bucket{shard=\"0\",le=\"0.005\"} 4
ringflow_commit_latency_seconds_count{shard=\"0\"} 4
ringflow_journal_fdatasync_seconds_count{shard=\"0\"} 99
";
        assert_eq!(
            latency_counts(text),
            [30, 28, 29, 4, 3, 4, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(latency_counts("garbage"), [0; 12]);
    }

    #[test]
    fn run_delay_is_the_second_schedstat_field() {
        assert_eq!(run_delay_ns("989051 7000 1\n"), Some(7000));
        assert_eq!(run_delay_ns("989051"), None);
    }

    #[test]
    fn disk_counters_come_from_the_device_named_with_flushes() {
        let stats = " 254       0 vda 6252053 424402 921384506 9517693 62073190 705902 2209062048 7488904 0 3887504 18187658 487340 95 1457063488 181594 24580803 999465\n \
                     254       1 vda1 1 2 3 4 5 6 7 8 0 10 11\n";
        assert_eq!(
            disk_counters(stats, (254, 0)),
            Some([62073190, 7488904, 24580803, 999465, 3887504])
        );
        // An old kernel's line, without discard and flush fields: flushes read as zero.
        assert_eq!(disk_counters(stats, (254, 1)), Some([5, 8, 0, 0, 10]));
        assert_eq!(disk_counters(stats, (8, 0)), None);
    }

    #[test]
    fn a_second_is_the_difference_of_two_readings_in_ms() {
        let mut before = Reading {
            server: Side {
                cpu: CpuTicks {
                    busy: 100,
                    irq: 10,
                    idle: 50,
                    steal: 0,
                },
                ticks: 80,
                ..Side::default()
            },
            generator: Side {
                cpu: CpuTicks {
                    busy: 10,
                    irq: 0,
                    idle: 90,
                    steal: 0,
                },
                ticks: 5,
                ..Side::default()
            },
            disk: [10, 20, 30, 40, 50],
            latency: [1000, 990, 1000, 500, 500, 500, 100, 100, 100, 800, 800, 800],
        };
        before.server.run_delay_ns.insert(7, 1_000_000);
        before.generator.run_delay_ns.insert(9, 0);
        let mut after = Reading {
            server: Side {
                cpu: CpuTicks {
                    busy: 190,
                    irq: 11,
                    idle: 58,
                    steal: 1,
                },
                ticks: 165,
                ..Side::default()
            },
            generator: Side {
                cpu: CpuTicks {
                    busy: 70,
                    irq: 3,
                    idle: 117,
                    steal: 10,
                },
                ticks: 60,
                ..Side::default()
            },
            disk: [110, 25, 80, 52, 900],
            // 2,000 more requests, 30 of them over 2.5 ms and 4 over 5; 800 more commits,
            // 2 over 2.5 ms, none over 5.
            latency: [
                3000, 2960, 2996, 1300, 1298, 1300, 300, 300, 299, 2800, 2800, 2797,
            ],
        };
        after.server.run_delay_ns.insert(7, 4_000_000);
        // A thread born in the second counts from zero.
        after.server.run_delay_ns.insert(8, 2_500_000);
        after.generator.run_delay_ns.insert(9, 40_000_000);
        let second = after.since(&before, 3, 10);
        assert_eq!(
            second,
            MachineSecond {
                at_s: 3,
                cpu_busy_ms: 900,
                cpu_irq_ms: 10,
                cpu_idle_ms: 80,
                cpu_steal_ms: 10,
                server_ms: 850,
                server_run_delay_ms: 5,
                generator_cpu_busy_ms: 600,
                generator_cpu_irq_ms: 30,
                generator_cpu_idle_ms: 270,
                generator_cpu_steal_ms: 100,
                generator_ms: 550,
                generator_run_delay_ms: 40,
                disk_writes: 100,
                disk_write_ms: 5,
                disk_flushes: 50,
                disk_flush_ms: 12,
                disk_busy_ms: 850,
                server_requests: 2000,
                server_requests_over_2_5ms: 30,
                server_requests_over_5ms: 4,
                server_commits: 800,
                server_commits_over_2_5ms: 2,
                server_commits_over_5ms: 0,
                server_pushes: 200,
                server_pushes_over_5ms: 1,
                server_answer_writes: 2000,
                server_answer_writes_over_5ms: 3,
            }
        );
        assert!(summary(&[second]).contains("others 50 ms"));
    }

    #[test]
    fn the_sampler_reads_this_process_and_stops_when_told() {
        let sampler = Sampler::start(Target {
            pid: Some(std::process::id()),
            cpus: crate::load::server::usable_cpus(),
            generator_pid: Some(std::process::id()),
            generator_cpus: crate::load::server::usable_cpus(),
            disk: disk_of(Path::new("/")),
            metrics: None,
        })
        .unwrap();
        // Keep a CPU busy for a little over a second, so that one second is sampled.
        let end = Instant::now() + Duration::from_millis(1300);
        let mut spin = 0u64;
        while Instant::now() < end {
            spin = spin.wrapping_add(1);
        }
        std::hint::black_box(spin);
        let seconds = sampler.finish();
        assert!(
            !seconds.is_empty(),
            "the first second was due before finish"
        );
        assert_eq!(seconds[0].at_s, 1);
        // This process ran in that second, and so its CPUs were busy.
        assert!(seconds[0].server_ms > 0, "{seconds:?}");
        assert!(seconds[0].cpu_busy_ms > 0, "{seconds:?}");
        assert!(seconds[0].generator_ms > 0, "{seconds:?}");
        assert!(seconds[0].generator_cpu_busy_ms > 0, "{seconds:?}");
    }
}
