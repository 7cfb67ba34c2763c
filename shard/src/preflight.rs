//! Checks made before any shard starts: the kernel, io_uring, and the locked-memory limit.
//! Each problem comes with what to change.

/// Oldest kernel glommio supports (it needs io_uring features of 5.8).
pub const KERNEL_VERSION_MIN: (u32, u32) = (5, 8);
/// io_uring rings per executor (glommio's main, latency and poll rings), each registering the
/// executor's I/O memory.
pub const RINGS_PER_SHARD: u64 = 3;
/// Locked memory glommio needs per shard besides its I/O memory (ring structures).
pub const RING_OVERHEAD_BYTES: u64 = 256 * 1024;

/// What a check found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub what: String,
    /// What to do about it.
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n  fix: {}", self.what, self.fix)
    }
}

/// The kernel release (`uname -r`) as (major, minor), if it can be read.
pub fn kernel_version() -> Option<(u32, u32, String)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let release = release.trim().to_string();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor, release))
}

/// Checks the kernel version.
pub fn check_kernel() -> Result<(), Problem> {
    match kernel_version() {
        Some((major, minor, _)) if (major, minor) >= KERNEL_VERSION_MIN => Ok(()),
        Some((_, _, release)) => Err(Problem {
            what: format!(
                "kernel {release} is older than {}.{}, which io_uring as glommio uses needs",
                KERNEL_VERSION_MIN.0, KERNEL_VERSION_MIN.1
            ),
            fix: "run on Linux 5.8 or later (5.15+ recommended)".to_string(),
        }),
        None => Err(Problem {
            what: "cannot read the kernel version from /proc/sys/kernel/osrelease".to_string(),
            fix: "run on Linux with /proc mounted".to_string(),
        }),
    }
}

/// Checks that io_uring can be used: the `kernel.io_uring_disabled` sysctl, then an actual
/// `io_uring_setup` (which also catches seccomp filters, as in some container runtimes).
pub fn check_io_uring() -> Result<(), Problem> {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if disabled == 2 {
        return Err(Problem {
            what: "io_uring is disabled (sysctl kernel.io_uring_disabled = 2)".to_string(),
            fix: "sysctl -w kernel.io_uring_disabled=0 (and set it in /etc/sysctl.d/)".to_string(),
        });
    }
    // SAFETY: io_uring_setup reads and writes only the params struct we pass, sized as the
    // kernel expects (120 bytes); the returned descriptor is closed at once.
    let result = unsafe {
        let mut params = [0u8; 120];
        libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr())
    };
    if result >= 0 {
        // SAFETY: `result` is a descriptor we own and no longer need.
        unsafe { libc::close(result as i32) };
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    let fix = match error.raw_os_error() {
        Some(libc::ENOSYS) => "use a kernel built with CONFIG_IO_URING".to_string(),
        Some(libc::EPERM) if disabled == 1 => "io_uring is limited to a group (sysctl \
            kernel.io_uring_disabled = 1): add this user to kernel.io_uring_group, or set \
            the sysctl to 0"
            .to_string(),
        Some(libc::EPERM) => "a seccomp filter blocks io_uring (containers: run with a \
            profile that allows io_uring_setup, io_uring_enter and io_uring_register)"
            .to_string(),
        Some(libc::ENOMEM) => "raise RLIMIT_MEMLOCK (see the memlock check)".to_string(),
        _ => "check the kernel's io_uring support".to_string(),
    };
    Err(Problem {
        what: format!("io_uring_setup failed: {error}"),
        fix,
    })
}

/// The locked memory `shards` executors need with `io_memory_bytes` each.
pub fn memlock_needed_bytes(shards: usize, io_memory_bytes: usize) -> u64 {
    let per_shard = RINGS_PER_SHARD
        .saturating_mul(io_memory_bytes as u64)
        .saturating_add(RING_OVERHEAD_BYTES);
    (shards as u64).saturating_mul(per_shard)
}

/// Checks RLIMIT_MEMLOCK against what the shards need.
pub fn check_memlock(shards: usize, io_memory_bytes: usize) -> Result<(), Problem> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(Problem {
            what: "cannot read RLIMIT_MEMLOCK".to_string(),
            fix: "check the process limits".to_string(),
        });
    }
    match memlock_problem(limit.rlim_cur, shards, io_memory_bytes) {
        // With CAP_IPC_LOCK the kernel does not count io_uring's registered memory against
        // RLIMIT_MEMLOCK (io_uring/rsrc.c accounts only for processes without it).
        Some(_) if has_cap_ipc_lock() => Ok(()),
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// CAP_IPC_LOCK's bit in the capability sets.
const CAP_IPC_LOCK: u32 = 14;

/// Whether this process has CAP_IPC_LOCK in its effective set (read from /proc/self/status).
pub fn has_cap_ipc_lock() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("CapEff:"))?;
            u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
        })
        .is_some_and(|effective| effective & (1 << CAP_IPC_LOCK) != 0)
}

