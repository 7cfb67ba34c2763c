//! The `ringflow` binary. Everything lives in [`ringflow_shard::cli`].

fn main() -> std::process::ExitCode {
    ringflow_shard::cli::main()
}
