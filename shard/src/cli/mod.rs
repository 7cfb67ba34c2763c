//! The `ringflow` command line: argument parsing and one module per subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod crash_load;
pub mod journal;
pub mod validate;

/// ringflow: a BPMN 2.0 workflow engine that runs at the speed of a persistent log.
#[derive(Debug, Parser)]
#[command(name = "ringflow", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check BPMN files the way a deployment would, and show what ringflow would run.
    ///
    /// For each valid file, prints each executable process with its element counts. For each
    /// invalid one, prints every problem as FILE:LINE:COLUMN: ELEMENT-ID: message. Exits 0
    /// only when every file is valid, 1 when any is not (or cannot be read).
    Validate(validate::Args),
    /// Look at a shard's journal and snapshots.
    Journal(journal::Args),
    /// A load for the kill -9 test (development aid until the wire protocol exists).
    #[command(hide = true)]
    CrashLoad(crash_load::Args),
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Journal(args) => journal::run(&args),
        Command::CrashLoad(args) => crash_load::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ringflow: {error:#}");
            ExitCode::from(2)
        }
    }
}
