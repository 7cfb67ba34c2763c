//! What a benchmark ran on, printed next to every figure.

use std::process::Command;

/// The machine, the software and the moment of a measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Machine {
    /// The CPU model.
    pub cpu: String,
    /// Logical CPUs of the machine.
    pub logical_cpus: usize,
    /// `uname -r`.
    pub kernel: String,
    /// UTC date and time.
    pub date: String,
    /// The short commit hash of the checkout the generator runs in (`-` outside a git
    /// checkout). The server's own build is in the report's `server.version`.
    pub commit: String,
}

impl Machine {
    /// Reads the machine now.
    pub fn read() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".to_string());
        // SAFETY: sysconf has no memory effects.
        let logical_cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(0) as usize;
        Machine {
            cpu,
            logical_cpus,
            kernel: output("uname", &["-r"]).unwrap_or_else(|| "unknown kernel".to_string()),
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
            commit: output("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "-".into()),
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, {} logical CPUs, Linux {}, {}, commit {}",
            self.cpu, self.logical_cpus, self.kernel, self.date, self.commit
        )
    }
}

/// A one-line description: CPU model, logical CPUs, kernel, date (UTC) and commit.
pub fn describe() -> String {
    Machine::read().to_string()
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