/// What is wrong with a locked-memory limit of `limit_bytes` (`RLIM_INFINITY`: none) for
/// `shards` shards, if anything.
pub fn memlock_problem(limit_bytes: u64, shards: usize, io_memory_bytes: usize) -> Option<Problem> {
    let needed = memlock_needed_bytes(shards, io_memory_bytes);
    if limit_bytes == libc::RLIM_INFINITY || limit_bytes >= needed {
        return None;
    }
    let needed_kib = needed.div_ceil(1024);
    Some(Problem {
        what: format!(
            "RLIMIT_MEMLOCK is {} KiB; {shards} shards with {} KiB of I/O memory each need \
             {needed_kib} KiB",
            limit_bytes / 1024,
            io_memory_bytes / 1024
        ),
        fix: format!(
            "raise it: `ulimit -l {needed_kib}` in this shell, LimitMEMLOCK={needed} in the \
             systemd unit, or `memlock` in /etc/security/limits.conf; or lower the I/O memory \
             per shard or the number of shards"
        ),
    })
}

/// All checks; the problems found (empty: good to go).
pub fn check_all(shards: usize, io_memory_bytes: usize) -> Vec<Problem> {
    [
        check_kernel(),
        check_io_uring(),
        check_memlock(shards, io_memory_bytes),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect()
}

/// How serious a finding of `ringflow doctor` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine.
    Ok,
    /// The server runs, but slower or less safely than it could.
    Warn,
    /// The server would not start, or would not keep what it acknowledged.
    Fail,
}

impl Level {
    /// The label `ringflow doctor` prints.
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        }
    }
}

/// One finding of `ringflow doctor`: what was checked, what was seen, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How serious it is.
    pub level: Level,
    /// The check's name (kernel, io_uring, memlock, filesystem, mount, o_direct, disk, cpus,
    /// steal, clock, ports).
    pub check: &'static str,
    /// What was seen.
    pub what: String,
    /// What to do about it (empty when fine).
    pub fix: String,
}

impl Finding {
    fn ok(check: &'static str, what: String) -> Finding {
        Finding {
            level: Level::Ok,
            check,
            what,
            fix: String::new(),
        }
    }

    fn from_problem(check: &'static str, level: Level, problem: Problem) -> Finding {
        Finding {
            level,
            check,
            what: problem.what,
            fix: problem.fix,
        }
    }
}

/// Whether the node's ports (`count` from `base_port` on `host`; 0 picks free ones) can be
/// taken: a port another process listens on stops `ringflow serve`. A port in use is tried
/// for as long as `serve` would ([`crate::server::ports::IN_USE_WAIT_MS`]), so the check
/// fails exactly where `serve` would (a unit restarted right after a crash runs it while
/// the old process's sockets are still closing). When the node itself runs on the data
/// directory (`running`, its pid), its ports being in use is a warning, not a failure:
/// doctor run beside a live node (an upgrade's install script) says so and passes.
pub fn ports_finding(host: &str, base_port: u16, count: u16, running: Option<u32>) -> Finding {
    let shown = |port: u16| crate::server::ports::shown(host, port);
    match crate::server::ports::bind_ports(host, base_port, count) {
        Ok(bound) => {
            let last = u32::from(bound.base_port) + u32::from(count) - 1;
            Finding::ok(
                "ports",
                if base_port == 0 {
                    format!("listen port 0: the node picks {count} free port(s) on {host} at start")
                } else {
                    format!("{}..={last} can be listened on", shown(bound.base_port))
                },
            )
        }
        Err(error) => match running {
            Some(pid) => Finding {
                level: Level::Warn,
                check: "ports",
                what: format!(
                    "{error} (the ringflow process {pid} runs on this data directory and \
                     likely holds them)"
                ),
                fix: "fine while that node runs; stop it before it is started again".to_string(),
            },
            None => Finding {
                level: Level::Fail,
                check: "ports",
                what: error,
                fix: "stop the process that listens there (`ss -ltnp` names it), or give the \
                      node other ports (--listen HOST:PORT, or the cluster file)"
                    .to_string(),
            },
        },
    }
}

/// What `ringflow doctor` checks against: the node's shards and settings.
#[derive(Debug, Clone)]
pub struct DoctorInput {
    /// The data directory (it may not exist yet).
    pub data_dir: std::path::PathBuf,
    /// This node's shards.
    pub shards: usize,
    /// The CPUs the shards run on.
    pub cpus: Vec<usize>,
    /// The CPUs this process may use.
    pub usable_cpus: Vec<usize>,
    /// I/O memory per shard, in bytes.
    pub io_memory_bytes: usize,
    /// Journal segment size, in bytes.
    pub segment_bytes: u64,
}

