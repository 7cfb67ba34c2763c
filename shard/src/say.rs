//! Lines for the operator that never stop the process: `say!` (stderr) and `tell!` (stdout).
//!
//! `eprintln!` and `println!` panic when the write fails, and a write fails for ordinary
//! reasons: stderr redirected to a file on a full disk, a pipe whose reader went away
//! (`ringflow serve 2>&1 | head`, a log shipper restarted), journald restarted under a
//! systemd unit. A node must not lose a shard, or its in-flight commands, for a log line, so
//! everything `serve` and the other long-running commands (`demo`, which owns a server
//! process, and the crash-load aid) print goes through these macros: a line that cannot be
//! written is dropped, and the process goes on.
//!
//! The one-shot commands (`validate`, `doctor`, the client and history commands, `journal`)
//! print their result with `out!`: a line that cannot be written (a full disk) ends the
//! command with exit status 2 and the error named, not with a panic and a backtrace. They
//! run with SIGPIPE's default action, so that `ringflow instances | head` ends quietly when
//! `head` does, as `cat` would (see `cli::main`).
//!
//! The crate denies `clippy::print_stdout` and `clippy::print_stderr`, so that a new
//! `println!` or `eprintln!` does not slip back in.
//!
//! The tracing subscriber is set up the same way: `log_internal_errors(false)` keeps it from
//! reporting a failed write with `eprintln!` (which would panic in turn).

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Lines (`say!`, `tell!`, and the log's events) that could not be written, since the
/// process started: `ringflow_log_lines_dropped_total` in the metrics, so that a node whose
/// log went nowhere can be told from one that had nothing to say.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines dropped so far: `ringflow_log_lines_dropped_total`.
pub fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

/// `result`, counted in [`dropped`] when it is an error.
fn counted<T>(result: std::io::Result<T>) -> std::io::Result<T> {
    if result.is_err() {
        DROPPED.fetch_add(1, Relaxed);
    }
    result
}

/// Writes one line to stderr with one `write` (lines from several shards do not interleave
/// within a line); a failure is counted, not reported.
pub fn stderr_line(args: fmt::Arguments<'_>) {
    let _ = counted(std::io::stderr().lock().write_all(line(args).as_bytes()));
}

/// Writes one line to stdout and flushes it; a failure is counted, not reported.
pub fn stdout_line(args: fmt::Arguments<'_>) {
    stdout_text(&line(args));
}

/// Writes text to stdout as it is (no newline added) and flushes it; a failure is counted.
pub fn stdout_text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = counted(out.write_all(text.as_bytes()).and_then(|()| out.flush()));
}

/// stderr for the log (`tracing_subscriber`'s writer): an event that cannot be written is
/// counted in [`dropped`] (the subscriber itself is told not to report it, which it would
/// do with `eprintln!`).
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        counted(std::io::stderr().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        counted(std::io::stderr().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Writes one line of a command's result to stdout. A failed write (a full disk, an I/O
/// error; a closed pipe has ended the process by SIGPIPE before) ends the command: the
/// error on stderr, exit status 2, as for any other error, rather than a result silently
/// cut short.
pub fn result_line(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(error) = out
        .write_all(line(args).as_bytes())
        .and_then(|()| out.flush())
    {
        stderr_line(format_args!("ringflow: cannot write the output: {error}"));
        std::process::exit(2);
    }
}

fn line(args: fmt::Arguments<'_>) -> String {
    let mut text = fmt::format(args);
    text.push('\n');
    text
}

/// `eprintln!` that drops a line it cannot write instead of panicking.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::stderr_line(::std::format_args!($($arg)*))
    };
}

/// `println!` that drops a line it cannot write instead of panicking; `tell!()` writes an
/// empty line.
#[macro_export]
macro_rules! tell {
    () => {
        $crate::say::stdout_line(::std::format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::say::stdout_line(::std::format_args!($($arg)*))
    };
}

/// `println!` for a one-shot command's result: a line that cannot be written ends the
/// command with exit status 2 and the error on stderr, instead of a panic.
#[macro_export]
macro_rules! out {
    () => {
        $crate::say::result_line(::std::format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::say::result_line(::std::format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_ends_with_one_newline() {
        assert_eq!(
            line(format_args!("shard {} listening", 3)),
            "shard 3 listening\n"
        );
        assert_eq!(line(format_args!("")), "\n");
    }
}
