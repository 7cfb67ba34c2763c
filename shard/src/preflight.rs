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
        Some(problem) => Err(problem),
        None => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