/// Segments each shard needs room for on disk to run at all (the open one, and the next,
/// which is created and preallocated when the open one fills).
pub const DISK_SEGMENTS_FAIL: u64 = 2;
/// Segments per shard below which free disk is worth a warning: a few snapshots and
/// segments between compactions.
pub const DISK_SEGMENTS_WARN: u64 = 16;

/// Runs every check of `ringflow doctor`.
pub fn doctor(input: &DoctorInput) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.push(match check_kernel() {
        Ok(()) => {
            let release = kernel_version().map(|(_, _, release)| release);
            Finding::ok(
                "kernel",
                format!(
                    "Linux {} (io_uring as glommio uses it needs {}.{} or later)",
                    release.unwrap_or_default(),
                    KERNEL_VERSION_MIN.0,
                    KERNEL_VERSION_MIN.1
                ),
            )
        }
        Err(problem) => Finding::from_problem("kernel", Level::Fail, problem),
    });
    findings.push(match check_io_uring() {
        Ok(()) => Finding::ok(
            "io_uring",
            "io_uring_setup works (not disabled by sysctl, not blocked by seccomp)".to_string(),
        ),
        Err(problem) => Finding::from_problem("io_uring", Level::Fail, problem),
    });
    findings.push(match check_memlock(input.shards, input.io_memory_bytes) {
        Ok(()) => Finding::ok(
            "memlock",
            format!(
                "RLIMIT_MEMLOCK {} {} the {} KiB {} shard(s) lock",
                memlock_limit_text(),
                if has_cap_ipc_lock() {
                    "does not apply (CAP_IPC_LOCK) to"
                } else {
                    "covers"
                },
                memlock_needed_bytes(input.shards, input.io_memory_bytes).div_ceil(1024),
                input.shards
            ),
        ),
        Err(problem) => Finding::from_problem("memlock", Level::Fail, problem),
    });
    let (existing, exists) = nearest_existing(&input.data_dir);
    findings.push(filesystem_finding(&input.data_dir, &existing, exists));
    findings.push(mount_finding(
        std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .as_deref(),
        &std::fs::canonicalize(&existing).unwrap_or(existing.clone()),
    ));
    findings.push(o_direct_finding(&input.data_dir, &existing));
    findings.push(disk_finding(&existing, input.shards, input.segment_bytes));
    findings.push(cpus_finding(&input.cpus, &input.usable_cpus));
    findings.push(steal_finding(
        std::fs::read_to_string("/proc/stat").ok().as_deref(),
        &input.cpus,
    ));
    findings.push(clock_finding(
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .ok()
            .as_deref()
            .map(str::trim),
        std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/available_clocksource",
        )
        .ok()
        .as_deref()
        .unwrap_or(""),
    ));
    findings
}

fn memlock_limit_text() -> String {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return "(unreadable)".to_string();
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        format!("{} KiB", limit.rlim_cur / 1024)
    }
}

/// The path itself if it exists, else its nearest existing ancestor (the data directory is
/// created at the first start); and whether the path itself exists.
fn nearest_existing(path: &std::path::Path) -> (std::path::PathBuf, bool) {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut at = absolute.as_path();
    let mut exists = true;
    loop {
        if at.exists() {
            return (at.to_path_buf(), exists);
        }
        exists = false;
        match at.parent() {
            Some(parent) => at = parent,
            None => return (std::path::PathBuf::from("/"), false),
        }
    }
}

/// The statfs magic number of the filesystem `path` is on (None when statfs fails).
pub fn filesystem_magic(path: &std::path::Path) -> Option<i64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs writes into the struct we own; the path is NUL-terminated.
    unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        (libc::statfs(c_path.as_ptr(), &mut stat) == 0).then_some(stat.f_type as i64)
    }
}

/// The name of a filesystem by its statfs magic number.
pub fn filesystem_name(magic: i64) -> String {
    match magic {
        0xEF53 => "ext4 (or ext2/ext3)".to_string(),
        0x5846_5342 => "xfs".to_string(),
        0x9123_683E => "btrfs".to_string(),
        0xF2F5_2010 => "f2fs".to_string(),
        0x2FC1_2FC1 => "zfs".to_string(),
        0x0102_1994 => "tmpfs".to_string(),
        0x8584_58F6 => "ramfs".to_string(),
        0x794C_7630 => "overlayfs".to_string(),
        0x6969 => "nfs".to_string(),
        0xFF53_4D42 => "cifs".to_string(),
        0x6573_5546 => "fuse".to_string(),
        other => format!("filesystem 0x{other:x}"),
    }
}

