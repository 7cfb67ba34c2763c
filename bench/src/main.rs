//! `ringflow-bench`: ringflow's benchmarks. Figures quoted anywhere come from here, with the
//! machine and date this prints next to them (see `bench/RESULTS.md`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod alloc_counter;
mod engine;
mod export;
mod journal;
mod json;
mod load;
mod machine;
mod parse;

#[global_allocator]
static ALLOCATOR: alloc_counter::Counting = alloc_counter::Counting;

/// ringflow benchmarks and load generator.
#[derive(Debug, Parser)]
#[command(name = "ringflow-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// BPMN parsing and validation speed over a folder of models, on one core.
    ///
    /// Parses every .bpmn/.xml file in the folder again and again for the given time, on
    /// the calling thread, and reports MB/s and models/s, for all files and for the valid
    /// ones alone.
    Parse(parse::Args),
    /// The engine alone (no I/O) running the one-task process on one core.
    ///
    /// Three commands per instance: CreateInstance, ActivateJobs, CompleteJob. Reports
    /// instances/s, commands/s and heap allocations per instance.
    Engine(engine::Args),
    /// The journal alone: appends/s, MB/s, records per fdatasync and latency histograms for
    /// each shard count, beside the raw device measured in the same run.
    Journal(journal::Args),
    /// One load measurement against a server over the binary protocol.
    ///
    /// Without --addr it starts `ringflow serve` as its own process on a fresh data
    /// directory, pinned to the first --shards CPUs, and pins the generator to the others.
    /// It deploys the scenario's model, keeps --inflight instances in flight (closed loop) or
    /// starts --rate instances per second (open loop, latency corrected for coordinated
    /// omission), completes every job at once, and reports completed instances/s and the
    /// end-to-end latency (create to completion) percentiles.
    Run(load::RunArgs),
    /// Runs `run` over shard counts (closed loop) and rates (open loop); writes CSV, a
    /// Markdown table and SVG plots (throughput against shards, latency against rate).
    Sweep(load::SweepArgs),
    /// Two server binaries alternated in pairs of `run`s (each build first in half of
    /// them): per pair and in all, how often the candidate was better, the means and a
    /// sign test. Closed loop compares throughput, open loop (--rate) p99 latency.
    Compare(load::compare::CompareArgs),
    /// How fast a variable document is written as JSON (journal, wire) and measured (the
    /// size limit), against serde_json, on one document with a long string.
    Json(json::Args),
    /// The SQLite cold store's exporters alone (no server): one_task instances/s of one
    /// exporter, of E exporters sharing one file, and of E exporters with a file each.
    Export(export::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Parse(args) => parse::run(&args),
        Command::Engine(args) => engine::run(&args),
        Command::Journal(args) => journal::run(&args),
        Command::Run(args) => load::run(&args),
        Command::Sweep(args) => load::sweep(&args),
        Command::Compare(args) => load::compare::compare(&args),
        Command::Export(args) => export::run(&args),
        Command::Json(args) => json::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringflow-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
