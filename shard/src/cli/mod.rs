//! The `ringflow` command line: argument parsing and one module per subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod client;
pub mod crash_load;
pub mod demo;
pub mod doctor;
pub mod history;
pub mod journal;
pub mod serve;
pub mod validate;

/// ringflow: a BPMN 2.0 workflow engine that runs at the speed of a persistent log.
///
/// One shard per CPU, each with its own io_uring journal (group commit) and its own
/// instances; clients speak a flatbuffers protocol straight to the shard that owns a key.
/// Models from Camunda Modeler or bpmn.io (zeebe: extensions, FEEL) deploy unchanged.
#[derive(Debug, Parser)]
#[command(
    name = "ringflow",
    version = env!("RINGFLOW_VERSION"),
    after_help = "Start here: `ringflow demo` runs a server, the bundled order process, workers and a load, \
                  and prints where to look. `ringflow doctor --data DIR` checks a machine; \
                  `ringflow serve --data DIR` runs a node. `ringflow help COMMAND` explains each."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on its defaults: a server (a shard per CPU, a fresh data directory, the
    /// SQLite cold store), the bundled order process, built-in workers and a load of orders
    /// with a progress line; then a summary and the commands to look at the result.
    ///
    /// Takes about 25 seconds with the defaults (15 s of load). Exits 0 when every order
    /// that was started completed and the cold store has them all.
    Demo(demo::Args),
    /// Check BPMN and DMN files the way a deployment would, and show what ringflow would run.
    ///
    /// For each valid file, prints each executable process with its element counts (for a
    /// DMN file, named *.dmn, each decision). For each invalid one, prints every problem as
    /// FILE:LINE:COLUMN: ELEMENT-ID: message; warnings (a FEEL call that evaluates to null)
    /// leave a file valid. Exits 0 only when every file is valid, 1 when any is not (or
    /// cannot be read).
    Validate(validate::Args),
    /// Run a node: one shard per CPU, serving the binary protocol.
    Serve(serve::Args),
    /// Check that this machine can run the configured node: kernel, io_uring, the
    /// locked-memory limit, the data directory's filesystem (O_DIRECT, not tmpfs), free
    /// disk, CPUs and the clock source; each finding with its fix.
    ///
    /// Exits 1 when something would stop the server or lose acknowledged data, 0 otherwise
    /// (warnings included).
    Doctor(doctor::Args),
    /// Print the cluster's nodes, shards and addresses.
    Topology(client::TopologyArgs),
    /// Deploy BPMN files (to every shard).
    Deploy(client::DeployArgs),
    /// Start a process instance.
    Create(client::CreateArgs),
    /// Cancel a process instance.
    Cancel(client::KeyArgs),
    /// Publish a message.
    Publish(client::PublishArgs),
    /// Broadcast a signal to every shard: every event waiting for it fires, and every
    /// process with a signal start event of that name starts once.
    ///
    /// Signals are not buffered: an event that starts waiting afterwards does not see it.
    Signal(client::SignalArgs),
    /// Evaluate the conditional start events of processes against variables: an instance
    /// starts at each whose condition holds (Camunda's EvaluateConditional).
    ///
    /// The latest version of every process with a conditional start event is evaluated, or
    /// only --process. One shard takes the request and starts the instances; each gets the
    /// variables. Prints the instances started (none when no condition held).
    EvaluateConditional(client::EvaluateConditionalArgs),
    /// Activate elements of a running ad-hoc subprocess (Camunda's
    /// ActivateAdHocSubProcessActivities).
    ///
    /// Each element (one without incoming sequence flows inside the subprocess) runs in an
    /// inner instance of its own; ID=JSON gives that inner instance local variables.
    ActivateAdHoc(client::ActivateAdHocArgs),
    /// Work with jobs by hand.
    #[command(subcommand)]
    Jobs(client::JobsCommand),
    /// Work on jobs of a type until interrupted.
    Worker(client::WorkerArgs),
    /// Set variables in a scope.
    SetVariables(client::SetVariablesArgs),
    /// Work with incidents.
    #[command(subcommand)]
    Incidents(client::IncidentsCommand),
    /// List process instances from the cold store (history; no server needed).
    ///
    /// Reads the data directory's SQLite store (every DATA/cold/shard-N.db, merged, or
    /// DATA/cold.db), or --cold-store, read-only, newest first. It trails the engine by the
    /// exporter's lag (usually milliseconds).
    Instances(history::InstancesArgs),
    /// Show one process instance from the cold store: its history, where it waits, its jobs,
    /// incidents and variables. Exits 1 when the store does not have it.
    Instance(history::InstanceArgs),
    /// List user tasks from the cold store: open ones (their job created or failed) by
    /// default, newest first, with assignee, candidates, dates, priority and form key.
    ///
    /// A tasklist's query: --assignee and --group narrow it, --all adds closed ones. The job
    /// key is what `ringflow jobs complete` takes. Reads the store like `instances`.
    UserTasks(history::UserTasksArgs),
    /// Look at a shard's journal and snapshots.
    Journal(journal::Args),
    /// A load for the kill -9 test (development aid until the wire protocol exists).
    #[command(hide = true)]
    CrashLoad(crash_load::Args),
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Serve(_) | Command::Demo(_) | Command::Worker(_) | Command::CrashLoad(_)
    ) {
        end_quietly_on_a_closed_pipe();
    }
    init_logging();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Topology(args) => client::topology(&args),
        Command::Deploy(args) => client::deploy(&args),
        Command::Create(args) => client::create(&args),
        Command::Cancel(args) => client::cancel(&args),
        Command::Publish(args) => client::publish(&args),
        Command::Signal(args) => client::signal(&args),
        Command::EvaluateConditional(args) => client::evaluate_conditional(&args),
        Command::ActivateAdHoc(args) => client::activate_ad_hoc(&args),
        Command::Jobs(command) => client::jobs(&command),
        Command::Worker(args) => client::worker(&args),
        Command::SetVariables(args) => client::set_variables(&args),
        Command::Incidents(client::IncidentsCommand::Resolve(args)) => client::resolve(&args),
        Command::Instances(args) => history::instances(&args),
        Command::Instance(args) => history::instance(&args),
        Command::UserTasks(args) => history::user_tasks(&args),
        Command::Journal(args) => journal::run(&args),
        Command::CrashLoad(args) => crash_load::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            say!("ringflow: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Gives SIGPIPE back its default action, for the one-shot commands: `ringflow journal
/// inspect DATA | head` then ends when `head` does, quietly, as `cat` would (Rust ignores
/// SIGPIPE, so a write to a closed pipe would fail with EPIPE, and `println!` panicked). `serve`, `demo`, `worker` and `crash-load` keep it ignored: they print
/// through `say!` and `tell!`, which drop what they cannot write, and must not die for it
/// (`demo` owns a server process, which it stops on every way out; a worker's job command
/// may exit without reading the input written to it). Sockets are not affected: the standard
/// library's sends use MSG_NOSIGNAL.
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: sets a signal's disposition to SIG_DFL at startup, before any thread is
    // spawned; no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The environment variable with the log filter (`tracing_subscriber`'s `EnvFilter` syntax,
/// e.g. `warn` or `info,ringflow_shard::shard=debug`).
pub const LOG_ENV: &str = "RINGFLOW_LOG";
/// The filter when `RINGFLOW_LOG` is unset: warnings and notable events (a snapshot, the
/// exporter resuming, a slow commit).
pub const LOG_DEFAULT: &str = "info";

/// Log lines go to stderr, one per event, with a UTC timestamp, the level, the source and
/// the event's fields. A filter that does not parse is reported and the default used.
fn init_logging() {
    let filter = match std::env::var(LOG_ENV) {
        Ok(text) => match tracing_subscriber::EnvFilter::try_new(&text) {
            Ok(filter) => filter,
            Err(error) => {
                say!(
                    "ringflow: {LOG_ENV}={text:?} is not a log filter ({error}); using {LOG_DEFAULT:?}"
                );
                tracing_subscriber::EnvFilter::new(LOG_DEFAULT)
            }
        },
        Err(_) => tracing_subscriber::EnvFilter::new(LOG_DEFAULT),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::say::LogWriter)
        .with_ansi(false)
        // A failed write would be reported with `eprintln!`, which panics in turn (on the
        // shard's thread): a log line that cannot be written is dropped (see `crate::say`).
        .log_internal_errors(false)
        .try_init();
}