/// Whether `path` is on tmpfs or ramfs, where O_DIRECT and fdatasync keep nothing.
pub fn on_memory_filesystem(path: &std::path::Path) -> bool {
    filesystem_magic(path).is_some_and(|magic| matches!(magic, 0x0102_1994 | 0x8584_58F6))
}

/// What `ringflow serve` prints when the data directory `data` (or, before its first start,
/// its nearest existing parent) is on a filesystem that `ringflow doctor` fails or warns
/// about; `None` on a local disk's filesystem or when statfs fails.
pub fn data_filesystem_warning(data: &std::path::Path) -> Option<String> {
    let (existing, _) = nearest_existing(data);
    filesystem_warning(data, filesystem_magic(&existing)?)
}

/// [`data_filesystem_warning`] for a filesystem's statfs magic number.
pub fn filesystem_warning(data: &std::path::Path, magic: i64) -> Option<String> {
    let (level, why) = filesystem_level(magic);
    (level != Level::Ok).then(|| {
        format!(
            "the data directory {} is on {}, which {why}",
            data.display(),
            filesystem_name(magic)
        )
    })
}

/// The verdict on a filesystem, by its statfs magic number.
pub fn filesystem_level(magic: i64) -> (Level, &'static str) {
    match magic {
        // Memory filesystems: an fdatasync there survives nothing, so acknowledged work is
        // lost at the next reboot.
        0x0102_1994 | 0x8584_58F6 => (
            Level::Fail,
            "keeps data in memory only: acknowledged instances are lost at a reboot; put the \
             data directory on a disk (ext4 or xfs)",
        ),
        // A container's writable layer: slow, and gone with the container.
        0x794C_7630 => (
            Level::Warn,
            "is a container's writable layer: mount a volume (a persistent volume in \
             Kubernetes) at the data directory",
        ),
        0x6969 | 0xFF53_4D42 | 0x6573_5546 => (
            Level::Warn,
            "is a network or user-space filesystem: O_DIRECT and fdatasync latency there is \
             unpredictable; use a local disk",
        ),
        _ => (Level::Ok, ""),
    }
}

fn filesystem_finding(data: &std::path::Path, existing: &std::path::Path, exists: bool) -> Finding {
    let Some(magic) = filesystem_magic(existing) else {
        return Finding {
            level: Level::Fail,
            check: "filesystem",
            what: format!("cannot statfs {}", existing.display()),
            fix: "check that the data directory's parent exists and is readable".to_string(),
        };
    };
    let name = filesystem_name(magic);
    let place = if exists {
        format!("{} is on {name}", data.display())
    } else {
        format!(
            "{} does not exist yet (created at the first start); {} is on {name}",
            data.display(),
            existing.display()
        )
    };
    match filesystem_level(magic) {
        (Level::Ok, _) => Finding::ok("filesystem", place),
        (level, fix) => Finding {
            level,
            check: "filesystem",
            what: place,
            fix: format!("{name} {fix}"),
        },
    }
}

/// One line of `/proc/self/mountinfo`: where a filesystem is mounted, its type and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount point.
    pub point: std::path::PathBuf,
    /// The filesystem type (`ext4`, `xfs`, ...).
    pub fstype: String,
    /// The device (or other source) mounted.
    pub source: String,
    /// The mount's own options, then the filesystem's (super block) options.
    pub options: Vec<String>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let octal = bytes.get(at + 1..at + 4).filter(|digits| {
            bytes[at] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                out.push(value as u8);
                at += 4;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path` (absolute, symbolic links resolved), read from the text of
/// `/proc/self/mountinfo`: the one with the longest mount point that contains it, the last
/// listed where one was mounted over another. `None` when no line parses.
pub fn mount_of(mountinfo: &str, path: &std::path::Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        // `id parent major:minor root point options [optional fields] - type source super`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(point), Some(options), Some(fstype)) = (left.get(4), left.get(5), right.first())
        else {
            continue;
        };
        let point = std::path::PathBuf::from(unescape_mountinfo(point));
        if !path.starts_with(&point) {
            continue;
        }
        let deeper = best
            .as_ref()
            .is_none_or(|best| point.components().count() >= best.point.components().count());
        if deeper {
            let mut all: Vec<String> = options.split(',').map(str::to_string).collect();
            all.extend(
                right
                    .get(2)
                    .into_iter()
                    .flat_map(|extra| extra.split(','))
                    .map(str::to_string),
            );
            best = Some(Mount {
                point,
                fstype: fstype.to_string(),
                source: right
                    .get(1)
                    .map(|source| unescape_mountinfo(source))
                    .unwrap_or_default(),
                options: all,
            });
        }
    }
    best
}

/// The verdict on the mount options of the filesystem that holds `existing`, given the text of
/// `/proc/self/mountinfo` (`None` when it cannot be read). Online discard (`discard`) makes
/// every unlink send its discards to the device at the next filesystem commit; on this
/// project's VM, deleting a 64 MiB segment stalled concurrent journal writes for 11-29 ms,
/// and with `nodiscard` the same deletions took 0.2-0.4 ms and stalled nothing
/// (bench/RESULTS.md, bench/scripts/fsync_loop.py). (btrfs's `discard=async` queues its
/// discards and is fine.)
pub fn mount_finding(mountinfo: Option<&str>, existing: &std::path::Path) -> Finding {
    let Some(mount) = mountinfo.and_then(|text| mount_of(text, existing)) else {
        return Finding {
            level: Level::Warn,
            check: "mount",
            what: format!(
                "cannot find the mount of {} in /proc/self/mountinfo",
                existing.display()
            ),
            fix: "mount /proc to let the check run".to_string(),
        };
    };
    let what = format!(
        "{} is {} on {} mounted at {}",
        existing.display(),
        mount.fstype,
        mount.source,
        mount.point.display()
    );
    if mount.options.iter().any(|option| option == "discard") {
        Finding {
            level: Level::Warn,
            check: "mount",
            what: format!(
                "{what} with `discard`: each file deleted (a journal segment beyond \
                 spare-segments, an old snapshot) is discarded at once, which stalled \
                 concurrent journal writes for 11-29 ms per 64 MiB segment"
            ),
            fix: format!(
                "mount it without discard (drop the option in /etc/fstab, or `mount -o \
                 remount,nodiscard {}`) and trim once a week instead (systemctl enable --now \
                 fstrim.timer)",
                mount.point.display()
            ),
        }
    } else {
        Finding::ok("mount", format!("{what} without online discard"))
    }
}

/// Writes, fdatasyncs and removes one 4 KiB block with O_DIRECT in `existing`, the way the
/// journal writes.
fn o_direct_finding(data: &std::path::Path, existing: &std::path::Path) -> Finding {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = existing.join(format!(".ringflow-doctor-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)?;
        let layout = std::alloc::Layout::from_size_align(4096, 4096).expect("valid layout");
        // SAFETY: the layout is non-zero; the block is freed below; zeroed memory is a valid
        // byte buffer.
        let block = unsafe { std::alloc::alloc_zeroed(layout) };
        if block.is_null() {
            return Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory));
        }
        // SAFETY: `block` points to 4096 initialized bytes we own until the dealloc.
        let written = std::os::unix::fs::FileExt::write_at(
            &file,
            unsafe { std::slice::from_raw_parts(block, 4096) },
            0,
        );
        // SAFETY: allocated above with the same layout.
        unsafe { std::alloc::dealloc(block, layout) };
        if written? != 4096 {
            return Err(std::io::Error::other("short O_DIRECT write"));
        }
        file.sync_data()
    })();
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(()) => Finding::ok(
            "o_direct",
            format!(
                "an O_DIRECT write and fdatasync in {} work",
                existing.display()
            ),
        ),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Finding {
            level: Level::Fail,
            check: "o_direct",
            what: format!("{} does not support O_DIRECT ({error})", existing.display()),
            fix: format!(
                "put the data directory ({}) on ext4 or xfs on a local disk",
                data.display()
            ),
        },
        Err(error) => Finding {
            level: Level::Fail,
            check: "o_direct",
            what: format!(
                "cannot write a test block in {}: {error}",
                existing.display()
            ),
            fix: "give the user that runs ringflow write access to the data directory (or \
                  its parent, for the first start)"
                .to_string(),
        },
    }
}

/// The verdict on `free_bytes` of free disk for `shards` shards with `segment_bytes` segments.
pub fn disk_level(free_bytes: u64, shards: usize, segment_bytes: u64) -> Level {
    let per_segment = (shards as u64).saturating_mul(segment_bytes);
    if free_bytes < per_segment.saturating_mul(DISK_SEGMENTS_FAIL) {
        Level::Fail
    } else if free_bytes < per_segment.saturating_mul(DISK_SEGMENTS_WARN) {
        Level::Warn
    } else {
        Level::Ok
    }
}

fn disk_finding(existing: &std::path::Path, shards: usize, segment_bytes: u64) -> Finding {
    let Ok(c_path) = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()) else {
        return Finding::ok("disk", "path not checked".to_string());
    };
    // SAFETY: statvfs writes into the struct we own; the path is NUL-terminated.
    let free = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c_path.as_ptr(), &mut stat) == 0)
            .then(|| (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
    };
    let Some(free) = free else {
        return Finding {
            level: Level::Fail,
            check: "disk",
            what: format!("cannot statvfs {}", existing.display()),
            fix: "check the data directory's path".to_string(),
        };
    };
    let mib = |bytes: u64| bytes >> 20;
    let what = format!(
        "{} MiB free in {}; {shards} shard(s) with {} MiB segments",
        mib(free),
        existing.display(),
        mib(segment_bytes)
    );
    match disk_level(free, shards, segment_bytes) {
        Level::Ok => Finding::ok("disk", what),
        level => Finding {
            level,
            check: "disk",
            what,
            fix: format!(
                "free disk space: each shard needs room for {DISK_SEGMENTS_FAIL} segments to \
                 start and should have room for {DISK_SEGMENTS_WARN} (journal and snapshots \
                 between compactions); or use smaller segments (segment-mib)"
            ),
        },
    }
}

/// The verdict on running shards on `cpus` when the process may use `usable`.
pub fn cpus_finding(cpus: &[usize], usable: &[usize]) -> Finding {
    let unusable: Vec<usize> = cpus
        .iter()
        .copied()
        .filter(|cpu| !usable.contains(cpu))
        .collect();
    if !unusable.is_empty() {
        return Finding {
            level: Level::Fail,
            check: "cpus",
            what: format!(
                "{} shard(s) on CPUs {cpus:?}, but this process may use only {usable:?} \
                 (not {unusable:?})",
                cpus.len()
            ),
            fix: "run fewer shards, name usable CPUs (cpus), or widen the CPU affinity \
                  (taskset, CPUAffinity= in the systemd unit, the pod's CPU request)"
                .to_string(),
        };
    }
    if cpus.len() == usable.len() && usable.len() > 1 {
        return Finding {
            level: Level::Warn,
            check: "cpus",
            what: format!(
                "{} shard(s) on all {} usable CPUs: the cold-store exporter threads and the \
                 kernel's interrupts share the shards' cores",
                cpus.len(),
                usable.len()
            ),
            fix: "for the lowest latency leave a core free: shards = CPUs - 1 (see \
                  deploy/tuning.md); fine for a trial"
                .to_string(),
        };
    }
    Finding::ok(
        "cpus",
        format!(
            "{} shard(s) on CPUs {cpus:?} of the usable {usable:?}",
            cpus.len()
        ),
    )
}

/// CPU time of some CPUs from `/proc/stat`, in the kernel's ticks (`USER_HZ`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// Running tasks: user, nice and system.
    pub busy: u64,
    /// Serving interrupts: irq and softirq.
    pub irq: u64,
    /// Idle, iowait included.
    pub idle: u64,
    /// Stolen: the hypervisor ran something else while the CPU had work (0 on bare metal).
    pub steal: u64,
}

impl CpuTicks {
    /// All four.
    pub fn total(&self) -> u64 {
        self.busy + self.irq + self.idle + self.steal
    }
}

/// The ticks of `cpus` summed, from the `cpuN` lines of `/proc/stat` (CPUs it does not
/// list count nothing).
pub fn cpu_ticks(stat: &str, cpus: &[usize]) -> CpuTicks {
    let mut total = CpuTicks::default();
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields
            .next()
            .and_then(|name| name.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if !cpus.contains(&cpu) {
            continue;
        }
        let v: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        total.busy += at(0) + at(1) + at(2);
        total.irq += at(5) + at(6);
        total.idle += at(3) + at(4);
        total.steal += at(7);
    }
    total
}

/// The verdict on CPU time stolen from the shards' CPUs since boot (`stat`: `/proc/stat`).
/// Any steal means a VM whose virtual CPUs the hypervisor stops at times; each stop stops
/// the shards on them, so latency tails include it.
pub fn steal_finding(stat: Option<&str>, cpus: &[usize]) -> Finding {
    let Some(stat) = stat else {
        return Finding::ok("steal", "not known (/proc/stat unreadable)".to_string());
    };
    let ticks = cpu_ticks(stat, cpus);
    if ticks.steal == 0 {
        return Finding::ok(
            "steal",
            format!("no CPU time stolen from CPUs {cpus:?} since boot"),
        );
    }
    // SAFETY: sysconf has no memory effects.
    let per_second = (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64;
    Finding {
        level: Level::Warn,
        check: "steal",
        what: format!(
            "the hypervisor took {:.1} s from CPUs {cpus:?} since boot ({:.3}% of their time): \
             a VM whose CPUs are stopped at times, and the shards with them; latency tails \
             include those stops",
            ticks.steal as f64 / per_second,
            ticks.steal as f64 * 100.0 / ticks.total().max(1) as f64
        ),
        fix: "for latency targets use bare metal or dedicated, pinned virtual CPUs; \
              ringflow-bench run's machine_timeline shows steal second by second beside \
              latency; fine for a trial"
            .to_string(),
    }
}

/// The verdict on the clock source (`current`), given the `available` ones.
pub fn clock_finding(current: Option<&str>, available: &str) -> Finding {
    match current {
        Some(
            source @ ("tsc" | "kvm-clock" | "arch_sys_counter" | "hyperv_clocksource_tsc_page"),
        ) => Finding::ok(
            "clock",
            format!("clock source {source}: clock_gettime stays in user space"),
        ),
        Some(source) => {
            let fix = if available.split_whitespace().any(|name| name == "tsc") {
                "switch to tsc: echo tsc > \
                 /sys/devices/system/clocksource/clocksource0/current_clocksource (and \
                 clocksource=tsc on the kernel command line)"
                    .to_string()
            } else {
                "use a machine or VM type with a stable TSC (see dmesg for `TSC unstable`)"
                    .to_string()
            };
            Finding {
                level: Level::Warn,
                check: "clock",
                what: format!(
                    "clock source {source}: every timestamp (timers, latency histograms, \
                     group-commit timing) is a system call"
                ),
                fix,
            }
        }
        None => Finding {
            level: Level::Warn,
            check: "clock",
            what: "cannot read the clock source from /sys".to_string(),
            fix: "mount sysfs to let the check run".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_warns_of_a_data_directory_in_memory_or_on_a_network() {
        let data = std::path::Path::new("/srv/ringflow");
        let tmpfs = filesystem_warning(data, 0x0102_1994).expect("tmpfs warns");
        assert!(
            tmpfs.contains("/srv/ringflow is on tmpfs") && tmpfs.contains("lost at a reboot"),
            "{tmpfs}"
        );
        assert!(filesystem_warning(data, 0x794C_7630).is_some_and(|w| w.contains("overlayfs")));
        assert!(filesystem_warning(data, 0x6969).is_some_and(|w| w.contains("nfs")));
        assert_eq!(filesystem_warning(data, 0xEF53), None, "ext4 is fine");
        assert_eq!(filesystem_warning(data, 0x5846_5342), None, "xfs is fine");
        // A folder that does not exist yet is judged by its nearest existing parent.
        if on_memory_filesystem(std::path::Path::new("/dev/shm")) {
            let warning = data_filesystem_warning(std::path::Path::new("/dev/shm/not/yet"))
                .expect("/dev/shm is tmpfs");
            assert!(warning.contains("on tmpfs"), "{warning}");
        }
    }

    #[test]
    fn cpu_ticks_sum_the_cpus_named_and_steal_warns() {
        let stat = "cpu  4106629 15068 1027557 4999936 271039 0 123437 5866 0 0\n\
                    cpu0 100 1 20 300 4 5 6 7 0 0\n\
                    cpu1 1000 10 200 3000 40 50 60 0 0 0\n\
                    cpu12 1 1 1 1 1 1 1 1 0 0\n\
                    intr 1 2 3\n";
        let zero = CpuTicks::default();
        assert_eq!(
            cpu_ticks(stat, &[0]),
            CpuTicks {
                busy: 121,
                irq: 11,
                idle: 304,
                steal: 7
            }
        );
        assert_eq!(cpu_ticks(stat, &[0, 1]).total(), 443 + 4360);
        assert_eq!(cpu_ticks(stat, &[12]).busy, 3);
        assert_eq!(cpu_ticks(stat, &[]), zero);
        assert_eq!(cpu_ticks("garbage", &[0]), zero);
        // The aggregate "cpu" line is not CPU 0's.
        assert_eq!(cpu_ticks("cpu  1 1 1 1 1 1 1 1\n", &[0]), zero);

        let stolen = steal_finding(Some(stat), &[0]);
        assert_eq!(stolen.level, Level::Warn);
        assert!(stolen.what.contains("CPUs [0]"), "{}", stolen.what);
        assert!(stolen.fix.contains("machine_timeline"), "{}", stolen.fix);
        assert_eq!(steal_finding(Some(stat), &[1]).level, Level::Ok);
        assert_eq!(steal_finding(None, &[0]).level, Level::Ok);
    }

    #[test]
    fn doctor_verdicts_on_filesystems_disk_cpus_and_clocks() {
        assert_eq!(filesystem_level(libc::TMPFS_MAGIC).0, Level::Fail);
        assert_eq!(filesystem_level(0x794C_7630).0, Level::Warn);
        assert_eq!(filesystem_level(0xEF53).0, Level::Ok);
        assert_eq!(filesystem_level(0x5846_5342).0, Level::Ok);
        assert_eq!(filesystem_name(libc::TMPFS_MAGIC), "tmpfs");
        let segment = 64 << 20;
        assert_eq!(disk_level(100 << 20, 1, segment), Level::Fail);
        assert_eq!(disk_level(128 << 20, 1, segment), Level::Warn);
        assert_eq!(disk_level(1 << 30, 1, segment), Level::Ok);
        assert_eq!(disk_level(1 << 30, 8, segment), Level::Warn);
        assert_eq!(cpus_finding(&[0, 5], &[0, 1, 2, 3]).level, Level::Fail);
        assert_eq!(cpus_finding(&[0, 1], &[0, 1]).level, Level::Warn);
        assert_eq!(cpus_finding(&[0], &[0, 1]).level, Level::Ok);
        assert_eq!(cpus_finding(&[0], &[0]).level, Level::Ok);
        assert_eq!(clock_finding(Some("tsc"), "tsc hpet").level, Level::Ok);
        let hpet = clock_finding(Some("hpet"), "tsc hpet acpi_pm");
        assert_eq!(hpet.level, Level::Warn);
        assert!(hpet.fix.contains("echo tsc"), "{hpet:?}");
        assert!(
            !clock_finding(Some("hpet"), "hpet acpi_pm")
                .fix
                .contains("echo tsc")
        );
    }

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict
40 27 8:17 / /var/lib/ringflow rw,noatime shared:5 - xfs /dev/sdb1 rw,attr2,inode64
41 27 8:33 / /srv/my\\040data rw,noatime - btrfs /dev/sdc1 rw,discard=async,ssd
42 40 8:49 / /var/lib/ringflow/fast rw,noatime - ext4 /dev/nvme0n1p1 rw,discard
43 40 8:50 / /var/lib/ringflow/fast rw,noatime - ext4 /dev/nvme1n1p1 rw
";

    #[test]
    fn the_mount_of_a_path_is_its_longest_mount_point_and_the_last_mounted() {
        let mount = |path: &str| mount_of(MOUNTINFO, std::path::Path::new(path)).unwrap();
        assert_eq!(mount("/var/tmp/x").fstype, "ext4");
        assert_eq!(mount("/var/tmp/x").point, std::path::Path::new("/"));
        let xfs = mount("/var/lib/ringflow/data");
        assert_eq!(
            (xfs.fstype.as_str(), xfs.source.as_str()),
            ("xfs", "/dev/sdb1")
        );
        assert!(xfs.options.contains(&"inode64".to_string()), "{xfs:?}");
        // A prefix of the name is not a parent directory.
        assert_eq!(mount("/var/lib/ringflowx").fstype, "ext4");
        // Mounted over: the later line wins.
        assert_eq!(mount("/var/lib/ringflow/fast/a").source, "/dev/nvme1n1p1");
        assert_eq!(mount("/srv/my data/a").fstype, "btrfs");
        assert_eq!(mount_of("garbage\n", std::path::Path::new("/")), None);
    }

    #[test]
    fn online_discard_is_a_warning_with_the_remount_and_async_discard_is_not() {
        let finding = |path: &str| mount_finding(Some(MOUNTINFO), std::path::Path::new(path));
        let root = finding("/var/tmp/ringflow");
        assert_eq!(root.level, Level::Warn, "{root:?}");
        assert!(
            root.what.contains("/dev/vda") && root.what.contains("discard"),
            "{root:?}"
        );
        assert!(root.fix.contains("remount,nodiscard /`"), "{root:?}");
        assert!(root.fix.contains("fstrim.timer"), "{root:?}");
        assert_eq!(finding("/var/lib/ringflow/data").level, Level::Ok);
        assert_eq!(finding("/srv/my data/x").level, Level::Ok);
        assert_eq!(finding("/var/lib/ringflow/fast/x").level, Level::Ok);
        assert_eq!(
            mount_finding(None, std::path::Path::new("/")).level,
            Level::Warn
        );
    }

    #[test]
    fn doctor_on_a_missing_data_directory_checks_its_nearest_parent() {
        let base = std::env::temp_dir();
        let missing = base.join(format!("ringflow-doctor-{}/a/b", std::process::id()));
        let (existing, exists) = nearest_existing(&missing);
        assert!(!exists);
        assert_eq!(existing, std::path::absolute(&base).unwrap());
        let finding = filesystem_finding(&missing, &existing, exists);
        assert!(finding.what.contains("does not exist yet"), "{finding:?}");
    }

    #[test]
    fn memlock_need_grows_with_shards_and_the_fix_names_the_number() {
        assert_eq!(memlock_needed_bytes(1, 1 << 20), 3 * (1 << 20) + 256 * 1024);
        assert_eq!(
            memlock_needed_bytes(4, 1 << 20),
            4 * memlock_needed_bytes(1, 1 << 20)
        );
        let problem = memlock_problem(8 << 20, 4, 1 << 20).expect("8 MiB is too little");
        assert!(problem.fix.contains("ulimit -l 13312"), "{problem}");
        assert_eq!(memlock_problem(16 << 20, 4, 1 << 20), None);
        assert_eq!(memlock_problem(libc::RLIM_INFINITY, 64, 1 << 30), None);
    }

    #[test]
    fn this_machine_has_a_kernel_version() {
        let (major, _, release) = kernel_version().expect("Linux");
        assert!(major >= 3, "{release}");
    }
}
